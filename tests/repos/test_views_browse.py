"""The code-browsing pages through the TestClient: home, tree, blob, raw, history, commit,
blame, compare, branches, tags, and bad input."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import lastcommit, store
from opencodehub.repos.models import Repository, Visibility
from tests.repos.git_helpers import commit_files, create_repo
from tests.web.forms import log_in

README = (
    b"# Project\n\nSee [the guide](docs/guide.md) and ![logo](img/logo.png).\n\n"
    b"<script>alert(1)</script>\n"
)


@pytest.fixture
def owner(make_user: Callable[..., User]) -> User:
    return make_user("ada")


@pytest.fixture
def repo(db: Database, settings: Settings, owner: User) -> Repository:
    lastcommit.clear_memory_cache()
    repository = create_repo(db, settings, owner, "project")
    commit_files(
        settings,
        repository,
        {
            "README.md": README,
            "src/app.py": b"def main():\n    return 42\n",
            "docs/guide.md": b"# Guide\n",
            "img/logo.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 32,
            "data.bin": b"\x00\x01\x02binary",
            "latin1.txt": "café\n".encode("latin-1"),
            "page.html": b"<script>alert(1)</script>",
        },
        message="Initial import",
        time=1_700_000_000,
    )
    tip = commit_files(
        settings,
        repository,
        {"src/app.py": b"def main():\n    return 43\n"},
        message="Answer differently",
        time=1_700_000_100,
    )
    commit_files(
        settings,
        repository,
        {"feature.txt": b"x\n"},
        branch="feature/deep",
        message="Feature",
        parents=[tip],
    )
    return repository


def test_home_lists_files_readme_and_clone_urls(client: TestClient, repo: Repository) -> None:
    response = client.get("/ada/project")
    assert response.status_code == 200
    body = response.text
    assert 'href="/ada/project/tree/main/src"' in body
    assert 'href="/ada/project/blob/main/README.md"' in body
    assert "/ada/project.git" in body and "ssh://git@" in body
    # README: rendered, relative link resolved, script gone.
    assert 'href="/ada/project/blob/main/docs/guide.md"' in body
    assert 'src="/ada/project/raw/main/img/logo.png"' in body
    assert "<script>alert" not in body
    # The last-commit column comes through htmx when it was not cached yet …
    assert "/ada/project/tree-commit-info/" in body
    partial = client.get(body.split('hx-get="')[1].split('"')[0].replace("&amp;", "&"))
    assert partial.status_code == 200
    assert "Answer differently" in partial.text and "Initial import" in partial.text
    # … and inline once it is.
    again = client.get("/ada/project").text
    assert "Answer differently" in again and "tree-commit-info" not in again


def test_stats_partial(client: TestClient, repo: Repository) -> None:
    home = client.get("/ada/project").text
    url = home.split('hx-get="/ada/project/repo-stats/')[1].split('"')[0].replace("&amp;", "&")
    response = client.get("/ada/project/repo-stats/" + url)
    assert response.status_code == 200
    assert "2</strong> commits" in response.text
    assert "Python" in response.text


def test_tree_with_slash_in_branch_and_breadcrumbs(client: TestClient, repo: Repository) -> None:
    response = client.get("/ada/project/tree/feature/deep")
    assert response.status_code == 200
    assert 'href="/ada/project/blob/feature/deep/feature.txt"' in response.text
    response = client.get("/ada/project/tree/main/src")
    assert response.status_code == 200
    assert 'data-testid="crumb-current">src<' in response.text


def test_blob_highlighted_with_line_anchors_and_permalink(
    client: TestClient, repo: Repository
) -> None:
    response = client.get("/ada/project/blob/main/src/app.py")
    assert response.status_code == 200
    assert '<tr id="L1">' in response.text and 'href="#L2"' in response.text
    assert '<span class="k">def</span>' in response.text
    assert "/ada/project/blob/" in response.text and 'data-testid="permalink"' in response.text
    assert "/ada/project/commits/main/src/app.py" in response.text


def test_blob_markdown_binary_image_and_latin1(client: TestClient, repo: Repository) -> None:
    markdown = client.get("/ada/project/blob/main/README.md")
    assert 'data-testid="rendered-markdown"' in markdown.text
    source = client.get("/ada/project/blob/main/README.md?plain=1")
    assert 'data-testid="code"' in source.text
    assert 'data-testid="blob-download"' in client.get("/ada/project/blob/main/data.bin").text
    assert (
        '<img src="/ada/project/raw/main/img/logo.png"'
        in client.get("/ada/project/blob/main/img/logo.png").text
    )
    latin = client.get("/ada/project/blob/main/latin1.txt").text
    assert "not valid UTF-8" in latin and "caf\ufffd" in latin


def test_raw_content_types(client: TestClient, repo: Repository) -> None:
    text = client.get("/ada/project/raw/main/src/app.py")
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert text.content == b"def main():\n    return 43\n"
    html = client.get("/ada/project/raw/main/page.html")
    assert html.headers["content-type"] == "text/plain; charset=utf-8"
    assert html.headers["content-security-policy"].startswith("default-src 'none'")
    assert html.headers["x-content-type-options"] == "nosniff"
    binary = client.get("/ada/project/raw/main/data.bin")
    assert binary.headers["content-type"] == "application/octet-stream"
    assert binary.headers["content-disposition"].startswith("attachment")
    image = client.get("/ada/project/raw/main/img/logo.png")
    assert image.headers["content-type"] == "image/png"


def test_history_commit_and_split_diff(
    client: TestClient, repo: Repository, settings: Settings
) -> None:
    history = client.get("/ada/project/commits/main")
    assert history.status_code == 200
    assert history.text.count('data-testid="commit-row"') == 2
    file_history = client.get("/ada/project/commits/main/README.md")
    assert file_history.text.count('data-testid="commit-row"') == 1
    sha = history.text.split('href="/ada/project/commit/')[1][:40]
    commit = client.get(f"/ada/project/commit/{sha}")
    assert commit.status_code == 200
    assert "Answer differently" in commit.text
    assert (
        '<del class="word">42</del>' in commit.text and '<ins class="word">43</ins>' in commit.text
    )
    split = client.get(f"/ada/project/commit/{sha}?diff=split")
    assert "diff-split" in split.text


def test_blame_compare_branches_tags(client: TestClient, repo: Repository) -> None:
    blame = client.get("/ada/project/blame/main/src/app.py")
    assert blame.status_code == 200
    assert "Answer differently" in blame.text and "Initial import" in blame.text
    compare = client.get("/ada/project/compare/main...feature/deep")
    assert compare.status_code == 200
    assert "1 commit" in compare.text and "feature.txt" in compare.text
    branches = client.get("/ada/project/branches")
    assert branches.text.count('data-testid="branch-row"') == 2
    assert "1 ahead" in branches.text
    assert client.get("/ada/project/tags").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/ada/project/blob/main/../README.md",
        "/ada/project/blob/main/%2e%2e/README.md",
        "/ada/project/blob/main/src%2F..%2F..%2Fetc",
        "/ada/project/blob/main/a%00b",
        "/ada/project/blob/main/" + "x" * 10_000,
        "/ada/project/tree/no-such-branch",
        "/ada/project/blob/-rf/README.md",
        "/ada/project/raw/main/nope.txt",
        "/ada/project/commit/" + "f" * 40,
        "/ada/project/commit/'%20OR%201=1",
        "/ada/project/compare/main...nope",
        "/ada/project/blame/main/nope.py",
        "/settings/project",
        "/ada/PROJECT/blob/main/README.MD",
    ],
)
def test_bad_paths_and_refs_answer_404(client: TestClient, repo: Repository, path: str) -> None:
    assert client.get(path).status_code == 404


def test_private_repository_is_indistinguishable_from_missing(
    client: TestClient,
    db: Database,
    settings: Settings,
    owner: User,
    make_user: Callable[..., User],
) -> None:
    private = create_repo(db, settings, owner, "secret", visibility=Visibility.PRIVATE)
    commit_files(settings, private, {"a.txt": b"a\n"})
    make_user("eve")
    log_in(client, "eve")
    for suffix in ("", "/tree/main", "/blob/main/a.txt", "/raw/main/a.txt", "/commits/main"):
        hidden = client.get(f"/ada/secret{suffix}")
        missing = client.get(f"/ada/nothing{suffix}")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.text == missing.text


def test_git_suffix_and_case_redirect_to_the_canonical_name(
    client: TestClient, repo: Repository
) -> None:
    suffixed = client.get("/ada/project.git", follow_redirects=False)
    assert suffixed.status_code == 301 and suffixed.headers["location"] == "/ada/project"
    cased = client.get("/ADA/Project/tree/main/src?x=1", follow_redirects=False)
    assert cased.status_code == 301
    assert cased.headers["location"] == "/ada/project/tree/main/src?x=1"


def test_ambiguous_ref_prefers_the_branch_and_says_so(
    client: TestClient, repo: Repository, settings: Settings
) -> None:
    git_repo = store.open_repository(settings, repo.id)
    initial = git_repo.revparse_single("main~1")
    git_repo.references.create("refs/tags/main", initial.id)
    response = client.get("/ada/project/tree/main")
    assert "is both a branch and a tag" in response.text
    assert "Answer differently" in response.text
    short = str(initial.id)[:2]
    assert client.get(f"/ada/project/tree/{short}").status_code == 404


def test_empty_repository_page(
    client: TestClient, db: Database, settings: Settings, owner: User
) -> None:
    create_repo(db, settings, owner, "empty")
    response = client.get("/ada/empty")
    assert response.status_code == 200
    assert 'data-testid="empty-repo"' in response.text
    assert "git push -u origin main" in response.text
