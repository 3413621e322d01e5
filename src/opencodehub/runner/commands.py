"""Workflow commands in a step's output (``::name key=value::message``) and the GITHUB_* files."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_COMMAND = re.compile(r"^\s*::([A-Za-z-]+)(?:\s+([^:]*?))?::(.*)$", re.DOTALL)


def unescape_data(text: str) -> str:
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def unescape_property(text: str) -> str:
    return (
        text.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


@dataclass
class Command:
    name: str
    properties: dict[str, str] = field(default_factory=dict)
    message: str = ""


def parse_command(line: str) -> Command | None:
    m = _COMMAND.match(line)
    if not m:
        return None
    props: dict[str, str] = {}
    if m.group(2):
        for part in m.group(2).split(","):
            if "=" in part:
                key, _, value = part.partition("=")
                props[key.strip()] = unescape_property(value)
    return Command(m.group(1), props, unescape_data(m.group(3)))


class FileCommandError(ValueError):
    pass


def parse_key_value_file(path: Path) -> list[tuple[str, str]]:
    """GITHUB_OUTPUT / GITHUB_ENV: ``name=value`` lines and ``name<<DELIMITER`` blocks."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if line.strip() == "":
            continue
        eq = line.find("=")
        heredoc = line.find("<<")
        if heredoc > 0 and (eq < 0 or heredoc < eq):
            name = line[:heredoc]
            delimiter = line[heredoc + 2 :]
            if not name or not delimiter:
                raise FileCommandError(f"invalid format '{line}'")
            body: list[str] = []
            while True:
                if i >= len(lines):
                    raise FileCommandError(f"matching delimiter not found '{delimiter}'")
                current = lines[i].rstrip("\r")
                i += 1
                if current == delimiter:
                    break
                body.append(current)
            out.append((name, "\n".join(body)))
        elif eq > 0:
            out.append((line[:eq], line[eq + 1 :]))
        else:
            raise FileCommandError(f"invalid format '{line}'")
    return out
