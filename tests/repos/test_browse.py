"""repos.browse against repositories made by the real git client: ref resolution, the lazy log
(checked against `git log` itself), diffs, trees, blobs and contents. No database involved."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from opencodehub.config import Settings
from opencodehub.core.errors import NotFound
from opencodehub.repos import browse


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None)


class Work:
    """A non-bare repository driven by the real git client, with controlled dates."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True)
        self.clock = 1_600_000_000
        self.run("init", "--quiet", "--initial-branch=main")

    def run(self, *args: str, date: int | None = None) -> str:
        when = f"@{date if date is not None else self.clock} +0000"
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.path),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": "Ann",
            "GIT_AUTHOR_EMAIL": "ann@example.com",
            "GIT_COMMITTER_NAME": "Ann",
            "GIT_COMMITTER_EMAIL": "ann@example.com",
            "GIT_AUTHOR_DATE": when,
            "GIT_COMMITTER_DATE": when,
        }
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=env, capture_output=True, text=True, check=True
        )
        return result.stdout

    def commit(self, files: dict[str, str | None], message: str, date: int | None = None) -> str:
        for name, text in files.items():
            target = self.path / name
            if text is None:
                self.run("rm", "--quiet", name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            self.run("add", name)
        if date is None:
            self.clock += 60
        self.run("commit", "--quiet", "--allow-empty", "-m", message, date=date)
        return self.run("rev-parse", "HEAD").strip()

    def log(self, *args: str) -> list[str]:
        return self.run("log", "--format=%H", *args).split()

    @property
    def repo(self) -> pygit2.Repository:
        return pygit2.Repository(str(self.path / ".git"))


@pytest.fixture
def work(tmp_path: Path) -> Work:
    return Work(tmp_path / "work")


@pytest.fixture
def merged(work: Work) -> Work:
    """main and topic diverge, touch shared and separate files, with skewed clocks, then merge."""
    work.commit({"a.txt": "a1\n", "shared.txt": "s1\n"}, "root")
    work.commit({"a.txt": "a2\n"}, "main a2")
    work.run("checkout", "--quiet", "-b", "topic", "HEAD~1")
    work.commit({"b.txt": "b1\n"}, "topic b1")
    work.commit({"shared.txt": "s-topic\n"}, "topic shared", date=work.clock - 10_000)
    work.commit({"b.txt": "b2\n"}, "topic b2")
    work.run("checkout", "--quiet", "main")
    work.commit({"a.txt": "a3\n"}, "main a3")
    work.clock += 60
    work.run("merge", "--quiet", "--no-ff", "-m", "merge topic", "topic")
    work.commit({"shared.txt": "s-final\n", "dir/c.txt": "c\n"}, "after merge")
    work.run("tag", "light", "HEAD~1")
    work.run("tag", "-a", "-m", "annotated", "annotated", "HEAD")
    return work


def log_shas(settings: Settings, repo: pygit2.Repository, ref: str, **query: object) -> list[str]:
    page = browse.list_commits(
        settings,
        repo,
        ref,
        browse.LogQuery(**query),
        offset=0,
        limit=1000,  # type: ignore[arg-type]
    )
    return [commit.sha for commit in page.commits]


# Refs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("main", True),
        ("feature/x", True),
        ("v1.0", True),
        ("refs/heads/main", True),
        ("-main", False),
        ("a..b", False),
        ("..", False),
        ("a\x00b", False),
        ("a b", False),
        ("x@{1}", False),
        ("@", False),
        ("HEAD~1", False),
        ("a^", False),
        ("a:b", False),
        ("a*", False),
        ("a[", False),
        ("a\\b", False),
        ("/a", False),
        ("a/", False),
        ("a//b", False),
        ("a/.b", False),
        ("a.lock", False),
        ("a.", False),
        ("", False),
        ("x" * 2000, False),
        ("\uff4dain", True),  # a look-alike is just another name: it resolves to nothing
    ],
)
def test_ref_name_validation(name: str, valid: bool) -> None:
    assert browse.is_valid_ref_name(name) is valid


