"""The new-repository form and a repository's settings and access pages, driven as a browser
would (TestClient, real CSRF tokens), on every engine."""

from __future__ import annotations

from collections.abc import Callable

import pygit2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import OrgRole, Permission, User
from opencodehub.config import Settings
from opencodehub.db.engine import Database
from opencodehub.repos import store
from opencodehub.repos.models import Collaborator, Repository, TeamRepository, Visibility
from tests.web.forms import log_in, page_token, post_form


def _repo(db: Database, owner: str, name: str) -> Repository | None:
    with db.session() as session:
        owner_row = accounts.get_account(session, owner)
        if owner_row is None:
            return None
        repo = session.scalar(
            select(Repository).where(
                Repository.owner_id == owner_row.id, Repository.lower_name == name.lower()
            )
        )
        if repo is not None:
            session.expunge(repo)
        return repo


def _count_repos(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(func.count()).select_from(Repository)) or 0


def _create(client: TestClient, **data: object) -> object:
    form = {"owner": "alice", "visibility": "public", **data}
    return post_form(client, "/new", "/new", form)


@pytest.fixture
def alice(client: TestClient, make_user: Callable[..., User]) -> User:
    user = make_user("alice")
    assert log_in(client).status_code == 303
    return user


# New repository ------------------------------------------------------------------------------


def test_new_form_offers_own_account_and_organizations(
    client: TestClient, db: Database, alice: User
) -> None:
    with db.session() as session:
        accounts.create_organization(session, session.get(User, alice.id), "acme")
    page = client.get("/new")
    assert page.status_code == 200
    assert '<option value="alice" selected>' in page.text
    assert '<option value="acme">' in page.text
    assert "Python" in page.text and "MIT License" in page.text


def test_new_form_needs_sign_in(client: TestClient, db: Database) -> None:
    response = client.get("/new", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/new"


def test_create_empty_repository(
    client: TestClient, db: Database, settings: Settings, alice: User
) -> None:
    response = _create(client, name="hello", description="Say hi", visibility="private")
    assert response.status_code == 303
    assert response.headers["location"] == "/alice/hello"
    repo = _repo(db, "alice", "hello")
    assert repo is not None
    assert repo.description == "Say hi"
    assert repo.visibility == Visibility.PRIVATE
    assert repo.is_empty
    assert list(store.open_repository(settings, repo.id).branches.local) == []


def test_create_with_readme_gitignore_and_license(
    client: TestClient, db: Database, settings: Settings, alice: User
) -> None:
    response = _create(
        client,
        name="full",
        description="Everything",
        auto_init="on",
        gitignore_template="Python",
        license_template="mit",
    )
    assert response.status_code == 303
    repo = _repo(db, "alice", "full")
    assert repo is not None and not repo.is_empty
    git_repo = store.open_repository(settings, repo.id)
    tree = git_repo.revparse_single("refs/heads/main").peel(pygit2.Tree)
    assert sorted(entry.name for entry in tree) == [".gitignore", "LICENSE", "README.md"]
    assert b"# full" in git_repo[tree["README.md"].id].data
    assert b"__pycache__" in git_repo[tree[".gitignore"].id].data
    assert b"MIT License" in git_repo[tree["LICENSE"].id].data
    assert b"alice" in git_repo[tree["LICENSE"].id].data


@pytest.mark.parametrize(
    ("option", "value"),
    [("auto_init", "on"), ("gitignore_template", "Go"), ("license_template", "apache-2.0")],
)
def test_each_initialization_option_alone(
    client: TestClient, db: Database, settings: Settings, alice: User, option: str, value: str
) -> None:
    assert _create(client, name="one", **{option: value}).status_code == 303
    repo = _repo(db, "alice", "one")
    assert repo is not None and not repo.is_empty
    tree = store.open_repository(settings, repo.id).revparse_single("main").peel(pygit2.Tree)
    expected = {"auto_init": "README.md", "gitignore_template": ".gitignore"}.get(option, "LICENSE")
    assert [entry.name for entry in tree] == [expected]


@pytest.mark.parametrize(
    "name",
    [
        "..",
        ".",
        "x.git",
        "héllo",
        "h\u0435llo",  # a Cyrillic look-alike of "e"
        "a" * 101,
        "-leading",
        "a/b",
        "%2e%2e",
        "nul\x00byte",
        "semi;colon' OR 1=1--",
        "",
        "x" * 10_000,
    ],
)
def test_bad_names_show_the_form_again(
    client: TestClient, db: Database, alice: User, name: str
) -> None:
    response = _create(client, name=name, description="kept")
    assert response.status_code == 422
    assert 'class="field-error" id="error-name"' in response.text
    assert 'value="kept"' in response.text
    assert _count_repos(db) == 0


def test_duplicate_name_differing_by_case(client: TestClient, db: Database, alice: User) -> None:
    assert _create(client, name="Project").status_code == 303
    response = _create(client, name="project")
    assert response.status_code == 422
    assert "already exists" in response.text
    assert _count_repos(db) == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("gitignore_template", "Cobol"),
        ("license_template", "wtfpl"),
        ("visibility", "secret"),
        ("visibility", "internal"),  # a user account has no internal repositories
        ("description", "d" * 351),
    ],
)
def test_bad_options_show_the_form_again(
    client: TestClient, db: Database, alice: User, field: str, value: str
) -> None:
    response = _create(client, name="fine", **{field: value})
    assert response.status_code == 422
    assert "field-error" in response.text
    assert _count_repos(db) == 0


