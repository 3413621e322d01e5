"""The commands an SSH client may run, parsed strictly.

A git client runs `git-upload-pack '/owner/repo.git'` (or `git upload-pack ...`, or the same for
receive-pack and upload-archive) on the server. Nothing else is accepted: no shell ever sees the
command, and the parser reads exactly one program name, one space and one repository path,
optionally in single or double quotes. `shlex` is not used on purpose: it accepts escapes,
concatenated quoting and several arguments, all of which a git client never sends and an attacker
would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from opencodehub.repos.service import strip_git_suffix

# Longer than any command a git client sends for a valid path (39 + 100 + quoting and names).
MAX_COMMAND_LENGTH = 512

SHELL_REFUSAL = "OpenCodeHub does not provide shell access."
INVALID_COMMAND = (
    "ERROR: Invalid command. Only git-upload-pack, git-receive-pack and git-upload-archive "
    "with one repository path (owner/repository.git) are accepted."
)

# Both spellings git clients use, mapped to the service name.
_PROGRAMS: dict[str, str] = {
    "git-upload-pack": "git-upload-pack",
    "git-receive-pack": "git-receive-pack",
    "git-upload-archive": "git-upload-archive",
    "git upload-pack": "git-upload-pack",
    "git receive-pack": "git-receive-pack",
    "git upload-archive": "git-upload-archive",
}
_PROGRAM_RE = re.compile(
    r"\A(?P<program>git-(?:upload-pack|receive-pack|upload-archive)"
    r"|git (?:upload-pack|receive-pack|upload-archive))"
    r"(?: (?P<argument>.*))?\Z",
    re.DOTALL,
)
# A path as git sends it: an optional leading '/' (ssh:// URLs), an owner (GitHub's user name
# rule), one '/', a repository name. The character classes are ASCII-only, so quoting, shell
# metacharacters, whitespace, NUL and Unicode look-alikes can never match.
_PATH_RE = re.compile(
    r"\A/?(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38})"
    r"/(?P<repo>[A-Za-z0-9._][A-Za-z0-9._-]{0,99}(?:\.git)?)\Z"
)


class CommandRefused(Exception):
    """The client's command is not one OpenCodeHub runs; `message` is the one line it is told."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class GitCommand:
    """A git service on `owner/repo` (the repository name without `.git`)."""

    service: str
    owner: str
    repo: str

    @property
    def path(self) -> str:
        return f"{self.owner}/{self.repo}"


def parse_git_command(command: str) -> GitCommand:
    """Parse what an SSH client asked to execute; raise CommandRefused with the message to show."""
    if not isinstance(command, str) or not command.strip():
        raise CommandRefused(SHELL_REFUSAL)
    if len(command) > MAX_COMMAND_LENGTH:
        raise CommandRefused(INVALID_COMMAND)
    match = _PROGRAM_RE.match(command)
    if match is None:
        raise CommandRefused(
            INVALID_COMMAND if command.lstrip().startswith("git") else SHELL_REFUSAL
        )
    argument = match.group("argument")
    if argument is None:
        raise CommandRefused(INVALID_COMMAND)
    path = _unquote(argument)
    path_match = _PATH_RE.match(path)
    if path_match is None or ".." in path:
        raise CommandRefused(INVALID_COMMAND)
    repo = strip_git_suffix(path_match.group("repo"))
    if not repo or repo in (".", "..") or repo.startswith("-"):
        raise CommandRefused(INVALID_COMMAND)
    return GitCommand(
        service=_PROGRAMS[match.group("program")], owner=path_match.group("owner"), repo=repo
    )


# `git-lfs-authenticate <path> upload|download`, as git-lfs sends it on SSH remotes.
LFS_AUTHENTICATE = "git-lfs-authenticate"
INVALID_LFS_COMMAND = (
    "ERROR: Invalid command. git-lfs-authenticate takes one repository path (owner/repository.git) "
    "and upload or download."
)
_LFS_RE = re.compile(
    r"\Agit-lfs-authenticate (?P<path>'[^']*'|\"[^\"]*\"|[^ '\"]+) (?P<operation>upload|download)\Z"
)


@dataclass(frozen=True)
class LFSAuthenticateCommand:
    """`git-lfs-authenticate` for `owner/repo` (without `.git`) and one operation."""

    owner: str
    repo: str
    operation: str  # "upload" or "download"


def is_lfs_authenticate(command: str | None) -> bool:
    return isinstance(command, str) and command.split(" ", 1)[0] == LFS_AUTHENTICATE


def parse_lfs_authenticate(command: str) -> LFSAuthenticateCommand:
    """Parse `git-lfs-authenticate <path> upload|download`; CommandRefused otherwise."""
    if len(command) > MAX_COMMAND_LENGTH:
        raise CommandRefused(INVALID_LFS_COMMAND)
    match = _LFS_RE.match(command)
    if match is None:
        raise CommandRefused(INVALID_LFS_COMMAND)
    path_match = _PATH_RE.match(_unquote(match.group("path")))
    if path_match is None or ".." in path_match.group(0):
        raise CommandRefused(INVALID_LFS_COMMAND)
    repo = strip_git_suffix(path_match.group("repo"))
    if not repo or repo in (".", "..") or repo.startswith("-"):
        raise CommandRefused(INVALID_LFS_COMMAND)
    return LFSAuthenticateCommand(
        owner=path_match.group("owner"), repo=repo, operation=match.group("operation")
    )


def _unquote(argument: str) -> str:
    """Remove one pair of matching single or double quotes around the whole argument.

    The path pattern admits no quote characters, so anything left over (an unbalanced quote, a
    second quoted word, an escaped quote) makes the path fail to match.
    """
    if len(argument) >= 2 and argument[0] in "'\"" and argument[-1] == argument[0]:
        return argument[1:-1]
    return argument
