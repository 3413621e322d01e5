"""The SSH exec-command parser: exactly what git clients send, nothing else."""

from __future__ import annotations

import pytest

from opencodehub.git.ssh_commands import (
    INVALID_COMMAND,
    MAX_COMMAND_LENGTH,
    SHELL_REFUSAL,
    CommandRefused,
    GitCommand,
    parse_git_command,
)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("git-upload-pack 'alice/hello.git'", GitCommand("git-upload-pack", "alice", "hello")),
        ("git-upload-pack '/alice/hello.git'", GitCommand("git-upload-pack", "alice", "hello")),
        ("git-receive-pack 'alice/hello.git'", GitCommand("git-receive-pack", "alice", "hello")),
        (
            "git-upload-archive 'alice/hello.git'",
            GitCommand("git-upload-archive", "alice", "hello"),
        ),
        ("git upload-pack 'alice/hello.git'", GitCommand("git-upload-pack", "alice", "hello")),
        ("git receive-pack '/alice/hello'", GitCommand("git-receive-pack", "alice", "hello")),
        ("git upload-archive alice/hello", GitCommand("git-upload-archive", "alice", "hello")),
        ('git-upload-pack "alice/hello.git"', GitCommand("git-upload-pack", "alice", "hello")),
        ("git-upload-pack /alice/hello.git", GitCommand("git-upload-pack", "alice", "hello")),
        ("git-upload-pack 'alice/hello'", GitCommand("git-upload-pack", "alice", "hello")),
        # Case is kept; the lookup is case-insensitive.
        ("git-upload-pack 'Alice/Hello.GIT'", GitCommand("git-upload-pack", "Alice", "Hello")),
        (
            "git-upload-pack 'my-org/.github.git'",
            GitCommand("git-upload-pack", "my-org", ".github"),
        ),
        (
            "git-upload-pack 'a1/repo_name-2.0.git'",
            GitCommand("git-upload-pack", "a1", "repo_name-2.0"),
        ),
    ],
)
def test_accepts_what_git_clients_send(command: str, expected: GitCommand) -> None:
    assert parse_git_command(command) == expected


def test_path_property() -> None:
    assert parse_git_command("git-upload-pack 'alice/hello.git'").path == "alice/hello"


@pytest.mark.parametrize(
    "command",
    [
        "ls",
        "bash",
        "sh -c 'id'",
        "echo hi",
        "scp -t /tmp",
        "rm -rf /",
        "internal-sftp",
        "/usr/lib/git-core/git-upload-pack 'alice/hello.git'",
        " ",
        "",
    ],
)
def test_other_programs_get_the_shell_refusal(command: str) -> None:
    with pytest.raises(CommandRefused) as refused:
        parse_git_command(command)
    assert refused.value.message == SHELL_REFUSAL


