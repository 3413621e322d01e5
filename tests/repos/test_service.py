"""Repository records: names, creation, settings, rename, transfer, delete, collaborators and
the listing condition, on every engine."""

from __future__ import annotations

from datetime import UTC, datetime

import pygit2
import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor, expand_scopes
from opencodehub.accounts.models import OrgRole, Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import Forbidden, NotFound, ValidationFailed
from opencodehub.core.pagination import Page
from opencodehub.db.engine import Database
from opencodehub.repos import authz, service, store
from opencodehub.repos.models import Repository, Visibility

BAD_NAMES = [
    "",
    ".",
    "..",
    "a..b/../c",
    "%2e%2e",
    "repo.git",
    "REPO.GIT",
    "wiki.wiki",
    "x" * 101,
    "nul\x00byte",
    "with/slash",
    "back\\slash",
    "spa ce",
    "ünïcode",
    "\u0440\u0430\u0443\u0440\u0430l",  # Cyrillic look-alikes of "paypal"
    "-leading-dash",
    "semi;colon",
    "quote'",
    "new\nline",
]
GOOD_NAMES = ["a", "A-b_c.d", ".github", "x" * 100, "1.0", "a..b"]


def actor_of(user: User, scopes: list[str] | None = None) -> Actor:
    if scopes is None:
        return Actor(user=user, method="password")
    return Actor(user=user, method="token", scopes=expand_scopes(scopes))


@pytest.fixture
def people(db: Database) -> dict[str, User]:
    # Password-less accounts: these tests never sign in, and argon2 would dominate their time.
    with db.session() as session:
        return {
            name: accounts.create_user(session, name, f"{name}@example.com", None)
            for name in ("alice", "bob", "carol", "dave")
        }


def reload(session: Session, user: User) -> User:
    found = session.get(User, user.id)
    assert found is not None
    return found


def new_repo(
    db: Database, settings: Settings, owner: User, name: str = "project", **kwargs: object
) -> Repository:
    with db.session() as session:
        account = reload(session, owner)
        creator = kwargs.pop("creator", account)
        assert isinstance(creator, User)
        return service.create_repository(
            session, settings, actor_of(reload(session, creator)), account, name, **kwargs
        )


def load(session: Session, repo: Repository) -> Repository:
    found = session.get(Repository, repo.id)
    assert found is not None
    return found


# Names -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_repository_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        service.validate_repo_name(name)
    assert caught.value.errors[0].field == "name"


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_repository_names_pass(name: str) -> None:
    assert service.validate_repo_name(name) == name


@pytest.mark.parametrize(
    "topics",
    [["UPPER-ok", "-dash"], ["a" * 51], ["ünï"], ["spa ce"], [f"t{i}" for i in range(21)], ["K"]],
)
def test_bad_topics_are_refused(topics: list[str]) -> None:
    if topics == ["K"]:
        # The Kelvin sign lowers to ASCII "k": it must not sneak through.
        topics = ["\u212a"]
    with pytest.raises(ValidationFailed):
        service.validate_topics(topics)


def test_topics_are_lowered_and_deduplicated() -> None:
    assert service.validate_topics(["Python", "python", "web-dev", "a1"]) == [
        "python",
        "web-dev",
        "a1",
    ]


# Creation --------------------------------------------------------------------------------------


def test_create_makes_a_bare_repository_on_disk(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], description="Demo")
    path = store.repository_path(settings, repo.id)
    assert path.is_dir()
    assert pygit2.Repository(str(path)).is_bare
    assert repo.is_empty


