"""Workflow files: YAML loading with positions, the model, and validation.

``parse_workflow(path, text)`` returns a :class:`Workflow` or raises :class:`WorkflowError` with
every problem found, each with its file, line and column (1-based). Pure: no database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from opencodehub.actions.expressions import ExpressionError, find_expressions, parse
from opencodehub.actions.filters import (
    FilterError,
    glob_to_regex,
    match_any_path,
    match_ref_filters,
)

__all__ = [
    "CallInput",
    "Concurrency",
    "DispatchInput",
    "Job",
    "PullRequestTrigger",
    "PushTrigger",
    "ReusableRef",
    "Step",
    "Workflow",
    "WorkflowCall",
    "WorkflowError",
    "WorkflowIssue",
    "check_call",
    "load_yaml",
    "parse_uses",
    "parse_workflow",
]

Path_ = tuple[Any, ...]


@dataclass(frozen=True)
class WorkflowIssue:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class WorkflowError(ValueError):
    def __init__(self, errors: list[WorkflowIssue]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


# ---------------------------------------------------------------------------------------------
# YAML with positions (YAML 1.2 core scalars: `on`, `yes`, `no` stay strings)

_INT = re.compile(r"[-+]?(?:[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")


def _scalar(node: yaml.ScalarNode) -> Any:
    value = node.value
    if node.style is not None or (node.tag == "tag:yaml.org,2002:str" and node.tag != node.tag):
        return value
    if node.tag in ("tag:yaml.org,2002:str",) and node.style is None and _explicit_str(node):
        return value
    if value in ("null", "Null", "NULL", "~", ""):
        return None
    if value in ("true", "True", "TRUE"):
        return True
    if value in ("false", "False", "FALSE"):
        return False
    if _INT.fullmatch(value):
        body = value.lstrip("+-")
        sign = -1 if value.startswith("-") else 1
        if body.startswith("0x"):
            return sign * int(body[2:], 16)
        if body.startswith("0o"):
            return sign * int(body[2:], 8)
        return int(value)
    if _FLOAT.fullmatch(value):
        return float(value)
    if value in (".inf", ".Inf", "+.inf", "-.inf", ".nan", ".NaN"):
        return float(value.replace(".", "").replace("Inf", "inf").replace("NaN", "nan"))
    return value


def _explicit_str(node: yaml.ScalarNode) -> bool:
    # `!!str 123` carries the tag explicitly; the composer cannot tell us, so compare to the
    # implicit resolution of the plain value.
    return False


class _Loader(yaml.SafeLoader):
    pass


def load_yaml(
    file: str, text: str
) -> tuple[Any, dict[Path_, tuple[int, int]], list[WorkflowIssue]]:
    """Parse YAML into plain Python values plus a map from value path to (line, column)."""
    marks: dict[Path_, tuple[int, int]] = {}
    issues: list[WorkflowIssue] = []
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or str(exc)
        return None, marks, [WorkflowIssue(file, line, col, f"invalid YAML: {problem}")]
    except yaml.YAMLError as exc:
        return None, marks, [WorkflowIssue(file, 1, 1, f"invalid YAML: {exc}")]
    if root is None:
        return None, marks, [WorkflowIssue(file, 1, 1, "the workflow file is empty")]

    def build(node: yaml.Node, path: Path_, depth: int) -> Any:
        marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if depth > 64:
            raise yaml.YAMLError("nesting too deep")
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [build(child, (*path, i), depth + 1) for i, child in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or (
                isinstance(key_node, yaml.ScalarNode) and key_node.value == "<<"
            ):
                merged = build(value_node, (*path, "<<"), depth + 1)
                for item in merged if isinstance(merged, list) else [merged]:
                    if isinstance(item, dict):
                        for k, v in item.items():
                            out.setdefault(k, v)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                issues.append(WorkflowIssue(file, line, col, "a mapping key must be a scalar"))
                continue
            # Keys are strings, whatever they look like (`on`, `3`, `true`).
            key = key_node.value
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                issues.append(WorkflowIssue(file, line, col, f"duplicate key '{key}'"))
            marks[(*path, ("key", key))] = (
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            out[key] = build(value_node, (*path, key), depth + 1)
        return out

    try:
        data = build(root, (), 0)
    except (yaml.YAMLError, RecursionError) as exc:
        return None, marks, [WorkflowIssue(file, 1, 1, f"invalid YAML: {exc}")]
    return data, marks, issues


# ---------------------------------------------------------------------------------------------
# Model


@dataclass
class DispatchInput:
    name: str
    type: str = "string"  # string, boolean, choice, number, environment
    description: str = ""
    required: bool = False
    default: Any = None
    options: list[str] = field(default_factory=list)

    def coerce(self, value: Any) -> Any:
        """Validate and convert a submitted value (strings from forms) to the input's type."""
        if value is None or value == "":
            if self.required and self.default in (None, ""):
                raise ValueError(f"input '{self.name}' is required")
            value = self.default
            if value is None:
                return "" if self.type not in ("boolean",) else False
        if self.type == "boolean":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "false"):
                return text == "true"
            raise ValueError(f"input '{self.name}' must be true or false")
        if self.type == "number":
            try:
                num = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"input '{self.name}' must be a number") from None
            return int(num) if num.is_integer() else num
        text = str(value)
        if self.type == "choice" and text not in self.options:
            raise ValueError(f"input '{self.name}' must be one of: {', '.join(self.options)}")
        return text