def test_resolution_order_and_peeling(merged: Work) -> None:
    repo = merged.repo
    head = merged.run("rev-parse", "main").strip()
    assert str(browse.resolve_commit(repo, "main").id) == head
    assert str(browse.resolve_commit(repo, head).id) == head
    assert str(browse.resolve_commit(repo, head[:7]).id) == head
    assert str(browse.resolve_commit(repo, head[:7].upper()).id) == head
    assert str(browse.resolve_commit(repo, "refs/heads/main").id) == head
    assert str(browse.resolve_commit(repo, "annotated").id) == head  # peeled through the tag
    assert isinstance(browse.resolve_object(repo, "annotated"), pygit2.Tag)
    assert str(browse.resolve_commit(repo, "HEAD").id) == head
    # A branch wins over a tag of the same name, as on GitHub.
    merged.run("branch", "light", "topic")
    topic = merged.run("rev-parse", "topic").strip()
    assert str(browse.resolve_commit(repo, "light").id) == topic
    assert str(browse.resolve_commit(repo, "refs/tags/light").id) != topic
    for bad in ("nope", "main~1", "main^", "main@{0}", "-n", "HEAD:a.txt", "a" * 3000, "abc"):
        with pytest.raises(browse.RefNotFound):
            browse.resolve_commit(repo, bad)
    tree_sha = str(repo.get(head).tree_id)
    with pytest.raises(browse.RefNotFound):
        browse.resolve_commit(repo, tree_sha)  # not a commit


def test_ambiguous_short_sha(work: Work) -> None:
    work.commit({"f": "x"}, "one")
    repo = work.repo
    # Enough objects that two share a 4-digit prefix.
    seen: dict[str, str] = {}
    prefix = None
    for index in range(5000):
        oid = str(repo.create_blob(f"blob {index}".encode()))
        if oid[:4] in seen:
            prefix = oid[:4]
            break
        seen[oid[:4]] = oid
    assert prefix is not None
    with pytest.raises(browse.AmbiguousRef) as error:
        browse.resolve_commit(repo, prefix)
    assert error.value.status_code == 422
    assert "ambiguous" in error.value.message


# The log ---------------------------------------------------------------------------------------


def test_log_order_matches_git(settings: Settings, merged: Work) -> None:
    repo = merged.repo
    assert log_shas(settings, repo, "main") == merged.log("main")
    assert log_shas(settings, repo, "topic") == merged.log("topic")


@pytest.mark.parametrize("path", ["shared.txt", "a.txt", "b.txt", "dir", "dir/c.txt", "nothing"])
def test_path_log_matches_git(settings: Settings, merged: Work, path: str) -> None:
    assert log_shas(settings, merged.repo, "main", path=path) == merged.log("main", "--", path)


def test_since_until_match_git(settings: Settings, merged: Work) -> None:
    from datetime import UTC, datetime

    repo = merged.repo
    since = merged.clock - 200
    expected = merged.log("main", f"--since=@{since}")
    got = log_shas(settings, repo, "main", since=datetime.fromtimestamp(since, UTC))
    assert got == expected
    assert got  # something to compare
    until = merged.clock - 200
    expected_until = merged.log("main", f"--until=@{until}")
    assert log_shas(settings, repo, "main", until=datetime.fromtimestamp(until, UTC)) == (
        expected_until
    )


def test_log_pagination(settings: Settings, merged: Work) -> None:
    repo = merged.repo
    everything = merged.log("main")
    first = browse.list_commits(settings, repo, "main", browse.LogQuery(), offset=0, limit=3)
    second = browse.list_commits(settings, repo, "main", browse.LogQuery(), offset=3, limit=3)
    rest = browse.list_commits(settings, repo, "main", browse.LogQuery(), offset=6, limit=30)
    assert first.has_next and second.has_next and not rest.has_next
    shas = [commit.sha for page in (first, second, rest) for commit in page.commits]
    assert shas == everything


class CountingRepository(pygit2.Repository):
    """Counts object reads, to show how much of the history a walk touched."""

    reads = 0

    def get(self, *args: object, **kwargs: object) -> pygit2.Object | None:  # type: ignore[override]
        CountingRepository.reads += 1
        return super().get(*args, **kwargs)  # type: ignore[arg-type]


