"""Modules deferred to their first use: loaded once, on any thread, whoever touches them first."""

from __future__ import annotations

import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from opencodehub.core import lazy
from opencodehub.repos import browse


@pytest.fixture
def slow_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module whose import takes a while and counts how often it ran."""
    name = f"och_lazy_probe_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import builtins, time
            builtins.lazy_probe_imports = getattr(builtins, "lazy_probe_imports", 0) + 1
            time.sleep(0.2)
            VALUE = 42

            def answer():
                return VALUE
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import builtins

    builtins.lazy_probe_imports = 0  # type: ignore[attr-defined]
    yield name
    sys.modules.pop(name, None)
    del builtins.lazy_probe_imports  # type: ignore[attr-defined]


def probe_imports() -> int:
    import builtins

    return builtins.lazy_probe_imports  # type: ignore[attr-defined]


def test_import_binds_a_stand_in_that_loads_on_first_attribute(slow_module: str) -> None:
    lazy.defer(slow_module)
    module = __import__(slow_module)
    assert probe_imports() == 0
    assert not lazy.is_loaded(slow_module)
    assert module.answer() == 42
    assert probe_imports() == 1
    assert lazy.is_loaded(slow_module)
    assert sys.modules[slow_module] is not module  # the real one, for later imports
    assert sys.modules[slow_module].VALUE == 42


def test_threads_touching_it_first_at_once_load_it_once(slow_module: str) -> None:
    lazy.defer(slow_module)
    module = __import__(slow_module)
    start = threading.Barrier(8)
    results: list[object] = []
    errors: list[BaseException] = []

    def touch() -> None:
        start.wait()
        try:
            results.append(module.answer())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=touch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert results == [42] * 8
    assert probe_imports() == 1


def test_callbacks_run_when_it_loads_or_at_once_if_loaded(slow_module: str) -> None:
    lazy.defer(slow_module)
    seen: list[int] = []
    lazy.when_loaded(slow_module, lambda module: seen.append(module.VALUE))
    assert seen == []
    __import__(slow_module).VALUE  # noqa: B018 - the first use
    assert seen == [42]
    lazy.when_loaded(slow_module, lambda module: seen.append(module.VALUE + 1))
    assert seen == [42, 43]


def test_a_failed_import_leaves_the_stand_in_for_the_next_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"och_lazy_broken_{tmp_path.name.replace('-', '_')}"
    source = tmp_path / f"{name}.py"
    source.write_text("raise ImportError('not yet')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        lazy.defer(name)
        module = __import__(name)
        with pytest.raises(ImportError, match="not yet"):
            module.anything  # noqa: B018
        assert not lazy.is_loaded(name)
        source.write_text("anything = 'now'\n")
        assert module.anything == "now"
    finally:
        sys.modules.pop(name, None)


def test_deferring_a_loaded_module_changes_nothing() -> None:
    import json

    lazy.defer("json")
    assert sys.modules["json"] is json
    assert lazy.is_loaded("json")


def test_object_type_names_follow_libgit2() -> None:
    """browse names object types by number so that naming them needs no libgit2 at import."""
    import pygit2

    assert {
        int(pygit2.enums.ObjectType.COMMIT): "commit",
        int(pygit2.enums.ObjectType.TREE): "tree",
        int(pygit2.enums.ObjectType.BLOB): "blob",
        int(pygit2.enums.ObjectType.TAG): "tag",
    } == browse._TYPE_NAMES
