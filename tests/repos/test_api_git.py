"""The git-data REST API: branches, tags, commits, compare, refs, trees, blobs, contents, readme
and archive redirects, in GitHub's shapes, with the bad input an attacker would send."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import pygit2
import pytest
from fastapi.testclient import TestClient
from pygit2.enums import FileMode

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import browse, store
from opencodehub.repos.models import ProtectedBranch, Repository, Visibility
from tests.conftest import auth_header
from tests.repos.git_helpers import commit_files, create_repo

API = "/api/v3/repos/alice/project"


@dataclass
class World:
    user: User
    repo: Repository
    shas: dict[str, str]


@pytest.fixture
def world(db: Database, settings: Settings, make_user: Callable[..., User]) -> World:
    user = make_user("alice")
    repo = create_repo(db, settings, user)
    shas: dict[str, str] = {}
    shas["first"] = commit_files(
        settings,
        repo,
        {
            "README.md": b"# project\n",
            "src/app.py": b"print('hello')\n",
            "docs/guide.md": b"guide\n",
            "old.txt": b"one\ntwo\nthree\nfour\nfive\n",
        },
        message="first",
        time=1_700_000_000,
    )
    shas["second"] = commit_files(
        settings,
        repo,
        {
            "src/app.py": b"print('hello, world')\n",
            "old.txt": None,
            "new.txt": b"one\ntwo\nthree\nfour\nfive\n",
            "bin/data.bin": b"\x00\x01\x02\xff" * 10,
        },
        message="second\n\nwith a body",
        author=("Bob", "bob@example.com"),
        time=1_700_000_100,
    )
    shas["third"] = commit_files(
        settings,
        repo,
        {"README.md": b"# project\n\nmore\n"},
        message="third",
        author=("Alice", "ALICE@example.com"),
        time=1_700_000_200,
    )
    shas["feature"] = commit_files(
        settings,
        repo,
        {"feature.txt": b"feature\n"},
        branch="feature/x",
        parents=[shas["second"]],
        message="feature work",
        time=1_700_000_300,
    )
    git_repo = store.open_repository(settings, repo.id)
    git_repo.references.create("refs/tags/v1-light", pygit2.Oid(hex=shas["first"]))
    tagger = pygit2.Signature("Alice", "alice@example.com", 1_700_000_400, 0)
    git_repo.create_tag(
        "v2", pygit2.Oid(hex=shas["third"]), pygit2.enums.ObjectType.COMMIT, tagger, "v2\n"
    )
    with db.session() as session:
        session.add(ProtectedBranch(repository_id=repo.id, pattern="main"))
    return World(user, repo, shas)


# Branches and tags -----------------------------------------------------------------------------


def test_list_branches_with_protection_and_filter(client: TestClient, world: World) -> None:
    response = client.get(f"{API}/branches")
    assert response.status_code == 200
    assert response.json() == [
        {
            "name": "feature/x",
            "commit": {
                "sha": world.shas["feature"],
                "url": f"http://127.0.0.1:{client.app.state.settings.http_port}"
                f"{API}/commits/{world.shas['feature']}",
            },
            "protected": False,
        },
        {
            "name": "main",
            "commit": {"sha": world.shas["third"], "url": response.json()[1]["commit"]["url"]},
            "protected": True,
        },
    ]
    protected = client.get(f"{API}/branches", params={"protected": "true"}).json()
    assert [branch["name"] for branch in protected] == ["main"]
    paged = client.get(f"{API}/branches", params={"per_page": 1})
    assert [branch["name"] for branch in paged.json()] == ["feature/x"]
    assert 'rel="next"' in paged.headers["link"]


def test_get_branch_with_slash_and_unknown(client: TestClient, world: World) -> None:
    response = client.get(f"{API}/branches/feature/x")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "feature/x"
    assert body["commit"]["sha"] == world.shas["feature"]
    assert body["commit"]["commit"]["message"] == "feature work"
    assert body["commit"]["author"]["login"] == "alice"  # alice@example.com is alice's
    assert body["_links"]["self"].endswith("/branches/feature/x")
    assert body["protected"] is False
    assert client.get(f"{API}/branches/main").json()["protected"] is True
    missing = client.get(f"{API}/branches/nope")
    assert missing.status_code == 404
    assert missing.json()["message"] == "Branch not found"
    # A literal ".." would be resolved by the client itself; its encoded form reaches the server.
    for bad in ("-x", "a..b", "x%00y", "%2e%2e", "a" * 10_000, "x@{1}"):
        assert client.get(f"{API}/branches/{bad}").status_code == 404, bad


def test_list_tags_annotated_and_lightweight(client: TestClient, world: World) -> None:
    tags = client.get(f"{API}/tags").json()
    assert [tag["name"] for tag in tags] == ["v2", "v1-light"]
    assert tags[0]["commit"]["sha"] == world.shas["third"]
    assert tags[1]["commit"]["sha"] == world.shas["first"]
    assert tags[0]["tarball_url"].endswith(f"{API}/tarball/v2")
    assert tags[0]["zipball_url"].endswith(f"{API}/zipball/v2")
    assert set(tags[0]) == {"name", "commit", "zipball_url", "tarball_url", "node_id"}


# Commits ---------------------------------------------------------------------------------------


def test_list_commits_newest_first_with_pagination(client: TestClient, world: World) -> None:
    response = client.get(f"{API}/commits")
    assert response.status_code == 200
    body = response.json()
    assert [commit["sha"] for commit in body] == [
        world.shas["third"],
        world.shas["second"],
        world.shas["first"],
    ]
    top = body[0]
    assert top["commit"]["author"] == {
        "name": "Alice",
        "email": "ALICE@example.com",
        "date": "2023-11-14T22:16:40Z",
    }
    assert top["author"]["login"] == "alice"  # emails match case-insensitively
    assert body[1]["author"] is None  # bob@example.com belongs to nobody
    assert top["parents"][0]["sha"] == world.shas["second"]
    assert top["commit"]["tree"]["sha"]
    assert top["commit"]["verification"]["verified"] is False
    assert "stats" not in top and "files" not in top

    page = client.get(f"{API}/commits", params={"per_page": 2})
    assert len(page.json()) == 2
    assert 'rel="next"' in page.headers["link"]
    last = client.get(f"{API}/commits", params={"per_page": 2, "page": 2})
    assert [commit["sha"] for commit in last.json()] == [world.shas["first"]]
    assert 'rel="next"' not in last.headers["link"]
    assert 'rel="prev"' in last.headers["link"]


def test_list_commits_filters(client: TestClient, world: World) -> None:
    def shas(**params: str) -> list[str]:
        response = client.get(f"{API}/commits", params=params)
        assert response.status_code == 200, response.text
        return [commit["sha"] for commit in response.json()]

    assert shas(sha="feature/x") == [
        world.shas["feature"],
        world.shas["second"],
        world.shas["first"],
    ]
    assert shas(sha=world.shas["second"][:10]) == [world.shas["second"], world.shas["first"]]
    assert shas(path="src/app.py") == [world.shas["second"], world.shas["first"]]
    assert shas(path="src") == [world.shas["second"], world.shas["first"]]
    assert shas(path="README.md") == [world.shas["third"], world.shas["first"]]
    assert shas(path="does/not/exist") == []
    assert shas(path="../etc/passwd") == []
    assert shas(path="*.md") == []  # a literal path, never a glob
    assert shas(author="bob@example.com") == [world.shas["second"]]
    assert shas(author="alice") == [world.shas["third"], world.shas["first"]]
    assert shas(author="nobody-here") == []
    assert shas(committer="BOB@example.com") == [world.shas["second"]]
    assert shas(since="2023-11-14T22:16:00Z") == [world.shas["third"]]
    assert shas(until="2023-11-14T22:14:00Z") == [world.shas["first"]]
    assert shas(since="2023-11-14T22:13:00Z", until="2023-11-14T22:16:00Z", path="src") == [
        world.shas["second"],
        world.shas["first"],
    ]
    assert client.get(f"{API}/commits", params={"since": "yesterday-ish"}).status_code == 422


def test_list_commits_unknown_or_bad_sha(client: TestClient, world: World) -> None:
    for bad in ("nope", "..", "-n1", "main..feature", "a\x00b", "HEAD~1", "main^", "a" * 2000):
        response = client.get(f"{API}/commits", params={"sha": bad})
        assert response.status_code in (404, 422), bad
        assert response.json()["message"]


def test_get_commit_detail(client: TestClient, world: World) -> None:
    response = client.get(f"{API}/commits/{world.shas['second']}")
    assert response.status_code == 200
    body = response.json()
    assert body["sha"] == world.shas["second"]
    assert body["commit"]["message"] == "second\n\nwith a body"
    files = {entry["filename"]: entry for entry in body["files"]}
    assert files["src/app.py"]["status"] == "modified"
    assert files["src/app.py"]["additions"] == 1
    assert files["src/app.py"]["deletions"] == 1
    assert files["src/app.py"]["changes"] == 2
    assert files["src/app.py"]["patch"].startswith("@@ -1 +1 @@")
    assert files["new.txt"]["status"] == "renamed"
    assert files["new.txt"]["previous_filename"] == "old.txt"
    assert files["bin/data.bin"]["status"] == "added"
    assert "patch" not in files["bin/data.bin"]
    assert files["bin/data.bin"]["blob_url"].endswith(f"/blob/{world.shas['second']}/bin/data.bin")
    assert body["stats"] == {"additions": 1, "deletions": 1, "total": 2}

    root = client.get(f"{API}/commits/{world.shas['first'][:7]}").json()
    assert {entry["status"] for entry in root["files"]} == {"added"}
    assert root["stats"]["additions"] == 8
    by_branch = client.get(f"{API}/commits/feature/x").json()
    assert by_branch["sha"] == world.shas["feature"]
    assert client.get(f"{API}/commits/v2").json()["sha"] == world.shas["third"]
    assert client.get(f"{API}/commits/HEAD").json()["sha"] == world.shas["third"]


@pytest.mark.parametrize(
    "ref",
    ["nope", "-x", "main..feature", "%2e%2e", "a%00b", "HEAD~1", "main@{1}", "x" * 10_000],
)
def test_get_commit_bad_refs(client: TestClient, world: World, ref: str) -> None:
    response = client.get(f"{API}/commits/{ref}")
    assert response.status_code == 422
    assert response.json()["message"].startswith("No commit found for SHA: ")
    assert len(response.json()["message"]) < 300


def test_commits_on_empty_repository(
    client: TestClient, db: Database, settings: Settings, world: World
) -> None:
    create_repo(db, settings, world.user, "empty")
    for path in ("commits", "commits/main", "git/refs", "git/trees/main"):
        response = client.get(f"/api/v3/repos/alice/empty/{path}")
        assert response.status_code == 409, path
        assert response.json()["message"] == "Git Repository is empty."
    assert client.get("/api/v3/repos/alice/empty/branches").json() == []
    assert client.get("/api/v3/repos/alice/empty/tags").json() == []
    contents = client.get("/api/v3/repos/alice/empty/contents/")
    assert contents.status_code == 404
    assert contents.json()["message"] == "This repository is empty."
    assert client.get("/api/v3/repos/alice/empty/readme").status_code == 404
    assert client.get("/api/v3/repos/alice/empty/tarball").status_code == 404


def test_private_repository_is_invisible(
    client: TestClient,
    db: Database,
    settings: Settings,
    world: World,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    secret = create_repo(db, settings, world.user, "secret", visibility=Visibility.PRIVATE)
    commit_files(settings, secret, {"a.txt": b"a\n"})
    mallory = make_user("mallory")
    for path in ("commits", "branches", "contents/a.txt", "git/refs", "readme", "tarball"):
        url = f"/api/v3/repos/alice/secret/{path}"
        assert client.get(url).status_code == 404, path
        assert client.get(url, headers=auth_header(make_token(mallory))).status_code == 404
    owner = client.get(
        "/api/v3/repos/alice/secret/contents/a.txt", headers=auth_header(make_token(world.user))
    )
    assert owner.status_code == 200


# Compare ---------------------------------------------------------------------------------------


def test_compare_statuses(client: TestClient, world: World) -> None:
    diverged = client.get(f"{API}/compare/main...feature/x")
    assert diverged.status_code == 200
    body = diverged.json()
    assert body["status"] == "diverged"
    assert body["ahead_by"] == 1
    assert body["behind_by"] == 1
    assert body["total_commits"] == 1
    assert body["base_commit"]["sha"] == world.shas["third"]
    assert body["merge_base_commit"]["sha"] == world.shas["second"]
    assert [commit["sha"] for commit in body["commits"]] == [world.shas["feature"]]
    assert [entry["filename"] for entry in body["files"]] == ["feature.txt"]
    assert body["html_url"].endswith("/alice/project/compare/main...feature/x")

    ahead = client.get(f"{API}/compare/{world.shas['first']}...main").json()
    assert (ahead["status"], ahead["ahead_by"], ahead["behind_by"]) == ("ahead", 2, 0)
    assert [commit["sha"] for commit in ahead["commits"]] == [
        world.shas["second"],
        world.shas["third"],
    ]
    behind = client.get(f"{API}/compare/main...v1-light").json()
    assert (behind["status"], behind["ahead_by"], behind["behind_by"]) == ("behind", 0, 2)
    same = client.get(f"{API}/compare/main...v2").json()
    assert (same["status"], same["commits"], same["files"]) == ("identical", [], [])


def test_compare_bad_input(
    client: TestClient, db: Database, settings: Settings, world: World
) -> None:
    for spec in ("main", "main..feature/x", "...main", "main...", "main...nope", "-x...main"):
        assert client.get(f"{API}/compare/{spec}").status_code == 404, spec
    commit_files(settings, world.repo, {"z": b"z"}, branch="orphan", parents=[])
    unrelated = client.get(f"{API}/compare/main...orphan")
    assert unrelated.status_code == 404


# Refs and git objects --------------------------------------------------------------------------


def test_git_refs(client: TestClient, world: World) -> None:
    refs = client.get(f"{API}/git/refs").json()
    assert [ref["ref"] for ref in refs] == [
        "refs/heads/feature/x",
        "refs/heads/main",
        "refs/tags/v1-light",
        "refs/tags/v2",
    ]
    v2 = refs[3]
    assert v2["object"]["type"] == "tag"
    assert v2["object"]["url"].endswith(f"/git/tags/{v2['object']['sha']}")
    heads = client.get(f"{API}/git/refs/heads").json()
    assert [ref["ref"] for ref in heads] == ["refs/heads/feature/x", "refs/heads/main"]
    main = client.get(f"{API}/git/refs/heads/main").json()
    assert main["ref"] == "refs/heads/main"
    assert main["object"] == {
        "type": "commit",
        "sha": world.shas["third"],
        "url": main["object"]["url"],
    }
    assert (
        client.get(f"{API}/git/ref/heads/feature/x").json()["object"]["sha"]
        == world.shas["feature"]
    )
    matching = client.get(f"{API}/git/matching-refs/tags/v").json()
    assert [ref["ref"] for ref in matching] == ["refs/tags/v1-light", "refs/tags/v2"]
    assert client.get(f"{API}/git/matching-refs/heads/zzz").json() == []
    assert client.get(f"{API}/git/ref/heads/zzz").status_code == 404
    assert client.get(f"{API}/git/refs/heads/zzz").status_code == 404
    for bad in ("%2e%2e", "heads/%2e%2e", "-x", "heads%00", "a" * 5000):
        assert client.get(f"{API}/git/ref/{bad}").status_code == 404, bad


def test_git_commit(client: TestClient, world: World) -> None:
    body = client.get(f"{API}/git/commits/{world.shas['second']}").json()
    assert body["sha"] == world.shas["second"]
    assert body["author"]["name"] == "Bob"
    assert body["parents"][0]["sha"] == world.shas["first"]
    assert body["parents"][0]["url"].endswith(f"/git/commits/{world.shas['first']}")
    assert set(body) >= {"sha", "node_id", "url", "html_url", "tree", "message", "verification"}
    assert client.get(f"{API}/git/commits/main").status_code == 404  # a sha, not a ref
    assert client.get(f"{API}/git/commits/{'0' * 40}").status_code == 404


def test_git_trees(client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    top = client.get(f"{API}/git/trees/{world.shas['third']}").json()
    assert [entry["path"] for entry in top["tree"]] == [
        "README.md",
        "bin",
        "docs",
        "new.txt",
        "src",
    ]
    readme = top["tree"][0]
    assert readme["mode"] == "100644" and readme["type"] == "blob" and readme["size"] == 16
    assert top["tree"][1]["mode"] == "040000" and "size" not in top["tree"][1]
    assert top["truncated"] is False
    recursive = client.get(f"{API}/git/trees/main", params={"recursive": "1"}).json()
    assert [entry["path"] for entry in recursive["tree"]] == [
        "README.md",
        "bin",
        "bin/data.bin",
        "docs",
        "docs/guide.md",
        "new.txt",
        "src",
        "src/app.py",
    ]
    by_tree_sha = client.get(f"{API}/git/trees/{top['tree'][4]['sha']}").json()
    assert [entry["path"] for entry in by_tree_sha["tree"]] == ["app.py"]
    monkeypatch.setattr(browse, "MAX_TREE_ENTRIES", 3)
    cut = client.get(f"{API}/git/trees/main", params={"recursive": "1"}).json()
    assert cut["truncated"] is True
    assert len(cut["tree"]) == 3
    assert client.get(f"{API}/git/trees/nope").status_code == 404
    assert client.get(f"{API}/git/trees/{readme['sha']}").status_code == 404  # a blob


def test_git_blobs(client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = client.get(f"{API}/git/trees/main", params={"recursive": "1"}).json()["tree"]
    data_sha = next(entry["sha"] for entry in tree if entry["path"] == "bin/data.bin")
    blob = client.get(f"{API}/git/blobs/{data_sha}").json()
    assert blob["encoding"] == "base64"
    assert blob["size"] == 40
    assert base64.b64decode(blob["content"]) == b"\x00\x01\x02\xff" * 10
    raw = client.get(
        f"{API}/git/blobs/{data_sha}", headers={"Accept": "application/vnd.github.raw"}
    )
    assert raw.content == b"\x00\x01\x02\xff" * 10
    assert raw.headers["x-content-type-options"] == "nosniff"
    # Past the threshold the bytes come from `git cat-file`, streamed.
    monkeypatch.setattr(browse, "STREAM_THRESHOLD_BYTES", 8)
    streamed = client.get(
        f"{API}/git/blobs/{data_sha}", headers={"Accept": "application/vnd.github.raw"}
    )
    assert streamed.content == b"\x00\x01\x02\xff" * 10
    assert client.get(f"{API}/git/blobs/{world.shas['first']}").status_code == 404
    assert client.get(f"{API}/git/blobs/nothex").status_code == 404
    assert client.get(f"{API}/git/blobs/{'f' * 40}").status_code == 404


# Contents --------------------------------------------------------------------------------------


@pytest.fixture
def tricky(settings: Settings, world: World) -> str:
    """A commit with symlinks (inside, outside, absolute), a submodule, non-UTF-8 and large
    files."""
    return commit_files(
        settings,
        world.repo,
        {
            "link-inside": (FileMode.LINK, b"src/app.py"),
            "src/up": (FileMode.LINK, b"../README.md"),
            "link-outside": (FileMode.LINK, b"../../etc/passwd"),
            "link-absolute": (FileMode.LINK, b"/etc/passwd"),
            "link-dir": (FileMode.LINK, b"src"),
            "vendor/lib": (FileMode.COMMIT, world.shas["first"].encode()),
            ".gitmodules": b'[submodule "lib"]\n\tpath = vendor/lib\n\turl = https://example.com/lib.git\n',
            "latin1.txt": "café\n".encode("latin-1"),
            "big.bin": b"x" * (1024 * 1024 + 1),
        },
        message="tricky",
        time=1_700_000_500,
    )


def test_contents_file_and_directory(client: TestClient, world: World) -> None:
    file = client.get(f"{API}/contents/src/app.py")
    assert file.status_code == 200
    body = file.json()
    assert body["type"] == "file"
    assert body["encoding"] == "base64"
    assert base64.b64decode(body["content"]) == b"print('hello, world')\n"
    assert body["name"] == "app.py" and body["path"] == "src/app.py"
    assert body["url"].endswith(f"{API}/contents/src/app.py?ref=main")
    assert body["_links"]["git"] == body["git_url"]
    assert body["download_url"].endswith("/alice/project/raw/main/src/app.py")
    old = client.get(f"{API}/contents/src/app.py", params={"ref": world.shas["first"]}).json()
    assert base64.b64decode(old["content"]) == b"print('hello')\n"
    root = client.get(f"{API}/contents").json()
    assert [(entry["name"], entry["type"]) for entry in root] == [
        ("README.md", "file"),
        ("bin", "dir"),
        ("docs", "dir"),
        ("new.txt", "file"),
        ("src", "dir"),
    ]
    assert "content" not in root[0]
    assert client.get(f"{API}/contents/").json() == root
    assert [entry["path"] for entry in client.get(f"{API}/contents/src/").json()] == ["src/app.py"]
    raw = client.get(f"{API}/contents/src/app.py", headers={"Accept": "application/vnd.github.raw"})
    assert raw.content == b"print('hello, world')\n"
    unknown_ref = client.get(f"{API}/contents/src/app.py", params={"ref": "nope"})
    assert unknown_ref.status_code == 404
    assert unknown_ref.json()["message"] == "No commit found for the ref nope"


@pytest.mark.parametrize(
    "path",
    [
        "missing.txt",
        "../README.md",
        "%2e%2e/README.md",
        "src/%2e%2e/README.md",
        "README.md/x",
        "src//app.py",
        "src%2F..%2FREADME.md",
        "README.md%00",
        "readme.md",  # paths are case-sensitive
        "/etc/passwd",
        "x" * 10_000,
    ],
)
def test_contents_bad_paths(client: TestClient, world: World, path: str) -> None:
    response = client.get(f"{API}/contents/{path}")
    assert response.status_code == 404, response.text
    assert "content" not in response.json()


def test_contents_symlinks_submodules_binary(client: TestClient, world: World, tricky: str) -> None:
    inside = client.get(f"{API}/contents/link-inside").json()
    assert inside["type"] == "file" and inside["path"] == "src/app.py"
    assert base64.b64decode(inside["content"]) == b"print('hello, world')\n"
    up = client.get(f"{API}/contents/src/up").json()
    assert up["type"] == "file" and up["path"] == "README.md"
    for name, target in (
        ("link-outside", "../../etc/passwd"),
        ("link-absolute", "/etc/passwd"),
        ("link-dir", "src"),
    ):
        body = client.get(f"{API}/contents/{name}").json()
        assert body["type"] == "symlink", name
        assert body["target"] == target
        assert "content" not in body
    # Never through a symlinked directory.
    assert client.get(f"{API}/contents/link-dir/app.py").status_code == 404
    submodule = client.get(f"{API}/contents/vendor/lib").json()
    assert submodule["type"] == "submodule"
    assert submodule["submodule_git_url"] == "https://example.com/lib.git"
    assert submodule["sha"] == world.shas["first"]
    assert submodule["git_url"] is None and submodule["download_url"] is None
    listing = client.get(f"{API}/contents/vendor").json()
    assert listing[0]["type"] == "file"  # GitHub's backwards-compatible listing type
    assert client.get(f"{API}/contents/vendor/lib/README.md").status_code == 404
    latin = client.get(f"{API}/contents/latin1.txt").json()
    assert base64.b64decode(latin["content"]) == "café\n".encode("latin-1")
    big = client.get(f"{API}/contents/big.bin").json()
    assert (big["encoding"], big["content"], big["size"]) == ("none", "", 1024 * 1024 + 1)
    big_raw = client.get(
        f"{API}/contents/big.bin", headers={"Accept": "application/vnd.github.raw"}
    )
    assert big_raw.content == b"x" * (1024 * 1024 + 1)
    assert big_raw.headers["content-length"] == str(1024 * 1024 + 1)


def test_readme(client: TestClient, settings: Settings, world: World) -> None:
    readme = client.get(f"{API}/readme")
    assert readme.status_code == 200
    assert readme.json()["path"] == "README.md"
    assert base64.b64decode(readme.json()["content"]) == b"# project\n\nmore\n"
    assert (
        client.get(f"{API}/readme", params={"ref": world.shas["first"]}).json()["sha"]
        != (readme.json()["sha"])
    )
    raw = client.get(f"{API}/readme", headers={"Accept": "application/vnd.github.raw"})
    assert raw.content == b"# project\n\nmore\n"
    assert client.get(f"{API}/readme/docs").status_code == 404  # guide.md is not a README
    commit_files(
        settings,
        world.repo,
        {"docs/readme.rst": b"docs", ".github/README.md": b"gh", "README.md": None},
    )
    assert client.get(f"{API}/readme").json()["path"] == ".github/README.md"
    assert client.get(f"{API}/readme/docs").json()["path"] == "docs/readme.rst"
    assert client.get(f"{API}/readme/%2e%2e").status_code == 404
    assert client.get(f"{API}/readme/nope").status_code == 404


def test_archive_redirects(client: TestClient, world: World) -> None:
    tar = client.get(f"{API}/tarball", follow_redirects=False)
    assert tar.status_code == 302
    assert tar.headers["location"].endswith("/alice/project/archive/main.tar.gz")
    zipped = client.get(f"{API}/zipball/feature/x", follow_redirects=False)
    assert zipped.status_code == 302
    assert zipped.headers["location"].endswith("/alice/project/archive/feature/x.zip")
    sha = client.get(f"{API}/tarball/{world.shas['first']}", follow_redirects=False)
    assert sha.headers["location"].endswith(f"/archive/{world.shas['first']}.tar.gz")
    for bad in ("nope", "-x", "%2e%2e", "a%00"):
        assert client.get(f"{API}/tarball/{bad}", follow_redirects=False).status_code == 404
