"""Git LFS pointer files, as the git-lfs specification (v1) writes them.

    version https://git-lfs.github.com/spec/v1
    oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393
    size 12345

`version` comes first, the other keys follow in alphabetical order, one `key value` per line,
each line ending in LF. git-lfs never reads a blob of 1024 bytes or more as a pointer, so
neither does OpenCodeHub; anything that does not parse exactly is an ordinary file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_POINTER_BYTES = 1024
VERSION = "https://git-lfs.github.com/spec/v1"
# Pointers written by git-lfs before 1.0 carried this version; git-lfs reads them still.
LEGACY_VERSION = "https://hawser.github.com/spec/v1"
_LINE_RE = re.compile(r"\A([a-z0-9.-]+) ([^\n]*)\Z")
_OID_RE = re.compile(r"\Asha256:([0-9a-f]{64})\Z")
_SIZE_RE = re.compile(r"\A(0|[1-9][0-9]{0,18})\Z")


@dataclass(frozen=True, slots=True)
class Pointer:
    oid: str
    size: int


def parse_pointer(data: bytes) -> Pointer | None:
    """The pointer `data` is, or None when it is not one."""
    if len(data) >= MAX_POINTER_BYTES or not data.startswith(b"version ") or b"\r" in data:
        return None
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text.endswith("\n"):
        return None
    fields: list[tuple[str, str]] = []
    for line in text[:-1].split("\n"):
        match = _LINE_RE.match(line)
        if match is None:
            return None
        fields.append((match[1], match[2]))
    (first, version), rest = fields[0], fields[1:]
    if first != "version" or version not in (VERSION, LEGACY_VERSION):
        return None
    keys = [key for key, _ in rest]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        return None
    values = dict(rest)
    oid = _OID_RE.match(values.get("oid", ""))
    size = _SIZE_RE.match(values.get("size", ""))
    if oid is None or size is None:
        return None
    return Pointer(oid=oid[1], size=int(size[1]))
