"""Branch protection: patterns, CODEOWNERS, the REST API, and the rules enforced on every path
that moves a branch — HTTP push and SSH push with the real clients, the web editor, the
contents API, and merging a pull request."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
import tests.git.test_ssh as ssh_tests
from fastapi.testclient import TestClient
from tests.conftest import LiveServer, auth_header
from tests.git.gitutil import commit, repo_url, run_git, server_refs
from tests.repos.git_helpers import commit_files, create_repo
from tests.web.forms import csrf_from, log_in

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor
from opencodehub.accounts.models import Permission, Team, TeamMember, User
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden
from opencodehub.db.engine import Database
from opencodehub.pulls import protection
from opencodehub.pulls.protection import (
    RuleSettings,
    check_ref_update,
    owners_for,
    parse_codeowners,
    pattern_matches,
    pick_rule,
)
from opencodehub.repos import service as repos
from opencodehub.repos import statuses, store
from opencodehub.repos.models import Collaborator, ProtectedBranch, Repository

# The SSH server and client fixtures of the SSH transport's own tests.
ssh_server = ssh_tests.ssh_server
make_client = ssh_tests.make_client

API = "/api/v3/repos/alice/project"
ZERO = "0" * 40
PR_ONLY = "changes must be made through a pull request"


# Patterns and CODEOWNERS (no database) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "branch", "matches"),
    [
        ("main", "main", True),
        ("main", "MAIN", False),
        ("release/*", "release/1.0", True),
        ("release/*", "release/1.0/hotfix", False),  # `*` stops at `/` (FNM_PATHNAME)
        ("release/**", "release/1.0/hotfix", True),
        ("release/**/*", "release/a/b", True),
        ("v?.x", "v1.x", True),
        ("v?.x", "v10.x", False),
        ("[mr]*", "main", True),
        ("[mr]*", "dev", False),
        ("*", "feature/x", False),
        ("**", "feature/x", True),
    ],
)
def test_branch_patterns(pattern: str, branch: str, matches: bool) -> None:
    assert pattern_matches(pattern, branch) is matches


def test_an_exact_rule_wins_over_older_patterns() -> None:
    wildcard = ProtectedBranch(id=1, pattern="*", repository_id=1)
    other = ProtectedBranch(id=2, pattern="m*", repository_id=1)
    exact = ProtectedBranch(id=3, pattern="main", repository_id=1)
    rules = [wildcard, other, exact]
    assert pick_rule(rules, "main") is exact
    assert pick_rule(rules, "maint") is wildcard  # the oldest matching pattern
    assert pick_rule(rules, "a/b") is None


def test_codeowners_rules() -> None:
    rules = parse_codeowners(
        "# comment\n"
        "*       @global\n"
        "*.js    @js-owner  # trailing comment\n"
        "/build/logs/ @doctocat\n"
        "docs/*  docs@example.com\n"
        "apps/   @octo-org/apps\n"
        "/scripts/ \n"
        "!negated @ignored\n"
    )
    assert owners_for(rules, "README.md") == ("@global",)
    assert owners_for(rules, "src/app.js") == ("@js-owner",)
    assert owners_for(rules, "build/logs/today.txt") == ("@doctocat",)
    assert owners_for(rules, "x/build/logs/today.txt") == ("@global",)  # anchored at the root
    assert owners_for(rules, "docs/getting-started.md") == ("docs@example.com",)
    assert owners_for(rules, "docs/build-app/troubleshooting.md") == ("@global",)
    assert owners_for(rules, "web/apps/index.html") == ("@octo-org/apps",)
    assert owners_for(rules, "scripts/run.sh") == ()  # a pattern without owners: nobody
    assert owners_for(parse_codeowners(""), "a") == ()


# The REST API ----------------------------------------------------------------------------------


def test_protection_api(
    db: Database,
    settings: Settings,
    client: TestClient,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    repo = create_repo(db, settings, alice)
    commit_files(settings, repo, {"a.txt": b"a\n"})
    commit_files(settings, repo, {"a.txt": b"b\n"}, branch="release/1")
    with db.session() as session:
        session.add(
            Collaborator(repository_id=repo.id, user_id=bob.id, permission=Permission.WRITE)
        )
    headers = auth_header(make_token(alice))
    url = f"{API}/branches/main/protection"

    assert client.get(url, headers=headers).json()["message"] == "Branch not protected"
    body = {
        "required_status_checks": {"strict": True, "contexts": ["ci/build"]},
        "enforce_admins": True,
        "required_pull_request_reviews": {
            "dismiss_stale_reviews": True,
            "require_code_owner_reviews": False,
            "required_approving_review_count": 2,
        },
        "restrictions": {"users": ["bob"], "teams": []},
        "allow_force_pushes": False,
        "allow_deletions": False,
    }
    put = client.put(url, json=body, headers=headers)
    assert put.status_code == 200, put.text
    data = put.json()
    assert data["url"].endswith("/repos/alice/project/branches/main/protection")
    assert data["required_status_checks"]["strict"] is True
    assert data["required_status_checks"]["contexts"] == ["ci/build"]
    assert data["required_status_checks"]["checks"] == [{"context": "ci/build", "app_id": None}]
    assert data["enforce_admins"]["enabled"] is True
    reviews = data["required_pull_request_reviews"]
    assert (reviews["required_approving_review_count"], reviews["dismiss_stale_reviews"]) == (
        2,
        True,
    )
    assert [u["login"] for u in data["restrictions"]["users"]] == ["bob"]
    assert data["restrictions"]["teams"] == []
    assert data["allow_force_pushes"] == {"enabled": False}
    assert data["allow_deletions"] == {"enabled": False}
    assert client.get(url, headers=headers).json() == data
    # The branches API reports it protected.
    assert client.get(f"{API}/branches/main", headers=headers).json()["protected"] is True

    # Lifting requirements: null removes them from the shape.
    body.update(required_status_checks=None, restrictions=None, required_pull_request_reviews=None)
    relaxed = client.put(url, json=body, headers=headers).json()
    assert "required_status_checks" not in relaxed
    assert "required_pull_request_reviews" not in relaxed
    assert "restrictions" not in relaxed
    # A branch name with a slash.
    nested = client.put(f"{API}/branches/release/1/protection", json=body, headers=headers)
    assert nested.status_code == 200
    assert nested.json()["url"].endswith("/branches/release%2F1/protection")

    # Bad input.
    missing = client.put(url, json={"enforce_admins": True}, headers=headers)
    assert missing.status_code == 422
    bad_count = dict(body, required_pull_request_reviews={"required_approving_review_count": 9})
    assert client.put(url, json=bad_count, headers=headers).status_code == 422
    unknown_user = dict(body, restrictions={"users": ["nobody-here"], "teams": []})
    assert client.put(url, json=unknown_user, headers=headers).status_code == 422
    no_branch = client.put(f"{API}/branches/nope/protection", json=body, headers=headers)
    assert (no_branch.status_code, no_branch.json()["message"]) == (404, "Branch not found")
    # Admin only: a writer is refused, someone who cannot see the repository would get 404.
    bob_headers = auth_header(make_token(bob))
    assert client.get(url, headers=bob_headers).status_code == 403
    assert client.put(url, json=body, headers=bob_headers).status_code == 403
    assert client.delete(url, headers=bob_headers).status_code == 403

    assert client.delete(url, headers=headers).status_code == 204
    assert client.get(url, headers=headers).status_code == 404
    assert client.delete(url, headers=headers).status_code == 404


# The one check ---------------------------------------------------------------------------------


def test_check_ref_update_rules(
    db: Database, settings: Settings, make_user: Callable[..., User]
) -> None:
    owner = make_user("owner")
    dev = make_user("dev")
    outsider = make_user("outsider")
    with db.session() as session:
        creator = session.get(User, owner.id)
        assert creator is not None
        org = accounts.create_organization(session, creator, "octo")
        org_id = org.id
        repo = repos.create_repository(
            session, settings, Actor(user=creator, method="password"), org, "project"
        )
        session.flush()
        session.expunge(repo)
    base = commit_files(settings, repo, {"a.txt": b"1\n"})
    ahead = commit_files(settings, repo, {"a.txt": b"2\n"}, branch="topic", parents=[base])
    git_repo = store.open_repository(settings, repo.id)
    with db.session() as session:
        team = Team(org_id=org_id, name="Core", slug="core")
        session.add(team)
        session.flush()
        session.add(TeamMember(team_id=team.id, user_id=dev.id))
        for user in (dev, outsider):
            session.add(
                Collaborator(repository_id=repo.id, user_id=user.id, permission=Permission.WRITE)
            )

    def attempt(user: User, rule: RuleSettings, *, via: str = "push", new: str = ahead) -> str:
        with db.session() as session:
            record = session.get(Repository, repo.id)
            assert record is not None
            actor = Actor(user=session.get(User, user.id), method="password")
            protection.save_rule(
                session, Actor(user=session.get(User, owner.id)), record, "main", rule
            )
            try:
                check_ref_update(
                    session, record, actor, "refs/heads/main", base, new, via=via, git_repo=git_repo
                )
            except Forbidden as exc:
                return exc.message
            finally:
                session.rollback()
            return "ok"

    pr_rule = RuleSettings(require_pull_request=True, required_approving_review_count=1)
    assert PR_ONLY in attempt(dev, pr_rule)
    assert PR_ONLY in attempt(dev, pr_rule, via="web")
    assert attempt(dev, pr_rule, via="merge") == "ok"
    # Org owners are admins: they bypass, unless the rule is enforced for admins.
    assert attempt(owner, pr_rule) == "ok"
    assert PR_ONLY in attempt(owner, RuleSettings(require_pull_request=True, enforce_admins=True))
    # Push restrictions by team.
    restricted = RuleSettings(restrict_pushes=True, push_teams=["core"])
    assert attempt(dev, restricted) == "ok"
    assert "not allowed to push" in attempt(outsider, restricted)
    assert "not allowed to push" in attempt(outsider, restricted, via="merge")
    # Required status checks on a direct push: the new commit must be green.
    checks = RuleSettings(require_status_checks=True, required_contexts=["ci"])
    assert 'Required status check "ci" is expected.' in attempt(dev, checks)
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        statuses.set_status(session, record, ahead, state="failure", context="ci")
    assert 'Required status check "ci" is failure.' in attempt(dev, checks)
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        statuses.set_status(session, record, ahead, state="success", context="ci")
    assert attempt(dev, checks) == "ok"
    # Force pushes and deletions: refused to everyone, admins included, unless allowed.
    rewound = commit_files(settings, repo, {"b.txt": b"x"}, branch="side", parents=[])
    assert "cannot force-push" in attempt(owner, RuleSettings(), new=rewound)
    assert attempt(owner, RuleSettings(allow_force_pushes=True), new=rewound) == "ok"
    assert "default branch" in attempt(owner, RuleSettings(allow_deletions=True), new=ZERO)


# Every path that moves a branch ----------------------------------------------------------------


def _protect_main(db: Database, repo: Repository, owner: User) -> None:
    with db.session() as session:
        record = session.get(Repository, repo.id)
        assert record is not None
        protection.save_rule(
            session,
            Actor(user=session.get(User, owner.id)),
            record,
            "main",
            RuleSettings(require_pull_request=True, required_approving_review_count=1),
        )


def _add_writer(db: Database, repo: Repository, user: User) -> None:
    with db.session() as session:
        session.add(
            Collaborator(repository_id=repo.id, user_id=user.id, permission=Permission.WRITE)
        )


def test_http_push_is_refused(
    db: Database,
    settings: Settings,
    live_server: LiveServer,
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    repo = create_repo(db, settings, alice, "project", auto_init=True)
    _add_writer(db, repo, bob)
    _protect_main(db, repo, alice)
    home = tmp_path / "home"
    url = repo_url(live_server.url, "alice", "project", "bob")
    run_git("clone", "-q", url, str(tmp_path / "work"), cwd=tmp_path, home=home)
    work = tmp_path / "work"
    before = server_refs(settings, repo.id)["refs/heads/main"]
    sha = commit(work, home, {"x.txt": "x\n"}, "direct change")
    refused = run_git("push", "origin", "main", cwd=work, home=home, check=False)
    assert refused.returncode != 0
    assert PR_ONLY in refused.stderr
    assert server_refs(settings, repo.id)["refs/heads/main"] == before
    # The same commit on another branch is fine: that is how a pull request starts.
    run_git("push", "-q", "origin", "main:topic", cwd=work, home=home)
    assert server_refs(settings, repo.id)["refs/heads/topic"] == sha


@pytest.mark.slow
def test_ssh_push_is_refused(
    db: Database,
    settings: Settings,
    live_server: LiveServer,
    ssh_server: ssh_tests.SSHServer,
    make_client: Callable[..., ssh_tests.SSHClient],
    make_user: Callable[..., User],
    tmp_path: Path,
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    repo = create_repo(db, settings, alice, "project", auto_init=True)
    _add_writer(db, repo, bob)
    _protect_main(db, repo, alice)
    client = make_client("bob")
    ssh_tests.add_user_key(db, bob, client)
    work = tmp_path / "work"
    client.git("clone", "-q", client.url("alice", "project"), str(work), cwd=tmp_path)
    before = server_refs(settings, repo.id)["refs/heads/main"]
    commit(work, client.home, {"x.txt": "x\n"}, "direct change")
    refused = client.git("push", "origin", "main", cwd=work, check=False)
    assert refused.returncode != 0
    assert PR_ONLY in refused.stderr
    assert server_refs(settings, repo.id)["refs/heads/main"] == before


def test_web_edit_is_refused(
    db: Database,
    settings: Settings,
    client: TestClient,
    make_user: Callable[..., User],
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    repo = create_repo(db, settings, alice, "project")
    commit_files(settings, repo, {"a.txt": b"one\n"})
    _add_writer(db, repo, bob)
    _protect_main(db, repo, alice)
    log_in(client, "bob")
    form = client.get("/alice/project/edit/main/a.txt")
    assert form.status_code == 200
    sha = form.text.split('name="sha" value="')[1].split('"')[0]
    before = server_refs(settings, repo.id)["refs/heads/main"]
    answer = client.post(
        "/alice/project/edit/main/a.txt",
        data={"csrf_token": csrf_from(form.text), "sha": sha, "content": "two\n", "message": ""},
        follow_redirects=False,
    )
    assert answer.status_code != 303
    assert PR_ONLY in answer.text
    assert server_refs(settings, repo.id)["refs/heads/main"] == before


def test_contents_api_put_is_refused(
    db: Database,
    settings: Settings,
    client: TestClient,
    make_user: Callable[..., User],
    make_token: Callable[..., str],
) -> None:
    alice = make_user("alice")
    bob = make_user("bob")
    repo = create_repo(db, settings, alice, "project")
    commit_files(settings, repo, {"a.txt": b"one\n"})
    _add_writer(db, repo, bob)
    _protect_main(db, repo, alice)
    before = server_refs(settings, repo.id)["refs/heads/main"]
    answer = client.put(
        f"{API}/contents/new.txt",
        json={"message": "add", "content": base64.b64encode(b"new\n").decode()},
        headers=auth_header(make_token(bob)),
    )
    assert answer.status_code == 403
    assert PR_ONLY in answer.json()["message"]
    assert server_refs(settings, repo.id)["refs/heads/main"] == before
