"""The runner's credentials and labels, kept in a JSON file readable only by its owner."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

from opencodehub.runner.executors.base import ExecutorOptions

LOCAL_CONFIG = Path(".runner")
USER_CONFIG = Path("~/.config/opencodehub/runner.json")
DEFAULT_EXECUTOR = "host"


def default_config_path() -> Path:
    """`.runner` in the working directory when there is one, else the user's config file."""
    if LOCAL_CONFIG.exists():
        return LOCAL_CONFIG
    return USER_CONFIG.expanduser()


def parse_label(spec: str) -> tuple[str, str]:
    """`ubuntu-latest:docker://node:20` -> (`ubuntu-latest`, `docker://node:20`); a label
    without an executor runs on the host."""
    name, sep, executor = spec.strip().partition(":")
    return name.strip().lower(), (executor.strip() if sep else DEFAULT_EXECUTOR)


class RunnerConfig(BaseModel):
    url: str
    id: int
    name: str
    secret: str
    # Label specs as given at registration: `name:executor`.
    labels: list[str] = Field(default_factory=list)
    # Lets `container:`/`services:` `volumes` mount paths of the runner's host (`/srv:/data`).
    # Off by default: a job could then read or change the host's files; set it in the file.
    allow_host_mounts: bool = False
    # How many images built for Dockerfile actions to keep (the most recently used); older
    # ones no job uses are removed after a job.
    action_images_keep: int = Field(default=20, ge=0)

    def executor_options(
        self, docker_host: str | None = None, action_images_keep: int | None = None
    ) -> ExecutorOptions:
        return ExecutorOptions(
            docker_host=docker_host,
            allow_host_mounts=self.allow_host_mounts,
            action_images_keep=(
                self.action_images_keep if action_images_keep is None else action_images_keep
            ),
        )

    def label_names(self) -> list[str]:
        return [parse_label(spec)[0] for spec in self.labels]

    def executor_for(self, job_labels: list[str]) -> str:
        """The executor of the first of the runner's labels the job asked for."""
        wanted = {label.strip().lower() for label in job_labels}
        for spec in self.labels:
            name, executor = parse_label(spec)
            if name in wanted:
                return executor
        return parse_label(self.labels[0])[1] if self.labels else DEFAULT_EXECUTOR

    def save(self, path: Path) -> None:
        """Write atomically with mode 0600: the file holds the runner's secret."""
        path = path.expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.model_dump_json(indent=2))
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> RunnerConfig:
        return cls.model_validate(json.loads(path.expanduser().read_text()))
