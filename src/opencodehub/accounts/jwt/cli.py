"""`opencodehub admin jwt-rotate`: start signing access tokens with a new key."""

from __future__ import annotations

import typer

from opencodehub.accounts.jwt import keys
from opencodehub.config import get_settings

app = typer.Typer(help="Manage the keys that sign JWT access tokens.", no_args_is_help=True)


@app.command("jwt-rotate")
def jwt_rotate() -> None:
    """Make a new signing key current. Tokens signed by the previous key stay valid until they
    expire (at most an hour); the previous key is deleted at a later rotation."""
    ring = keys.rotate(get_settings().data_dir)
    retired = ", ".join(sorted(ring.retired_at)) or "none"
    typer.echo(f"current key: {ring.current_kid}\nretired keys still verifying: {retired}")
