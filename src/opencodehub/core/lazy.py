"""Modules that load on first use, whoever imports them.

libgit2's bindings are a tenth of an idle server's memory (about 11 MB resident), yet a server
that has not served a repository yet does not need them, and two dozen modules name them at
the top (`import pygit2`, for their type hints and calls). `defer("pygit2")` puts a stand-in
into `sys.modules` before any of those imports runs: `import pygit2` binds the stand-in, and
the first attribute anyone reads from it imports the real module, once, under a lock (the
standard library's `importlib.util.LazyLoader` is not safe when two threads touch the module
first at the same moment, and the first use here is typically on the thread pool). After that
the stand-in holds the real module's attributes itself, so reading them costs what reading
them from the real module does.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

_lock = threading.RLock()
_on_load: dict[str, list[Callable[[types.ModuleType], None]]] = {}


class _Deferred(types.ModuleType):
    """Stands in `sys.modules` for a module that is imported when it is first used."""

    def __getattr__(self, attribute: str) -> Any:
        # Only attributes the stand-in does not hold yet come here: before the load, every
        # one; after it, only names the real module lacks too.
        real = _load(self.__name__)
        return getattr(real, attribute)

    def __dir__(self) -> list[str]:
        return dir(_load(self.__name__))


def defer(name: str) -> None:
    """Make `name` load on first use, if nothing imported it yet."""
    with _lock:
        if name not in sys.modules:
            sys.modules[name] = _Deferred(name)


def is_loaded(name: str) -> bool:
    """Whether `name` is imported for real (a deferred module nobody used yet is not)."""
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, _Deferred)


def when_loaded(name: str, callback: Callable[[types.ModuleType], None]) -> None:
    """Run `callback(module)` now if `name` is loaded, else right after it loads."""
    with _lock:
        if not is_loaded(name):
            _on_load.setdefault(name, []).append(callback)
            return
        module = sys.modules[name]
    callback(module)


def _load(name: str) -> types.ModuleType:
    with _lock:
        stand_in = sys.modules.get(name)
        if not isinstance(stand_in, _Deferred):
            # Loaded by another thread while this one waited (or imported eagerly before).
            return importlib.import_module(name)
        # The import system would hand back the stand-in itself while it sits in sys.modules.
        del sys.modules[name]
        try:
            real = importlib.import_module(name)
        except BaseException:
            sys.modules[name] = stand_in
            raise
        stand_in.__dict__.update(real.__dict__)
        # Everything imported from now on (`import pygit2.enums`, a late `import pygit2`) gets
        # the real module; those who bound the stand-in see the same attributes through it.
        sys.modules[name] = real
        callbacks = _on_load.pop(name, [])
    for callback in callbacks:
        callback(real)
    return real