def test_log_is_lazy(settings: Settings, work: Work) -> None:
    """A page reads about a page of history, never the whole of it."""
    shas = [work.commit({"f.txt": f"{index}\n"}, f"c{index}") for index in range(60)]
    repo = CountingRepository(str(work.path / ".git"))
    CountingRepository.reads = 0
    page = browse.list_commits(settings, repo, "main", browse.LogQuery(), offset=0, limit=5)
    assert [commit.sha for commit in page.commits] == shas[::-1][:5]
    assert page.has_next
    assert CountingRepository.reads <= 8
    CountingRepository.reads = 0
    later = browse.list_commits(settings, repo, "main", browse.LogQuery(), offset=10, limit=5)
    assert [commit.sha for commit in later.commits] == shas[::-1][10:15]
    assert CountingRepository.reads <= 18
    CountingRepository.reads = 0
    path_page = browse.list_commits(
        settings, repo, "main", browse.LogQuery(path="f.txt"), offset=0, limit=5
    )
    assert [commit.sha for commit in path_page.commits] == shas[::-1][:5]
    assert CountingRepository.reads <= 8


def test_log_commit_values(settings: Settings, work: Work) -> None:
    sha = work.commit({"f": "x"}, "subject\n\nbody line")
    info = browse.get_commit(work.repo, sha)
    assert info.message == "subject\n\nbody line\n"
    assert info.author.name == "Ann" and info.author.email == "ann@example.com"
    assert info.parent_shas == ()
    assert info.author.date.timestamp() == work.clock


# Diffs and compare -----------------------------------------------------------------------------


def test_commit_detail_statuses(work: Work) -> None:
    body = "".join(f"line {index}\n" for index in range(20))
    work.commit({"keep.txt": "k\n", "move.txt": body, "gone.txt": "g\n"}, "one")
    (work.path / "bin.dat").write_bytes(b"\x00\xff" * 50)
    work.run("add", "bin.dat")
    work.run("mv", "move.txt", "moved.txt")
    (work.path / "moved.txt").write_text(body + "line 20\n")
    work.run("add", "moved.txt")
    sha = work.commit({"keep.txt": "k2\n", "gone.txt": None}, "two")
    detail = browse.get_commit_detail(work.repo, sha)
    files = {change.filename: change for change in detail.diff.files}
    assert files["keep.txt"].status == "modified"
    assert files["keep.txt"].patch == "@@ -1 +1 @@\n-k\n+k2\n"
    assert files["gone.txt"].status == "removed"
    assert files["gone.txt"].deletions == 1
    assert files["moved.txt"].status == "renamed"
    assert files["moved.txt"].previous_filename == "move.txt"
    assert files["moved.txt"].additions == 1
    assert files["bin.dat"].status == "added"
    assert files["bin.dat"].patch is None
    assert detail.diff.total_files == 4
    limited = browse.get_commit_detail(work.repo, sha, max_files=2)
    assert len(limited.diff.files) == 2 and limited.diff.total_files == 4


def test_compare_values(merged: Work) -> None:
    repo = merged.repo
    result = browse.compare(repo, "topic", "main")
    assert result.status == "ahead"
    assert result.behind_by == 0
    assert [commit.sha for commit in result.commits] == merged.log("--reverse", "topic..main")
    assert result.ahead_by == len(result.commits)
    capped = browse.compare(repo, "topic", "main", max_commits=2)
    assert len(capped.commits) == 2
    assert browse.compare(repo, "main", "main").status == "identical"
    assert browse.compare(repo, "main", "topic").status == "behind"


# Trees, blobs, contents ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [("", ""), ("/", ""), ("a/b/", "a/b"), ("/a", "a"), ("a\\b", "a\\b"), ("\uff4d", "\uff4d")],
)
def test_normalize_path_accepts(path: str, expected: str) -> None:
    assert browse.normalize_path(path) == expected


@pytest.mark.parametrize(
    "path", ["..", "a/../b", "./a", "a//b", "a/./b", "a\x00b", "a\nb", "x" * 5000]
)
def test_normalize_path_refuses(path: str) -> None:
    with pytest.raises(NotFound):
        browse.normalize_path(path)


def test_tree_truncation(merged: Work) -> None:
    full = browse.get_tree(merged.repo, "main", recursive=True)
    assert [entry.path for entry in full.entries] == [
        "a.txt",
        "b.txt",
        "dir",
        "dir/c.txt",
        "shared.txt",
    ]
    assert not full.truncated
    cut = browse.get_tree(merged.repo, "main", recursive=True, max_entries=2)
    assert cut.truncated and len(cut.entries) == 2


