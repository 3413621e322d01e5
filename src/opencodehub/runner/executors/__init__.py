"""Where a job's processes run: on the host, in a bubblewrap sandbox, or in a container."""

from opencodehub.runner.executors.base import (
    Executor,
    ExecutorError,
    ExecutorOptions,
    JobEnvironment,
    build_executor,
)

__all__ = ["Executor", "ExecutorError", "ExecutorOptions", "JobEnvironment", "build_executor"]
