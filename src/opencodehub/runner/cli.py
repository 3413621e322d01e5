"""`opencodehub runner …`: register this machine as a runner and run jobs."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run CI jobs for an OpenCodeHub server.", no_args_is_help=True)
