"""The rubric spec: one versioned JSON document that is at once the LM-judge prompt, the labeling form and the reward.

Public API::

    validate_spec(data: dict, *, python_allowlist: Iterable[str] = ()) -> RubricSpec   # raises SpecError
    spec_json_schema() -> dict                                                        # JSON Schema of the spec
    RubricSpec, JudgeCriterion, MatchCriterion, FormatCriterion, JsonCriterion, LengthCriterion, PythonCriterion,
    ReasoningGymCriterion
    SpecError(errors: list[{"path": "criteria.1.pattern", "message": "..."}])

A spec looks like::

    {"criteria": [
        {"key": "correct", "title": "Correct final answer", "kind": "match", "weight": 1.0,
         "extract": "answer_tag", "mode": "numeric", "tolerance": 0.0},
        {"key": "format", "title": "Answer inside <answer> tags", "kind": "format", "weight": 0.25,
         "check": "answer_tag"}],
     "gates": [{"criterion": "correct", "below": 0.5}],
     "judge": {"max_criteria_per_call": 1, "group_relative": false}}

Every criterion scores 0..1; the rubric total is the weighted mean over criteria with weight > 0 (weight 0 criteria
are logged metrics only), forced to 0 when a gate's criterion scores below its threshold.

`python` criteria name a function by dotted path and are only accepted when the path is in the allowlist the caller
passes (the web app passes its RUBRICON_PYTHON_REWARD_ALLOWLIST setting); this module never reads settings.
Regexes are compiled with RE2 (linear time), so a catastrophic pattern such as `(a+)+$` cannot hang a worker.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import jsonschema
import re2
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from training.templating import BoundedSandbox, BoundedTemplate, TemplateLimitError, bounded_environment

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

# Sizes a rubric stays within: the editor renders every criterion, every judge call carries the questions, and one
# request must not be able to store a document that makes those pages slow (10,000 criteria took 9.7 s to edit).
MAX_CRITERIA = 100
MAX_CHOICES = 20
MAX_GATES = MAX_CRITERIA
MAX_TITLE_CHARS = 200
MAX_TEXT_CHARS = 5_000  # descriptions
MAX_QUESTION_CHARS = 10_000
MAX_PATTERN_CHARS = 2_000
MAX_VALUE_CHARS = 10_000
MAX_SCHEMA_DEPTH = 32
MAX_SCHEMA_NODES = 5_000

# Variables a judge question may use; anything else is a typo that would only surface at judging time.
JUDGE_TEMPLATE_VARIABLES = frozenset(
    {"prompt", "messages", "completion", "reference", "criterion", "choices", "info"}
)

ExtractMode = Literal["answer_tag", "boxed", "last_number", "json_block", "full"]
FormatCheck = Literal["think_answer_tags", "answer_tag", "boxed", "last_number", "json_block"]


# Seconds a trial render may take while an author saves a rubric (a judging render gets RENDER_SECONDS).
VALIDATION_RENDER_SECONDS = 1.0


@functools.cache
def jinja_environment() -> BoundedSandbox:
    """The one Jinja environment for judge questions: sandboxed (no attribute escapes), strict about unknown names,
    with a work/size/time budget per render (training/templating.py)."""
    return bounded_environment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False
    )


@functools.lru_cache(maxsize=512)
def compiled_template(source: str) -> Template:
    # Compiling costs ~1 ms; a rubric asks the same few questions of thousands of rollouts.
    return jinja_environment().from_string(source)


def compile_regex(pattern: str) -> Any:
    """Compile with RE2: linear-time matching, so no pattern can backtrack catastrophically."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CriterionBase(_Model):
    key: str = Field(
        pattern=KEY_PATTERN, description="Stable slug; scores and labels are matched across versions by it."
    )
    title: str = Field(
        min_length=1, max_length=MAX_TITLE_CHARS, description="Short name shown to judges and annotators."
    )
    description: str = Field(
        default="", max_length=MAX_TEXT_CHARS, description="Longer guidance for annotators and judges."
    )
    weight: float = Field(
        default=1.0,
        ge=0,
        allow_inf_nan=False,
        description="Share of the total; 0 = logged metric, not reward.",
    )