def test_owner_must_be_self_or_own_organization(
    client: TestClient, db: Database, alice: User, make_user: Callable[..., User]
) -> None:
    bob = make_user("bob")
    with db.session() as session:
        accounts.create_organization(session, session.get(User, bob.id), "bobco")
    for owner in ("bob", "bobco", "nobody", "\x00", "a" * 500):
        response = _create(client, owner=owner, name="sneaky")
        assert response.status_code == 422
        assert 'id="error-owner"' in response.text
    assert _count_repos(db) == 0


def test_create_in_organization_with_internal_visibility(
    client: TestClient, db: Database, alice: User, make_user: Callable[..., User]
) -> None:
    carol = make_user("carol")
    with db.session() as session:
        org = accounts.create_organization(session, session.get(User, alice.id), "acme")
        accounts.add_org_member(session, org, session.get(User, carol.id), OrgRole.MEMBER)
    response = _create(client, owner="acme", name="tools", visibility="internal")
    assert response.status_code == 303
    assert response.headers["location"] == "/acme/tools"
    repo = _repo(db, "acme", "tools")
    assert repo is not None and repo.visibility == Visibility.INTERNAL


def test_create_without_csrf_writes_nothing(client: TestClient, db: Database, alice: User) -> None:
    response = client.post("/new", data={"owner": "alice", "name": "x"}, follow_redirects=False)
    assert response.status_code == 403
    assert _count_repos(db) == 0


# Settings ------------------------------------------------------------------------------------


@pytest.fixture
def hello(client: TestClient, db: Database, alice: User) -> Repository:
    assert _create(client, name="hello", auto_init="on").status_code == 303
    repo = _repo(db, "alice", "hello")
    assert repo is not None
    return repo


def test_settings_page_shows_the_repository(client: TestClient, hello: Repository) -> None:
    page = client.get("/alice/hello/settings")
    assert page.status_code == 200
    assert 'value="hello"' in page.text
    assert '<option value="main" selected>main</option>' in page.text
    assert "Type <code>alice/hello</code> to confirm" in page.text


def test_update_description_homepage_topics(
    client: TestClient, db: Database, hello: Repository
) -> None:
    response = post_form(
        client,
        "/alice/hello/settings",
        "/alice/hello/settings",
        {
            "name": "hello",
            "description": "A greeting",
            "homepage": "https://example.com",
            "topics": "Web, git  python",
            "default_branch": "main",
        },
    )
    assert response.status_code == 303
    repo = _repo(db, "alice", "hello")
    assert repo is not None
    assert repo.description == "A greeting"
    assert repo.homepage == "https://example.com"
    assert repo.topic_list == ["web", "git", "python"]
    page = client.get("/alice/hello/settings")
    assert "Repository settings saved." in page.text
    assert 'value="web git python"' in page.text


@pytest.mark.parametrize(
    ("data", "field_text"),
    [
        ({"topics": "ok -bad"}, "Topics must start"),
        ({"name": ".."}, "must not be"),
        ({"name": "x" * 101}, "1 to 100 characters"),
        ({"default_branch": "nope"}, "The branch nope was not found."),
        ({"default_branch": "../evil"}, "is not a valid branch name"),
        ({"description": "d" * 351}, "description"),
    ],
)
def test_bad_settings_change_nothing(
    client: TestClient, db: Database, hello: Repository, data: dict[str, str], field_text: str
) -> None:
    response = post_form(client, "/alice/hello/settings", "/alice/hello/settings", data)
    assert response.status_code == 422
    assert field_text in response.text
    repo = _repo(db, "alice", "hello")
    assert repo is not None
    assert (repo.name, repo.description, repo.topics, repo.default_branch) == (
        "hello",
        "",
        "",
        "main",
    )