@pytest.mark.parametrize(
    "command",
    [
        # Shell metacharacters and command chaining.
        "git-upload-pack 'alice/hello.git'; rm -rf /",
        "git-upload-pack 'alice/hello.git';id",
        "git-upload-pack 'alice/hello.git' && id",
        "git-upload-pack 'alice/hello.git' | id",
        "git-upload-pack 'alice/hello.git' & id",
        "git-upload-pack `id`",
        "git-upload-pack 'alice/`id`.git'",
        "git-upload-pack $(id)",
        "git-upload-pack 'alice/$(id).git'",
        'git-upload-pack "alice/$(id).git"',
        "git-upload-pack 'alice/hello.git'\nid",
        "git-upload-pack 'alice/hello.git'\n",
        "git-upload-pack 'alice/hello.git'\r",
        "git-upload-pack 'alice/hello.git' > /tmp/x",
        "git-upload-pack 'alice/hel\x00lo.git'",
        "git-upload-pack 'alice/hello.git'\x00",
        # Argument count and spacing.
        "git-upload-pack",
        "git-upload-pack ",
        "git-upload-pack 'alice/hello.git' 'bob/other.git'",
        "git-upload-pack 'alice/hello.git' --help",
        "git-upload-pack --strict 'alice/hello.git'",
        "git-upload-pack  'alice/hello.git'",
        "git-upload-pack\t'alice/hello.git'",
        "git  upload-pack 'alice/hello.git'",
        "git-upload-pack 'alice/hello.git' ",
        # Quoting.
        "git-upload-pack 'alice/hello.git",
        "git-upload-pack alice/hello.git'",
        "git-upload-pack \"alice/hello.git'",
        "git-upload-pack 'alice/hello.git'\"",
        "git-upload-pack ''alice/hello.git''",
        "git-upload-pack 'alice'/'hello.git'",
        "git-upload-pack 'alice/hello\\'.git'",
        'git-upload-pack "alice/hello\\".git"',
        "git-upload-pack ''",
        "git-upload-pack '",
        # Paths.
        "git-upload-pack '../x'",
        "git-upload-pack '/../x'",
        "git-upload-pack 'alice/../bob/x.git'",
        "git-upload-pack 'alice/..'",
        "git-upload-pack 'alice/...git'",
        "git-upload-pack 'alice/a..b.git'",
        "git-upload-pack 'alice/.'",
        "git-upload-pack 'alice/.git'",
        "git-upload-pack '%2e%2e/x'",
        "git-upload-pack 'alice/%2e%2e'",
        "git-upload-pack '-alice/hello.git'",
        "git-upload-pack 'alice/-hello.git'",
        "git-upload-pack '--upload-pack=id/x'",
        "git-upload-pack 'alice-/hello.git'",
        "git-upload-pack 'al--ice/hello.git'",
        "git-upload-pack 'alice/hello/extra.git'",
        "git-upload-pack 'alice//hello.git'",
        "git-upload-pack '//alice/hello.git'",
        "git-upload-pack 'alice/hello.git/'",
        "git-upload-pack '~alice/hello.git'",
        "git-upload-pack '~/hello.git'",
        "git-upload-pack 'alice'",
        "git-upload-pack 'alice/'",
        "git-upload-pack '/'",
        "git-upload-pack 'alice/hello world.git'",
        "git-upload-pack 'alice\\hello.git'",
        # Unicode look-alikes: Cyrillic a (U+0430), fullwidth solidus, non-breaking space.
        "git-upload-pack '\u0430lice/hello.git'",
        "git-upload-pack 'alice\uff0fhello.git'",
        "git-upload-pack\u00a0'alice/hello.git'",
        "git-upload-pack 'alice/hell\u043e.git'",
        # Too long: a 40-character owner, a 101-character repository, a 10 KB argument.
        f"git-upload-pack '{'a' * 40}/hello.git'",
        f"git-upload-pack 'alice/{'r' * 101}.git'",
        f"git-upload-pack 'alice/{'r' * 10_000}.git'",
        # SQL metacharacters never get as far as a query.
        "git-upload-pack 'alice/hello'' OR ''1''=''1.git'",
        "git-upload-pack 'alice/hello%.git'",
        # Almost a git service.
        "git-upload-packs 'alice/hello.git'",
        "git-upload 'alice/hello.git'",
        "git upload-packs 'alice/hello.git'",
        "git clone 'alice/hello.git'",
        "git -c core.sshCommand=id upload-pack 'alice/hello.git'",
        "GIT-UPLOAD-PACK 'alice/hello.git'",
    ],
)
def test_refuses_anything_else(command: str) -> None:
    with pytest.raises(CommandRefused) as refused:
        parse_git_command(command)
    assert refused.value.message in (INVALID_COMMAND, SHELL_REFUSAL)
    # Refusals are one line and never echo what the client sent.
    assert "\n" not in refused.value.message
    assert "alice" not in refused.value.message


def test_git_commands_with_bad_paths_say_so() -> None:
    with pytest.raises(CommandRefused) as refused:
        parse_git_command("git-upload-pack 'alice/hello.git'; rm -rf /")
    assert refused.value.message == INVALID_COMMAND


def test_length_limit_is_checked_first() -> None:
    command = "git-upload-pack '" + "a" * MAX_COMMAND_LENGTH + "'"
    with pytest.raises(CommandRefused) as refused:
        parse_git_command(command)
    assert refused.value.message == INVALID_COMMAND


def test_longest_valid_names_are_accepted() -> None:
    owner = "a" * 39
    repo = "r" * 100
    parsed = parse_git_command(f"git-receive-pack '/{owner}/{repo}.git'")
    assert parsed == GitCommand("git-receive-pack", owner, repo)
