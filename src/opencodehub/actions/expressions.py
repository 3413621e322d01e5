"""GitHub Actions expressions: ``${{ … }}``.

A tokenizer, a recursive-descent parser producing a small AST, and an evaluator with GitHub's
semantics: loose equality (numbers coerced, strings compared ignoring case), truthiness,
``&&``/``||`` returning an operand, property dereference with ``a.b``/``a['b']``/``a.*.b``
(case-insensitive), and the built-in functions. Pure: imports nothing of the server, so the
runner can use it.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "STATUS_FUNCTIONS",
    "ExpressionError",
    "evaluate",
    "evaluate_if",
    "evaluate_value",
    "hash_files",
    "interpolate",
    "parse",
    "to_string",
    "truthy",
]

STATUS_FUNCTIONS = ("success", "always", "cancelled", "failure")
MAX_DEPTH = 50


class ExpressionError(ValueError):
    """A syntax or evaluation error; ``position`` is a 0-based offset in the expression."""

    def __init__(self, message: str, position: int | None = None, expression: str = "") -> None:
        self.message = message
        self.position = position
        self.expression = expression
        where = f" at position {position + 1}" if position is not None else ""
        text = f" in '{expression}'" if expression else ""
        super().__init__(f"{message}{where}{text}")


# ---------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class Token:
    kind: str  # num, str, ident, op, eof
    value: Any
    pos: int


_OPS = ("<=", ">=", "==", "!=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",", "*")
_IDENT_START = re.compile(r"[A-Za-z_]")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_NUMBER = re.compile(
    r"-?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)


def _parse_number(text: str) -> float:
    neg = text.startswith("-")
    body = text[1:] if neg else text
    if body[:2].lower() == "0x":
        value = float(int(body[2:], 16))
    elif body[:2].lower() == "0o":
        value = float(int(body[2:], 8))
    else:
        value = float(body)
    return -value if neg else value


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    n = len(expr)
    while i < n:
        c = expr[i]
        if c in " \t\r\n":
            i += 1
            continue
        if c == "'":
            j = i + 1
            buf: list[str] = []
            while True:
                if j >= n:
                    raise ExpressionError("Unterminated string", i, expr)
                if expr[j] == "'":
                    if j + 1 < n and expr[j + 1] == "'":
                        buf.append("'")
                        j += 2
                        continue
                    break
                buf.append(expr[j])
                j += 1
            tokens.append(Token("str", "".join(buf), i))
            i = j + 1
            continue
        if c.isdigit() or (
            c in "-." and i + 1 < n and (expr[i + 1].isdigit() or expr[i + 1] == ".")
        ):
            m = _NUMBER.match(expr, i)
            if not m or (m.end() < n and (expr[m.end()].isalnum() or expr[m.end()] == "_")):
                raise ExpressionError("Unexpected symbol", i, expr)
            tokens.append(Token("num", _parse_number(m.group()), i))
            i = m.end()
            continue
        if _IDENT_START.match(c):
            m = _IDENT.match(expr, i)
            assert m
            word = m.group()
            if word == "true":
                tokens.append(Token("lit", True, i))
            elif word == "false":
                tokens.append(Token("lit", False, i))
            elif word == "null":
                tokens.append(Token("lit", None, i))
            elif word in ("NaN", "Infinity"):
                tokens.append(Token("num", math.nan if word == "NaN" else math.inf, i))
            else:
                tokens.append(Token("ident", word, i))
            i = m.end()
            continue
        for op in _OPS:
            if expr.startswith(op, i):
                tokens.append(Token("op", op, i))
                i += len(op)
                break
        else:
            raise ExpressionError(f"Unexpected symbol: '{c}'", i, expr)
    tokens.append(Token("eof", None, n))
    return tokens


# ---------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Literal:
    value: Any
    pos: int


@dataclass(frozen=True)
class ContextRef:
    name: str
    pos: int


@dataclass(frozen=True)
class Index:
    target: Any
    key: Any  # a node, or _STAR
    pos: int


@dataclass(frozen=True)
class Call:
    name: str
    args: tuple[Any, ...]
    pos: int


@dataclass(frozen=True)
class Not:
    operand: Any
    pos: int


@dataclass(frozen=True)
class Binary:
    op: str
    left: Any
    right: Any
    pos: int


class _Star:
    def __repr__(self) -> str:
        return "*"


STAR = _Star()


class _FilteredArray(list):  # type: ignore[type-arg]
    """The result of ``*``: further dereferences apply to each element."""


KNOWN_FUNCTIONS = {
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "format": (1, 255),
    "join": (1, 2),
    "tojson": (1, 1),
    "fromjson": (1, 1),
    "hashfiles": (1, 255),
    "success": (0, 0),
    "always": (0, 0),
    "cancelled": (0, 0),
    "failure": (0, 0),
}


class _Parser:
    def __init__(self, expr: str, extra_functions: Mapping[str, tuple[int, int]]) -> None:
        self.expr = expr
        self.tokens = tokenize(expr)
        self.i = 0
        self.depth = 0
        self.functions = {**KNOWN_FUNCTIONS, **{k.lower(): v for k, v in extra_functions.items()}}

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, op: str) -> bool:
        tok = self.peek()
        return tok.kind == "op" and tok.value == op

    def expect(self, op: str) -> Token:
        tok = self.next()
        if tok.kind != "op" or tok.value != op:
            raise self.unexpected(tok)
        return tok

    def unexpected(self, tok: Token) -> ExpressionError:
        if tok.kind == "eof":
            return ExpressionError("Unexpected end of expression", tok.pos, self.expr)
        if tok.kind == "str":
            shown = f"'{tok.value}'"
        elif tok.kind == "num":
            shown = format_number(tok.value)
        elif tok.kind == "lit":
            shown = _lit_word(tok.value)
        else:
            shown = tok.value
        return ExpressionError(f"Unexpected symbol: '{shown}'", tok.pos, self.expr)

    def parse(self) -> Any:
        if self.peek().kind == "eof":
            raise ExpressionError("Empty expression", 0, self.expr)
        node = self.or_()
        if self.peek().kind != "eof":
            raise self.unexpected(self.peek())
        return node

    def _enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError("Exceeded max expression depth", pos, self.expr)

    def or_(self) -> Any:
        node = self.and_()
        while self.at("||"):
            tok = self.next()
            node = Binary("||", node, self.and_(), tok.pos)
        return node

    def and_(self) -> Any:
        node = self.equality()
        while self.at("&&"):
            tok = self.next()
            node = Binary("&&", node, self.equality(), tok.pos)
        return node

    def equality(self) -> Any:
        node = self.comparison()
        while self.at("==") or self.at("!="):
            tok = self.next()
            node = Binary(tok.value, node, self.comparison(), tok.pos)
        return node

    def comparison(self) -> Any:
        node = self.unary()
        while self.at("<") or self.at("<=") or self.at(">") or self.at(">="):
            tok = self.next()
            node = Binary(tok.value, node, self.unary(), tok.pos)
        return node

    def unary(self) -> Any:
        if self.at("!"):
            tok = self.next()
            self._enter(tok.pos)
            node = Not(self.unary(), tok.pos)
            self.depth -= 1
            return node
        return self.postfix(self.primary())

    def primary(self) -> Any:
        tok = self.next()
        if tok.kind in ("num", "str", "lit"):
            return Literal(tok.value, tok.pos)
        if tok.kind == "op" and tok.value == "(":
            self._enter(tok.pos)
            node = self.or_()
            self.expect(")")
            self.depth -= 1
            return node
        if tok.kind == "ident":
            if self.at("("):
                name = tok.value.lower()
                if name not in self.functions:
                    raise ExpressionError(
                        f"Unrecognized function: '{tok.value}'", tok.pos, self.expr
                    )
                self.next()
                self._enter(tok.pos)
                args: list[Any] = []
                if not self.at(")"):
                    args.append(self.or_())
                    while self.at(","):
                        self.next()
                        args.append(self.or_())
                self.expect(")")
                self.depth -= 1
                lo, hi = self.functions[name]
                if not lo <= len(args) <= hi:
                    raise ExpressionError(
                        f"Function '{tok.value}' takes {lo}"
                        + ("" if lo == hi else f" to {hi}")
                        + f" arguments, got {len(args)}",
                        tok.pos,
                        self.expr,
                    )
                return Call(name, tuple(args), tok.pos)
            return ContextRef(tok.value, tok.pos)
        raise self.unexpected(tok)

    def postfix(self, node: Any) -> Any:
        while True:
            if self.at("."):
                tok = self.next()
                nxt = self.next()
                if nxt.kind == "op" and nxt.value == "*":
                    node = Index(node, STAR, tok.pos)
                elif nxt.kind in ("ident", "lit"):
                    name = nxt.value if nxt.kind == "ident" else _lit_word(nxt.value)
                    node = Index(node, Literal(name, nxt.pos), tok.pos)
                else:
                    raise self.unexpected(nxt)
            elif self.at("["):
                tok = self.next()
                if self.at("*"):
                    self.next()
                    key: Any = STAR
                else:
                    self._enter(tok.pos)
                    key = self.or_()
                    self.depth -= 1
                self.expect("]")
                node = Index(node, key, tok.pos)
            else:
                return node


def _lit_word(value: Any) -> str:
    return {True: "true", False: "false", None: "null"}[value]


_cache: dict[tuple[str, tuple[tuple[str, tuple[int, int]], ...]], Any] = {}


def parse(expr: str, extra_functions: Mapping[str, tuple[int, int]] | None = None) -> Any:
    key = (expr, tuple(sorted((extra_functions or {}).items())))
    node = _cache.get(key)
    if node is None:
        node = _Parser(expr, extra_functions or {}).parse()
        if len(_cache) > 4096:
            _cache.clear()
        _cache[key] = node
    return node


# ---------------------------------------------------------------------------------------------
# Values


def truthy(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return not (value == 0 or math.isnan(value))
    if isinstance(value, str):
        return value != ""
    return True


def to_number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0.0
        if _NUMBER.fullmatch(text):
            return _parse_number(text)
        if text in ("Infinity", "-Infinity"):
            return math.inf if text[0] == "I" else -math.inf
        return math.nan
    return math.nan


def format_number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.15g}"
    if "e" in text:
        mant, exp = text.split("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mant}E{sign}{exp.lstrip('+-').lstrip('0') or '0'}"
    return text


def to_string(value: Any) -> str:
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return format_number(float(value))
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "Array"
    if isinstance(value, dict):
        return "Object"
    return str(value)


def _is_primitive(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def loose_equals(left: Any, right: Any) -> bool:
    lk, rk = _kind(left), _kind(right)
    if lk == "object" or rk == "object":
        return left is right
    if lk != rk:
        return to_number(left) == to_number(right)
    if lk == "string":
        return left.casefold() == right.casefold()
    if lk == "number":
        return float(left) == float(right)
    return left == right


def _compare(op: str, left: Any, right: Any) -> bool:
    lk, rk = _kind(left), _kind(right)
    if lk == "object" or rk == "object":
        return False
    if lk == rk == "string":
        a, b = left.casefold(), right.casefold()
    else:
        a, b = to_number(left), to_number(right)  # type: ignore[assignment]
        if math.isnan(a) or math.isnan(b):  # type: ignore[arg-type]
            return False
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _lookup(target: Any, key: Any) -> Any:
    if isinstance(target, dict):
        if not isinstance(key, str):
            if isinstance(key, int | float) and not isinstance(key, bool):
                key = format_number(float(key))
            else:
                key = to_string(key)
        if key in target:
            return target[key]
        folded = key.casefold()
        for k, v in target.items():
            if isinstance(k, str) and k.casefold() == folded:
                return v
        return None
    if isinstance(target, list):
        if isinstance(key, str):
            return None
        num = to_number(key)
        if math.isnan(num) or num < 0 or num != int(num):
            return None
        idx = int(num)
        return target[idx] if idx < len(target) else None
    return None


def to_json(value: Any) -> str:
    def norm(v: Any) -> Any:
        if isinstance(v, float) and not isinstance(v, bool):
            if math.isnan(v) or math.isinf(v):
                return to_string(v)
            return int(v) if v == int(v) and abs(v) < 1e15 else v
        if isinstance(v, dict):
            return {str(k): norm(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [norm(x) for x in v]
        return v

    return json.dumps(norm(value), indent=2, ensure_ascii=False)


def _from_json(text: Any) -> Any:
    source = to_string(text)
    if source.strip() == "":
        raise ExpressionError("fromJSON: empty input")
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise ExpressionError(f"fromJSON: invalid JSON: {exc.msg}") from None
    return _normalize(value)


def _normalize(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    return value


_FORMAT_RE = re.compile(r"\{\{|\}\}|\{(\d+)\}|\{|\}")


def _format(fmt: Any, *args: Any) -> str:
    text = to_string(fmt)
    out: list[str] = []
    pos = 0
    for m in _FORMAT_RE.finditer(text):
        out.append(text[pos : m.start()])
        tok = m.group()
        if tok == "{{":
            out.append("{")
        elif tok == "}}":
            out.append("}")
        elif m.group(1) is not None:
            idx = int(m.group(1))
            if idx >= len(args):
                raise ExpressionError(
                    f"The following format string references more arguments than were supplied: "
                    f"'{text}'"
                )
            out.append(to_string(args[idx]))
        else:
            raise ExpressionError(f"The following format string is invalid: '{text}'")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


def _contains(search: Any, item: Any) -> bool:
    if isinstance(search, list):
        return any(loose_equals(x, item) for x in search)
    if not _is_primitive(search) or not _is_primitive(item):
        return False
    return to_string(item).casefold() in to_string(search).casefold()


def _join(array: Any, sep: Any = ",") -> str:
    separator = to_string(sep)
    if isinstance(array, list):
        return separator.join(to_string(x) for x in array)
    if _is_primitive(array):
        return to_string(array)
    return ""


def hash_files(workspace: str | os.PathLike[str], patterns: list[str]) -> str:
    """GitHub's hashFiles: sha256 of the concatenated sha256 digests of the matched files.

    Patterns are relative to the workspace, ``!`` excludes, ``**`` spans directories; files
    outside the workspace are ignored; no match gives the empty string.
    """
    root = Path(workspace).resolve()
    include: list[str] = []
    exclude: list[str] = []
    for raw in patterns:
        for line in to_string(raw).splitlines():
            pat = line.strip()
            if not pat:
                continue
            (exclude if pat.startswith("!") else include).append(pat.lstrip("!"))
    matched: set[Path] = set()
    for pat in include:
        full = pat if os.path.isabs(pat) else str(root / pat)
        for name in glob.glob(full, recursive=True, include_hidden=True):
            path = Path(name).resolve()
            if path.is_file() and path.is_relative_to(root):
                matched.add(path)
    if exclude:
        from opencodehub.actions.filters import glob_match

        matched = {
            p
            for p in matched
            if not any(glob_match(pat, p.relative_to(root).as_posix()) for pat in exclude)
        }
    if not matched:
        return ""
    outer = hashlib.sha256()
    for path in sorted(matched):
        inner = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 16), b""):
                inner.update(chunk)
        outer.update(inner.digest())
    return outer.hexdigest()


# ---------------------------------------------------------------------------------------------
# Evaluation

Function = Callable[..., Any]


class _Evaluator:
    def __init__(self, expr: str, contexts: Mapping[str, Any], functions: Mapping[str, Function]):
        self.expr = expr
        self.contexts = contexts
        self.functions = {k.lower(): v for k, v in functions.items()}

    def eval(self, node: Any) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, ContextRef):
            return _lookup(dict(self.contexts), node.name)
        if isinstance(node, Not):
            return not truthy(self.eval(node.operand))
        if isinstance(node, Binary):
            if node.op == "&&":
                left = self.eval(node.left)
                return self.eval(node.right) if truthy(left) else left
            if node.op == "||":
                left = self.eval(node.left)
                return left if truthy(left) else self.eval(node.right)
            left, right = self.eval(node.left), self.eval(node.right)
            if node.op == "==":
                return loose_equals(left, right)
            if node.op == "!=":
                return not loose_equals(left, right)
            return _compare(node.op, left, right)
        if isinstance(node, Index):
            target = self.eval(node.target)
            if node.key is STAR:
                if isinstance(target, list):
                    return _FilteredArray(target)
                if isinstance(target, dict):
                    return _FilteredArray(target.values())
                return _FilteredArray()
            key = self.eval(node.key)
            if isinstance(target, _FilteredArray):
                out = _FilteredArray()
                for item in target:
                    value = _lookup(item, key)
                    if value is not None:
                        out.append(value)
                return out
            return _lookup(target, key)
        if isinstance(node, Call):
            args = [self.eval(a) for a in node.args]
            return self.call(node, args)
        raise ExpressionError("Invalid expression", None, self.expr)  # pragma: no cover

    def call(self, node: Call, args: list[Any]) -> Any:
        name = node.name
        if name in self.functions:
            return self.functions[name](*args)
        try:
            if name == "contains":
                return _contains(args[0], args[1])
            if name == "startswith":
                a, b = args
                if not _is_primitive(a) or not _is_primitive(b):
                    return False
                return to_string(a).casefold().startswith(to_string(b).casefold())
            if name == "endswith":
                a, b = args
                if not _is_primitive(a) or not _is_primitive(b):
                    return False
                return to_string(a).casefold().endswith(to_string(b).casefold())
            if name == "format":
                return _format(*args)
            if name == "join":
                return _join(*args)
            if name == "tojson":
                return to_json(args[0])
            if name == "fromjson":
                return _from_json(args[0])
        except ExpressionError as exc:
            raise ExpressionError(exc.message, node.pos, self.expr) from None
        if name in STATUS_FUNCTIONS:
            # Outside a job (e.g. job-level `if` evaluated with no status yet): everything so far
            # succeeded.
            return name in ("success", "always")
        if name == "hashfiles":
            raise ExpressionError("hashFiles is only available in steps", node.pos, self.expr)
        raise ExpressionError(f"Unrecognized function: '{name}'", node.pos, self.expr)


def _plain(value: Any) -> Any:
    if isinstance(value, _FilteredArray):
        return list(value)
    return value


def evaluate(
    expr: str,
    contexts: Mapping[str, Any],
    functions: Mapping[str, Function] | None = None,
) -> Any:
    """Evaluate one expression (without ``${{ }}``) against the contexts."""
    functions = functions or {}
    arity = {k.lower(): (0, 255) for k in functions if k.lower() not in KNOWN_FUNCTIONS}
    node = parse(expr.strip(), arity)
    try:
        return _plain(_Evaluator(expr, contexts, functions).eval(node))
    except RecursionError:
        raise ExpressionError("Exceeded max expression depth", 0, expr) from None


def _uses_status_function(node: Any) -> bool:
    if isinstance(node, Call):
        if node.name in STATUS_FUNCTIONS:
            return True
        return any(_uses_status_function(a) for a in node.args)
    if isinstance(node, Not):
        return _uses_status_function(node.operand)
    if isinstance(node, Binary):
        return _uses_status_function(node.left) or _uses_status_function(node.right)
    if isinstance(node, Index):
        return _uses_status_function(node.target) or (
            node.key is not STAR and _uses_status_function(node.key)
        )
    return False


def _strip_template(condition: str) -> str:
    text = condition.strip()
    if text.startswith("${{") and text.endswith("}}"):
        inner = text[3:-2]
        if find_expressions(text) == [(0, len(text), inner)]:
            return inner.strip()
    return text


def evaluate_if(
    condition: Any,
    contexts: Mapping[str, Any],
    status_functions: Mapping[str, Function] | None = None,
    functions: Mapping[str, Function] | None = None,
) -> bool:
    """An ``if:``; without any status function, GitHub's implicit ``success() &&`` applies."""
    if condition is None or (isinstance(condition, str) and condition.strip() == ""):
        condition = "success()"
    if isinstance(condition, bool | int | float):
        condition = to_string(condition)
    text = _strip_template(str(condition))
    if "${{" in text:
        # A mix of text and templates: the interpolated string decides by its truthiness.
        text = to_string(
            interpolate(text, contexts, {**(functions or {}), **(status_functions or {})})
        )
        text = "'" + text.replace("'", "''") + "'"
    funcs = {**(functions or {}), **(status_functions or {})}
    arity = {k.lower(): (0, 255) for k in funcs if k.lower() not in KNOWN_FUNCTIONS}
    node = parse(text, arity)
    try:
        if not _uses_status_function(node):
            node = Binary("&&", Call("success", (), 0), node, 0)
        return truthy(_plain(_Evaluator(text, contexts, funcs).eval(node)))
    except RecursionError:
        raise ExpressionError("Exceeded max expression depth", 0, text) from None


