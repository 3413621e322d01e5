"""accounts.service: profiles, passwords, emails, keys, tokens, sessions, organizations, teams."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from opencodehub.accounts import service as accounts
from opencodehub.accounts.models import AccountKind, OrgRole, Permission, User
from opencodehub.config import Settings
from opencodehub.core.errors import NotFound, ValidationFailed
from opencodehub.repos import service as repos
from tests.conftest import PASSWORD


def new_user(session: Session, name: str = "alice") -> User:
    return accounts.create_user(session, name, f"{name.lower()}@example.com", PASSWORD)


def public_key(directory: Path, name: str = "id") -> str:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "c", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_suffix(".pub").read_text()


def field_of(info: pytest.ExceptionInfo[ValidationFailed]) -> str:
    return info.value.errors[0].field


# Profile and password --------------------------------------------------------------------------


def test_update_profile_changes_only_given_fields(session: Session) -> None:
    user = new_user(session)
    accounts.update_profile(session, user, full_name="  Alice Liddell ", bio="line1\nline2")
    accounts.update_profile(session, user, company="ACME", website="example.org")
    assert user.full_name == "Alice Liddell"
    assert user.bio == "line1\nline2"
    assert user.company == "ACME"
    assert user.website == "http://example.org"
    assert user.location == ""


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"full_name": "x" * 10_000}, "name"),
        ({"full_name": "nul\x00byte"}, "name"),
        ({"company": "bell\x07"}, "company"),
        ({"location": "two\nlines"}, "location"),
        ({"bio": "b" * 10_000}, "bio"),
        ({"website": "javascript:alert(1)"}, "blog"),
        ({"website": "ftp://example.org"}, "blog"),
        ({"public_email": "someone-else@example.com"}, "email"),
    ],
)
def test_update_profile_rejects_bad_values_and_writes_nothing(
    session: Session, changes: dict[str, str], field: str
) -> None:
    user = new_user(session)
    with pytest.raises(ValidationFailed) as info:
        accounts.update_profile(session, user, **{"company": "Kept", **changes})
    assert field_of(info) == field
    assert user.company == ""


def test_public_email_must_be_ones_own(session: Session) -> None:
    user = new_user(session)
    accounts.update_profile(session, user, public_email="ALICE@example.com")
    assert user.public_email == "ALICE@example.com"
    accounts.update_profile(session, user, public_email="")
    assert user.public_email == ""


def test_change_password(session: Session) -> None:
    user = new_user(session)
    with pytest.raises(ValidationFailed) as info:
        accounts.change_password(session, user, "wrong password", "new password 123")
    assert field_of(info) == "current_password"
    with pytest.raises(ValidationFailed):
        accounts.change_password(session, user, PASSWORD, "short")
    accounts.change_password(session, user, PASSWORD, "new password 123")
    assert accounts.authenticate_password(session, "alice", "new password 123") is user
    assert accounts.authenticate_password(session, "alice", PASSWORD) is None


# Emails ----------------------------------------------------------------------------------------


def test_emails_add_primary_remove(session: Session) -> None:
    user = new_user(session)
    first = user.emails[0]
    second = accounts.add_email(session, user, "Second@Example.com")
    assert not second.is_primary and not second.is_verified
    with pytest.raises(ValidationFailed):
        accounts.add_email(session, user, "second@example.COM")
    with pytest.raises(ValidationFailed):
        accounts.remove_email(session, user, first.id)
    accounts.set_primary_email(session, user, second.id)
    assert user.primary_email == "Second@Example.com"
    accounts.remove_email(session, user, first.id)
    assert [email.email for email in user.emails] == ["Second@Example.com"]
    with pytest.raises(ValidationFailed):
        accounts.remove_email(session, user, second.id)


def test_emails_of_others_are_not_found(session: Session) -> None:
    alice, bob = new_user(session), new_user(session, "bob")
    with pytest.raises(NotFound):
        accounts.remove_email(session, alice, bob.emails[0].id)
    with pytest.raises(NotFound):
        accounts.set_primary_email(session, alice, bob.emails[0].id)
    with pytest.raises(ValidationFailed):
        accounts.add_email(session, alice, "bob@example.com")


@pytest.mark.parametrize(
    "email", ["", "no-at-sign", "a@b", "nul\x00@example.com", "x" * 300 + "@example.com"]
)
def test_add_email_rejects_invalid(session: Session, email: str) -> None:
    with pytest.raises(ValidationFailed):
        accounts.add_email(session, new_user(session), email)


# SSH keys --------------------------------------------------------------------------------------


def test_ssh_keys_lifecycle(session: Session, tmp_path: Path) -> None:
    alice, bob = new_user(session), new_user(session, "bob")
    key = accounts.add_ssh_key(session, alice, "laptop", public_key(tmp_path))
    assert key.public_key.count(" ") == 1 and key.fingerprint.startswith("SHA256:")
    assert accounts.list_ssh_keys(session, alice) == [key]
    assert accounts.get_ssh_key(session, alice, key.id) is key
    assert accounts.find_ssh_key_by_fingerprint(session, key.fingerprint) is key
    with pytest.raises(NotFound):
        accounts.get_ssh_key(session, bob, key.id)
    with pytest.raises(NotFound):
        accounts.delete_ssh_key(session, bob, key.id)
    actor = accounts.actor_for_ssh_key(session, key)
    assert actor is not None and actor.user is alice and actor.method == "ssh_key"
    accounts.delete_ssh_key(session, alice, key.id)
    assert accounts.find_ssh_key_by_fingerprint(session, key.fingerprint) is None


def test_key_title_defaults_to_comment(session: Session, tmp_path: Path) -> None:
    key = accounts.add_ssh_key(session, new_user(session), "", public_key(tmp_path))
    assert key.title == "c"


def test_duplicate_key_is_refused_for_anyone(
    session: Session, tmp_path: Path, settings: Settings
) -> None:
    alice, bob = new_user(session), new_user(session, "bob")
    text = public_key(tmp_path)
    accounts.add_ssh_key(session, alice, "a", text)
    for owner in (alice, bob):
        with pytest.raises(ValidationFailed) as info:
            accounts.add_ssh_key(session, owner, "again", text)
        assert info.value.errors[0].code == "already_exists"
        assert info.value.errors[0].message == "key is already in use"
    repo = repos.create_repository(
        session, settings, accounts.Actor(user=alice, method="password"), alice, "project"
    )
    with pytest.raises(ValidationFailed):
        accounts.add_deploy_key(session, repo, "deploy", text)


def test_invalid_key_names_the_key_field(session: Session) -> None:
    with pytest.raises(ValidationFailed) as info:
        accounts.add_ssh_key(session, new_user(session), "x", "ssh-dss AAAA")
    assert field_of(info) == "key"
    assert "DSA" in info.value.errors[0].message


def test_deploy_keys(session: Session, tmp_path: Path, settings: Settings) -> None:
    alice = new_user(session)
    actor = accounts.Actor(user=alice, method="password")
    repo = repos.create_repository(session, settings, actor, alice, "one")
    other = repos.create_repository(session, settings, actor, alice, "two")
    key = accounts.add_deploy_key(session, repo, "ci", public_key(tmp_path))
    assert key.read_only and key.user_id is None
    writable = accounts.add_deploy_key(session, repo, "w", public_key(tmp_path, "w"), False)
    assert accounts.list_deploy_keys(session, repo) == [key, writable]
    assert accounts.list_deploy_keys(session, other) == []
    with pytest.raises(NotFound):
        accounts.get_deploy_key(session, other, key.id)
    deploy_actor = accounts.actor_for_ssh_key(session, writable)
    assert deploy_actor is not None and deploy_actor.user is None
    assert deploy_actor.deploy_key_repository_id == repo.id
    assert deploy_actor.deploy_key_read_only is False
    # A user's own key list never shows deploy keys.
    assert accounts.list_ssh_keys(session, alice) == []
    accounts.delete_deploy_key(session, repo, key.id)
    assert accounts.list_deploy_keys(session, repo) == [writable]


# Tokens and web sessions -----------------------------------------------------------------------


def test_tokens_list_and_revoke(session: Session) -> None:
    alice, bob = new_user(session), new_user(session, "bob")
    token, plaintext = accounts.create_token(session, alice, "ci", ["repo"])
    assert accounts.list_tokens(session, alice) == [token]
    with pytest.raises(NotFound):
        accounts.revoke_token(session, bob, token.id)
    accounts.revoke_token(session, alice, token.id)
    assert accounts.list_tokens(session, alice) == []
    assert accounts.authenticate_token(session, plaintext) is None
    with pytest.raises(NotFound):
        accounts.revoke_token(session, alice, token.id)


def test_web_sessions_list_and_revoke(session: Session) -> None:
    alice, bob = new_user(session), new_user(session, "bob")
    first, cookie = accounts.start_web_session(session, alice, max_age_days=1)
    second, _ = accounts.start_web_session(session, alice, max_age_days=1)
    third, _ = accounts.start_web_session(session, alice, max_age_days=1)
    accounts.start_web_session(session, bob, max_age_days=1)
    assert {record.id for record in accounts.list_web_sessions(session, alice)} == {
        first.id,
        second.id,
        third.id,
    }
    with pytest.raises(NotFound):
        accounts.revoke_web_session(session, bob, first.id)
    accounts.revoke_web_session(session, alice, third.id)
    assert accounts.revoke_all_web_sessions(session, alice, except_id=first.id) == 1
    assert [record.id for record in accounts.list_web_sessions(session, alice)] == [first.id]
    assert accounts.get_web_session(session, cookie) is first
    assert len(accounts.list_web_sessions(session, bob)) == 1


# Organizations ---------------------------------------------------------------------------------


def test_create_organization_shares_the_namespace(session: Session) -> None:
    alice = new_user(session)
    org = accounts.create_organization(session, alice, "Acme", full_name="Acme Inc.")
    assert org.kind == AccountKind.ORGANIZATION and org.password_hash is None
    assert accounts.get_organization(session, "ACME") is org
    assert accounts.get_organization(session, "alice") is None
    assert accounts.get_user(session, "acme") is None
    assert accounts.list_org_members(session, org) == [alice]
    assert accounts.list_user_orgs(session, alice) == [org]
    for taken in ("acme", "ALICE"):
        with pytest.raises(ValidationFailed) as info:
            accounts.create_organization(session, alice, taken)
        assert info.value.errors[0].code == "already_exists"
    with pytest.raises(ValidationFailed):
        accounts.create_user(session, "aCmE", "x@example.com", PASSWORD)


@pytest.mark.parametrize(
    "login",
    ["", "-acme", "acme-", "ac--me", "a" * 40, "\u0430cme", "ac me", "ac/me", "admin", "api"],
)
def test_create_organization_rejects_bad_names(session: Session, login: str) -> None:
    with pytest.raises(ValidationFailed) as info:
        accounts.create_organization(session, new_user(session), login)
    assert field_of(info) == "login"


def test_an_organization_cannot_create_or_join_organizations(session: Session) -> None:
    alice = new_user(session)
    org = accounts.create_organization(session, alice, "acme")
    with pytest.raises(ValidationFailed):
        accounts.create_organization(session, org, "nested")
    other = accounts.create_organization(session, alice, "other")
    with pytest.raises(ValidationFailed):
        accounts.add_org_member(session, org, other)


def test_org_membership_and_last_owner(session: Session) -> None:
    alice, bob, carol = (new_user(session, name) for name in ("alice", "bob", "carol"))
    org = accounts.create_organization(session, alice, "acme")
    accounts.add_org_member(session, org, bob)
    with pytest.raises(ValidationFailed):
        accounts.add_org_member(session, org, bob)
    assert accounts.list_org_members(session, org, OrgRole.MEMBER) == [bob]
    assert accounts.list_org_members(session, org, OrgRole.OWNER) == [alice]
    with pytest.raises(ValidationFailed):
        accounts.remove_org_member(session, org, alice)
    with pytest.raises(ValidationFailed):
        accounts.set_org_role(session, org, alice, OrgRole.MEMBER)
    with pytest.raises(NotFound):
        accounts.set_org_role(session, org, carol, OrgRole.OWNER)
    accounts.set_org_role(session, org, bob, OrgRole.OWNER)
    accounts.set_org_role(session, org, alice, OrgRole.MEMBER)
    accounts.put_org_membership(session, org, carol, OrgRole.MEMBER)
    accounts.put_org_membership(session, org, carol, OrgRole.OWNER)
    assert accounts.get_org_membership(session, org, carol).role == OrgRole.OWNER
    accounts.remove_org_member(session, org, alice)
    assert accounts.list_org_members(session, org) == [bob, carol]
    with pytest.raises(NotFound):
        accounts.remove_org_member(session, org, alice)


# Teams -----------------------------------------------------------------------------------------


def test_teams(session: Session) -> None:
    alice, bob, carol = (new_user(session, name) for name in ("alice", "bob", "carol"))
    org = accounts.create_organization(session, alice, "acme")
    other_org = accounts.create_organization(session, carol, "other")
    accounts.add_org_member(session, org, bob)
    team = accounts.create_team(
        session, org, "Core Devs!", description="the core", permission=Permission.WRITE
    )
    assert team.slug == "core-devs" and team.privacy == "closed"
    assert accounts.get_team(session, org, "CORE-DEVS") is team
    assert accounts.get_team(session, other_org, "core-devs") is None
    # The same slug in another organization is fine; in the same one it is not.
    accounts.create_team(session, other_org, "core devs")
    with pytest.raises(ValidationFailed) as info:
        accounts.create_team(session, org, "core_devs")
    assert info.value.errors[0].code == "already_exists"
    accounts.add_team_member(session, team, bob)
    accounts.add_team_member(session, team, alice, role="maintainer")
    assert accounts.list_team_members(session, team) == [alice, bob]
    assert accounts.list_team_members(session, team, "maintainer") == [alice]
    assert accounts.count_team_members(session, team) == 2
    with pytest.raises(ValidationFailed):
        accounts.add_team_member(session, team, carol)
    with pytest.raises(ValidationFailed):
        accounts.add_team_member(session, team, bob, role="owner")
    assert accounts.list_user_teams(session, org, bob) == [team]
    accounts.remove_team_member(session, team, alice)
    with pytest.raises(NotFound):
        accounts.remove_team_member(session, team, alice)
    # Leaving the organization leaves its teams.
    accounts.remove_org_member(session, org, bob)
    assert accounts.list_team_members(session, team) == []
    assert [t.slug for t in accounts.list_teams(session, org)] == ["core-devs"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "ßßß"}, "name"),
        ({"name": "x" * 10_000}, "name"),
        ({"name": "nul\x00"}, "name"),
        ({"name": "ok", "privacy": "public"}, "privacy"),
        ({"name": "ok", "permission": "superuser"}, "permission"),
        ({"name": "ok", "description": "d" * 10_000}, "description"),
    ],
)
def test_create_team_rejects_bad_input(
    session: Session, kwargs: dict[str, str], field: str
) -> None:
    org = accounts.create_organization(session, new_user(session), "acme")
    options = dict(kwargs)
    name = options.pop("name")
    with pytest.raises(ValidationFailed) as info:
        accounts.create_team(session, org, name, **options)  # type: ignore[arg-type]
    assert field_of(info) == field


def test_team_slug_never_lowers_look_alikes_into_ascii(session: Session) -> None:
    org = accounts.create_organization(session, new_user(session), "acme")
    keys = accounts.create_team(session, org, "Keys")
    kelvin = accounts.create_team(session, org, "\u212aeys")  # KELVIN SIGN, lower() is "k"
    assert (keys.slug, kelvin.slug) == ("keys", "eys")


def test_team_name_with_sql_metacharacters_is_just_text(session: Session) -> None:
    org = accounts.create_organization(session, new_user(session), "acme")
    team = accounts.create_team(session, org, "x'); DROP TABLE teams; --")
    assert team.slug == "x-drop-table-teams"
    assert accounts.get_team(session, org, team.slug) is team


@pytest.mark.parametrize(
    "probe", ["alice\x00", "\x00", "a" * 10_240, "' OR 1=1 --", "\u0430lice", "ALICE%00", "-x"]
)
def test_lookups_of_impossible_names_answer_none_on_every_engine(
    session: Session, probe: str
) -> None:
    """PostgreSQL refuses NUL in text parameters: such input must never reach the database."""
    alice = new_user(session)
    org = accounts.create_organization(session, alice, "acme")
    accounts.create_team(session, org, "core")
    assert accounts.get_account(session, probe) is None
    assert accounts.get_organization(session, probe) is None
    assert accounts.get_user_by_email(session, f"{probe}@example.com") is None
    assert accounts.get_team(session, org, probe) is None
    assert accounts.find_ssh_key_by_fingerprint(session, f"SHA256:{probe}") is None
    assert accounts.authenticate_password(session, probe, PASSWORD) is None
    assert accounts.authenticate_password(session, f"{probe}@example.com", PASSWORD) is None
