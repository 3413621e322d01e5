"""What the server sends a runner for one job, and what the runner sends back.

Plain pydantic models, JSON-serializable both ways; nothing here touches the server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

JobConclusion = Literal["success", "failure", "cancelled", "skipped"]
StepOutcome = Literal["success", "failure", "cancelled", "skipped"]


class JobContexts(BaseModel):
    """Contexts the server computed for the job; the runner adds env, job, steps and runner."""

    github: dict[str, Any] = Field(default_factory=dict)
    vars: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    matrix: dict[str, Any] = Field(default_factory=dict)
    strategy: dict[str, Any] = Field(default_factory=dict)
    needs: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)


class JobSpec(BaseModel):
    job_id: int
    run_id: int
    run_number: int = 1
    run_attempt: int = 1
    workflow_name: str = ""
    workflow_path: str = ""
    job_key: str
    job_name: str = ""
    # The job's definition exactly as in the workflow (steps, env, defaults, container,
    # services, timeout-minutes, continue-on-error, outputs, runs-on); the runner evaluates
    # its expressions.
    job: dict[str, Any] = Field(default_factory=dict)
    workflow_env: dict[str, Any] = Field(default_factory=dict)
    workflow_defaults: dict[str, Any] = Field(default_factory=dict)
    contexts: JobContexts = Field(default_factory=JobContexts)
    server_url: str = ""
    api_url: str = ""
    token: str = ""
    repository: str = ""
    sha: str = ""
    ref: str = ""
    event_name: str = "push"
    event_payload: dict[str, Any] = Field(default_factory=dict)
    actor: str = ""
    runner_name: str = ""


class StepResult(BaseModel):
    index: int
    name: str
    outcome: StepOutcome
    conclusion: StepOutcome
    outputs: dict[str, str] = Field(default_factory=dict)


class JobResult(BaseModel):
    result: JobConclusion
    outputs: dict[str, str] = Field(default_factory=dict)
    steps: list[StepResult] = Field(default_factory=list)
    summary: str = ""  # the steps' GITHUB_STEP_SUMMARY markdown, masked
