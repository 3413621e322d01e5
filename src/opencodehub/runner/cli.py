"""`opencodehub runner …`: register this machine as a runner and run jobs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from opencodehub.runner.config import RunnerConfig, default_config_path, parse_label

app = typer.Typer(help="Run CI jobs for an OpenCodeHub server.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Credentials file (default: ./.runner if present, else "
        "~/.config/opencodehub/runner.json).",
    ),
]


@app.command("register")
def register_command(
    url: Annotated[str, typer.Option(help="The server's base URL.")],
    token: Annotated[
        str, typer.Option(help="A registration token from the server's settings or API.")
    ],
    name: Annotated[str, typer.Option(help="This runner's name.")] = "",
    labels: Annotated[
        str,
        typer.Option(
            help="Comma-separated `label:executor`; executors: host, bwrap, docker://IMAGE."
        ),
    ] = "self-hosted:host",
    config: ConfigOption = None,
) -> None:
    """Register with a server and save the runner's credentials (mode 0600)."""
    specs = [label.strip() for label in labels.split(",") if label.strip()]
    for spec in specs:
        label, executor = parse_label(spec)
        if not label or not (
            executor in ("host", "bwrap", "docker") or executor.startswith("docker://")
        ):
            raise typer.BadParameter(f"{spec!r}: expected label:host|bwrap|docker://IMAGE")
    # The agent (and its HTTP client) is imported by the commands that use it: the server's
    # `opencodehub serve` loads this module for its command tree, not to run jobs.
    from opencodehub.runner.agent import RunnerError, register

    runner_name = name or os.uname().nodename
    try:
        registered = register(url, token, runner_name, specs)
    except (RunnerError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    path = (config or default_config_path()).expanduser()
    registered.save(path)
    typer.echo(f"Registered runner {registered.name} (id {registered.id}); credentials in {path}")


@app.command("run")
def run_command(
    config: ConfigOption = None,
    capacity: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once.")] = 1,
    workdir: Annotated[
        Path | None, typer.Option(help="Where job directories are made (default: temp).")
    ] = None,
    grace: Annotated[
        float, typer.Option(help="Seconds running jobs get to finish after SIGTERM.")
    ] = 300.0,
    docker_host: Annotated[
        str | None,
        typer.Option(envvar="DOCKER_HOST", help="Docker or Podman API for docker:// labels."),
    ] = None,
    keep_action_images: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Images built for Dockerfile actions to keep, the most recently used "
            "(default: the config file's action_images_keep, else 20).",
        ),
    ] = None,
    poll_wait: Annotated[float, typer.Option(hidden=True)] = 20.0,
) -> None:
    """Take jobs from the server and run them until stopped (SIGTERM or Ctrl-C)."""
    from opencodehub.runner.agent import Agent

    path = (config or default_config_path()).expanduser()
    try:
        loaded = RunnerConfig.load(path)
    except (OSError, ValueError) as exc:
        typer.echo(f"error: cannot read {path}: {exc}; run `opencodehub runner register`", err=True)
        raise typer.Exit(1) from exc
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
    agent = Agent(
        loaded,
        executor_options=loaded.executor_options(docker_host or None, keep_action_images),
        capacity=capacity,
        workdir=workdir,
        poll_wait=poll_wait,
        grace=grace,
        log=lambda line: typer.echo(line, err=True),
    )
    agent.install_signal_handlers()
    typer.echo(f"Runner {loaded.name} polling {loaded.url} (capacity {capacity})", err=True)
    agent.run()