def test_stream_large_blob(settings: Settings, work: Work, monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(300_000)
    (work.path / "big.bin").write_bytes(data)
    work.run("add", "big.bin")
    sha = work.commit({}, "big")
    blob_sha = str(work.repo.get(sha).tree["big.bin"].id)
    monkeypatch.setattr(browse, "STREAM_THRESHOLD_BYTES", 1024)
    chunks = list(browse.stream_blob(settings, work.repo, blob_sha, chunk_size=65_536))
    assert len(chunks) >= 5 and max(len(chunk) for chunk in chunks) <= 65_536
    assert b"".join(chunks) == data
    with pytest.raises(browse.BlobTooLarge):
        browse.read_blob(work.repo, blob_sha, max_bytes=1000)


def test_symlink_targets() -> None:
    assert browse._symlink_target_path("a/link", "b.txt") == "a/b.txt"
    assert browse._symlink_target_path("a/link", "../b.txt") == "b.txt"
    assert browse._symlink_target_path("a/link", "../../b.txt") is None
    assert browse._symlink_target_path("link", "/etc/passwd") is None
    assert browse._symlink_target_path("link", ".") is None
    assert browse._symlink_target_path("link", "") is None


def test_symlink_chain_is_not_followed(work: Work) -> None:
    (work.path / "target.txt").write_text("t\n")
    os.symlink("target.txt", work.path / "one")
    os.symlink("one", work.path / "two")
    work.run("add", "target.txt", "one", "two")
    sha = work.commit({}, "links")
    one = browse.get_contents(work.repo, sha, "one").item
    assert one is not None and one.type == "file" and one.content == b"t\n"
    two = browse.get_contents(work.repo, sha, "two").item
    assert two is not None and two.type == "symlink" and two.target == "one"
    listing = browse.get_contents(work.repo, sha, "").entries
    assert listing is not None
    assert {item.name: item.type for item in listing} == {
        "one": "symlink",
        "target.txt": "file",
        "two": "symlink",
    }


def test_readme_preference(work: Work) -> None:
    sha = work.commit({"readme.txt": "t", "README": "plain", "Readme.md": "md"}, "r")
    found = browse.find_readme(work.repo, sha)
    assert found.path == "Readme.md" and found.content == b"md"
    sha = work.commit({"Readme.md": None, "README": None}, "r2")
    assert browse.find_readme(work.repo, sha).path == "readme.txt"
    sha = work.commit({".github/README.md": "gh", "docs/README": "docs"}, "r3")
    assert browse.find_readme(work.repo, sha).path == ".github/README.md"
    assert browse.find_readme(work.repo, sha, "docs").path == "docs/README"
    with pytest.raises(NotFound):
        browse.find_readme(work.repo, sha, "nowhere")


def test_tags_and_branches(merged: Work) -> None:
    repo = merged.repo
    tags = browse.list_tags(repo)
    assert [(tag.name, tag.tag_sha is not None) for tag in tags] == [
        ("light", False),
        ("annotated", True),
    ]
    branches = browse.list_branches(repo, ["ma*"])
    assert [(branch.name, branch.protected) for branch in branches] == [
        ("main", True),
        ("topic", False),
    ]
    blob = repo.create_blob(b"tagged blob")
    repo.references.create("refs/tags/blobtag", blob)
    assert "blobtag" not in [tag.name for tag in browse.list_tags(repo)]
    assert browse.get_ref(repo, "tags/blobtag").object_type == "blob"


def test_gitlink_is_a_submodule(work: Work) -> None:
    first = work.commit({"f": "x"}, "one")
    repo = work.repo
    builder = repo.TreeBuilder(repo.get(first).tree)
    builder.insert("sub", pygit2.Oid(hex=first), FileMode.COMMIT)
    tree = builder.write()
    signature = pygit2.Signature("Ann", "ann@example.com", 1_600_000_000, 0)
    sha = str(repo.create_commit(None, signature, signature, "gitlink", tree, [first]))
    item = browse.get_contents(repo, sha, "sub").item
    assert item is not None and item.type == "submodule" and item.submodule_git_url is None
    with pytest.raises(NotFound):
        browse.get_contents(repo, sha, "sub/f")
