"""`opencodehub admin auth-source …`: configure external sign-in providers."""

from __future__ import annotations

import typer

app = typer.Typer(help="Configure sign-in with external providers.", no_args_is_help=True)