class JudgeChoice(_Model):
    label: str = Field(min_length=1, max_length=MAX_TITLE_CHARS)
    description: str = Field(default="", max_length=MAX_TEXT_CHARS)


class JudgeScale(_Model):
    min: float = Field(allow_inf_nan=False)
    max: float = Field(allow_inf_nan=False)

    @model_validator(mode="after")
    def _ordered(self) -> JudgeScale:
        if self.max <= self.min:
            raise ValueError(f"scale max ({self.max:g}) must be greater than min ({self.min:g})")
        return self


class JudgeCriterion(CriterionBase):
    kind: Literal["judge"]
    question: str = Field(
        min_length=1,
        max_length=MAX_QUESTION_CHARS,
        description="Jinja template asked to the judge about the rollout.",
    )
    choices: list[JudgeChoice] | None = Field(
        default=None,
        max_length=MAX_CHOICES,
        description="Ordinal answers, worst first; mapped evenly onto 0..1.",
    )
    scale: JudgeScale | None = Field(
        default=None, description="Numeric answer range, mapped linearly onto 0..1."
    )
    use_reference: bool = Field(
        default=False, description="Show the example's reference answer to the judge."
    )

    @field_validator("question")
    @classmethod
    def _question_template(cls, value: str) -> str:
        check_judge_template(value)
        return value

    @field_validator("choices")
    @classmethod
    def _choices(cls, value: list[JudgeChoice] | None) -> list[JudgeChoice] | None:
        if value is None:
            return value
        if len(value) < 2:
            raise ValueError("give at least 2 choices, worst first (e.g. 'no', 'yes')")
        labels = [c.label.strip().lower() for c in value]
        if len(set(labels)) != len(labels):
            raise ValueError(
                "choice labels must be unique (case-insensitive) so a verdict maps to one choice"
            )
        return value

    @model_validator(mode="after")
    def _one_answer_form(self) -> JudgeCriterion:
        if (self.choices is None) == (self.scale is None):
            raise ValueError(
                "give either 'choices' (worst to best) or a numeric 'scale' {min, max}, not both"
            )
        return self

    def choice_score(self, index: int) -> float:
        assert self.choices is not None
        return index / (len(self.choices) - 1)


class MatchCriterion(CriterionBase):
    kind: Literal["match"]
    extract: ExtractMode = Field(
        default="answer_tag", description="How the answer is taken out of the completion."
    )
    mode: Literal["exact", "normalized", "contains", "regex", "numeric", "math"] = "exact"
    pattern: str | None = Field(
        default=None,
        max_length=MAX_PATTERN_CHARS,
        description="RE2 pattern searched in the answer (mode 'regex').",
    )
    tolerance: float = Field(
        default=0.0, ge=0, allow_inf_nan=False, description="Absolute tolerance (mode 'numeric')."
    )
    value: Annotated[str, Field(max_length=MAX_VALUE_CHARS)] | int | float | None = Field(
        default=None, description="Expected answer; default is the example's reference answer."
    )

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_regex(value)
            except re2.error as exc:
                reason = (
                    exc.args[0].decode(errors="replace")
                    if exc.args and isinstance(exc.args[0], bytes)
                    else exc
                )
                raise ValueError(
                    f"invalid regex ({reason}); patterns use RE2 syntax: no backreferences or lookaround"
                ) from None
        return value

    @model_validator(mode="after")
    def _pattern_needed(self) -> MatchCriterion:
        if self.mode == "regex" and not self.pattern:
            raise _FieldError("pattern", "mode 'regex' needs a 'pattern' (RE2 syntax), e.g. '^\\d+$'")
        if self.mode == "numeric" and self.value is not None and _to_number(self.value) is None:
            raise _FieldError("value", f"mode 'numeric' needs a number as 'value', got {self.value!r}")
        return self


