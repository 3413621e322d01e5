"""The expression language: literals, operators, dereference, functions, errors."""

from __future__ import annotations

import contextlib
import hashlib
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opencodehub.actions.expressions import (
    ExpressionError,
    evaluate,
    evaluate_if,
    evaluate_value,
    hash_files,
    interpolate,
    to_string,
)

CTX = {
    "github": {
        "ref": "refs/heads/main",
        "event_name": "push",
        "event": {"commits": [{"id": "a", "n": 1}, {"id": "b", "n": 2}], "labels": []},
    },
    "matrix": {"os": "linux", "node": 20},
    "env": {"GREETING": "Hello"},
    "steps": {"build": {"outputs": {"v": "1.2.3"}, "outcome": "success"}},
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("null", None),
        ("true", True),
        ("false", False),
        ("42", 42.0),
        ("-3.5", -3.5),
        ("0xff", 255.0),
        ("1e3", 1000.0),
        ("2.5E-1", 0.25),
        ("'it''s'", "it's"),
        ("''", ""),
        ("1 == '1'", True),
        ("'abc' == 'ABC'", True),
        ("null == 0", True),
        ("true == 1", True),
        ("'' == 0", True),
        ("'x' == 0", False),
        ("1 != 2", True),
        ("2 > 1", True),
        ("'b' > 'A'", True),
        ("1 <= '1'", True),
        ("!0", True),
        ("!'a'", False),
        ("null && 'x'", None),
        ("'a' && 'b'", "b"),
        ("'' || 'fallback'", "fallback"),
        ("0 || null", None),
        ("(1 == 1) && (2 == 2)", True),
        ("github.ref", "refs/heads/main"),
        ("github['ref']", "refs/heads/main"),
        ("GitHub.REF", "refs/heads/main"),
        ("github.event.commits[1].id", "b"),
        ("github.event.commits.*.id", ["a", "b"]),
        ("github.event.missing.deeper", None),
        ("github.event.commits[5]", None),
        ("steps.build.outputs.v", "1.2.3"),
        ("contains('Hello world', 'WORLD')", True),
        ("contains(github.event.commits.*.id, 'b')", True),
        ("contains(github.event.labels, 'x')", False),
        ("startsWith(github.ref, 'refs/HEADS/')", True),
        ("endsWith('file.TXT', '.txt')", True),
        ("format('{0}-{1}', 'a', 2)", "a-2"),
        ("format('{{0}} is {0}', 'x')", "{0} is x"),
        ("join(github.event.commits.*.id)", "a,b"),
        ("join(github.event.commits.*.id, ' + ')", "a + b"),
        ("join('single')", "single"),
        ("fromJSON('{\"a\": [1, true]}').a[1]", True),
        ("fromJSON('3')", 3.0),
        ("toJSON(matrix)", '{\n  "os": "linux",\n  "node": 20\n}'),
        ("NaN == NaN", False),
    ],
)
def test_evaluate(expr: str, expected: object) -> None:
    assert evaluate(expr, CTX) == expected


def test_number_strings() -> None:
    assert to_string(evaluate("1.0", {})) == "1"
    assert to_string(evaluate("0.5", {})) == "0.5"
    assert to_string(evaluate("true", {})) == "true"
    assert to_string(None) == ""
    assert to_string(evaluate("fromJSON('[1, 2]')", {})) == "Array"


@pytest.mark.parametrize(
    ("expr", "message", "position"),
    [
        ("1 +", "Unexpected symbol: '+'", 3),
        ("foo(1)", "Unrecognized function: 'foo'", 1),
        ("github.", "Unexpected end of expression", 8),
        ("'open", "Unterminated string", 1),
        ("(1", "Unexpected end of expression", 3),
        ("contains('a')", "takes 2 arguments", 1),
        ("1 2", "Unexpected symbol: '2'", 3),
        ("a == = b", "Unexpected symbol: '='", 6),
        ("", "Empty expression", 1),
        ("$x", "Unexpected symbol: '$'", 1),
    ],
)
def test_errors_carry_positions(expr: str, message: str, position: int) -> None:
    with pytest.raises(ExpressionError) as info:
        evaluate(expr, CTX)
    assert message in str(info.value)
    assert info.value.position is not None
    assert info.value.position + 1 == position


def test_depth_limits() -> None:
    with pytest.raises(ExpressionError, match="depth"):
        evaluate("(" * 60 + "1" + ")" * 60, {})
    with pytest.raises(ExpressionError, match="depth"):
        evaluate("!" * 60 + "1", {})
    long_chain = " == ".join(["1"] * 5000)
    with pytest.raises(ExpressionError, match="depth"):
        evaluate_if(long_chain, {}, {"success": lambda: True})


