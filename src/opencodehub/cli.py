"""The `opencodehub` command: serve, ssh, worker, runner, migrate, admin, config, doctor."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Annotated

import typer

from opencodehub.accounts.jwt import cli as jwt_cli
from opencodehub.accounts.sso.cli import app as auth_source_app
from opencodehub.actions.admin_cli import runner_token
from opencodehub.actions.cli import app as actions_app
from opencodehub.config import Settings, get_settings
from opencodehub.core.terminal import console, fail, table
from opencodehub.runner.cli import app as runner_app

if TYPE_CHECKING:
    from opencodehub.db.engine import Database

app = typer.Typer(
    help="OpenCodeHub: a self-hosted git forge.", no_args_is_help=True, add_completion=False
)
admin_app = typer.Typer(help="Administer users and tokens.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(config_app, name="config")
app.add_typer(runner_app, name="runner")
app.add_typer(actions_app, name="actions")
admin_app.add_typer(auth_source_app, name="auth-source")
admin_app.command("jwt-rotate")(jwt_cli.jwt_rotate)
admin_app.command("runner-token")(runner_token)


def _database(settings: Settings) -> Database:
    # Imported here so that `--help` does not pay for SQLAlchemy and the drivers.
    from opencodehub.db.engine import Database

    return Database(settings.effective_database_url)


@app.command()
def migrate() -> None:
    """Bring the database schema to the latest migration."""
    from opencodehub.db import migrate as migrations

    settings = get_settings()
    database = _database(settings)
    migrations.upgrade(database)
    console().print(
        f"database at head: {', '.join(sorted(migrations.current_revisions(database)))}"
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (OCH_HTTP_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (OCH_HTTP_PORT).")] = None,
    no_ssh: Annotated[bool, typer.Option("--no-ssh", help="Do not start the SSH server.")] = False,
    skip_migrate: Annotated[
        bool, typer.Option("--skip-migrate", help="Do not migrate the database first.")
    ] = False,
) -> None:
    """Run the app (web UI, REST API, git over HTTP) and, in embedded mode, the SSH server."""
    from opencodehub.serve import run_event_loop, run_server

    settings = get_settings()
    overrides = {}
    if host is not None:
        overrides["http_host"] = host
    if port is not None:
        overrides["http_port"] = port
    if no_ssh:
        overrides["ssh_enabled"] = False
    if overrides:
        settings = settings.model_copy(update=overrides)
    if settings.workers > 1:
        from opencodehub.serve import run_multiprocess

        run_multiprocess(settings, migrate=not skip_migrate)
        return
    run_event_loop(run_server(settings, migrate=not skip_migrate))


@app.command()
def worker(
    job: Annotated[
        list[str] | None, typer.Option("--job", help="Run only these jobs (repeatable).")
    ] = None,
) -> None:
    """Run the background jobs: CI scheduling, merge checks, indexing, clean-up."""
    from opencodehub.core.background import WorkerContext, registered_jobs, run_jobs
    from opencodehub.core.events import build_event_bus
    from opencodehub.core.logging import configure_logging
    from opencodehub.serve import trim_memory_forever, tune_memory

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    unknown = sorted(set(job or []) - set(registered_jobs()))
    if unknown:
        raise fail(f"unknown background jobs: {', '.join(unknown)}")
    tune_memory()
    database = _database(settings)
    events = build_event_bus(settings.redis_url)

    async def work() -> None:
        trimmer = asyncio.create_task(trim_memory_forever())
        try:
            await run_jobs(WorkerContext(settings, database, events), job or None)
        finally:
            trimmer.cancel()

    try:
        asyncio.run(work())
    except KeyboardInterrupt:
        pass
    finally:
        events.close()
        database.dispose()


@app.command()
def ssh() -> None:
    """Run the SSH server alone (git over SSH on OCH_SSH_PORT)."""
    from opencodehub.serve import run_ssh_only

    asyncio.run(run_ssh_only(get_settings()))


@app.command()
def doctor() -> None:
    """Check git, the database, Redis and storage, and print a table."""
    from opencodehub.doctor import run_checks

    checks = run_checks(get_settings())
    listing = table("check", "status", "detail")
    for check in checks:
        listing.add_row(
            check.name, "[green]ok[/green]" if check.ok else "[red]FAIL[/red]", check.detail
        )
    console().print(listing)
    if not all(check.ok for check in checks):
        raise typer.Exit(code=1)


# admin ------------------------------------------------------------------------------------------


@admin_app.command("create-user")
def create_user(
    name: Annotated[str, typer.Argument(help="Username.")],
    email: Annotated[str, typer.Option(help="Primary email address.")],
    password: Annotated[str, typer.Option(help="Password (at least 8 characters).")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a site admin.")] = False,
) -> None:
    """Create a user account."""
    from opencodehub.accounts import service as accounts
    from opencodehub.core.errors import ValidationFailed

    database = _database(get_settings())
    try:
        with database.session() as session:
            user = accounts.create_user(
                session, name, email, password, is_site_admin=admin, email_verified=True
            )
            console().print(
                f"created user {user.username} (id {user.id}){' [admin]' if admin else ''}"
            )
    except ValidationFailed as exc:
        raise fail(exc.describe()) from None


@admin_app.command("create-token")
def create_token(
    name: Annotated[str, typer.Argument(help="Username the token belongs to.")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated scopes, e.g. repo,read:user.")
    ] = "repo,user",
    expires_days: Annotated[int | None, typer.Option(help="Days until it expires.")] = None,
    note: Annotated[str, typer.Option(help="What the token is for.")] = "created by admin CLI",
) -> None:
    """Create a personal access token and print only the token on stdout."""
    from opencodehub.accounts import service as accounts
    from opencodehub.core.errors import ValidationFailed

    database = _database(get_settings())
    try:
        with database.session() as session:
            user = accounts.get_user(session, name)
            if user is None:
                raise fail(f"no user named {name!r}")
            scope_list = [scope.strip() for scope in scopes.split(",") if scope.strip()]
            _, plaintext = accounts.create_token(session, user, note, scope_list, expires_days)
    except ValidationFailed as exc:
        raise fail(exc.describe()) from None
    typer.echo(plaintext)


@admin_app.command("list-users")
def list_users() -> None:
    """List user accounts."""
    from sqlalchemy import select

    from opencodehub.accounts.models import AccountKind, User

    database = _database(get_settings())
    listing = table("id", "username", "email", "admin", "active", "created")
    with database.session() as session:
        for user in session.scalars(
            select(User).where(User.kind == AccountKind.USER).order_by(User.id)
        ):
            listing.add_row(
                str(user.id),
                user.username,
                user.primary_email or "",
                "yes" if user.is_site_admin else "",
                "yes" if user.is_active else "no",
                user.created_at.strftime("%Y-%m-%d"),
            )
    console().print(listing)


@admin_app.command("seed")
def seed(
    password: Annotated[
        str, typer.Option(help="Password of every demo user (at least 8 characters).")
    ] = "opencodehub-demo",  # noqa: S107 - a demo dataset's documented, printed password
) -> None:
    """Create a demo dataset: three users, an organization with a team, five repositories."""
    from opencodehub.accounts import service as accounts
    from opencodehub.accounts.actor import Actor
    from opencodehub.accounts.models import Permission
    from opencodehub.core.errors import OCHError, ValidationFailed
    from opencodehub.repos import service as repos
    from opencodehub.repos.models import Visibility

    settings = get_settings()
    database = _database(settings)
    try:
        with database.session() as session:
            if accounts.get_account(session, "ada") is not None:
                raise fail("the demo dataset is already there (user 'ada' exists)")
            ada, linus, grace = (
                accounts.create_user(
                    session,
                    name,
                    f"{name}@example.com",
                    password,
                    is_site_admin=name == "ada",
                    email_verified=True,
                    full_name=full_name,
                )
                for name, full_name in (
                    ("ada", "Ada Lovelace"),
                    ("linus", "Linus Torvalds"),
                    ("grace", "Grace Hopper"),
                )
            )
            org = accounts.create_organization(session, ada, "demo-org", full_name="Demo Org")
            accounts.add_org_member(session, org, grace)
            team = accounts.create_team(session, org, "Core", description="The core team")
            accounts.add_team_member(session, team, grace, "maintainer")
            as_ada = Actor(user=ada, method="system")
            hello = repos.create_repository(
                session,
                settings,
                as_ada,
                ada,
                "hello-world",
                description="A first repository",
                auto_init=True,
                gitignore_template="Python",
                license_template="mit",
            )
            repos.update_repository(session, settings, as_ada, hello, topics=["demo", "python"])
            repos.add_collaborator(session, as_ada, hello, linus, Permission.WRITE)
            repos.create_repository(
                session,
                settings,
                as_ada,
                ada,
                "notes",
                description="Private notes",
                visibility=Visibility.PRIVATE,
                auto_init=True,
            )
            repos.create_repository(
                session,
                settings,
                Actor(user=linus, method="system"),
                linus,
                "kernel-toy",
                description="An empty repository to push to",
            )
            repos.create_repository(
                session,
                settings,
                as_ada,
                org,
                "website",
                description="The organization's web site",
                homepage="https://example.com",
                auto_init=True,
                gitignore_template="Node",
                license_template="apache-2.0",
            )
            infra = repos.create_repository(
                session,
                settings,
                as_ada,
                org,
                "infra",
                description="Deployment scripts",
                visibility=Visibility.PRIVATE,
                auto_init=True,
            )
            repos.set_team_permission(session, as_ada, team, infra, Permission.MAINTAIN)
    except ValidationFailed as exc:
        raise fail(exc.describe()) from None
    except OCHError as exc:
        raise fail(exc.message) from None
    console().print(
        "seeded users ada (site admin), linus, grace; organization demo-org with team core; "
        "repositories ada/hello-world, ada/notes, linus/kernel-toy, demo-org/website, "
        f"demo-org/infra. Every password is {password!r}."
    )


# config -----------------------------------------------------------------------------------------


@config_app.command("show")
def config_show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Print the effective settings, secrets masked."""
    values = get_settings().masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    listing = table("setting", "value")
    for key, value in sorted(values.items()):
        listing.add_row(f"OCH_{key.upper()}", str(value))
    console().print(listing)