def find_expressions(text: str) -> list[tuple[int, int, str]]:
    """The ``${{ … }}`` spans in ``text``: (start, end, inner), aware of quoted strings."""
    spans: list[tuple[int, int, str]] = []
    i = 0
    while True:
        start = text.find("${{", i)
        if start < 0:
            return spans
        j = start + 3
        in_str = False
        while j < len(text):
            c = text[j]
            if in_str:
                if c == "'":
                    if j + 1 < len(text) and text[j + 1] == "'":
                        j += 2
                        continue
                    in_str = False
            elif c == "'":
                in_str = True
            elif text.startswith("}}", j):
                break
            j += 1
        else:
            raise ExpressionError("Unterminated expression: missing '}}'", start, text)
        spans.append((start, j + 2, text[start + 3 : j]))
        i = j + 2


def interpolate(
    text: str, contexts: Mapping[str, Any], functions: Mapping[str, Function] | None = None
) -> str:
    """Replace each ``${{ expr }}`` in ``text`` with its value as a string (objects as JSON)."""
    if "${{" not in text:
        return text
    out: list[str] = []
    pos = 0
    for start, end, inner in find_expressions(text):
        out.append(text[pos:start])
        value = evaluate(inner, contexts, functions)
        out.append(to_json(value) if isinstance(value, dict | list) else to_string(value))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def evaluate_value(
    value: Any, contexts: Mapping[str, Any], functions: Mapping[str, Function] | None = None
) -> Any:
    """Evaluate templates in a YAML value: a string that is exactly one ``${{ }}`` keeps the
    expression's type; other strings are interpolated; lists and mappings recursively."""
    if isinstance(value, str):
        if "${{" not in value:
            return value
        stripped = value.strip()
        spans = find_expressions(stripped)
        if len(spans) == 1 and spans[0][0] == 0 and spans[0][1] == len(stripped):
            return evaluate(spans[0][2], contexts, functions)
        return interpolate(value, contexts, functions)
    if isinstance(value, list):
        return [evaluate_value(v, contexts, functions) for v in value]
    if isinstance(value, dict):
        return {
            evaluate_value(k, contexts, functions) if isinstance(k, str) else k: evaluate_value(
                v, contexts, functions
            )
            for k, v in value.items()
        }
    return value