def test_format_errors() -> None:
    with pytest.raises(ExpressionError, match="more arguments"):
        evaluate("format('{1}', 'a')", {})
    with pytest.raises(ExpressionError, match="invalid"):
        evaluate("format('{x}')", {})
    with pytest.raises(ExpressionError, match="fromJSON"):
        evaluate("fromJSON('{nope')", {})


def test_interpolate() -> None:
    assert interpolate("${{ env.GREETING }}, ${{ matrix.os }}!", CTX) == "Hello, linux!"
    assert interpolate("no templates", CTX) == "no templates"
    assert interpolate("${{ '}}' }}", CTX) == "}}"
    assert interpolate("v=${{ matrix.node }}", CTX) == "v=20"
    assert interpolate("${{ github.event.labels }}", CTX) == "[]"
    with pytest.raises(ExpressionError, match="Unterminated"):
        interpolate("${{ env.GREETING", CTX)


def test_evaluate_value_keeps_types() -> None:
    assert evaluate_value("${{ matrix.node }}", CTX) == 20
    assert evaluate_value("${{ fromJSON('[1,2]') }}", CTX) == [1.0, 2.0]
    assert evaluate_value({"a": ["${{ matrix.os }}-x"]}, CTX) == {"a": ["linux-x"]}


def test_evaluate_if_implicit_success() -> None:
    failed = {"success": lambda: False, "failure": lambda: True, "always": lambda: True}
    ok = {"success": lambda: True, "failure": lambda: False, "always": lambda: True}
    assert evaluate_if("true", CTX, failed) is False
    assert evaluate_if("true", CTX, ok) is True
    assert evaluate_if("failure()", CTX, failed) is True
    assert evaluate_if("always() && matrix.os == 'linux'", CTX, failed) is True
    assert evaluate_if("${{ matrix.os == 'mac' }}", CTX, ok) is False
    assert evaluate_if(None, CTX, ok) is True
    assert evaluate_if("", CTX, failed) is False
    assert evaluate_if("!cancelled()", CTX, {**failed, "cancelled": lambda: False}) is True


def test_hash_files(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.lock").write_bytes(b"one")
    (tmp_path / "b.lock").write_bytes(b"two")
    (tmp_path / "c.txt").write_bytes(b"three")
    digests = [hashlib.sha256(b"one").digest(), hashlib.sha256(b"two").digest()]
    expected = hashlib.sha256(b"".join(digests)).hexdigest()
    assert hash_files(tmp_path, ["**/*.lock"]) == expected
    assert hash_files(tmp_path, ["**/*.lock", "!b.lock"]) == hashlib.sha256(digests[0]).hexdigest()
    assert hash_files(tmp_path, ["nothing/*"]) == ""
    assert hash_files(tmp_path, ["../*"]) == ""


# ---- property tests ----

literals = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**9), max_value=10**9),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20),
)


def render(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    assert isinstance(value, str)
    return "'" + value.replace("'", "''") + "'"


@given(literals)
def test_literal_round_trip(value: object) -> None:
    result = evaluate(render(value), {})
    assert result == (
        float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    )


@given(st.lists(literals, min_size=1, max_size=5))
def test_format_round_trip(values: list[object]) -> None:
    fmt = " ".join(f"{{{i}}}" for i in range(len(values)))
    expr = "format('" + fmt + "', " + ", ".join(render(v) for v in values) + ")"
    assert evaluate(expr, {}) == " ".join(to_string(evaluate(render(v), {})) for v in values)


@given(literals, literals)
def test_or_and_return_operands(a: object, b: object) -> None:
    left, right = evaluate(render(a), {}), evaluate(render(b), {})
    assert evaluate(f"{render(a)} || {render(b)}", {}) in (left, right)
    assert evaluate(f"{render(a)} && {render(b)}", {}) in (left, right)
    assert evaluate(f"{render(a)} == {render(a)}", {}) is (
        not (isinstance(left, float) and math.isnan(left))
    )


@settings(max_examples=300)
@given(st.text(alphabet="abc01'.()[]*!=<>&|, -x_eE\"", max_size=30))
def test_parser_never_crashes(text: str) -> None:
    with contextlib.suppress(ExpressionError):
        evaluate(text, CTX)


# ---- generated expressions: render, parse, and compare the trees ----

_IDENTS = st.sampled_from(["github", "env", "matrix", "steps", "needs", "a_b", "x-y"])
_FUNCS = st.sampled_from(["contains", "startsWith", "format", "join", "toJSON", "success"])


def _trees() -> st.SearchStrategy[object]:
    leaves = st.one_of(
        literals.map(lambda v: ("lit", v)),
        _IDENTS.map(lambda n: ("ctx", n)),
    )

    def extend(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
        return st.one_of(
            st.tuples(st.just("not"), children),
            st.tuples(
                st.just("bin"),
                st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "&&", "||"]),
                children,
                children,
            ),
            st.tuples(st.just("prop"), children, _IDENTS),
            st.tuples(st.just("index"), children, children),
            st.tuples(st.just("call"), _FUNCS, st.lists(children, min_size=1, max_size=3)),
        )

    return st.recursive(leaves, extend, max_leaves=12)