class FormatCriterion(CriterionBase):
    kind: Literal["format"]
    check: FormatCheck


class JsonCriterion(CriterionBase):
    kind: Literal["json"]
    extract: Literal["full", "json_block"] = "json_block"
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="JSON Schema the parsed value must conform to."
    )
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            _check_json_size(value)
            validator_cls = jsonschema.validators.validator_for(value)
            try:
                validator_cls.check_schema(value)
            except jsonschema.SchemaError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
                raise ValueError(f"invalid JSON Schema at {where}: {exc.message}") from None
        return value


class LengthCriterion(CriterionBase):
    kind: Literal["length"]
    unit: Literal["chars", "tokens"] = "chars"
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)
    slack: int = Field(
        default=0,
        ge=0,
        description="Score falls linearly from 1 to 0 over this many units outside [min, max]; 0 = hard bound.",
    )

    @model_validator(mode="after")
    def _bounds(self) -> LengthCriterion:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _FieldError("max", f"max ({self.max}) must be >= min ({self.min})")
        return self


class PythonCriterion(CriterionBase):
    kind: Literal["python"]
    function: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$",
        max_length=300,
        description="Dotted path 'package.module.function'; must be in the server's allowlist.",
    )

    @field_validator("function")
    @classmethod
    def _allowlisted(cls, value: str, info: ValidationInfo) -> str:
        allowlist = tuple((info.context or {}).get("python_allowlist", ()))
        if not is_allowlisted(value, allowlist):
            raise ValueError(
                f"{value!r} is not in the Python reward allowlist; ask an admin to add it to "
                "RUBRICON_PYTHON_REWARD_ALLOWLIST"
            )
        try:
            resolve_function(value)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"cannot import {value!r}: {exc}") from None
        return value


class ReasoningGymCriterion(CriterionBase):
    """reasoning-gym's own `score_answer` on the answer taken out of the completion. The example must come from a
    reasoning-gym import (its `info.reasoning_gym` holds the entry the score is computed against)."""

    kind: Literal["reasoning_gym"]
    extract: ExtractMode = Field(
        default="answer_tag",
        description="How the answer is taken out of the completion (reasoning-gym asks for <answer> tags).",
    )
    dataset: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,64}$",
        description="Score with this reasoning-gym dataset's rules; blank = the dataset the example came from.",
    )

    @field_validator("dataset")
    @classmethod
    def _known_dataset(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from training.sources import reasoning_gym

        if reasoning_gym.available() and value not in reasoning_gym.dataset_names():
            raise ValueError(f"no reasoning-gym dataset named {value!r}")
        return value


Criterion = Annotated[
    JudgeCriterion
    | MatchCriterion
    | FormatCriterion
    | JsonCriterion
    | LengthCriterion
    | PythonCriterion
    | ReasoningGymCriterion,
    Field(discriminator="kind"),
]
CRITERION_KINDS = ("judge", "match", "format", "json", "length", "python", "reasoning_gym")


class Gate(_Model):
    criterion: str = Field(description="Key of the gating criterion.")
    below: float = Field(
        default=1.0, gt=0, le=1, description="Total is 0 when the criterion scores below this."
    )


class JudgeOptions(_Model):
    max_criteria_per_call: int = Field(
        default=1, ge=1, description="Judge criteria asked together in one call."
    )
    group_relative: bool = Field(
        default=False,
        description="Score all rollouts of a group in one call (RULER-style), relative to each other.",
    )


def _check_json_size(value: Any) -> None:
    """Nesting depth and node count of a JSON value, counted without recursion."""
    nodes_seen = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        nodes_seen += 1
        if depth > MAX_SCHEMA_DEPTH:
            raise ValueError(f"nested deeper than {MAX_SCHEMA_DEPTH} levels; flatten the schema")
        if nodes_seen > MAX_SCHEMA_NODES:
            raise ValueError(f"more than {MAX_SCHEMA_NODES:,} values; shorten the schema")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)


