"""`opencodehub admin runner-token`: a runner registration token from the server's command line
(for the instance, an organization or a repository), printed alone on stdout."""

from __future__ import annotations

from typing import Annotated

import typer

from opencodehub.config import get_settings


def runner_token(
    repo: Annotated[str | None, typer.Option(help="owner/name: a repository's runner.")] = None,
    org: Annotated[str | None, typer.Option(help="An organization's runner.")] = None,
) -> None:
    """Create a runner registration token (valid one hour) and print it."""
    from opencodehub.accounts.actor import Actor
    from opencodehub.actions import runners
    from opencodehub.db.engine import Database
    from opencodehub.repos import service as repos

    if repo and org:
        raise typer.BadParameter("give --repo or --org, not both")
    database = Database(get_settings().effective_database_url)
    try:
        with database.session() as session:
            operator = Actor(user=None, method="system")
            repository = organization = None
            if repo:
                owner, _, name = repo.partition("/")
                located = repos.locate(session, owner, name)
                if located is None:
                    typer.echo(f"error: no repository {repo!r}", err=True)
                    raise typer.Exit(1)
                repository = located.repository
            elif org:
                organization = repos.get_account(session, org)
                if organization is None or not organization.is_organization:
                    typer.echo(f"error: no organization {org!r}", err=True)
                    raise typer.Exit(1)
            _row, token = runners.create_registration_token(
                session, operator, repository=repository, organization=organization
            )
    finally:
        database.dispose()
    typer.echo(token)


app = typer.Typer(help="Actions administration.", no_args_is_help=True)
app.command("runner-token")(runner_token)