def test_auto_init_with_templates_commits_readme_gitignore_and_license(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    with db.session() as session:
        alice = reload(session, people["alice"])
        alice.full_name = "Alice Liddell"
    repo = new_repo(
        db,
        settings,
        people["alice"],
        auto_init=True,
        gitignore_template="python",
        license_template="MIT",
    )
    git = store.open_repository(settings, repo.id)
    tree = git.revparse_single("refs/heads/main").peel(pygit2.Tree)
    assert sorted(entry.name for entry in tree) == [".gitignore", "LICENSE", "README.md"]
    license_text = git[tree["LICENSE"].id].data.decode()
    assert f"Copyright (c) {datetime.now(UTC).year} Alice Liddell" in license_text
    assert "__pycache__/" in git[tree[".gitignore"].id].data.decode()
    assert not repo.is_empty


def test_a_license_alone_makes_a_first_commit_without_readme(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], license_template="apache-2.0")
    git = store.open_repository(settings, repo.id)
    tree = git.revparse_single("refs/heads/main").peel(pygit2.Tree)
    assert [entry.name for entry in tree] == ["LICENSE"]
    assert "[yyyy]" not in git[tree["LICENSE"].id].data.decode()


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("gitignore_template", {"gitignore_template": "../../etc/passwd"}),
        ("license_template", {"license_template": "wtfpl"}),
        ("description", {"description": "x" * 10_000}),
        ("description", {"description": "nul\x00"}),
        ("default_branch", {"default_branch": "-bad"}),
        ("default_branch", {"default_branch": "a..b"}),
    ],
)
def test_create_refuses_bad_options_and_leaves_nothing(
    db: Database,
    settings: Settings,
    people: dict[str, User],
    field: str,
    kwargs: dict[str, str],
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        new_repo(db, settings, people["alice"], **kwargs)
    assert caught.value.errors[0].field == field
    with db.session() as session:
        assert service.locate(session, "alice", "project") is None
    assert not any(settings.repos_dir.glob("*/*.git"))


def test_case_only_duplicate_is_refused(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    new_repo(db, settings, people["alice"], "Project")
    with pytest.raises(ValidationFailed) as caught:
        new_repo(db, settings, people["alice"], "PROJECT")
    assert caught.value.errors[0].code == "already_exists"
    # Another owner may use the name.
    new_repo(db, settings, people["bob"], "project")


def test_internal_visibility_is_for_organizations_only(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    with pytest.raises(ValidationFailed):
        new_repo(db, settings, people["alice"], visibility=Visibility.INTERNAL)
    with db.session() as session:
        accounts.create_organization(session, reload(session, people["alice"]), "acme")
    with db.session() as session:
        org = accounts.get_organization(session, "acme")
        assert org is not None
        repo = service.create_repository(
            session,
            settings,
            actor_of(reload(session, people["alice"])),
            org,
            "inside",
            visibility=Visibility.INTERNAL,
        )
        assert repo.visibility == Visibility.INTERNAL


def test_only_the_owner_or_org_members_create(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    with db.session() as session:
        org = accounts.create_organization(session, reload(session, people["alice"]), "acme")
        accounts.add_org_member(session, org, reload(session, people["bob"]))
    with db.session() as session:
        org = accounts.get_organization(session, "acme")
        assert org is not None
        bob, carol = reload(session, people["bob"]), reload(session, people["carol"])
        service.create_repository(session, settings, actor_of(bob), org, "by-member")
        with pytest.raises(Forbidden):
            service.create_repository(session, settings, actor_of(carol), org, "by-stranger")
        with pytest.raises(Forbidden):
            service.create_repository(session, settings, actor_of(bob), carol, "for-carol")
        with pytest.raises(Forbidden):
            service.create_repository(
                session, settings, actor_of(bob, ["read:user"]), bob, "scopeless"
            )
        # public_repo is enough for a public repository, not for a private one.
        service.create_repository(session, settings, actor_of(bob, ["public_repo"]), bob, "pub")
        with pytest.raises(Forbidden):
            service.create_repository(
                session,
                settings,
                actor_of(bob, ["public_repo"]),
                bob,
                "priv",
                visibility=Visibility.PRIVATE,
            )


def test_directory_is_removed_when_the_creating_transaction_rolls_back(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    with pytest.raises(RuntimeError), db.session() as session:
        repo = service.create_repository(
            session,
            settings,
            actor_of(reload(session, people["alice"])),
            reload(session, people["alice"]),
            "doomed",
        )
        path = store.repository_path(settings, repo.id)
        assert path.is_dir()
        raise RuntimeError("the request failed after the repository was made")
    assert not path.exists()


# Settings --------------------------------------------------------------------------------------


def test_update_changes_metadata_and_checks_permissions(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"])
    with db.session() as session:
        record = load(session, repo)
        owner = record.owner
        bob = reload(session, people["bob"])
        carol = reload(session, people["carol"])
        service.add_collaborator(session, actor_of(owner), record, bob, Permission.MAINTAIN)
        service.add_collaborator(session, actor_of(owner), record, carol, Permission.WRITE)
        service.update_repository(
            session,
            settings,
            actor_of(bob),
            record,
            name="project",  # unchanged: a maintainer may send it back
            description="  New words ",
            homepage="https://example.com",
            topics=["Python", "cli"],
        )
        assert record.description == "New words"
        assert record.topic_list == ["python", "cli"]
        with pytest.raises(Forbidden):
            service.update_repository(session, settings, actor_of(bob), record, name="renamed")
        with pytest.raises(Forbidden):
            service.update_repository(session, settings, actor_of(carol), record, description="x")
        with pytest.raises(Forbidden):
            service.update_repository(
                session, settings, actor_of(bob), record, visibility=Visibility.PRIVATE
            )


def test_default_branch_must_exist_unless_empty(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    empty = new_repo(db, settings, people["alice"], "empty")
    full = new_repo(db, settings, people["alice"], "full", auto_init=True)
    git = store.open_repository(settings, full.id)
    git.branches.local.create("develop", git.revparse_single("main").peel(pygit2.Commit))
    with db.session() as session:
        alice = actor_of(reload(session, people["alice"]))
        service.update_repository(
            session, settings, alice, load(session, empty), default_branch="trunk"
        )
        with pytest.raises(ValidationFailed) as caught:
            service.update_repository(
                session, settings, alice, load(session, full), default_branch="nope"
            )
        assert caught.value.errors[0].field == "default_branch"
        service.update_repository(
            session, settings, alice, load(session, full), default_branch="develop"
        )
    # HEAD moves once the change is committed.
    assert git.references["HEAD"].target == "refs/heads/develop"
    assert store.open_repository(settings, empty.id).references["HEAD"].target == (
        "refs/heads/trunk"
    )


def test_archived_repository_is_read_only_until_unarchived(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"])
    with db.session() as session:
        alice = actor_of(reload(session, people["alice"]))
        record = load(session, repo)
        service.archive_repository(session, settings, alice, record)
        assert record.is_archived
        with pytest.raises(Forbidden) as caught:
            service.ensure_writable(record)
        assert caught.value.message == "Repository was archived so is read-only."
        with pytest.raises(Forbidden):
            service.update_repository(session, settings, alice, record, description="nope")
        with pytest.raises(Forbidden):
            service.set_topics(session, settings, alice, record, ["x"])
        service.update_repository(
            session, settings, alice, record, archived=False, description="back"
        )
        assert not record.is_archived
        assert record.description == "back"
        service.ensure_writable(record)


# Rename ----------------------------------------------------------------------------------------


def test_rename_leaves_a_redirect_and_can_go_back(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], "old")
    new_repo(db, settings, people["alice"], "taken")
    with db.session() as session:
        alice = actor_of(reload(session, people["alice"]))
        record = load(session, repo)
        service.rename_repository(session, settings, alice, record, "new")
        with pytest.raises(ValidationFailed):
            service.rename_repository(session, settings, alice, record, "TAKEN")
        with pytest.raises(ValidationFailed):
            service.rename_repository(session, settings, alice, record, "bad/name")
    with db.session() as session:
        located = service.locate(session, "alice", "OLD")
        assert located is not None and located.redirected
        assert located.repository.id == repo.id
        assert service.find_redirect(session, "alice", "new") is None
        alice = actor_of(reload(session, people["alice"]))
        service.rename_repository(session, settings, alice, load(session, repo), "old")
    with db.session() as session:
        located = service.locate(session, "alice", "old")
        assert located is not None and not located.redirected
        back = service.locate(session, "alice", "new")
        assert back is not None and back.redirected
        # A case-only rename leaves no redirect behind.
        service.rename_repository(session, settings, alice, load(session, repo), "OLD")
    with db.session() as session:
        located = service.locate(session, "alice", "old")
        assert located is not None and not located.redirected
        assert located.repository.name == "OLD"


def test_locate_answers_again_from_memory_until_the_session_writes(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], "old")
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        with db.session() as session:
            first = service.locate(session, "alice", "old")
            looked_up = len(statements)
            again = service.locate(session, "Alice", "OLD")
            assert again == first and len(statements) == looked_up  # no statement the second time

            alice = actor_of(reload(session, people["alice"]))
            service.rename_repository(session, settings, alice, load(session, repo), "new")
            renamed = service.locate(session, "alice", "old")
            assert renamed is not None and renamed.redirected
            current = service.locate(session, "alice", "new")
            assert current is not None and not current.redirected

            # A change not flushed yet is seen too: the memo is not used while one is pending.
            load(session, repo).name = "newer"
            load(session, repo).lower_name = "newer"
            assert service.locate(session, "alice", "new") is None
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def test_a_new_repository_takes_a_redirected_name(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], "first")
    with db.session() as session:
        service.rename_repository(
            session,
            settings,
            actor_of(reload(session, people["alice"])),
            load(session, repo),
            "second",
        )
    fresh = new_repo(db, settings, people["alice"], "first")
    with db.session() as session:
        located = service.locate(session, "alice", "first")
        assert located is not None and located.repository.id == fresh.id
        assert not located.redirected


# Transfer --------------------------------------------------------------------------------------


def test_transfer_to_an_organization_and_back_to_a_user(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], "tool")
    with db.session() as session:
        alice = reload(session, people["alice"])
        org = accounts.create_organization(session, alice, "acme")
        accounts.add_org_member(session, org, reload(session, people["bob"]))
        record = load(session, repo)
        service.add_collaborator(
            session, actor_of(alice), record, reload(session, people["carol"]), Permission.READ
        )
    with db.session() as session:
        record = load(session, repo)
        alice = actor_of(reload(session, people["alice"]))
        service.transfer_repository(session, alice, record, "ACME", "tool2")
        assert record.full_name == "acme/tool2"
    with db.session() as session:
        located = service.locate(session, "alice", "tool")
        assert located is not None and located.redirected
        assert located.repository.full_name == "acme/tool2"
        # Collaborators stay with the repository.
        carol = actor_of(reload(session, people["carol"]))
        assert authz.effective_permission(session, carol, load(session, repo)) == Permission.READ
        # Bob is a member but not an owner: he cannot move it out to himself.
        bob = actor_of(reload(session, people["bob"]))
        with pytest.raises(Forbidden):
            service.transfer_repository(session, bob, load(session, repo), "bob")
    with db.session() as session:
        record = load(session, repo)
        alice_actor = actor_of(reload(session, people["alice"]))
        with pytest.raises(Forbidden):
            service.transfer_repository(session, alice_actor, record, "dave")
        with pytest.raises(ValidationFailed):
            service.transfer_repository(session, alice_actor, record, "nobody-here")
        with pytest.raises(ValidationFailed):
            service.transfer_repository(session, alice_actor, record, "acme")
        service.transfer_repository(session, alice_actor, record, "alice")
    with db.session() as session:
        located = service.locate(session, "alice", "tool2")
        assert located is not None and not located.redirected
        assert service.locate(session, "acme", "tool2") is not None


def test_transfer_refuses_a_taken_name_and_non_admins(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], "same")
    new_repo(db, settings, people["bob"], "same")
    with db.session() as session:
        record = load(session, repo)
        alice = reload(session, people["alice"])
        service.add_collaborator(
            session, actor_of(alice), record, reload(session, people["bob"]), Permission.WRITE
        )
    with db.session() as session:
        bob = actor_of(reload(session, people["bob"]))
        with pytest.raises(Forbidden):
            service.transfer_repository(session, bob, load(session, repo), "bob", "other")


def test_transfer_of_internal_repository_to_a_user_makes_it_private(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    with db.session() as session:
        accounts.create_organization(session, reload(session, people["alice"]), "acme")
    with db.session() as session:
        org = accounts.get_organization(session, "acme")
        assert org is not None
        alice = actor_of(reload(session, people["alice"]))
        repo = service.create_repository(
            session, settings, alice, org, "inner", visibility=Visibility.INTERNAL
        )
        service.transfer_repository(session, alice, repo, "alice")
        assert repo.visibility == Visibility.PRIVATE


# Delete ----------------------------------------------------------------------------------------


def test_delete_removes_record_and_directory_after_commit(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], auto_init=True)
    path = store.repository_path(settings, repo.id)
    with db.session() as session:
        bob = actor_of(reload(session, people["bob"]))
        with pytest.raises(Forbidden):
            service.delete_repository(session, settings, bob, load(session, repo))
        token = actor_of(reload(session, people["alice"]), ["repo"])
        with pytest.raises(Forbidden):
            service.delete_repository(session, settings, token, load(session, repo))
    # A deletion whose transaction rolls back keeps the directory.
    with pytest.raises(RuntimeError), db.session() as session:
        alice = actor_of(reload(session, people["alice"]))
        service.delete_repository(session, settings, alice, load(session, repo))
        raise RuntimeError("rolled back")
    assert path.is_dir()
    with db.session() as session:
        alice = actor_of(reload(session, people["alice"]), ["repo", "delete_repo"])
        service.delete_repository(session, settings, alice, load(session, repo))
        assert path.is_dir()
    assert not path.exists()
    with db.session() as session:
        assert service.locate(session, "alice", "project") is None


# Collaborators ---------------------------------------------------------------------------------


def test_collaborators_add_change_list_and_remove(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    repo = new_repo(db, settings, people["alice"], visibility=Visibility.PRIVATE)
    with db.session() as session:
        record = load(session, repo)
        alice = reload(session, people["alice"])
        bob, carol = reload(session, people["bob"]), reload(session, people["carol"])
        owner = actor_of(alice)
        _, created = service.add_collaborator(session, owner, record, bob, Permission.READ)
        assert created
        _, created = service.add_collaborator(session, owner, record, bob, Permission.WRITE)
        assert not created
        with pytest.raises(ValidationFailed):
            service.add_collaborator(session, owner, record, alice, Permission.WRITE)
        with pytest.raises(NotFound):
            service.add_collaborator(session, actor_of(carol), record, carol, Permission.ADMIN)
        with pytest.raises(Forbidden):
            service.add_collaborator(session, actor_of(bob), record, carol, Permission.READ)
        listed = service.list_collaborators(session, owner, record)
        assert [(user.username, level) for user, level in listed] == [
            ("alice", Permission.ADMIN),
            ("bob", Permission.WRITE),
        ]
        assert service.is_collaborator(session, owner, record, bob)
        assert not service.is_collaborator(session, owner, record, carol)
        assert service.collaborator_permission(session, owner, record, carol) is None
        assert [
            user.username
            for user, _ in service.list_collaborators(
                session, actor_of(bob), record, "all", Permission.ADMIN
            )
        ] == ["alice"]
        with pytest.raises(NotFound):
            service.list_collaborators(session, actor_of(carol), record)
    with db.session() as session:
        record = load(session, repo)
        bob = reload(session, people["bob"])
        # A collaborator may leave on their own.
        service.remove_collaborator(session, actor_of(bob), record, bob)
        assert authz.effective_permission(session, actor_of(bob), record) is None


def test_org_members_and_teams_are_collaborators(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    with db.session() as session:
        alice = reload(session, people["alice"])
        org = accounts.create_organization(session, alice, "acme")
        accounts.add_org_member(session, org, reload(session, people["bob"]))
        accounts.add_org_member(session, org, reload(session, people["carol"]))
        team = accounts.create_team(session, org, "Core")
        accounts.add_team_member(session, team, reload(session, people["carol"]))
    with db.session() as session:
        org = accounts.get_organization(session, "acme")
        assert org is not None
        alice = actor_of(reload(session, people["alice"]))
        repo = service.create_repository(
            session, settings, alice, org, "app", visibility=Visibility.PRIVATE
        )
        team = accounts.get_team(session, org, "core")
        assert team is not None
        service.set_team_permission(session, alice, team, repo, Permission.MAINTAIN)
        service.add_collaborator(
            session, alice, repo, reload(session, people["dave"]), Permission.TRIAGE
        )
        listed = {
            user.username: level for user, level in service.list_collaborators(session, alice, repo)
        }
        assert listed == {
            "alice": Permission.ADMIN,
            "bob": Permission.READ,
            "carol": Permission.MAINTAIN,
            "dave": Permission.TRIAGE,
        }
        outside = service.list_collaborators(session, alice, repo, "outside")
        assert [user.username for user, _ in outside] == ["dave"]
        repos, total = service.team_repositories(session, alice, team, Page())
        assert total == 1 and repos[0][1] == Permission.MAINTAIN


# Listing ---------------------------------------------------------------------------------------


def test_readable_condition_agrees_with_authorize(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    """The SQL condition the lists page with is authorize()'s READ decision, row by row."""
    with db.session() as session:
        accounts.create_user(
            session, "siteadmin", "siteadmin@example.com", None, is_site_admin=True
        )
    with db.session() as session:
        alice = reload(session, people["alice"])
        org = accounts.create_organization(session, alice, "acme")
        accounts.add_org_member(session, org, reload(session, people["bob"]))
        accounts.put_org_membership(session, org, reload(session, people["dave"]), OrgRole.OWNER)
        team = accounts.create_team(session, org, "Team")
        accounts.add_team_member(session, team, reload(session, people["bob"]))
    with db.session() as session:
        alice = reload(session, people["alice"])
        org = accounts.get_organization(session, "acme")
        assert org is not None
        created = []
        for owner in (alice, org):
            for visibility in Visibility:
                if visibility == Visibility.INTERNAL and owner is alice:
                    continue
                created.append(
                    service.create_repository(
                        session,
                        settings,
                        actor_of(alice),
                        owner,
                        f"r-{visibility.value}",
                        visibility=visibility,
                    )
                )
        service.add_collaborator(
            session,
            actor_of(alice),
            created[1],
            reload(session, people["carol"]),
            Permission.READ,
        )
        team_row = accounts.get_team(session, org, "team")
        assert team_row is not None
        service.set_team_permission(
            session, actor_of(alice), team_row, created[3], Permission.WRITE
        )
    with db.session() as session:
        users = [reload(session, user) for user in people.values()]
        root = accounts.get_user(session, "siteadmin")
        assert root is not None
        actors = [Actor.anonymous(), actor_of(root)]
        for user in users:
            actors += [actor_of(user), actor_of(user, ["read:user"]), actor_of(user, ["repo"])]
        actors.append(Actor(user=None, method="deploy_key", deploy_key_repository_id=created[1].id))
        everything = list(session.query(Repository))
        for actor in actors:
            listed = {
                repo.id
                for repo in session.query(Repository).filter(service.readable_condition(actor))
            }
            expected = {
                repo.id
                for repo in everything
                if authz.effective_permission(session, actor, repo) is not None
            }
            assert listed == expected, (actor.user, actor.scopes)


def test_list_for_actor_filters_and_sorts(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    with db.session() as session:
        alice = reload(session, people["alice"])
        bob = reload(session, people["bob"])
        org = accounts.create_organization(session, bob, "bobs-org")
        accounts.add_org_member(session, org, alice)
    new_repo(db, settings, people["alice"], "zeta")
    new_repo(db, settings, people["alice"], "alpha", visibility=Visibility.PRIVATE)
    shared = new_repo(db, settings, people["bob"], "shared", visibility=Visibility.PRIVATE)
    new_repo(db, settings, people["bob"], "not-shared", visibility=Visibility.PUBLIC)
    with db.session() as session:
        org = accounts.get_organization(session, "bobs-org")
        assert org is not None
        bob = actor_of(reload(session, people["bob"]))
        service.create_repository(session, settings, bob, org, "org-private", visibility="private")
        service.add_collaborator(
            session, bob, load(session, shared), reload(session, people["alice"]), Permission.WRITE
        )
    with db.session() as session:
        alice = actor_of(reload(session, people["alice"]))

        def names(**kwargs: object) -> list[str]:
            repos, _ = service.list_for_actor(session, alice, Page(), **kwargs)  # type: ignore[arg-type]
            return [repo.full_name for repo in repos]

        assert names() == ["alice/alpha", "alice/zeta", "bob/shared", "bobs-org/org-private"]
        assert names(affiliation="owner") == ["alice/alpha", "alice/zeta"]
        assert names(affiliation="collaborator") == ["bob/shared"]
        assert names(affiliation="organization_member") == ["bobs-org/org-private"]
        assert names(visibility="public") == ["alice/zeta"]
        assert names(repo_type="member") == ["bob/shared", "bobs-org/org-private"]
        assert names(repo_type="private", sort="full_name", direction="desc") == [
            "bobs-org/org-private",
            "bob/shared",
            "alice/alpha",
        ]
        assert len(names(sort="created")) == 4
        with pytest.raises(ValidationFailed):
            names(repo_type="owner", visibility="public")
        with pytest.raises(ValidationFailed):
            names(affiliation="owner,everyone")
        # A token without `repo` sees public repositories only.
        scoped = actor_of(reload(session, people["alice"]), ["read:user"])
        repos, total = service.list_for_actor(session, scoped, Page())
        assert [repo.full_name for repo in repos] == ["alice/zeta"] and total == 1
        # Paging.
        first, total = service.list_for_actor(session, alice, Page(number=1, per_page=3))
        second, _ = service.list_for_actor(session, alice, Page(number=2, per_page=3))
        assert total == 4 and len(first) == 3 and len(second) == 1


def test_list_for_owner_shows_strangers_public_repositories_only(
    db: Database, settings: Settings, people: dict[str, User]
) -> None:
    new_repo(db, settings, people["alice"], "open")
    secret = new_repo(db, settings, people["alice"], "secret", visibility=Visibility.PRIVATE)
    with db.session() as session:
        alice = reload(session, people["alice"])
        service.add_collaborator(
            session, actor_of(alice), load(session, secret), reload(session, people["bob"])
        )
    with db.session() as session:
        alice = reload(session, people["alice"])

        def names(actor: Actor) -> list[str]:
            repos, _ = service.list_for_owner(session, actor, alice, Page())
            return [repo.name for repo in repos]

        assert names(Actor.anonymous()) == ["open"]
        assert names(actor_of(reload(session, people["carol"]))) == ["open"]
        assert names(actor_of(reload(session, people["bob"]))) == ["open", "secret"]
        assert names(actor_of(alice)) == ["open", "secret"]


# The demo dataset ------------------------------------------------------------------------------


def test_admin_seed_builds_the_demo_dataset_once(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from opencodehub import cli, config

    monkeypatch.setenv("OCH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("OCH_DATABASE_URL", db.url)
    monkeypatch.setenv("OCH_SECRET_KEY", "seed-secret")
    monkeypatch.setenv("OCH_CONFIG_FILE", str(settings.data_dir / "absent.toml"))
    config.get_settings.cache_clear()
    try:
        runner = CliRunner()
        first = runner.invoke(cli.app, ["admin", "seed", "--password", "demo-password"])
        assert first.exit_code == 0, first.output
        again = runner.invoke(cli.app, ["admin", "seed"])
        assert again.exit_code == 1
    finally:
        config.get_settings.cache_clear()
    with db.session() as session:
        ada = accounts.get_user(session, "ada")
        assert ada is not None and ada.is_site_admin
        names = {
            repo.full_name
            for repo in service.list_for_actor(session, actor_of(ada), Page(per_page=100))[0]
        }
        assert {"ada/hello-world", "ada/notes", "demo-org/website", "demo-org/infra"} <= names
        grace = accounts.get_user(session, "grace")
        assert grace is not None
        infra = service.get_for(session, actor_of(grace), "demo-org", "infra")
        assert authz.effective_permission(session, actor_of(grace), infra) == Permission.MAINTAIN
        hello = service.get_for(session, Actor.anonymous(), "ada", "hello-world")
        assert hello.topic_list == ["demo", "python"] and not hello.is_empty
        assert accounts.authenticate_password(session, "linus", "demo-password") is not None
