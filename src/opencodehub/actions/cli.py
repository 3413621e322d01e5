"""`opencodehub actions …`: run workflows locally, without a server."""

from __future__ import annotations

import typer

app = typer.Typer(help="Work with Actions workflows.", no_args_is_help=True)