def test_default_branch_picker_lists_branches(
    client: TestClient, db: Database, settings: Settings, hello: Repository
) -> None:
    git_repo = store.open_repository(settings, hello.id)
    git_repo.branches.local.create("develop", git_repo.revparse_single("main").peel(pygit2.Commit))
    page = client.get("/alice/hello/settings")
    assert '<option value="develop">develop</option>' in page.text
    response = post_form(
        client, "/alice/hello/settings", "/alice/hello/settings", {"default_branch": "develop"}
    )
    assert response.status_code == 303
    repo = _repo(db, "alice", "hello")
    assert repo is not None and repo.default_branch == "develop"
    assert (
        store.open_repository(settings, hello.id).references["HEAD"].target == "refs/heads/develop"
    )


def test_rename_then_old_url_redirects(client: TestClient, db: Database, hello: Repository) -> None:
    response = post_form(
        client, "/alice/hello/settings", "/alice/hello/settings", {"name": "greetings"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/alice/greetings/settings"
    assert _repo(db, "alice", "greetings") is not None
    old = client.get("/alice/hello/settings", follow_redirects=False)
    assert old.status_code == 301
    assert old.headers["location"] == "/alice/greetings/settings"
    old_access = client.get("/alice/hello/settings/access", follow_redirects=False)
    assert old_access.status_code == 301
    assert old_access.headers["location"] == "/alice/greetings/settings/access"
    assert client.get("/alice/greetings/settings").status_code == 200


def test_rename_to_a_taken_name_is_refused(
    client: TestClient, db: Database, hello: Repository
) -> None:
    assert _create(client, name="other").status_code == 303
    response = post_form(
        client, "/alice/hello/settings", "/alice/hello/settings", {"name": "OTHER"}
    )
    assert response.status_code == 422
    assert "already exists" in response.text
    assert _repo(db, "alice", "hello") is not None


def test_visibility_change(client: TestClient, db: Database, hello: Repository) -> None:
    response = post_form(
        client,
        "/alice/hello/settings",
        "/alice/hello/settings/visibility",
        {"visibility": "private"},
    )
    assert response.status_code == 303
    repo = _repo(db, "alice", "hello")
    assert repo is not None and repo.visibility == Visibility.PRIVATE
    bad = post_form(
        client,
        "/alice/hello/settings",
        "/alice/hello/settings/visibility",
        {"visibility": "internal"},
    )
    assert bad.status_code == 422
    assert "only organization repositories can be internal" in bad.text


def test_archive_and_unarchive(client: TestClient, db: Database, hello: Repository) -> None:
    response = post_form(
        client, "/alice/hello/settings", "/alice/hello/settings/archive", {"archived": "true"}
    )
    assert response.status_code == 303
    repo = _repo(db, "alice", "hello")
    assert repo is not None and repo.is_archived
    page = client.get("/alice/hello/settings")
    assert 'data-testid="archived-notice"' in page.text
    # Archived: the description cannot change.
    refused = post_form(
        client, "/alice/hello/settings", "/alice/hello/settings", {"description": "changed"}
    )
    assert refused.status_code == 403
    assert "archived" in refused.text
    assert (
        post_form(
            client, "/alice/hello/settings", "/alice/hello/settings/archive", {"archived": "false"}
        ).status_code
        == 303
    )
    repo = _repo(db, "alice", "hello")
    assert repo is not None and not repo.is_archived and repo.description == ""


def test_transfer_to_an_owned_organization(
    client: TestClient, db: Database, alice: User, hello: Repository
) -> None:
    with db.session() as session:
        accounts.create_organization(session, session.get(User, alice.id), "acme")
    wrong = post_form(
        client,
        "/alice/hello/settings",
        "/alice/hello/settings/transfer",
        {"new_owner": "acme", "confirm": "alice/HELLO"},
    )
    assert wrong.status_code == 422
    assert "type alice/hello exactly to confirm" in wrong.text
    assert _repo(db, "alice", "hello") is not None
    response = post_form(
        client,
        "/alice/hello/settings",
        "/alice/hello/settings/transfer",
        {"new_owner": "acme", "confirm": "alice/hello"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/acme/hello"
    assert _repo(db, "acme", "hello") is not None
    moved = client.get("/alice/hello/settings", follow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["location"] == "/acme/hello/settings"


@pytest.mark.parametrize("target", ["nobody", "bob", "alice", "\x00", "x" * 300])
def test_transfer_refusals(
    client: TestClient,
    db: Database,
    hello: Repository,
    make_user: Callable[..., User],
    target: str,
) -> None:
    make_user("bob")
    response = post_form(
        client,
        "/alice/hello/settings",
        "/alice/hello/settings/transfer",
        {"new_owner": target, "confirm": "alice/hello"},
    )
    assert response.status_code in (403, 422)
    assert 'data-testid="transfer-section"' in response.text
    repo = _repo(db, "alice", "hello")
    assert repo is not None and repo.owner_id == hello.owner_id


@pytest.mark.parametrize(
    "typed", ["", "hello", "alice/Hello", "Alice/hello", " alice/hello", "alice/hello\x00"]
)
def test_delete_needs_the_exact_typed_name(
    client: TestClient, db: Database, hello: Repository, typed: str
) -> None:
    response = post_form(
        client, "/alice/hello/settings", "/alice/hello/settings/delete", {"confirm": typed}
    )
    assert response.status_code == 422
    assert "exactly to confirm" in response.text
    assert _count_repos(db) == 1


def test_delete(client: TestClient, db: Database, settings: Settings, hello: Repository) -> None:
    path = store.repository_path(settings, hello.id)
    assert path.exists()
    response = post_form(
        client, "/alice/hello/settings", "/alice/hello/settings/delete", {"confirm": "alice/hello"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert _count_repos(db) == 0
    assert not path.exists()
    assert client.get("/alice/hello/settings").status_code == 404


@pytest.mark.parametrize(
    "action",
    [
        ("/alice/hello/settings", {"description": "x"}),
        ("/alice/hello/settings/visibility", {"visibility": "private"}),
        ("/alice/hello/settings/archive", {"archived": "true"}),
        ("/alice/hello/settings/transfer", {"new_owner": "acme", "confirm": "alice/hello"}),
        ("/alice/hello/settings/delete", {"confirm": "alice/hello"}),
        ("/alice/hello/settings/access/collaborators", {"username": "bob", "permission": "write"}),
    ],
)
def test_settings_without_csrf_write_nothing(
    client: TestClient,
    db: Database,
    hello: Repository,
    make_user: Callable[..., User],
    action: tuple[str, dict[str, str]],
) -> None:
    make_user("bob")
    path, data = action
    for token in (None, "forged"):
        form = dict(data)
        if token is not None:
            form["csrf_token"] = token
        response = client.post(path, data=form, follow_redirects=False)
        assert response.status_code == 403
        assert "security token" in response.text
    repo = _repo(db, "alice", "hello")
    assert repo is not None
    assert (repo.description, repo.visibility, repo.is_archived) == ("", Visibility.PUBLIC, False)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Collaborator)) == 0


# Who sees settings ------------------------------------------------------------------------------


def test_private_repository_settings_look_like_nothing_is_there(
    client: TestClient, db: Database, hello: Repository, make_user: Callable[..., User]
) -> None:
    post_form(
        client,
        "/alice/hello/settings",
        "/alice/hello/settings/visibility",
        {"visibility": "private"},
    )
    make_user("mallory")
    log_in(client, "mallory")
    hidden = client.get("/alice/hello/settings")
    missing = client.get("/alice/nothing-here/settings")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.text == missing.text
    hidden_access = client.get("/alice/hello/settings/access")
    assert hidden_access.status_code == 404
    token = page_token(client, "/")
    for path in ("/alice/hello/settings/delete", "/alice/hello/settings"):
        response = client.post(path, data={"csrf_token": token, "confirm": "alice/hello"})
        assert response.status_code == 404
    assert _count_repos(db) == 1


def test_readers_get_403_on_settings(
    client: TestClient, db: Database, hello: Repository, make_user: Callable[..., User]
) -> None:
    make_user("reader")
    post_form(
        client,
        "/alice/hello/settings/access",
        "/alice/hello/settings/access/collaborators",
        {"username": "reader", "permission": "maintain"},
    )
    log_in(client, "reader")
    assert client.get("/alice/hello/settings").status_code == 403
    assert client.get("/alice/hello/settings/access").status_code == 403
    token = page_token(client, "/")
    response = client.post(
        "/alice/hello/settings/delete", data={"csrf_token": token, "confirm": "alice/hello"}
    )
    assert response.status_code == 403
    assert _count_repos(db) == 1


def test_anonymous_visitors_are_sent_to_sign_in(client: TestClient, hello: Repository) -> None:
    client.cookies.clear()
    response = client.get("/alice/hello/settings", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/alice/hello/settings"


# Collaborators and teams -----------------------------------------------------------------------


def _collaborators(db: Database) -> dict[str, Permission]:
    with db.session() as session:
        rows = session.scalars(select(Collaborator)).all()
        return {row.user.username: row.permission for row in rows}


def test_collaborators_add_change_remove(
    client: TestClient, db: Database, hello: Repository, make_user: Callable[..., User]
) -> None:
    make_user("bob")
    access = "/alice/hello/settings/access"
    added = post_form(
        client, access, f"{access}/collaborators", {"username": "Bob", "permission": "triage"}
    )
    assert added.status_code == 303
    assert _collaborators(db) == {"bob": Permission.TRIAGE}
    page = client.get(access)
    assert 'data-testid="collaborator-row"' in page.text and "bob" in page.text
    changed = post_form(client, access, f"{access}/collaborators/bob", {"permission": "admin"})
    assert changed.status_code == 303
    assert _collaborators(db) == {"bob": Permission.ADMIN}
    removed = post_form(client, access, f"{access}/collaborators/bob/remove")
    assert removed.status_code == 303
    assert _collaborators(db) == {}


@pytest.mark.parametrize(
    ("username", "permission", "message"),
    [
        ("nobody", "write", "there is no user named"),
        ("alice", "write", "Repository owner cannot be a collaborator"),
        ("bob", "superuser", "must be read, triage"),
        ("bob\x00", "write", "there is no user named"),
        ("' OR 1=1 --", "write", "there is no user named"),
        ("b" * 10_000, "write", "there is no user named"),
    ],
)
def test_bad_collaborators_are_refused(
    client: TestClient,
    db: Database,
    hello: Repository,
    make_user: Callable[..., User],
    username: str,
    permission: str,
    message: str,
) -> None:
    make_user("bob")
    access = "/alice/hello/settings/access"
    response = post_form(
        client, access, f"{access}/collaborators", {"username": username, "permission": permission}
    )
    assert response.status_code == 422
    assert message in response.text
    assert _collaborators(db) == {}


def test_change_of_unknown_collaborator_is_404(client: TestClient, hello: Repository) -> None:
    access = "/alice/hello/settings/access"
    response = post_form(
        client, access, f"{access}/collaborators/ghost-user", {"permission": "read"}
    )
    assert response.status_code == 404


def test_teams_grant_change_remove(client: TestClient, db: Database, alice: User) -> None:
    with db.session() as session:
        org = accounts.create_organization(session, session.get(User, alice.id), "acme")
        accounts.create_team(session, org, "Core Devs", permission=Permission.READ)
    assert _create(client, owner="acme", name="tools").status_code == 303
    access = "/acme/tools/settings/access"
    page = client.get(access)
    assert '<option value="core-devs">Core Devs</option>' in page.text
    granted = post_form(
        client, access, f"{access}/teams", {"team": "core-devs", "permission": "write"}
    )
    assert granted.status_code == 303

    def levels() -> list[Permission]:
        with db.session() as session:
            return [row.permission for row in session.scalars(select(TeamRepository))]

    assert levels() == [Permission.WRITE]
    assert 'data-testid="team-row"' in client.get(access).text
    changed = post_form(
        client, access, f"{access}/teams", {"team": "core-devs", "permission": "maintain"}
    )
    assert changed.status_code == 303
    assert levels() == [Permission.MAINTAIN]
    for team, permission in (("nope", "read"), ("core-devs", "root"), ("../x", "read")):
        bad = post_form(client, access, f"{access}/teams", {"team": team, "permission": permission})
        assert bad.status_code == 422
    assert levels() == [Permission.MAINTAIN]
    removed = post_form(client, access, f"{access}/teams/core-devs/remove")
    assert removed.status_code == 303
    assert levels() == []


def test_personal_repositories_have_no_teams_section(client: TestClient, hello: Repository) -> None:
    page = client.get("/alice/hello/settings/access")
    assert page.status_code == 200
    assert "Teams with access" not in page.text
    access = "/alice/hello/settings/access"
    response = post_form(client, access, f"{access}/teams", {"team": "x", "permission": "read"})
    assert response.status_code == 422
