"""Replace secret values with ``***`` in every log line."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable


class Masker:
    MIN_LENGTH = 1

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        for value in secrets:
            self.add(value)

    def add(self, value: str | None) -> None:
        if not value:
            return
        candidates = {value.strip()}
        # A multi-line secret is masked line by line, since logs are.
        candidates.update(line.strip() for line in value.splitlines())
        with self._lock:
            before = len(self._values)
            self._values.update(c for c in candidates if len(c) >= self.MIN_LENGTH)
            if len(self._values) != before:
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def mask(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub("***", text)

    def contains_secret(self, text: str) -> bool:
        pattern = self._pattern
        return bool(pattern and text and pattern.search(text))

    @property
    def values(self) -> frozenset[str]:
        return frozenset(self._values)