@dataclass
class PushTrigger:
    branches: list[str] | None = None
    branches_ignore: list[str] | None = None
    tags: list[str] | None = None
    tags_ignore: list[str] | None = None
    paths: list[str] | None = None
    paths_ignore: list[str] | None = None

    def matches(self, ref: str, changed_paths: Iterable[str] | None = None) -> bool:
        has_branch = self.branches is not None or self.branches_ignore is not None
        has_tag = self.tags is not None or self.tags_ignore is not None
        if ref.startswith("refs/heads/"):
            if has_tag and not has_branch:
                return False
            name = ref[len("refs/heads/") :]
            if not match_ref_filters(name, self.branches, self.branches_ignore):
                return False
            return match_any_path(changed_paths, self.paths, self.paths_ignore)
        if ref.startswith("refs/tags/"):
            if has_branch and not has_tag:
                return False
            # Path filters are not evaluated for tag pushes.
            return match_ref_filters(ref[len("refs/tags/") :], self.tags, self.tags_ignore)
        return not (has_branch or has_tag)


@dataclass
class PullRequestTrigger:
    types: list[str] | None = None
    branches: list[str] | None = None
    branches_ignore: list[str] | None = None
    paths: list[str] | None = None
    paths_ignore: list[str] | None = None

    DEFAULT_TYPES = ("opened", "synchronize", "reopened")

    def matches(
        self, action: str, base_ref: str, changed_paths: Iterable[str] | None = None
    ) -> bool:
        types = self.types if self.types is not None else list(self.DEFAULT_TYPES)
        if action not in types:
            return False
        base = base_ref[len("refs/heads/") :] if base_ref.startswith("refs/heads/") else base_ref
        if not match_ref_filters(base, self.branches, self.branches_ignore):
            return False
        return match_any_path(changed_paths, self.paths, self.paths_ignore)


@dataclass
class Concurrency:
    group: str
    cancel_in_progress: bool | str = False


@dataclass
class CallInput:
    """An input of `on.workflow_call`: typed (string, boolean, number), as GitHub types them."""

    name: str
    type: str = "string"
    description: str = ""
    required: bool = False
    default: Any = None

    def coerce(self, value: Any, given: bool) -> Any:
        """The value a caller's `with:` gives (after evaluation); ValueError for a value of
        the wrong type. `given` is False when the caller left the input out."""
        if not given:
            if self.default is not None:
                return self.default
            return {"boolean": False, "number": 0}.get(self.type, "")
        if self.type == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise ValueError(f"input '{self.name}' must be a boolean, got {value!r}")
        if self.type == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return value
            try:
                num = float(str(value))
            except ValueError:
                raise ValueError(f"input '{self.name}' must be a number, got {value!r}") from None
            return int(num) if num.is_integer() else num
        if isinstance(value, dict | list):
            raise ValueError(f"input '{self.name}' must be a string")
        if isinstance(value, bool):
            return "true" if value else "false"
        return "" if value is None else str(value)


@dataclass
class WorkflowCall:
    """`on.workflow_call`: what a reusable workflow takes and gives."""

    inputs: dict[str, CallInput] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)  # name -> value expression
    secrets: dict[str, bool] = field(default_factory=dict)  # name -> required


@dataclass(frozen=True)
class ReusableRef:
    """A job-level `uses:`: `./.github/workflows/x.yml` (same repository, same commit) or
    `owner/repo/.github/workflows/x.yml@ref`."""

    path: str
    owner: str | None = None
    repo: str | None = None
    ref: str | None = None

    @property
    def local(self) -> bool:
        return self.owner is None


_REUSABLE_LOCAL = re.compile(r"\./(\.github/workflows/[A-Za-z0-9_.-]+\.ya?ml)")
_REUSABLE_REMOTE = re.compile(
    r"([A-Za-z0-9][A-Za-z0-9_.-]{0,99})/([A-Za-z0-9_.-]{1,100})/"
    r"(\.github/workflows/[A-Za-z0-9_.-]+\.ya?ml)@([^\s@~^:?*\[\\]{1,255})"
)


def parse_uses(uses: str) -> ReusableRef:
    """The reference of a job-level `uses:`; ValueError says what is wrong with it."""
    text = uses.strip()
    m = _REUSABLE_LOCAL.fullmatch(text)
    if m:
        return ReusableRef(path=m[1])
    m = _REUSABLE_REMOTE.fullmatch(text)
    if m and ".." not in m[4] and not m[4].startswith("-"):
        return ReusableRef(path=m[3], owner=m[1], repo=m[2], ref=m[4])
    raise ValueError(
        f"invalid reusable workflow reference '{uses}': use "
        "./.github/workflows/FILE.yml or OWNER/REPO/.github/workflows/FILE.yml@REF"
    )


@dataclass
class Step:
    index: int
    id: str | None = None
    name: str | None = None
    if_: Any = None
    run: str | None = None
    shell: str | None = None
    working_directory: str | None = None
    env: Any = field(default_factory=dict)  # a mapping, or one expression giving one
    uses: str | None = None
    with_: dict[str, Any] = field(default_factory=dict)
    continue_on_error: bool | str = False
    timeout_minutes: float | str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        if self.name:
            return str(self.name)
        if self.uses:
            return f"Run {self.uses}"
        first = (self.run or "").strip().splitlines()
        return f"Run {first[0]}" if first else "Run"