def _render(tree: object) -> str:
    kind = tree[0]  # type: ignore[index]
    if kind == "lit":
        return render(tree[1])  # type: ignore[index]
    if kind == "ctx":
        return tree[1]  # type: ignore[index,return-value]
    if kind == "not":
        return f"!({_render(tree[1])})"  # type: ignore[index]
    if kind == "bin":
        return f"({_render(tree[2])}) {tree[1]} ({_render(tree[3])})"  # type: ignore[index]
    if kind == "prop":
        return f"({_render(tree[1])}).{tree[2]}"  # type: ignore[index]
    if kind == "index":
        return f"({_render(tree[1])})[{_render(tree[2])}]"  # type: ignore[index]
    name, args = tree[1], tree[2]  # type: ignore[index]
    if name == "success":
        return "success()"
    args = args[:2] if name in ("contains", "startsWith", "join") else args[:1]
    if name in ("contains", "startsWith") and len(args) < 2:
        args = [*args, ("lit", "x")]
    return f"{name}({', '.join(_render(a) for a in args)})"


def _shape(node: object) -> object:
    """A parsed node without positions, comparable with a generated tree."""
    from opencodehub.actions import expressions as ex

    if isinstance(node, ex.Literal):
        value = node.value
        return ("lit", value)
    if isinstance(node, ex.ContextRef):
        return ("ctx", node.name)
    if isinstance(node, ex.Not):
        return ("not", _shape(node.operand))
    if isinstance(node, ex.Binary):
        return ("bin", node.op, _shape(node.left), _shape(node.right))
    if isinstance(node, ex.Index):
        if isinstance(node.key, ex.Literal) and isinstance(node.key.value, str):
            return ("index-or-prop", _shape(node.target), node.key.value)
        return ("index", _shape(node.target), _shape(node.key))
    assert isinstance(node, ex.Call)
    return ("call", node.name, [_shape(a) for a in node.args])


def _expected(tree: object) -> object:
    kind = tree[0]  # type: ignore[index]
    if kind == "lit":
        value = tree[1]  # type: ignore[index]
        return ("lit", float(value) if type(value) is int else value)
    if kind == "ctx":
        return tree
    if kind == "not":
        return ("not", _expected(tree[1]))  # type: ignore[index]
    if kind == "bin":
        return ("bin", tree[1], _expected(tree[2]), _expected(tree[3]))  # type: ignore[index]
    if kind == "prop":
        return ("index-or-prop", _expected(tree[1]), tree[2])  # type: ignore[index]
    if kind == "index":
        key = _expected(tree[2])  # type: ignore[index]
        if key[0] == "lit" and isinstance(key[1], str):  # type: ignore[index]
            return ("index-or-prop", _expected(tree[1]), key[1])  # type: ignore[index]
        return ("index", _expected(tree[1]), key)  # type: ignore[index]
    name, args = tree[1], tree[2]  # type: ignore[index]
    if name == "success":
        return ("call", "success", [])
    args = args[:2] if name in ("contains", "startsWith", "join") else args[:1]
    if name in ("contains", "startsWith") and len(args) < 2:
        args = [*args, ("lit", "x")]
    return ("call", name.lower(), [_expected(a) for a in args])


@settings(max_examples=200)
@given(_trees())
def test_generated_expressions_round_trip(tree: object) -> None:
    from opencodehub.actions.expressions import parse

    text = _render(tree)
    assert _shape(parse(text)) == _expected(tree)
    # Evaluating never fails with anything but an ExpressionError.
    with contextlib.suppress(ExpressionError):
        evaluate(text, CTX)