class RubricSpec(_Model):
    criteria: list[Criterion] = Field(
        min_length=1,
        max_length=MAX_CRITERIA,
        description=f"At most {MAX_CRITERIA} criteria; split a larger rubric by task.",
    )
    gates: list[Gate] = Field(default_factory=list, max_length=MAX_GATES)
    judge: JudgeOptions = Field(default_factory=JudgeOptions)

    @model_validator(mode="after")
    def _consistent(self) -> RubricSpec:
        seen: dict[str, int] = {}
        for i, criterion in enumerate(self.criteria):
            if criterion.key in seen:
                raise _FieldError(
                    f"criteria.{i}.key",
                    f"key {criterion.key!r} is already used by criteria.{seen[criterion.key]}; keys must be unique",
                )
            seen[criterion.key] = i
        if sum(c.weight for c in self.criteria) <= 0:
            raise _FieldError("criteria", "all weights are 0; give at least one criterion a weight > 0")
        for i, gate in enumerate(self.gates):
            if gate.criterion not in seen:
                raise _FieldError(
                    f"gates.{i}.criterion", f"unknown criterion {gate.criterion!r}; use one of {sorted(seen)}"
                )
        return self

    def criterion(self, key: str) -> Any:
        for c in self.criteria:
            if c.key == key:
                return c
        raise KeyError(key)

    @property
    def judge_criteria(self) -> list[JudgeCriterion]:
        return [c for c in self.criteria if isinstance(c, JudgeCriterion)]


class _FieldError(ValueError):
    """A model-level check that knows which field is wrong (path relative to the model being validated)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class SpecError(ValueError):
    """An invalid rubric spec. `errors` is a list of {"path": "criteria.1.pattern", "message": "..."}."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['path'] or '(spec)'}: {e['message']}" for e in errors))


def is_allowlisted(path: str, allowlist: Iterable[str]) -> bool:
    """Exact dotted paths, or 'package.module.*' to allow every function of a module."""
    return any(
        path == entry or (entry.endswith("*") and fnmatch.fnmatchcase(path, entry)) for entry in allowlist
    )