@dataclass
class Job:
    key: str
    name: str | None = None
    needs: list[str] = field(default_factory=list)
    if_: Any = None
    runs_on: Any = None  # str, list of labels, or {group, labels}
    env: Any = field(default_factory=dict)  # a mapping, or one expression giving one
    defaults: dict[str, Any] = field(default_factory=dict)
    timeout_minutes: float | str = 360
    continue_on_error: bool | str = False
    strategy: Any = None  # a mapping, or one expression giving one
    outputs: dict[str, str] = field(default_factory=dict)
    container: Any = None
    services: dict[str, Any] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    permissions: Any = None
    concurrency: Concurrency | None = None
    environment: Any = None
    uses: str | None = None  # a reusable workflow this job calls
    with_: dict[str, Any] = field(default_factory=dict)
    secrets: Any = None  # "inherit" or a mapping of name -> expression
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def runs_on_labels(self) -> list[str]:
        value = self.runs_on
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [str(v) for v in value]
        if isinstance(value, dict):
            labels = value.get("labels")
            if isinstance(labels, str):
                return [labels]
            return [str(v) for v in labels or []]
        return []

    @property
    def runs_on_group(self) -> str | None:
        if isinstance(self.runs_on, dict) and self.runs_on.get("group") is not None:
            return str(self.runs_on["group"])
        return None


@dataclass
class Workflow:
    path: str
    name: str
    run_name: str | None = None
    events: dict[str, Any] = field(default_factory=dict)  # event name -> its raw configuration
    push: PushTrigger | None = None
    pull_request: PullRequestTrigger | None = None
    pull_request_target: PullRequestTrigger | None = None
    dispatch_inputs: dict[str, DispatchInput] | None = None  # None: no workflow_dispatch
    call: WorkflowCall | None = None  # None: no workflow_call
    schedules: list[str] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    concurrency: Concurrency | None = None
    permissions: Any = None
    jobs: dict[str, Job] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict, repr=False)

    def issue(self, path: Path_, message: str, key: bool = False) -> WorkflowIssue:
        """An issue positioned at `path` of this workflow's file."""
        v = _Validator(self.path, self.marks)
        v.error(path, message, key)
        return v.issues[0]

    def triggered_by(self, event: str) -> bool:
        return event in self.events

    def matches_push(self, ref: str, changed_paths: Iterable[str] | None = None) -> bool:
        if "push" not in self.events:
            return False
        return (self.push or PushTrigger()).matches(ref, changed_paths)

    def matches_pull_request(
        self,
        action: str,
        base_ref: str,
        changed_paths: Iterable[str] | None = None,
        event: str = "pull_request",
    ) -> bool:
        if event not in self.events:
            return False
        trigger = self.pull_request if event == "pull_request" else self.pull_request_target
        return (trigger or PullRequestTrigger()).matches(action, base_ref, changed_paths)

    def job_levels(self) -> list[list[str]]:
        """Jobs grouped so that every job's needs are in earlier groups (workflow order kept)."""
        done: set[str] = set()
        levels: list[list[str]] = []
        remaining = list(self.jobs)
        while remaining:
            level = [k for k in remaining if all(n in done for n in self.jobs[k].needs)]
            if not level:  # cycles are rejected at parse time
                raise WorkflowError([WorkflowIssue(self.path, 1, 1, "cyclic needs")])
            levels.append(level)
            done.update(level)
            remaining = [k for k in remaining if k not in done]
        return levels

    def job_order(self) -> list[str]:
        return [k for level in self.job_levels() for k in level]


# ---------------------------------------------------------------------------------------------
# Validation

KNOWN_EVENTS = {
    "branch_protection_rule", "check_run", "check_suite", "create", "delete", "deployment",
    "deployment_status", "discussion", "discussion_comment", "fork", "gollum", "issue_comment",
    "issues", "label", "merge_group", "milestone", "page_build", "project", "project_card",
    "project_column", "public", "pull_request", "pull_request_review",
    "pull_request_review_comment", "pull_request_target", "push", "registry_package", "release",
    "repository_dispatch", "schedule", "status", "watch", "workflow_call", "workflow_dispatch",
    "workflow_run",
}  # fmt: skip
PR_TYPES = {
    "assigned", "unassigned", "labeled", "unlabeled", "opened", "edited", "closed", "reopened",
    "synchronize", "converted_to_draft", "ready_for_review", "locked", "unlocked",
    "review_requested", "review_request_removed", "auto_merge_enabled", "auto_merge_disabled",
    "milestoned", "demilestoned", "enqueued", "dequeued",
}  # fmt: skip
WORKFLOW_KEYS = {"name", "run-name", "on", "env", "defaults", "concurrency", "permissions", "jobs"}
JOB_KEYS = {
    "name", "needs", "if", "runs-on", "env", "defaults", "timeout-minutes", "continue-on-error",
    "strategy", "outputs", "container", "services", "steps", "permissions", "concurrency",
    "environment", "uses", "with", "secrets",
}  # fmt: skip
STEP_KEYS = {
    "id", "name", "if", "run", "shell", "working-directory", "env", "uses", "with",
    "continue-on-error", "timeout-minutes",
}  # fmt: skip
PUSH_KEYS = {"branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore"}
PR_KEYS = {"types", "branches", "branches-ignore", "paths", "paths-ignore"}
INPUT_KEYS = {"description", "required", "default", "type", "options", "deprecationMessage"}
INPUT_TYPES = {"string", "boolean", "choice", "number", "environment"}
CONTAINER_KEYS = {"image", "credentials", "env", "ports", "volumes", "options"}
STRATEGY_KEYS = {"matrix", "fail-fast", "max-parallel"}
PERMISSION_SCOPES = {
    "actions", "attestations", "checks", "contents", "deployments", "discussions", "id-token",
    "issues", "models", "packages", "pages", "pull-requests", "repository-projects",
    "security-events", "statuses",
}  # fmt: skip
JOB_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
# The keys a job calling a reusable workflow may have (GitHub's list).
CALLER_JOB_KEYS = {
    "name", "uses", "with", "secrets", "needs", "if", "permissions", "strategy", "concurrency",
}  # fmt: skip
CALL_KEYS = {"inputs", "outputs", "secrets"}
CALL_INPUT_KEYS = {"description", "required", "default", "type"}
CALL_INPUT_TYPES = {"string", "boolean", "number"}


