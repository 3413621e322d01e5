"""Matrix expansion as GitHub documents it."""

from __future__ import annotations

import pytest

from opencodehub.actions.matrix import MatrixError, expand_matrix, strategy_context


def test_no_matrix() -> None:
    assert expand_matrix(None, {}) == [{}]
    assert expand_matrix({"fail-fast": False}, {}) == [{}]


def test_product_order() -> None:
    combos = expand_matrix({"matrix": {"os": ["a", "b"], "v": [1, 2]}}, {})
    assert combos == [
        {"os": "a", "v": 1},
        {"os": "a", "v": 2},
        {"os": "b", "v": 1},
        {"os": "b", "v": 2},
    ]


def test_github_documented_include_example() -> None:
    strategy = {
        "matrix": {
            "fruit": ["apple", "pear"],
            "animal": ["cat", "dog"],
            "include": [
                {"color": "green"},
                {"color": "pink", "animal": "cat"},
                {"fruit": "apple", "shape": "circle"},
                {"fruit": "banana"},
                {"fruit": "banana", "animal": "cat"},
            ],
        }
    }
    assert expand_matrix(strategy, {}) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "pear", "animal": "dog", "color": "green"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_exclude_partial_match() -> None:
    strategy = {
        "matrix": {
            "os": ["macos", "windows"],
            "version": [12, 14, 16],
            "env": ["staging", "production"],
            "exclude": [
                {"os": "macos", "version": 12, "env": "production"},
                {"os": "windows", "version": 16},
            ],
        }
    }
    combos = expand_matrix(strategy, {})
    assert len(combos) == 12 - 1 - 2
    assert {"os": "windows", "version": 16, "env": "staging"} not in combos


def test_include_only_and_expressions() -> None:
    assert expand_matrix({"matrix": {"include": [{"a": 1}, {"b": 2}]}}, {}) == [{"a": 1}, {"b": 2}]
    ctx = {"needs": {"setup": {"outputs": {"m": '{"v": ["x", "y"]}'}}}}
    strategy = {"matrix": "${{ fromJSON(needs.setup.outputs.m) }}"}
    assert expand_matrix(strategy, ctx) == [{"v": "x"}, {"v": "y"}]
    assert expand_matrix({"matrix": {"v": "${{ fromJSON('[1]') }}"}}, {}) == [{"v": 1.0}]
    whole = '${{ fromJSON(\'{"matrix": {"k": [true]}}\') }}'
    assert expand_matrix(whole, {}) == [{"k": True}]


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ({"matrix": {"a": list(range(17)), "b": list(range(16))}}, "at most 256"),
        ({"matrix": {"a": []}}, "does not contain any values"),
        ({"matrix": {"a": "x"}}, "must be a list"),
        ({"matrix": {"a": [1], "exclude": [{"a": 1}]}}, "no combinations"),
        ({"matrix": {"a": [1], "exclude": [{"zz": 1}]}}, "does not match any matrix vector"),
        ({"matrix": {"include": "nope"}}, "include must be a list"),
        ({"matrix": "${{ nope( }}"}, "strategy"),
    ],
)
def test_matrix_errors(strategy: dict, message: str) -> None:
    with pytest.raises(MatrixError, match=message):
        expand_matrix(strategy, {})


def test_limit_is_exactly_256() -> None:
    assert len(expand_matrix({"matrix": {"a": list(range(16)), "b": list(range(16))}}, {})) == 256


def test_strategy_context() -> None:
    assert strategy_context({"fail-fast": False}, 1, 3) == {
        "fail-fast": False,
        "job-index": 1,
        "job-total": 3,
        "max-parallel": 3,
    }
