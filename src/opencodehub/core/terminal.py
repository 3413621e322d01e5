"""Output of the command-line tools: rich consoles and tables, imported on first use.

The `opencodehub` entry point also starts the server, which prints nothing through these;
importing the console library lazily keeps it (a few MB) out of the serving process."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


@functools.cache
def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def table(*columns: str, **options: Any) -> Table:
    from rich.table import Table

    return Table(*columns, **options)


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr; the caller raises the returned exit (status 1)."""
    console(stderr=True).print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)