class _Validator:
    def __init__(self, file: str, marks: dict[Path_, tuple[int, int]]) -> None:
        self.file = file
        self.marks = marks
        self.issues: list[WorkflowIssue] = []

    def pos(self, path: Path_, key: bool = False) -> tuple[int, int]:
        if key and path and (*path[:-1], ("key", path[-1])) in self.marks:
            return self.marks[(*path[:-1], ("key", path[-1]))]
        p = path
        while p not in self.marks and p:
            p = p[:-1]
        return self.marks.get(p, (1, 1))

    def error(self, path: Path_, message: str, key: bool = False) -> None:
        line, col = self.pos(path, key)
        self.issues.append(WorkflowIssue(self.file, line, col, message))

    def where(self, path: Path_) -> str:
        return ".".join(str(p) for p in path) or "workflow"

    def mapping(self, value: Any, path: Path_, allow_none: bool = True) -> dict[str, Any]:
        if value is None and allow_none:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"'{self.where(path)}' must be a mapping")
            return {}
        return value

    def keys(self, value: dict[str, Any], allowed: set[str], path: Path_) -> None:
        for key in value:
            if key not in allowed:
                self.error((*path, key), f"unknown key '{key}' in '{self.where(path)}'", key=True)

    def string(self, value: Any, path: Path_, allow_none: bool = True) -> str | None:
        if value is None and allow_none:
            return None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        self.error(path, f"'{self.where(path)}' must be a string")
        return None

    def string_list(self, value: Any, path: Path_) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if isinstance(value, list) and all(
            isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
        ):
            return [str(v) for v in value]
        self.error(path, f"'{self.where(path)}' must be a string or a list of strings")
        return None

    def env(self, value: Any, path: Path_) -> Any:
        if isinstance(value, str) and value.strip().startswith("${{") and len(path) > 1:
            # A job's or step's whole `env` may be one expression giving a mapping.
            self.expressions(value, path)
            return value
        env = self.mapping(value, path)
        out: dict[str, Any] = {}
        for k, v in env.items():
            if isinstance(v, dict | list):
                self.error((*path, k), f"'{self.where((*path, k))}' must be a string")
                continue
            out[k] = v
            if isinstance(v, str):
                self.expressions(v, (*path, k))
        return out

    def expressions(self, text: str, path: Path_) -> None:
        try:
            spans = find_expressions(text)
        except ExpressionError as exc:
            self.error(path, f"{self.where(path)}: {exc.message}")
            return
        for _start, _end, inner in spans:
            self.expression(inner, path)

    def expression(self, inner: str, path: Path_) -> None:
        try:
            parse(inner.strip())
        except ExpressionError as exc:
            self.error(path, f"{self.where(path)}: invalid expression: {exc}")

    def condition(self, value: Any, path: Path_) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if not isinstance(value, str):
            self.error(path, f"'{self.where(path)}' must be an expression")
            return None
        text = value.strip()
        try:
            spans = find_expressions(text)
        except ExpressionError as exc:
            self.error(path, f"{self.where(path)}: {exc.message}")
            return value
        if spans:
            for _s, _e, inner in spans:
                self.expression(inner, path)
        elif text:
            self.expression(text, path)
        return value

    def bool_or_expr(self, value: Any, path: Path_, default: bool = False) -> bool | str:
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and "${{" in value:
            self.expressions(value, path)
            return value
        self.error(path, f"'{self.where(path)}' must be a boolean or an expression")
        return default

    def number_or_expr(self, value: Any, path: Path_) -> float | str | None:
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value <= 0:
                self.error(path, f"'{self.where(path)}' must be a positive number")
            return value
        if isinstance(value, str) and "${{" in value:
            self.expressions(value, path)
            return value
        self.error(path, f"'{self.where(path)}' must be a number or an expression")
        return None

    def walk_strings(self, value: Any, path: Path_) -> None:
        if isinstance(value, str):
            self.expressions(value, path)
        elif isinstance(value, dict):
            for k, v in value.items():
                self.walk_strings(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.walk_strings(v, (*path, i))

    # --- triggers ---

    def patterns(self, value: Any, path: Path_) -> list[str] | None:
        items = self.string_list(value, path)
        for i, pat in enumerate(items or []):
            try:
                glob_to_regex(pat[1:] if pat.startswith("!") else pat)
            except FilterError as exc:
                self.error((*path, i), str(exc))
        return items

    def triggers(self, wf: Workflow, value: Any, path: Path_) -> None:
        events: dict[str, Any]
        if isinstance(value, str):
            events = {value: None}
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            events = dict.fromkeys(value)
        elif isinstance(value, dict):
            events = value
        else:
            self.error(path, "'on' must be an event name, a list of events or a mapping")
            return
        if not events:
            self.error(path, "'on' must name at least one event")
        for name, config in events.items():
            epath = (*path, name)
            if name not in KNOWN_EVENTS:
                self.error(epath, f"unknown event '{name}'", key=True)
                continue
            wf.events[name] = config
            if name == "push":
                cfg = self.mapping(config, epath)
                self.keys(cfg, PUSH_KEYS, epath)
                trig = PushTrigger(
                    branches=self.patterns(cfg.get("branches"), (*epath, "branches")),
                    branches_ignore=self.patterns(
                        cfg.get("branches-ignore"), (*epath, "branches-ignore")
                    ),
                    tags=self.patterns(cfg.get("tags"), (*epath, "tags")),
                    tags_ignore=self.patterns(cfg.get("tags-ignore"), (*epath, "tags-ignore")),
                    paths=self.patterns(cfg.get("paths"), (*epath, "paths")),
                    paths_ignore=self.patterns(cfg.get("paths-ignore"), (*epath, "paths-ignore")),
                )
                for a, b in (("branches", "branches-ignore"), ("tags", "tags-ignore"),
                             ("paths", "paths-ignore")):  # fmt: skip
                    if a in cfg and b in cfg:
                        self.error((*epath, b), f"'{a}' and '{b}' cannot be used together", True)
                wf.push = trig
            elif name in ("pull_request", "pull_request_target"):
                cfg = self.mapping(config, epath)
                self.keys(cfg, PR_KEYS, epath)
                types = self.string_list(cfg.get("types"), (*epath, "types"))
                for i, t in enumerate(types or []):
                    if t not in PR_TYPES:
                        self.error((*epath, "types", i), f"unknown pull_request type '{t}'")
                trig_pr = PullRequestTrigger(
                    types=types,
                    branches=self.patterns(cfg.get("branches"), (*epath, "branches")),
                    branches_ignore=self.patterns(
                        cfg.get("branches-ignore"), (*epath, "branches-ignore")
                    ),
                    paths=self.patterns(cfg.get("paths"), (*epath, "paths")),
                    paths_ignore=self.patterns(cfg.get("paths-ignore"), (*epath, "paths-ignore")),
                )
                for a, b in (("branches", "branches-ignore"), ("paths", "paths-ignore")):
                    if a in cfg and b in cfg:
                        self.error((*epath, b), f"'{a}' and '{b}' cannot be used together", True)
                if name == "pull_request":
                    wf.pull_request = trig_pr
                else:
                    wf.pull_request_target = trig_pr
            elif name == "workflow_dispatch":
                cfg = self.mapping(config, epath)
                self.keys(cfg, {"inputs"}, epath)
                wf.dispatch_inputs = self.inputs(cfg.get("inputs"), (*epath, "inputs"))
            elif name == "schedule":
                self.schedule(wf, config, epath)
            elif name == "workflow_call":
                wf.call = self.workflow_call(config, epath)
            elif config is not None and not isinstance(config, dict):
                self.error(epath, f"'{name}' must be a mapping")

    def inputs(self, value: Any, path: Path_) -> dict[str, DispatchInput]:
        out: dict[str, DispatchInput] = {}
        for name, spec in self.mapping(value, path).items():
            ipath = (*path, name)
            cfg = self.mapping(spec, ipath)
            self.keys(cfg, INPUT_KEYS, ipath)
            kind = cfg.get("type", "string")
            if kind not in INPUT_TYPES:
                self.error((*ipath, "type"), f"unknown input type '{kind}'")
                kind = "string"
            required = cfg.get("required", False)
            if not isinstance(required, bool):
                self.error((*ipath, "required"), "'required' must be a boolean")
                required = False
            options = self.string_list(cfg.get("options"), (*ipath, "options")) or []
            item = DispatchInput(
                name=name,
                type=kind,
                description=str(cfg.get("description") or ""),
                required=required,
                default=cfg.get("default"),
                options=options,
            )
            if kind == "choice" and not options:
                self.error(ipath, f"choice input '{name}' needs 'options'")
            if item.default is not None:
                try:
                    item.default = item.coerce(item.default)
                except ValueError as exc:
                    self.error((*ipath, "default"), f"invalid default: {exc}")
            out[name] = item
        return out

    def workflow_call(self, value: Any, path: Path_) -> WorkflowCall:
        cfg = self.mapping(value, path)
        self.keys(cfg, CALL_KEYS, path)
        call = WorkflowCall()
        ipath = (*path, "inputs")
        for name, spec in self.mapping(cfg.get("inputs"), ipath).items():
            spath = (*ipath, name)
            if not JOB_ID.fullmatch(name):
                self.error(spath, f"invalid input name '{name}'", True)
            item = self.mapping(spec, spath, allow_none=False)
            self.keys(item, CALL_INPUT_KEYS, spath)
            kind = item.get("type")
            if kind not in CALL_INPUT_TYPES:
                self.error((*spath, "type") if "type" in item else spath,
                           f"input '{name}' needs a 'type': boolean, number or string")  # fmt: skip
                kind = "string"
            required = item.get("required", False)
            if not isinstance(required, bool):
                self.error((*spath, "required"), "'required' must be a boolean")
                required = False
            default = item.get("default")
            if isinstance(default, str) and "${{" in default:
                self.expressions(default, (*spath, "default"))
            elif default is not None:
                ok = {
                    "boolean": isinstance(default, bool),
                    "number": isinstance(default, int | float) and not isinstance(default, bool),
                    "string": isinstance(default, str | int | float),
                }[kind]
                if not ok:
                    self.error((*spath, "default"), f"the default of '{name}' must be a {kind}")
            call.inputs[name] = CallInput(
                name=name,
                type=kind,
                description=str(item.get("description") or ""),
                required=required,
                default=default,
            )
        opath = (*path, "outputs")
        for name, spec in self.mapping(cfg.get("outputs"), opath).items():
            spath = (*opath, name)
            item = self.mapping(spec, spath, allow_none=False)
            self.keys(item, {"description", "value"}, spath)
            text = self.string(item.get("value"), (*spath, "value"), allow_none=False)
            if text is not None:
                self.expressions(text, (*spath, "value"))
                call.outputs[name] = text
        spath_ = (*path, "secrets")
        for name, spec in self.mapping(cfg.get("secrets"), spath_).items():
            item = self.mapping(spec, (*spath_, name))
            self.keys(item, {"description", "required"}, (*spath_, name))
            required = item.get("required", False)
            if not isinstance(required, bool):
                self.error((*spath_, name, "required"), "'required' must be a boolean")
                required = False
            call.secrets[name] = required
        return call

    def schedule(self, wf: Workflow, value: Any, path: Path_) -> None:
        from croniter import croniter

        if not isinstance(value, list) or not value:
            self.error(path, "'schedule' must be a list of '- cron: ...' entries")
            return
        for i, entry in enumerate(value):
            epath = (*path, i)
            cfg = self.mapping(entry, epath, allow_none=False)
            self.keys(cfg, {"cron"}, epath)
            cron = cfg.get("cron")
            if not isinstance(cron, str):
                self.error(epath, "a schedule entry needs 'cron'")
                continue
            fields = cron.split()
            if len(fields) != 5 or not croniter.is_valid(cron):
                self.error((*epath, "cron"), f"invalid cron expression '{cron}'")
                continue
            wf.schedules.append(cron)

    # --- jobs and steps ---

    def concurrency(self, value: Any, path: Path_) -> Concurrency | None:
        if value is None:
            return None
        if isinstance(value, str):
            self.expressions(value, path)
            return Concurrency(group=value)
        cfg = self.mapping(value, path)
        self.keys(cfg, {"group", "cancel-in-progress"}, path)
        group = self.string(cfg.get("group"), (*path, "group"), allow_none=False)
        if group:
            self.expressions(group, (*path, "group"))
        cancel = self.bool_or_expr(cfg.get("cancel-in-progress"), (*path, "cancel-in-progress"))
        return Concurrency(group=group or "", cancel_in_progress=cancel)

    def permissions(self, value: Any, path: Path_) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            if value not in ("read-all", "write-all"):
                self.error(path, "'permissions' must be read-all, write-all or a mapping")
            return value
        cfg = self.mapping(value, path)
        for scope, level in cfg.items():
            if scope not in PERMISSION_SCOPES:
                self.error((*path, scope), f"unknown permission scope '{scope}'", key=True)
            elif level not in ("read", "write", "none"):
                self.error((*path, scope), f"permission '{scope}' must be read, write or none")
        return cfg

    def defaults(self, value: Any, path: Path_) -> dict[str, Any]:
        cfg = self.mapping(value, path)
        self.keys(cfg, {"run"}, path)
        run = self.mapping(cfg.get("run"), (*path, "run"))
        self.keys(run, {"shell", "working-directory"}, (*path, "run"))
        for k in ("shell", "working-directory"):
            if k in run:
                self.string(run[k], (*path, "run", k))
        return cfg

    def job(self, key: str, value: Any, path: Path_) -> Job:
        cfg = self.mapping(value, path, allow_none=False)
        self.keys(cfg, JOB_KEYS, path)
        job = Job(key=key, raw=cfg)
        if not JOB_ID.fullmatch(key):
            self.error(path, f"invalid job id '{key}': use letters, digits, '-' and '_'", True)
        job.name = self.string(cfg.get("name"), (*path, "name"))
        if job.name:
            self.expressions(job.name, (*path, "name"))
        job.needs = self.string_list(cfg.get("needs"), (*path, "needs")) or []
        job.if_ = self.condition(cfg.get("if"), (*path, "if"))
        if "uses" in cfg:
            return self.caller_job(job, cfg, path)
        for k in ("with", "secrets"):
            if k in cfg:
                self.error((*path, k), f"'{k}' is only valid in a job with 'uses'", True)
        runs_on = cfg.get("runs-on")
        if runs_on is None:
            if "uses" not in cfg:
                self.error(path, f"job '{key}' needs 'runs-on'")
        elif isinstance(runs_on, dict):
            self.keys(runs_on, {"group", "labels"}, (*path, "runs-on"))
            self.string_list(runs_on.get("labels"), (*path, "runs-on", "labels"))
        else:
            self.string_list(runs_on, (*path, "runs-on"))
        self.walk_strings(runs_on, (*path, "runs-on"))
        job.runs_on = runs_on
        job.env = self.env(cfg.get("env"), (*path, "env"))
        job.defaults = self.defaults(cfg.get("defaults"), (*path, "defaults"))
        job.timeout_minutes = (
            self.number_or_expr(cfg.get("timeout-minutes"), (*path, "timeout-minutes")) or 360
        )
        job.continue_on_error = self.bool_or_expr(
            cfg.get("continue-on-error"), (*path, "continue-on-error")
        )
        job.permissions = self.permissions(cfg.get("permissions"), (*path, "permissions"))
        job.concurrency = self.concurrency(cfg.get("concurrency"), (*path, "concurrency"))
        job.environment = cfg.get("environment")
        if "strategy" in cfg:
            job.strategy = self.strategy(cfg["strategy"], (*path, "strategy"))
        outputs = self.mapping(cfg.get("outputs"), (*path, "outputs"))
        for name, expr in outputs.items():
            text = self.string(expr, (*path, "outputs", name), allow_none=False)
            if text is not None:
                self.expressions(text, (*path, "outputs", name))
                job.outputs[name] = text
        job.container = self.container(cfg.get("container"), (*path, "container"))
        services = self.mapping(cfg.get("services"), (*path, "services"))
        for name, svc in services.items():
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
                self.error((*path, "services", name), f"invalid service name '{name}'", True)
            job.services[name] = self.container(svc, (*path, "services", name), service=True)
        steps = cfg.get("steps")
        if "uses" not in cfg:
            if not isinstance(steps, list) or not steps:
                self.error((*path, "steps") if steps is not None else path,
                           f"job '{key}' needs a non-empty list of 'steps'")  # fmt: skip
            else:
                ids: set[str] = set()
                for i, raw in enumerate(steps):
                    step = self.step(i, raw, (*path, "steps", i))
                    if step.id:
                        if step.id in ids:
                            self.error((*path, "steps", i, "id"), f"duplicate step id '{step.id}'")
                        ids.add(step.id)
                    job.steps.append(step)
        return job

    def caller_job(self, job: Job, cfg: dict[str, Any], path: Path_) -> Job:
        """A job calling a reusable workflow: `uses`, `with`, `secrets` and the few keys such
        a job may have besides."""
        for k in cfg:
            if k not in CALLER_JOB_KEYS:
                self.error((*path, k),
                           f"'{k}' is not allowed in a job that calls a reusable workflow",
                           key=True)  # fmt: skip
        uses = self.string(cfg.get("uses"), (*path, "uses"), allow_none=False)
        if uses is not None:
            try:
                parse_uses(uses)
            except ValueError as exc:
                self.error((*path, "uses"), str(exc))
            job.uses = uses.strip()
        with_ = self.mapping(cfg.get("with"), (*path, "with"))
        for k, v in with_.items():
            if isinstance(v, dict | list):
                self.error((*path, "with", k), f"input '{k}' must be a string, number or boolean")
            elif isinstance(v, str):
                self.expressions(v, (*path, "with", k))
        job.with_ = with_
        secrets = cfg.get("secrets")
        if secrets == "inherit":
            job.secrets = "inherit"
        elif secrets is not None:
            mapping = self.mapping(secrets, (*path, "secrets"))
            for k, v in mapping.items():
                text = self.string(v, (*path, "secrets", k), allow_none=False)
                if text is not None:
                    self.expressions(text, (*path, "secrets", k))
            job.secrets = {k: str(v) for k, v in mapping.items() if v is not None}
        job.permissions = self.permissions(cfg.get("permissions"), (*path, "permissions"))
        job.concurrency = self.concurrency(cfg.get("concurrency"), (*path, "concurrency"))
        if "strategy" in cfg:
            job.strategy = self.strategy(cfg["strategy"], (*path, "strategy"))
        return job

    def container(self, value: Any, path: Path_, service: bool = False) -> Any:
        if value is None:
            return None
        if isinstance(value, str):
            self.expressions(value, path)
            return {"image": value}
        cfg = self.mapping(value, path)
        self.keys(cfg, CONTAINER_KEYS, path)
        if "image" not in cfg:
            self.error(path, f"'{self.where(path)}' needs an 'image'")
        self.walk_strings(cfg, path)
        return cfg

    def strategy(self, value: Any, path: Path_) -> Any:
        if isinstance(value, str) and "${{" in value:
            self.expressions(value, path)
            return value
        cfg = self.mapping(value, path, allow_none=False)
        self.keys(cfg, STRATEGY_KEYS, path)
        matrix = cfg.get("matrix")
        if isinstance(matrix, str):
            self.expressions(matrix, (*path, "matrix"))
        elif matrix is not None:
            mcfg = self.mapping(matrix, (*path, "matrix"))
            for k, v in mcfg.items():
                mpath = (*path, "matrix", k)
                if k in ("include", "exclude"):
                    if isinstance(v, str) and "${{" in v:
                        self.expressions(v, mpath)
                    elif not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
                        self.error(mpath, f"matrix '{k}' must be a list of mappings")
                elif isinstance(v, str) and "${{" in v:
                    self.expressions(v, mpath)
                elif not isinstance(v, list):
                    self.error(mpath, f"matrix '{k}' must be a list")
                elif not v:
                    self.error(mpath, f"matrix '{k}' must not be empty")
        self.bool_or_expr(cfg.get("fail-fast"), (*path, "fail-fast"), True)
        if "max-parallel" in cfg:
            self.number_or_expr(cfg.get("max-parallel"), (*path, "max-parallel"))
        return cfg

    def step(self, index: int, value: Any, path: Path_) -> Step:
        cfg = self.mapping(value, path, allow_none=False)
        self.keys(cfg, STEP_KEYS, path)
        step = Step(index=index, raw=cfg)
        step.id = self.string(cfg.get("id"), (*path, "id"))
        if step.id is not None and not JOB_ID.fullmatch(step.id):
            self.error((*path, "id"), f"invalid step id '{step.id}'")
        step.name = self.string(cfg.get("name"), (*path, "name"))
        step.if_ = self.condition(cfg.get("if"), (*path, "if"))
        has_run, has_uses = "run" in cfg, "uses" in cfg
        if has_run == has_uses:
            self.error(path, "a step needs exactly one of 'run' or 'uses'")
        if has_run:
            step.run = self.string(cfg.get("run"), (*path, "run"), allow_none=False)
            if step.run is not None:
                self.expressions(step.run, (*path, "run"))
            if "with" in cfg:
                self.error((*path, "with"), "'with' is only valid with 'uses'", True)
        if has_uses:
            step.uses = self.string(cfg.get("uses"), (*path, "uses"), allow_none=False)
            if step.uses is not None and not step.uses.strip():
                self.error((*path, "uses"), "'uses' must not be empty")
            for k in ("shell", "working-directory"):
                if k in cfg:
                    self.error((*path, k), f"'{k}' is only valid with 'run'", True)
        step.shell = self.string(cfg.get("shell"), (*path, "shell"))
        step.working_directory = self.string(
            cfg.get("working-directory"), (*path, "working-directory")
        )
        step.env = self.env(cfg.get("env"), (*path, "env"))
        with_ = self.mapping(cfg.get("with"), (*path, "with"))
        for k, v in with_.items():
            if isinstance(v, dict | list):
                self.error((*path, "with", k), f"input '{k}' must be a string")
            elif isinstance(v, str):
                self.expressions(v, (*path, "with", k))
        step.with_ = with_
        step.continue_on_error = self.bool_or_expr(
            cfg.get("continue-on-error"), (*path, "continue-on-error")
        )
        step.timeout_minutes = self.number_or_expr(
            cfg.get("timeout-minutes"), (*path, "timeout-minutes")
        )
        return step

    def needs(self, jobs: dict[str, Job]) -> None:
        for key, job in jobs.items():
            for i, need in enumerate(job.needs):
                if need not in jobs:
                    self.error(
                        ("jobs", key, "needs", i) if isinstance(job.raw.get("needs"), list)
                        else ("jobs", key, "needs"),
                        f"job '{key}' needs unknown job '{need}'",
                    )  # fmt: skip
                elif need == key:
                    self.error(("jobs", key, "needs"), f"job '{key}' needs itself")
        # Cycles: depth-first search with colours.
        state: dict[str, int] = {}
        reported: set[str] = set()

        def visit(k: str, stack: list[str]) -> None:
            state[k] = 1
            for n in jobs[k].needs:
                if n not in jobs or n == k:
                    continue
                if state.get(n) == 1:
                    cycle = [*stack[stack.index(n) :], n] if n in stack else [k, n]
                    if n not in reported:
                        reported.update(cycle)
                        self.error(("jobs", n, "needs"), "cyclic needs: " + " -> ".join(cycle))
                elif state.get(n) is None:
                    visit(n, [*stack, n])
            state[k] = 2

        for k in jobs:
            if state.get(k) is None:
                visit(k, [k])


def parse_workflow(path: str, text: str) -> Workflow:
    data, marks, issues = load_yaml(path, text)
    v = _Validator(path, marks)
    v.issues.extend(issues)
    if data is None:
        raise WorkflowError(v.issues)
    if not isinstance(data, dict):
        v.error((), "a workflow must be a mapping")
        raise WorkflowError(v.issues)
    v.keys(data, WORKFLOW_KEYS, ())
    default_name = path.rsplit("/", 1)[-1] if path else "workflow"
    wf = Workflow(
        path=path,
        name=v.string(data.get("name"), ("name",)) or default_name,
        raw=data,
        marks=marks,
    )
    wf.run_name = v.string(data.get("run-name"), ("run-name",))
    if wf.run_name:
        v.expressions(wf.run_name, ("run-name",))
    if "on" not in data:
        v.error((), "a workflow needs 'on'")
    else:
        v.triggers(wf, data["on"], ("on",))
    wf.env = v.env(data.get("env"), ("env",))
    wf.defaults = v.defaults(data.get("defaults"), ("defaults",))
    wf.concurrency = v.concurrency(data.get("concurrency"), ("concurrency",))
    wf.permissions = v.permissions(data.get("permissions"), ("permissions",))
    jobs = data.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        v.error(("jobs",) if "jobs" in data else (), "a workflow needs a mapping of 'jobs'")
    else:
        for key, value in jobs.items():
            wf.jobs[key] = v.job(key, value, ("jobs", key))
        v.needs(wf.jobs)
    if v.issues:
        v.issues.sort(key=lambda i: (i.line, i.column))
        raise WorkflowError(v.issues)
    return wf


def check_call(caller: Workflow, job: Job, called: Workflow, where: str) -> list[WorkflowIssue]:
    """What is wrong with `job` (of `caller`) calling `called` (found at `where`), as far as
    can be told before anything runs: a workflow without `workflow_call`, unknown or missing
    required inputs, literal inputs of the wrong type, unknown or missing required secrets.
    Positions are in the caller's file."""
    base: Path_ = ("jobs", job.key)
    if called.call is None:
        return [
            caller.issue(
                (*base, "uses"),
                f"'{where}' is not a reusable workflow: it has no 'on.workflow_call'",
            )
        ]
    issues: list[WorkflowIssue] = []
    for name, value in job.with_.items():
        spec = called.call.inputs.get(name)
        if spec is None:
            issues.append(
                caller.issue((*base, "with", name), f"unknown input '{name}' of '{where}'", True)
            )
        elif not (isinstance(value, str) and "${{" in value):
            try:
                spec.coerce(value, True)
            except ValueError as exc:
                issues.append(caller.issue((*base, "with", name), str(exc)))
    for name, spec in called.call.inputs.items():
        if spec.required and name not in job.with_ and spec.default is None:
            issues.append(caller.issue((*base, "uses"), f"input '{name}' of '{where}' is required"))
    if isinstance(job.secrets, dict):
        for name in job.secrets:
            if name not in called.call.secrets:
                issues.append(
                    caller.issue(
                        (*base, "secrets", name), f"unknown secret '{name}' of '{where}'", True
                    )
                )
    if job.secrets != "inherit":
        given = job.secrets if isinstance(job.secrets, dict) else {}
        for name, required in called.call.secrets.items():
            if required and name not in given:
                issues.append(
                    caller.issue((*base, "uses"), f"secret '{name}' of '{where}' is required")
                )
    return issues


def job_display_name(job: Job, matrix: dict[str, Any] | None, contexts: dict[str, Any]) -> str:
    """GitHub's name for a job: its `name:` (evaluated), else its key with matrix values."""
    from opencodehub.actions.expressions import ExpressionError as _EE
    from opencodehub.actions.expressions import interpolate, to_string

    if job.name:
        try:
            return interpolate(job.name, contexts)
        except _EE:
            return job.name
    if matrix:
        values = ", ".join(to_string(v) for v in _flat_values(matrix))
        return f"{job.key} ({values})"
    return job.key


def _flat_values(matrix: dict[str, Any]) -> Sequence[Any]:
    out: list[Any] = []
    for v in matrix.values():
        if isinstance(v, dict):
            out.extend(_flat_values(v))
        else:
            out.append(v)
    return out
