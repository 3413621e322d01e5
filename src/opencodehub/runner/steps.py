"""`run:` steps: GitHub's shell templates and script files."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

# GitHub's templates: https://docs.github.com/actions/reference/workflow-syntax-for-github-actions
SHELL_TEMPLATES: dict[str, tuple[str, str]] = {
    "bash": ("bash --noprofile --norc -eo pipefail {0}", ".sh"),
    "sh": ("sh -e {0}", ".sh"),
    "python": ("python {0}", ".py"),
    "pwsh": ("pwsh -command \". '{0}'\"", ".ps1"),
    "powershell": ("pwsh -command \". '{0}'\"", ".ps1"),
}


class ShellError(ValueError):
    pass


@dataclass
class ShellCommand:
    argv: list[str]
    extension: str
    script_prefix: str = ""
    script_suffix: str = ""


def resolve_shell(shell: str | None, which: Callable[[str], str | None]) -> ShellCommand:
    """The command line for a `run:` script; ``{0}`` is replaced by the script's path."""
    if not shell:
        # No shell given: bash if present (with -e only, as GitHub), else sh.
        if which("bash"):
            return ShellCommand(["bash", "-e", "{0}"], ".sh")
        return ShellCommand(["sh", "-e", "{0}"], ".sh")
    name = shell.strip()
    if name in SHELL_TEMPLATES:
        template, ext = SHELL_TEMPLATES[name]
        argv = shlex.split(template)
        program = argv[0]
        if name == "python" and not which("python"):
            if which("python3"):
                argv[0] = "python3"
            else:
                raise ShellError("shell 'python' is not available in this job's environment")
        elif not which(program):
            raise ShellError(f"shell '{name}' is not available in this job's environment")
        if name in ("pwsh", "powershell"):
            return ShellCommand(
                argv,
                ext,
                "$ErrorActionPreference = 'stop'\n",
                "\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) { exit $LASTEXITCODE }\n",
            )
        return ShellCommand(argv, ext)
    if "{0}" not in name:
        raise ShellError(
            f"invalid shell '{name}': a custom shell must contain '{{0}}' for the script path"
        )
    argv = shlex.split(name)
    if not which(argv[0]):
        raise ShellError(f"shell '{argv[0]}' is not available in this job's environment")
    return ShellCommand(argv, ".sh" if argv[0].endswith("sh") else "")


def command_line(shell: ShellCommand, script_path: str) -> list[str]:
    return [part.replace("{0}", script_path) for part in shell.argv]