def resolve_function(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    func = getattr(importlib.import_module(module_name), attr)
    if not callable(func):
        raise AttributeError(f"{path} is not callable")
    return func


def check_judge_template(source: str) -> None:
    """Reject syntax errors, unknown variables and sandbox escapes now, not at judging time."""
    env = jinja_environment()
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error on line {exc.lineno}: {exc.message}") from None
    # Private/dunder attributes are how sandbox escapes start; the sandbox blocks them at render time, but an author
    # should hear about it now, whatever the data.
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        name = node.attr if isinstance(node, nodes.Getattr) else getattr(getattr(node, "arg", None), "value", None)
        if isinstance(name, str) and name.startswith("_"):
            raise ValueError(f"template is not allowed by the sandbox: access to {name!r} is unsafe")
    try:
        # Analysis compiles the template, which is where an unknown filter or test is found.
        unknown = meta.find_undeclared_variables(ast) - JUDGE_TEMPLATE_VARIABLES
    except TemplateSyntaxError as exc:
        raise ValueError(f"template error on line {exc.lineno}: {exc.message}") from None
    if unknown:
        raise ValueError(
            f"unknown template variable(s) {sorted(unknown)}; available: {sorted(JUDGE_TEMPLATE_VARIABLES)}"
        )
    # A trial render with representative values catches sandbox violations ('__class__' etc.) and misuse of
    # the variables' types, which static analysis cannot see.
    sample = {
        "prompt": "p",
        "messages": [{"role": "user", "content": "p"}],
        "completion": "c",
        "reference": "r",
        "criterion": {"key": "k", "title": "t", "description": "d"},
        "choices": [{"label": "no", "description": ""}, {"label": "yes", "description": ""}],
        "info": {},
    }
    template = env.from_string(source)
    assert isinstance(template, BoundedTemplate)
    try:
        template.render_bounded(sample, seconds=VALIDATION_RENDER_SECONDS)
    except TemplateLimitError as exc:
        raise ValueError(f"template exceeds a limit: {exc}") from None
    except SecurityError as exc:
        raise ValueError(f"template is not allowed by the sandbox: {exc}") from None
    except UndefinedError:
        # Accessing a missing key of `info` or `criterion` is data-dependent, not a template bug.
        pass
    except Exception as exc:  # noqa: BLE001 - any render failure is a template problem to show the author
        raise ValueError(f"template fails to render: {exc}") from None


def _to_number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


_KIND_MESSAGE = f"'kind' must be one of {', '.join(CRITERION_KINDS)}"


def _error_path(loc: tuple[Any, ...]) -> list[str]:
    parts: list[str] = []
    for i, item in enumerate(loc):
        # The discriminated union adds the tag ("match") after the list index; it is not a field of the document.
        if i >= 2 and loc[i - 2] == "criteria" and isinstance(loc[i - 1], int) and item in CRITERION_KINDS:
            continue
        if item == "schema_":
            item = "schema"
        parts.append(str(item))
    return parts


def _error_message(err: Any) -> str:
    kind = err["type"]
    if kind == "union_tag_not_found":
        return f"missing 'kind'; {_KIND_MESSAGE}"
    if kind == "union_tag_invalid":
        return f"unknown kind {err['input'].get('kind')!r}; {_KIND_MESSAGE}"
    if kind == "extra_forbidden":
        return "unknown field; remove it or check its spelling"
    if kind == "missing":
        return "this field is required"
    if kind == "string_pattern_mismatch" and err["loc"][-1] == "key":
        return "key must be a lowercase slug: a letter, then letters, digits or '_' (max 64 chars)"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op, bound = {
            "greater_than_equal": (">=", "ge"),
            "greater_than": (">", "gt"),
            "less_than_equal": ("<=", "le"),
            "less_than": ("<", "lt"),
        }[kind]
        return f"must be {op} {err['ctx'][bound]}, got {err['input']!r}"
    if kind == "too_long":
        return f"too many items: at most {err['ctx']['max_length']}, got {err['ctx'].get('actual_length', 'more')}"
    if kind == "string_too_long":
        return f"too long: at most {err['ctx']['max_length']:,} characters"
    if kind == "literal_error":
        return f"invalid value {err['input']!r}; expected {err['ctx']['expected']}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def validate_spec(data: Any, *, python_allowlist: Iterable[str] = ()) -> RubricSpec:
    """Validate a rubric spec dict; raise SpecError listing every problem with its path and a fix-it message."""
    if not isinstance(data, dict):
        raise SpecError([{"path": "", "message": "the spec must be a JSON object with a 'criteria' list"}])
    # Counted before validation, which would otherwise check (and trial-render) every one of 10,000 criteria first.
    for name, limit in (("criteria", MAX_CRITERIA), ("gates", MAX_GATES)):
        items = data.get(name)
        if isinstance(items, list) and len(items) > limit:
            raise SpecError([{"path": name, "message": f"too many items: at most {limit}, got {len(items):,}"}])
    try:
        return RubricSpec.model_validate(data, context={"python_allowlist": tuple(python_allowlist)})
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            path = _error_path(err["loc"])
            original = err.get("ctx", {}).get("error")
            if isinstance(original, _FieldError):
                path = path + original.path.split(".")
                message = original.message
            else:
                message = _error_message(err)
            errors.append({"path": ".".join(p for p in path if p), "message": message})
        raise SpecError(errors) from None


def spec_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the rubric spec, for the editor and API docs."""
    return RubricSpec.model_json_schema(by_alias=True)
