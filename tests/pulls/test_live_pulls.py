"""Pull requests and forks against a live server: PyGithub, the real git client, the
background job that follows pushes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from github import Auth, Github
from tests.conftest import LiveServer, auth_header, wait_for
from tests.git.gitutil import commit, create_repo, fsck, repo_url, run_git
from tests.pulls.conftest import commit_on

from opencodehub.accounts.models import User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import forks, store

pytestmark = pytest.mark.slow


def test_pygithub_creates_and_merges_with_each_method(
    live_server: LiveServer,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    owner = make_user("alice")
    repo = create_repo(db, settings, owner, "project", auto_init=True)
    token = make_token(owner)
    gh = Github(base_url=live_server.url + "/api/v3", auth=Auth.Token(token))
    remote = gh.get_repo("alice/project")
    for index, method in enumerate(("merge", "squash", "rebase"), start=1):
        commit_on(settings, repo, {f"{method}.txt": method.encode()}, branch=f"topic-{method}")
        pull = remote.create_pull(
            base="main", head=f"topic-{method}", title=f"Use {method}", body="Closes nothing"
        )
        assert pull.number == index and pull.state == "open"
        assert pull.head.ref == f"topic-{method}" and pull.base.ref == "main"
        status = pull.merge(merge_method=method)
        assert status.merged is True
        fetched = remote.get_pull(index)
        assert fetched.merged is True and fetched.state == "closed"
        assert remote.get_branch("main").commit.sha == status.sha
        assert [f.filename for f in fetched.get_files()] == [f"{method}.txt"]
    assert [p.number for p in remote.get_pulls(state="closed")] == [3, 2, 1]


def test_git_push_synchronizes_and_fork_flow(
    live_server: LiveServer,
    db: Database,
    settings: Settings,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    alice, bob = make_user("alice"), make_user("bob")
    parent = create_repo(db, settings, alice, "project", auto_init=True)
    alice_headers = auth_header(make_token(alice))
    bob_headers = auth_header(make_token(bob))
    api = live_server.url + "/api/v3"
    http = httpx.Client(timeout=30)

    # Bob forks; the fork borrows its parent's objects and has its branches.
    created = http.post(f"{api}/repos/alice/project/forks", headers=bob_headers, json={})
    assert created.status_code == 202, created.text
    fork_json = created.json()
    assert fork_json["fork"] is True and fork_json["full_name"] == "bob/project"
    assert fork_json["parent"]["full_name"] == "alice/project"
    assert fork_json["source"]["full_name"] == "alice/project"
    fork_id = fork_json["id"]
    assert forks.borrows_from(settings, fork_id)
    listed = http.get(f"{api}/repos/alice/project/forks").json()
    assert [item["full_name"] for item in listed] == ["bob/project"]
    # A plain GET carries the fork's lineage (PyGithub reads `parent` from it).
    gh = Github(base_url=api, auth=Auth.Token(bob_headers["Authorization"].split()[-1]))
    fetched = gh.get_repo("bob/project")
    assert fetched.fork and fetched.parent.full_name == "alice/project"
    assert fetched.source.full_name == "alice/project"
    assert gh.get_repo("alice/project").forks_count == 1

    # A real clone of the fork, a branch pushed to it, a pull request into the parent.
    work = tmp_path / "work"
    run_git(
        "clone",
        "-q",
        repo_url(live_server.url, "bob", "project", "bob"),
        str(work),
        cwd=tmp_path,
        home=home,
    )
    run_git("checkout", "-q", "-b", "topic", cwd=work, home=home)
    first = commit(work, home, {"topic.txt": "one\n"}, "first")
    run_git("push", "-q", "origin", "topic", cwd=work, home=home)
    opened = http.post(
        f"{api}/repos/alice/project/pulls",
        headers=bob_headers,
        json={"title": "From the fork", "head": "bob:topic", "base": "main"},
    )
    assert opened.status_code == 201, opened.text
    assert opened.json()["head"]["repo"]["full_name"] == "bob/project"
    parent_git = store.open_repository(settings, parent.id)
    assert str(parent_git.references["refs/pull/1/head"].target) == first

    # A push to the head: the job synchronizes the pull request (a forced push too).
    second = commit(work, home, {"topic.txt": "two\n"}, "second")
    run_git("push", "-q", "origin", "topic", cwd=work, home=home)

    def head_is(sha: str) -> Callable[[], bool]:
        def check() -> bool:
            response = http.get(f"{api}/repos/alice/project/pulls/1")
            assert response.status_code == 200, response.text
            return response.json()["head"]["sha"] == sha

        return check

    wait_for(head_is(second), "synchronize", 30)
    assert str(parent_git.references["refs/pull/1/head"].target) == second
    run_git("reset", "-q", "--hard", first, cwd=work, home=home)
    forced = commit(work, home, {"topic.txt": "three\n"}, "rewritten")
    run_git("push", "-q", "-f", "origin", "topic", cwd=work, home=home)
    wait_for(head_is(forced), "forced synchronize", 30)
    from opencodehub.pulls.models import PullRequestPush

    with db.session() as session:
        moves = session.query(PullRequestPush).order_by(PullRequestPush.id).all()
        assert [(m.after_sha, m.forced) for m in moves] == [(second, False), (forced, True)]

    # Alice merges it; the parent now holds the fork's commits itself.
    merged = http.put(f"{api}/repos/alice/project/pulls/1/merge", headers=alice_headers, json={})
    assert merged.status_code == 200, merged.text
    fsck(settings, parent.id, home)

    # Alice pushes to main; Bob's fork syncs by fast-forward.
    upstream = tmp_path / "upstream"
    run_git(
        "clone",
        "-q",
        repo_url(live_server.url, "alice", "project", "alice"),
        str(upstream),
        cwd=tmp_path,
        home=home,
    )
    commit(upstream, home, {"news.txt": "news\n"}, "news")
    run_git("push", "-q", "origin", "main", cwd=upstream, home=home)
    synced = http.post(
        f"{api}/repos/bob/project/merge-upstream", headers=bob_headers, json={"branch": "main"}
    )
    assert synced.status_code == 200, synced.text
    assert synced.json()["merge_type"] == "fast-forward"
    assert synced.json()["base_branch"] == "alice:main"
    again = http.post(
        f"{api}/repos/bob/project/merge-upstream", headers=bob_headers, json={"branch": "main"}
    )
    assert again.json()["merge_type"] == "none"

    # Deleting the parent leaves the fork whole: it was dissociated first.
    admin_headers = auth_header(make_token(alice, ["repo", "delete_repo"]))
    deleted = http.delete(f"{api}/repos/alice/project", headers=admin_headers)
    assert deleted.status_code == 204
    assert not forks.borrows_from(settings, fork_id)
    fsck(settings, fork_id, home)
    fresh = tmp_path / "fresh"
    run_git(
        "clone",
        "-q",
        repo_url(live_server.url, "bob", "project", "bob"),
        str(fresh),
        cwd=tmp_path,
        home=home,
    )
    assert (fresh / "news.txt").read_text() == "news\n"
