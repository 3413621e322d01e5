"""``strategy.matrix`` expansion with GitHub's include/exclude rules."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from opencodehub.actions.expressions import ExpressionError, evaluate_value

__all__ = ["MAX_COMBINATIONS", "MatrixError", "expand_matrix", "strategy_context"]

MAX_COMBINATIONS = 256


class MatrixError(ValueError):
    pass


def _matches(entry: Mapping[str, Any], combo: Mapping[str, Any]) -> bool:
    return all(k in combo and _equal(combo[k], v) for k, v in entry.items())


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return float(a) == float(b)
    return bool(a == b)


def expand_matrix(strategy: Any, contexts: Mapping[str, Any]) -> list[dict]:
    """The job's matrix combinations in GitHub's order; ``[{}]`` when there is no matrix."""
    if not strategy:
        return [{}]
    try:
        strategy = evaluate_value(
            dict(strategy) if isinstance(strategy, Mapping) else strategy, contexts
        )
    except ExpressionError as exc:
        raise MatrixError(f"strategy: {exc}") from None
    if not isinstance(strategy, dict):
        raise MatrixError("strategy must be a mapping")
    matrix = strategy.get("matrix")
    if matrix is None:
        return [{}]
    if not isinstance(matrix, dict):
        raise MatrixError("strategy.matrix must be a mapping")
    include = matrix.get("include") or []
    exclude = matrix.get("exclude") or []
    if not isinstance(include, list) or not all(isinstance(i, dict) for i in include):
        raise MatrixError("matrix include must be a list of mappings")
    if not isinstance(exclude, list) or not all(isinstance(i, dict) for i in exclude):
        raise MatrixError("matrix exclude must be a list of mappings")
    vectors: dict[str, list[Any]] = {}
    for key, values in matrix.items():
        if key in ("include", "exclude"):
            continue
        if not isinstance(values, list):
            raise MatrixError(f"matrix vector '{key}' must be a list")
        if not values:
            raise MatrixError(f"matrix vector '{key}' does not contain any values")
        vectors[key] = values

    total = 1
    for values in vectors.values():
        total *= len(values)
        if total > MAX_COMBINATIONS * 64:
            break
    combos: list[dict[str, Any]] = []
    if vectors:
        if total > MAX_COMBINATIONS * 64:
            raise MatrixError(f"the matrix has more than {MAX_COMBINATIONS} combinations")
        keys = list(vectors)
        for values in itertools.product(*(vectors[k] for k in keys)):
            combo = dict(zip(keys, values, strict=True))
            if not any(_matches(e, combo) for e in exclude):
                combos.append(combo)
    for entry in exclude:
        for key in entry:
            if key not in vectors:
                raise MatrixError(f"matrix exclude key '{key}' does not match any matrix vector")

    originals = [dict(c) for c in combos]
    extra: list[dict[str, Any]] = []
    for entry in include:
        added = False
        for i, combo in enumerate(combos):
            original = originals[i]
            # It may extend a combination when it changes none of the original values.
            if all(_equal(original[k], v) for k, v in entry.items() if k in original):
                combo.update(entry)
                added = True
        if not added:
            extra.append(dict(entry))
    result = combos + extra
    if not result:
        raise MatrixError("the matrix has no combinations")
    if len(result) > MAX_COMBINATIONS:
        raise MatrixError(
            f"the matrix has {len(result)} combinations; at most {MAX_COMBINATIONS} are allowed"
        )
    return result


def strategy_context(strategy: Mapping[str, Any] | None, index: int, total: int) -> dict[str, Any]:
    strategy = strategy or {}
    fail_fast = strategy.get("fail-fast", True)
    max_parallel = strategy.get("max-parallel", total)
    return {
        "fail-fast": fail_fast if isinstance(fail_fast, bool) else True,
        "job-index": index,
        "job-total": total,
        "max-parallel": max_parallel if isinstance(max_parallel, int | float) else total,
    }
