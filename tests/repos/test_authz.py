"""repos.authz: the one permission decision, for repositories, organizations and users."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.actor import Actor, expand_scopes
from opencodehub.accounts.models import OrgRole, Permission, User
from opencodehub.core.errors import Forbidden, NotFound
from opencodehub.repos.authz import authorize, can, effective_permission, org_role
from opencodehub.repos.models import Collaborator, Repository, TeamRepository, Visibility
from tests.conftest import PASSWORD


def user(session: Session, name: str, *, admin: bool = False) -> User:
    return accounts.create_user(session, name, f"{name}@example.com", PASSWORD, is_site_admin=admin)


def repo(session: Session, owner: User, name: str, visibility: Visibility) -> Repository:
    record = Repository(
        owner_id=owner.id, owner=owner, name=name, lower_name=name.lower(), visibility=visibility
    )
    session.add(record)
    session.flush()
    return record


def as_user(account: User | None) -> Actor:
    return Actor(user=account, method="password") if account else Actor.anonymous()


def with_token(account: User, *scopes: str) -> Actor:
    return Actor(user=account, method="token", scopes=expand_scopes(list(scopes)), token_id=1)


def permission(session: Session, actor: Actor, record: Repository) -> Permission | None:
    return effective_permission(session, actor, record)


# Repositories ----------------------------------------------------------------------------------


def test_personal_repositories(session: Session) -> None:
    alice, bob, carol = user(session, "alice"), user(session, "bob"), user(session, "carol")
    admin = user(session, "boss", admin=True)
    public = repo(session, alice, "pub", Visibility.PUBLIC)
    private = repo(session, alice, "priv", Visibility.PRIVATE)
    internal = repo(session, alice, "int", Visibility.INTERNAL)
    session.add(Collaborator(repository_id=private.id, user_id=bob.id, permission=Permission.WRITE))
    session.flush()

    assert permission(session, as_user(alice), private) == Permission.ADMIN
    assert permission(session, as_user(bob), private) == Permission.WRITE
    assert permission(session, as_user(carol), private) is None
    assert permission(session, as_user(None), private) is None
    assert permission(session, as_user(admin), private) == Permission.ADMIN
    assert permission(session, as_user(None), public) == Permission.READ
    assert permission(session, as_user(carol), public) == Permission.READ
    assert permission(session, as_user(carol), internal) == Permission.READ
    assert permission(session, as_user(None), internal) is None

    # Invisible is 404; visible but not allowed is 403.
    with pytest.raises(NotFound):
        authorize(session, as_user(carol), private, Permission.READ)
    with pytest.raises(Forbidden):
        authorize(session, as_user(carol), public, Permission.WRITE)
    with pytest.raises(Forbidden) as info:
        authorize(session, as_user(bob), private, Permission.ADMIN)
    assert info.value.message == "Must have admin rights to Repository."
    assert authorize(session, as_user(bob), private, "write") == Permission.WRITE
    assert can(session, as_user(bob), private, Permission.TRIAGE)
    assert not can(session, as_user(bob), private, Permission.MAINTAIN)


def test_disabled_users_keep_only_public_read(session: Session) -> None:
    alice, bob = user(session, "alice"), user(session, "bob")
    private = repo(session, alice, "priv", Visibility.PRIVATE)
    public = repo(session, alice, "pub", Visibility.PUBLIC)
    session.add(Collaborator(repository_id=private.id, user_id=bob.id, permission=Permission.ADMIN))
    bob.is_active = False
    alice.is_active = False
    session.flush()
    assert permission(session, as_user(bob), private) is None
    assert permission(session, as_user(alice), private) is None
    assert permission(session, as_user(alice), public) == Permission.READ


def test_token_scopes_narrow_repository_access(session: Session) -> None:
    alice = user(session, "alice")
    public = repo(session, alice, "pub", Visibility.PUBLIC)
    private = repo(session, alice, "priv", Visibility.PRIVATE)
    internal = repo(session, alice, "int", Visibility.INTERNAL)
    assert permission(session, with_token(alice, "repo"), private) == Permission.ADMIN
    assert permission(session, with_token(alice), private) is None
    assert permission(session, with_token(alice, "public_repo"), private) is None
    assert permission(session, with_token(alice, "public_repo"), internal) is None
    # Public data is readable with any token; writing needs public_repo or repo.
    assert permission(session, with_token(alice), public) == Permission.READ
    assert permission(session, with_token(alice, "user"), public) == Permission.READ
    assert permission(session, with_token(alice, "public_repo"), public) == Permission.ADMIN
    with pytest.raises(Forbidden):
        authorize(session, with_token(alice, "read:org"), public, Permission.WRITE)


def test_deploy_keys_reach_only_their_repository(session: Session) -> None:
    alice = user(session, "alice")
    one = repo(session, alice, "one", Visibility.PRIVATE)
    two = repo(session, alice, "two", Visibility.PRIVATE)
    public = repo(session, alice, "pub", Visibility.PUBLIC)
    reader = Actor(user=None, method="deploy_key", deploy_key_repository_id=one.id)
    writer = Actor(
        user=None,
        method="deploy_key",
        deploy_key_repository_id=one.id,
        deploy_key_read_only=False,
    )
    assert permission(session, reader, one) == Permission.READ
    assert permission(session, writer, one) == Permission.WRITE
    assert permission(session, reader, two) is None
    # A deploy key is not a general anonymous reader of other public repositories.
    assert permission(session, reader, public) is None
    with pytest.raises(Forbidden):
        authorize(session, reader, one, Permission.WRITE)
    with pytest.raises(NotFound):
        authorize(session, writer, two, Permission.READ)
    assert not reader.is_anonymous


def test_organization_repositories(session: Session) -> None:
    alice, bob, carol, dave = (user(session, name) for name in ("alice", "bob", "carol", "dave"))
    org = accounts.create_organization(session, alice, "acme")
    accounts.add_org_member(session, org, bob)
    accounts.add_org_member(session, org, carol)
    private = repo(session, org, "secret", Visibility.PRIVATE)
    team = accounts.create_team(session, org, "writers")
    accounts.add_team_member(session, team, carol)
    session.add(
        TeamRepository(team_id=team.id, repository_id=private.id, permission=Permission.MAINTAIN)
    )
    session.flush()
    assert org_role(session, org, alice) == OrgRole.OWNER
    assert org_role(session, org, dave) is None
    assert org_role(session, org, None) is None
    assert permission(session, as_user(alice), private) == Permission.ADMIN
    assert permission(session, as_user(bob), private) == Permission.READ
    assert permission(session, as_user(carol), private) == Permission.MAINTAIN
    assert permission(session, as_user(dave), private) is None
    # The strongest grant wins: a collaborator's write beats the members' read.
    session.add(Collaborator(repository_id=private.id, user_id=bob.id, permission=Permission.WRITE))
    session.flush()
    assert permission(session, as_user(bob), private) == Permission.WRITE


# Organizations ---------------------------------------------------------------------------------


def test_organization_actions(session: Session) -> None:
    alice, bob, carol = user(session, "alice"), user(session, "bob"), user(session, "carol")
    admin = user(session, "boss", admin=True)
    org = accounts.create_organization(session, alice, "acme")
    accounts.add_org_member(session, org, bob)
    for actor in (as_user(None), as_user(carol), as_user(bob)):
        authorize(session, actor, org, "read")
    authorize(session, as_user(bob), org, "member")
    authorize(session, as_user(admin), org, "member")
    with pytest.raises(NotFound):
        authorize(session, as_user(carol), org, "member")
    with pytest.raises(NotFound):
        authorize(session, as_user(None), org, "member")
    with pytest.raises(Forbidden):
        authorize(session, as_user(bob), org, "admin")
    with pytest.raises(Forbidden):
        authorize(session, as_user(carol), org, "admin")
    authorize(session, as_user(alice), org, "admin")
    authorize(session, as_user(admin), org, "admin")
    authorize(session, with_token(alice, "admin:org"), org, "admin")
    with pytest.raises(Forbidden):
        authorize(session, with_token(alice, "write:org", "repo"), org, "admin")
    with pytest.raises(ValueError):
        authorize(session, as_user(alice), org, "delete")


def test_site_admin_tokens_are_narrowed_by_scope_too(session: Session) -> None:
    """Was a bug: the site-admin shortcut came before the admin:org scope check."""
    admin = user(session, "boss", admin=True)
    org = accounts.create_organization(session, user(session, "alice"), "acme")
    with pytest.raises(Forbidden):
        authorize(session, with_token(admin, "repo"), org, "admin")
    authorize(session, with_token(admin, "admin:org"), org, "admin")


def test_disabled_organization_is_not_found(session: Session) -> None:
    alice = user(session, "alice")
    org = accounts.create_organization(session, alice, "acme")
    org.is_active = False
    session.flush()
    with pytest.raises(NotFound):
        authorize(session, as_user(alice), org, "read")


# Users -----------------------------------------------------------------------------------------


def test_user_actions(session: Session) -> None:
    alice, bob = user(session, "alice"), user(session, "bob")
    admin = user(session, "boss", admin=True)
    authorize(session, as_user(None), alice, "read")
    authorize(session, as_user(alice), alice, "admin")
    authorize(session, as_user(admin), alice, "admin")
    with pytest.raises(Forbidden):
        authorize(session, as_user(bob), alice, "admin")
    with pytest.raises(NotFound):
        authorize(session, as_user(None), alice, "admin")
    authorize(session, with_token(alice, "user"), alice, "admin")
    with pytest.raises(Forbidden):
        authorize(session, with_token(alice, "read:user"), alice, "admin")
    with pytest.raises(Forbidden):
        authorize(session, with_token(admin, "repo"), alice, "admin")
    bob.is_active = False
    session.flush()
    with pytest.raises(NotFound):
        authorize(session, as_user(alice), bob, "read")
    authorize(session, as_user(admin), bob, "read")
    with pytest.raises(ValueError):
        authorize(session, as_user(alice), alice, "write")


def test_unknown_resource_type_is_a_programming_error(session: Session) -> None:
    with pytest.raises(TypeError):
        authorize(session, as_user(None), object(), "read")  # type: ignore[arg-type]
