"""`opencodehub admin auth-source …`: configure external sign-in providers."""

from __future__ import annotations

from typing import Annotated

import typer

from opencodehub.core.terminal import console, fail, table

app = typer.Typer(help="Configure sign-in with external providers.", no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Option(help="Shown on the sign-in button, e.g. 'Company SSO'.")],
    kind: Annotated[str, typer.Option(help="github, gitlab or oidc.")],
    client_id: Annotated[str, typer.Option(help="The OAuth client id.")],
    client_secret: Annotated[
        str,
        typer.Option(
            help="The OAuth client secret (stored encrypted).", envvar="OCH_SSO_CLIENT_SECRET"
        ),
    ],
    slug: Annotated[str, typer.Option(help="In /login/sso/{slug}; derived from the name.")] = "",
    discovery_url: Annotated[str, typer.Option(help="OIDC discovery document URL.")] = "",
    base_url: Annotated[str, typer.Option(help="GitHub/GitLab base URL (self-hosted).")] = "",
    api_url: Annotated[str, typer.Option(help="GitHub API URL (GitHub Enterprise).")] = "",
    scopes: Annotated[str, typer.Option(help="Space-separated scopes; default per kind.")] = "",
    allowed_domains: Annotated[
        str, typer.Option(help="Comma-separated email domains allowed to sign in.")
    ] = "",
    required_group: Annotated[
        str, typer.Option(help="GitHub organization / GitLab group required to sign in.")
    ] = "",
    org_mapping: Annotated[
        str, typer.Option(help="Comma-separated provider-group=organization pairs to auto-join.")
    ] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
) -> None:
    """Add a sign-in source."""
    from opencodehub.accounts.sso import service as sso
    from opencodehub.cli import _database
    from opencodehub.config import get_settings
    from opencodehub.core.errors import ValidationFailed

    settings = get_settings()
    database = _database(settings)
    try:
        with database.session() as session:
            source = sso.create_source(
                session,
                settings.secret,
                name=name,
                slug=slug,
                kind=kind,
                client_id=client_id,
                client_secret=client_secret,
                discovery_url=discovery_url,
                base_url=base_url,
                api_url=api_url,
                scopes=scopes,
                allowed_domains=allowed_domains,
                required_group=required_group,
                org_mapping=sso.parse_mapping(org_mapping),
                enabled=not disabled,
            )
            console().print(
                f"added sign-in source {source.name} (id {source.id}, /login/sso/{source.slug}); "
                f"callback URL {sso.redirect_uri(settings, source)}"
            )
    except ValidationFailed as exc:
        raise fail(exc.describe()) from None
    finally:
        database.dispose()


@app.command("list")
def list_sources() -> None:
    """List sign-in sources."""
    from opencodehub.accounts.sso import service as sso
    from opencodehub.cli import _database
    from opencodehub.config import get_settings

    database = _database(get_settings())
    listing = table("id", "slug", "name", "kind", "enabled", "client id", "restrictions")
    try:
        with database.session() as session:
            for source in sso.list_sources(session):
                restrictions = ", ".join(
                    part for part in (source.allowed_domains, source.required_group) if part
                )
                listing.add_row(
                    str(source.id),
                    source.slug,
                    source.name,
                    source.kind.value,
                    "yes" if source.enabled else "no",
                    source.client_id,
                    restrictions,
                )
    finally:
        database.dispose()
    console().print(listing)


@app.command("remove")
def remove(
    source: Annotated[str, typer.Argument(help="The source's slug or id.")],
) -> None:
    """Remove a sign-in source; the accounts linked through it are unlinked."""
    from opencodehub.accounts.sso import service as sso
    from opencodehub.cli import _database
    from opencodehub.config import get_settings
    from opencodehub.core.errors import NotFound

    database = _database(get_settings())
    try:
        with database.session() as session:
            found = sso.get_source(session, int(source) if source.isdigit() else source)
            name = found.name
            sso.delete_source(session, found)
    except NotFound:
        raise fail(f"no sign-in source {source!r}") from None
    finally:
        database.dispose()
    console().print(f"removed sign-in source {name}")
