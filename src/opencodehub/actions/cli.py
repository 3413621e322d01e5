"""`opencodehub actions …`: run workflows locally, without a server."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Work with Actions workflows.", no_args_is_help=True)


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} must be NAME=VALUE, got '{item}'")
        key, _, value = item.partition("=")
        out[key] = value
    return out


@app.command("run")
def run(
    workflow: Annotated[
        str | None, typer.Argument(help="Workflow file (default: all in .github/workflows).")
    ] = None,
    event: Annotated[str, typer.Option("--event", "-e", help="Event name.")] = "push",
    job: Annotated[str | None, typer.Option("--job", "-j", help="Run only this job.")] = None,
    executor: Annotated[
        str, typer.Option("--executor", help="host, bwrap or docker://IMAGE.")
    ] = "host",
    directory: Annotated[
        Path, typer.Option("--directory", "-C", help="The checkout to run in.")
    ] = Path("."),
    secret: Annotated[list[str] | None, typer.Option("--secret", "-s")] = None,
    var: Annotated[list[str] | None, typer.Option("--var")] = None,
    input_: Annotated[list[str] | None, typer.Option("--input", "-i")] = None,
    event_path: Annotated[
        Path | None, typer.Option("--event-path", help="JSON file with the event payload.")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write job and step results as JSON here.")
    ] = None,
    no_network: Annotated[
        bool, typer.Option("--no-network", help="Sandboxed executors: no network.")
    ] = False,
) -> None:
    """Run a workflow from this checkout, jobs in `needs` order; exit 1 if a job fails."""
    from opencodehub.actions.localrun import LocalRunError, dump_records, find_workflows
    from opencodehub.actions.localrun import run_workflow as run_local
    from opencodehub.actions.workflow import WorkflowError
    from opencodehub.runner.executors.base import ExecutorError, ExecutorOptions

    root = directory.resolve()
    payload = {}
    if event_path:
        try:
            payload = json.loads(event_path.read_text())
        except (OSError, ValueError) as exc:
            typer.echo(f"error: cannot read {event_path}: {exc}", err=True)
            raise typer.Exit(2) from None
    records = []
    try:
        for path in find_workflows(root, workflow):
            from opencodehub.actions.workflow import parse_workflow

            wf = parse_workflow(str(path), path.read_text(encoding="utf-8"))
            if workflow is None and not wf.triggered_by(event):
                continue
            records.extend(
                run_local(
                    path,
                    root=root,
                    event=event,
                    only_job=job,
                    executor=executor,
                    secrets=_pairs(secret, "--secret"),
                    variables=_pairs(var, "--var"),
                    inputs=_pairs(input_, "--input"),
                    payload=payload,
                    options=ExecutorOptions(allow_network=not no_network),
                )
            )
    except WorkflowError as exc:
        for issue in exc.errors:
            typer.echo(str(issue), err=True)
        raise typer.Exit(2) from None
    except (LocalRunError, ExecutorError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out:
        json_out.write_text(dump_records(records))
    failed = [r for r in records if r.result in ("failure", "cancelled") and not r.allowed_failure]
    for r in records:
        sys.stdout.write(f"Job {r.name}: {r.result}\n")
    if failed:
        raise typer.Exit(1)
