"""The rubric editor's form: POSTed fields <-> an editor state (a spec dict plus a few private `_` keys), the
structural edits (add / remove / reorder criteria, choices and gates), and the view model the templates render.

Input names are the engine's field paths (`criteria.1.pattern`), so an error the engine reports at a path lands on
the input of that name. Nothing here touches the database; saving goes through `webapp.rubrics.services`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from django.conf import settings

from training.rubrics.spec import CRITERION_KINDS, ExtractMode, FormatCheck, MatchCriterion
from webapp.core import safejson
from webapp.core.params import parse_id, parse_int
from webapp.rubrics.specs import criterion_defaults, judge_options, weight_shares

KIND_LABELS = {
    "judge": "LM judge",
    "match": "Match the answer",
    "format": "Format check",
    "json": "JSON",
    "length": "Length",
    "python": "Python function",
    "reasoning_gym": "reasoning-gym score",
}
MATCH_EXTRACTS = get_args(ExtractMode)
MATCH_MODES = get_args(MatchCriterion.model_fields["mode"].annotation)
FORMAT_CHECKS = get_args(FormatCheck)
JSON_EXTRACTS = ("json_block", "full")
LENGTH_UNITS = ("chars", "tokens")
ANSWER_FORMS = ("choices", "scale")
DEFAULT_CHOICES = [{"label": "no", "description": ""}, {"label": "yes", "description": ""}]
# Keys of the editor state that are not part of the spec: the judge's answer form ("choices" or "scale") and the
# values of the one not chosen, kept so toggling back does not lose what was typed.
PRIVATE = "_"

_CRITERION_KIND = re.compile(r"^criteria\.(\d+)\.kind$")
_GATE = re.compile(r"^gates\.(\d+)\.criterion$")


def _indices(names: Iterable[str], pattern: re.Pattern[str]) -> list[int]:
    found = set()
    for name in names:
        match = pattern.match(name)
        if match:
            found.add(int(match.group(1)))
    return sorted(found)


def _text(value: str | None) -> str:
    # Browsers send textarea newlines as CRLF.
    return (value or "").replace("\r\n", "\n").replace("\r", "\n")


class _Parser:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.errors: list[dict[str, str]] = []

    def get(self, name: str, default: str = "") -> str:
        value = self.data.get(name)
        return default if value is None else _text(str(value))

    def has(self, name: str) -> bool:
        return name in self.data

    def number(self, name: str, path: str, *, integer: bool = False, required: bool = False) -> Any:
        """A number, None when blank (the engine default applies), or the raw text plus an error at `path`."""
        raw = self.get(name).strip()
        if not raw:
            if required:
                self.errors.append({"path": path, "message": "enter a number"})
            return None
        try:
            value = float(raw)
        except ValueError:
            self.errors.append({"path": path, "message": f"enter a {'whole ' if integer else ''}number"})
            return raw
        if value != value or value in (float("inf"), float("-inf")):
            self.errors.append({"path": path, "message": "enter a finite number"})
            return raw
        if integer:
            if not value.is_integer():
                self.errors.append({"path": path, "message": "enter a whole number"})
                return raw
            return int(value)
        return int(value) if value.is_integer() and "." not in raw and "e" not in raw.lower() else value


def _criterion(p: _Parser, i: int, out: int) -> dict[str, Any]:
    """Criterion `i` of the POST, as criterion `out` of the state (indices are renumbered 0..n-1)."""
    src, dst = f"criteria.{i}.", f"criteria.{out}."
    kind = p.get(src + "kind").strip()
    c: dict[str, Any] = {
        "key": p.get(src + "key").strip(),
        "title": p.get(src + "title").strip(),
        "kind": kind,
        "description": p.get(src + "description").strip(),
        "weight": p.number(src + "weight", dst + "weight", required=True),
    }
    blank = new_criterion(kind, existing_keys=()) if kind in CRITERION_KINDS else {}
    if kind == "judge":
        c["question"] = p.get(src + "question").strip()
        c["_answer"] = p.get(src + "answer", "choices") if p.get(src + "answer") in ANSWER_FORMS else "choices"
        choice_indices = _indices(p.data, re.compile(rf"^criteria\.{i}\.choices\.(\d+)\.label$"))
        if choice_indices:
            c["choices"] = [
                {"label": p.get(f"{src}choices.{j}.label").strip(),
                 "description": p.get(f"{src}choices.{j}.description").strip()}
                for j in choice_indices
            ]
        else:
            c["choices"] = [dict(x) for x in blank["choices"]] if c["_answer"] == "choices" else []
        scale_given = p.has(src + "scale.min") or p.has(src + "scale.max")
        c["scale"] = (
            {"min": p.number(src + "scale.min", dst + "scale.min", required=c["_answer"] == "scale"),
             "max": p.number(src + "scale.max", dst + "scale.max", required=c["_answer"] == "scale")}
            if scale_given else {"min": 1, "max": 10}
        )
        c["use_reference"] = p.get(src + "use_reference") in ("on", "true", "1")
    elif kind == "match":
        c["extract"] = p.get(src + "extract", blank["extract"]).strip()
        c["mode"] = p.get(src + "mode", blank["mode"]).strip()
        pattern = p.get(src + "pattern")  # not stripped: spaces can matter in a regex
        if pattern:
            c["pattern"] = pattern
        tolerance = p.number(src + "tolerance", dst + "tolerance")
        if tolerance is not None:
            c["tolerance"] = tolerance
        value = p.get(src + "value").strip()
        if value:
            number = _plain_number(value) if c["mode"] == "numeric" else None
            c["value"] = value if number is None else number
    elif kind == "format":
        c["check"] = p.get(src + "check", blank["check"]).strip()
    elif kind == "json":
        c["extract"] = p.get(src + "extract", blank["extract"]).strip()
        if c["extract"] not in JSON_EXTRACTS:
            c["extract"] = blank["extract"]  # left over from a match criterion whose kind was just changed
        schema = p.get(src + "schema").strip()
        if schema:
            c["schema"] = _json_object(schema, dst + "schema", p.errors)
    elif kind == "length":
        c["unit"] = p.get(src + "unit", blank["unit"]).strip()
        for name in ("min", "max", "slack"):
            value = p.number(src + name, dst + name, integer=True)
            if value is not None:
                c[name] = value
    elif kind == "python":
        c["function"] = p.get(src + "function").strip()
    elif kind == "reasoning_gym":
        c["extract"] = p.get(src + "extract", blank["extract"]).strip()
        if c["extract"] not in MATCH_EXTRACTS:
            c["extract"] = blank["extract"]
        dataset = p.get(src + "dataset").strip()
        if dataset:
            c["dataset"] = dataset
    return c


def _plain_number(text: str) -> int | float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return int(value) if value.is_integer() and re.fullmatch(r"-?\d+", text) else value


def _json_object(text: str, path: str, errors: list[dict[str, str]]) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        value = safejson.loads(text, parse_constant=refuse)
    except json.JSONDecodeError as error:
        errors.append({"path": path, "message": f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"})
        return text
    except ValueError as error:
        errors.append({"path": path, "message": str(error)})
        return text
    if not isinstance(value, dict):
        errors.append({"path": path, "message": 'a JSON Schema is a JSON object, e.g. {"type": "object"}'})
        return text
    return value


@dataclass
class EditorInput:
    """What the editor form holds: rubric details, the editor state and the errors found while parsing."""

    name: str = ""
    description: str = ""
    task_id: int | None = None
    note: str = ""
    base_number: int | None = None
    state: dict[str, Any] = field(default_factory=lambda: {"criteria": [], "gates": [], "judge": {}})
    errors: list[dict[str, str]] = field(default_factory=list)
    focus: str | None = None  # path of the input to focus after a structural edit

    @property
    def spec(self) -> dict[str, Any]:
        return clean_spec(self.state)


def parse_editor(data: Mapping[str, Any]) -> EditorInput:
    """POSTed fields -> EditorInput. Numbers that do not parse stay as typed and get an error at their path."""
    p = _Parser(data)
    criteria = [_criterion(p, i, out) for out, i in enumerate(_indices(data, _CRITERION_KIND))]
    gates = []
    for out, g in enumerate(_indices(data, _GATE)):
        gate: dict[str, Any] = {"criterion": p.get(f"gates.{g}.criterion").strip()}
        below = p.number(f"gates.{g}.below", f"gates.{out}.below")
        if below is not None:
            gate["below"] = below
        gates.append(gate)
    per_call = p.number("judge.max_criteria_per_call", "judge.max_criteria_per_call", integer=True)
    judge = {"max_criteria_per_call": 1 if per_call is None else per_call,
             "group_relative": p.get("judge.group_relative") in ("on", "true", "1")}
    task = parse_id(p.get("task"), field="task")
    base = parse_int(p.get("base_version"), field="base_version", minimum=0)
    return EditorInput(
        name=p.get("name").strip(),
        description=p.get("description").strip(),
        task_id=task,
        note=p.get("note").strip(),
        base_number=base,
        state={"criteria": criteria, "gates": gates, "judge": judge},
        errors=p.errors,
    )


def state_from_spec(spec: Any) -> dict[str, Any]:
    """A stored or drafted spec -> editor state (judge criteria get their answer form and a spare of the other)."""
    spec = spec if isinstance(spec, dict) else {}
    criteria = []
    for raw in spec.get("criteria") or []:
        c = dict(raw) if isinstance(raw, dict) else {}
        if c.get("kind") == "judge":
            c["_answer"] = "scale" if c.get("scale") is not None and c.get("choices") is None else "choices"
            if c.get("choices") is None:
                c["choices"] = [dict(x) for x in DEFAULT_CHOICES]
            if c.get("scale") is None:
                c["scale"] = {"min": 1, "max": 10}
        criteria.append(c)
    return {
        "criteria": criteria,
        "gates": [dict(g) for g in spec.get("gates") or [] if isinstance(g, dict)],
        "judge": judge_options(spec),
    }


def editor_from_json(data: Mapping[str, Any]) -> EditorInput:
    """An editor prefilled from a POSTed `spec_json` (e.g. an AI draft), plus any of name/description/task/note."""
    p = _Parser(data)
    errors: list[dict[str, str]] = []
    spec = _json_object(p.get("spec_json").strip() or "{}", "", errors)
    form = parse_editor({k: v for k, v in data.items() if not k.startswith(("criteria.", "gates.", "judge."))})
    form.state = state_from_spec(spec if isinstance(spec, dict) else {})
    form.errors = [{"path": "", "message": f"The drafted spec is unusable: {e['message']}"} for e in errors]
    return form


def clean_spec(state: Mapping[str, Any]) -> dict[str, Any]:
    """The spec to validate and save: private keys dropped, the judge's unused answer form left out."""
    criteria = []
    for raw in state.get("criteria") or []:
        c = {k: v for k, v in raw.items() if not k.startswith(PRIVATE)}
        if c.get("kind") == "judge":
            if raw.get("_answer") == "scale":
                c.pop("choices", None)
            else:
                c.pop("scale", None)
            if not c.get("use_reference"):
                c.pop("use_reference", None)
        if c.get("description") == "":
            c.pop("description")
        criteria.append(c)
    spec: dict[str, Any] = {"criteria": criteria}
    if state.get("gates"):
        spec["gates"] = [dict(g) for g in state["gates"]]
    judge = dict(state.get("judge") or {})
    if judge and judge != judge_options({}):
        spec["judge"] = judge
    return spec


# --- structural edits (buttons named "op") ------------------------------------------------------------------------


def new_criterion(kind: str, *, existing_keys: Iterable[str]) -> dict[str, Any]:
    taken = set(existing_keys)
    n = 1
    while f"{kind}_{n}" in taken:
        n += 1
    c: dict[str, Any] = {"key": f"{kind}_{n}", "title": "", "kind": kind, "weight": 1.0}
    if kind == "judge":
        c.update(question="", _answer="choices", choices=[dict(x) for x in DEFAULT_CHOICES],
                 scale={"min": 1, "max": 10}, use_reference=False)
    elif kind == "match":
        c.update(extract="answer_tag", mode="exact")
    elif kind == "format":
        c.update(check="answer_tag")
    elif kind == "json":
        c.update(extract="json_block")
    elif kind == "length":
        c.update(unit="chars")
    elif kind == "python":
        exact = [entry for entry in python_allowlist() if not entry.endswith("*")]
        c.update(function=exact[0] if exact else "")
    elif kind == "reasoning_gym":
        c.update(extract="answer_tag")
    return c


def _move(items: list, index: int, delta: int) -> bool:
    to = index + delta
    if 0 <= index < len(items) and 0 <= to < len(items):
        items[index], items[to] = items[to], items[index]
        return True
    return False


def _gate_default(criteria: list[dict[str, Any]], gates: list[dict[str, Any]]) -> str:
    """The criterion a new gate starts on: the first programmatic one not gated yet (a deterministic check such as a
    correct answer is what gates are for; an LM judge's noise would zero rewards at random), else the first
    ungated one, else the first."""
    gated = {g.get("criterion") for g in gates}
    keyed = [c for c in criteria if c.get("key")]
    ungated = [c for c in keyed if c["key"] not in gated]
    for candidates in ([c for c in ungated if c.get("kind") != "judge"], ungated, keyed):
        if candidates:
            return str(candidates[0]["key"])
    return ""


def apply_op(form: EditorInput, op: str) -> None:
    """Apply one structural edit in place and set `form.focus` to the input to focus next. Unknown ops do nothing."""
    name, _, arg = op.partition(":")
    args = [int(parse_int(a, field="op", minimum=0) or 0) for a in arg.split(":") if a.isascii() and a.isdigit()]
    criteria: list[dict[str, Any]] = form.state["criteria"]
    gates: list[dict[str, Any]] = form.state["gates"]
    if name == "add" and arg in CRITERION_KINDS:
        criteria.append(new_criterion(arg, existing_keys=[c.get("key") for c in criteria]))
        form.focus = f"criteria.{len(criteria) - 1}.title"
    elif name == "remove" and len(args) == 1 and 0 <= args[0] < len(criteria):
        removed = criteria.pop(args[0])
        form.state["gates"] = [g for g in gates if g.get("criterion") != removed.get("key")]
    elif name in ("up", "down") and len(args) == 1 and _move(criteria, args[0], -1 if name == "up" else 1):
        form.focus = f"criteria.{args[0] + (-1 if name == 'up' else 1)}.{name}"
    elif name == "add_choice" and len(args) == 1 and 0 <= args[0] < len(criteria):
        choices = criteria[args[0]].setdefault("choices", [])
        choices.append({"label": "", "description": ""})
        form.focus = f"criteria.{args[0]}.choices.{len(choices) - 1}.label"
    elif name == "remove_choice" and len(args) == 2 and 0 <= args[0] < len(criteria):
        choices = criteria[args[0]].get("choices") or []
        if 0 <= args[1] < len(choices):
            choices.pop(args[1])
    elif name in ("choice_up", "choice_down") and len(args) == 2 and 0 <= args[0] < len(criteria):
        _move(criteria[args[0]].get("choices") or [], args[1], -1 if name == "choice_up" else 1)
    elif name == "add_gate":
        gates.append({"criterion": _gate_default(criteria, gates), "below": 0.5})
        form.focus = f"gates.{len(gates) - 1}.criterion"
    elif name == "remove_gate" and len(args) == 1 and 0 <= args[0] < len(gates):
        gates.pop(args[0])


# --- view model -----------------------------------------------------------------------------------------------------


def python_allowlist() -> list[str]:
    return list(settings.RUBRICON_PYTHON_REWARD_ALLOWLIST)


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e15 else repr(value)
    if isinstance(value, dict):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return str(value)


# The editor's own words for the spec's field paths: an error says "Criterion 2 · Weight", never `criteria.1.weight`.
FIELD_WORDS = {
    "name": "Name", "description": "Description", "task": "Task", "note": "Version note",
    "key": "Key", "title": "Title", "kind": "Kind", "weight": "Weight", "question": "Question", "answer": "Answer",
    "choices": "Choices", "label": "label", "scale": "Scale", "scale.min": "Scale min", "scale.max": "Scale max",
    "min": "Min", "max": "Max", "use_reference": "Show the reference answer", "extract": "Extract", "mode": "Compare by",
    "pattern": "Pattern", "tolerance": "Tolerance", "value": "Expected value", "check": "Check", "schema": "JSON Schema",
    "unit": "Unit", "slack": "Slack", "function": "Function", "dataset": "Dataset", "up": "Move up", "down": "Move down",
    "criteria": "Criteria", "gates": "Gates", "judge": "Judge options", "below": "scores below",
    "criterion": "criterion", "max_criteria_per_call": "criteria per call", "group_relative": "Group-relative",
}
_NUMBERED = {"criteria": "Criterion", "gates": "Gate", "choices": "choice"}
_PATH_IN_TEXT = re.compile(r"\b(?:criteria|gates)\.\d+(?:\.[a-z_]+(?:\.\d+)?)*")


def path_words(path: str) -> str:
    """`criteria.1.choices.0.label` → "Criterion 2 · choice 1 label"; `gates.0.below` → "Gate 1 · scores below"."""
    parts = [p for p in path.split(".") if p]
    words: list[str] = []
    i = 0
    while i < len(parts):
        part = parts[i]
        if part in _NUMBERED and i + 1 < len(parts) and parts[i + 1].isdigit():
            words.append(f"{_NUMBERED[part]} {int(parts[i + 1]) + 1}")
            i += 2
            continue
        joined = ".".join(parts[i:i + 2])
        if joined in FIELD_WORDS and "." in joined:
            words.append(FIELD_WORDS[joined])
            i += 2
            continue
        word = FIELD_WORDS.get(part, part.replace("_", " "))
        if words and words[-1].startswith("choice ") and part in ("label", "description"):
            words[-1] = f"{words[-1]} {word.lower()}"
        else:
            words.append(word)
        i += 1
    return " · ".join(words)


def message_words(message: str) -> str:
    """A message of the rubric engine with the field paths it names in the editor's words."""
    return _PATH_IN_TEXT.sub(lambda m: path_words(m.group(0)).replace("Criterion", "criterion")
                             .replace("Gate", "gate"), message)


@dataclass
class Slot:
    """One input (or group of inputs) of the editor and the errors shown at it. `path` is also the input name."""

    path: str
    value: Any = ""
    errors: list[str] = field(default_factory=list)
    shown: bool = True  # False: no error list on the page (its errors go to the nearest shown ancestor)

    @property
    def id(self) -> str:
        return "f-" + (self.path.replace(".", "-") or "spec")

    @property
    def error_id(self) -> str:
        return "err-" + (self.path.replace(".", "-") or "spec")

    @property
    def text(self) -> str:
        return _display(self.value)

    @property
    def words(self) -> str:
        """Where this input is, as the page names it ("Criterion 2 · Weight")."""
        return path_words(self.path)


class _Slots(dict[str, Slot]):
    def add(self, path: str, value: Any = "", *, shown: bool = True) -> Slot:
        slot = Slot(path, value, shown=shown)
        self[path] = slot
        return slot


@dataclass
class CriterionView:
    index: int
    kind: str
    whole: Slot  # errors about the criterion as a whole ("give 'min', 'max' or both")
    f: dict[str, Slot]
    choices: list[dict[str, Slot]]
    answer: str
    share: str
    first: bool
    last: bool

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def kind_label(self) -> str:
        return KIND_LABELS.get(self.kind, self.kind)


@dataclass
class EditorView:
    form: EditorInput
    slots: dict[str, Slot]
    criteria: list[CriterionView]
    gates: list[dict[str, Slot]]
    general: Slot  # errors that belong to no input
    criteria_slot: Slot  # errors about the criteria as a whole ("all weights are 0")
    gates_slot: Slot
    judge: dict[str, Slot]
    keys: list[str]

    def slot(self, path: str) -> Slot:
        return self.slots[path]

    @property
    def meta(self) -> dict[str, Slot]:
        return {name: self.slots[name] for name in ("name", "description", "task", "note")}

    @property
    def error_count(self) -> int:
        return sum(len(s.errors) for s in self.slots.values())

    @property
    def error_list(self) -> list[tuple[Slot, str]]:
        return [(s, m) for s in self.slots.values() for m in s.errors]


_FRIENDLY = {
    "String should have at least 1 character": "this field is required",
    "Input should be a valid number, unable to parse string as a number": "enter a number",
}


def editor_view(form: EditorInput, errors: Iterable[Mapping[str, str]] = ()) -> EditorView:
    """The template's view of the form; each error goes to the slot of its path, or of its nearest ancestor."""
    slots = _Slots()
    general = slots.add("")
    for name in ("name", "description", "task", "note"):
        slots.add(name)
    slots["name"].value, slots["description"].value = form.name, form.description
    slots["task"].value, slots["note"].value = form.task_id, form.note
    criteria_slot = slots.add("criteria")
    state = form.state
    shares = weight_shares([c.get("weight", 1.0) for c in state["criteria"]])
    views = []
    for i, c in enumerate(state["criteria"]):
        kind = str(c.get("kind", ""))
        p = f"criteria.{i}."
        whole = slots.add(p.rstrip("."))
        defaults = criterion_defaults(kind)
        names = ["key", "title", "kind", "description", "weight", "up", "down"]
        names += {
            "judge": ["question", "answer", "choices", "scale", "scale.min", "scale.max", "use_reference"],
            "match": ["extract", "mode", "pattern", "tolerance", "value"],
            "format": ["check"],
            "json": ["extract", "schema"],
            "length": ["unit", "min", "max", "slack"],
            "python": ["function"],
            "reasoning_gym": ["extract", "dataset"],
        }.get(kind, [])
        f = {}
        for name in names:
            if "." in name:
                outer, inner = name.split(".")
                value = (c.get(outer) or {}).get(inner) if isinstance(c.get(outer), dict) else None
            elif name == "answer":
                value = c.get("_answer", "choices")
            else:
                # Only the weight shows its default; other blanks keep the engine default (see the placeholders),
                # so a spec posted back unchanged stays as compact as it was written.
                value = c.get(name, defaults.get(name) if name == "weight" else None)
            f[name.replace(".", "_")] = slots.add(p + name, "" if value is None else value,
                                                  shown=name not in ("up", "down"))
        choices = []
        if kind == "judge":
            for j, choice in enumerate(c.get("choices") or []):
                q = f"{p}choices.{j}."
                choices.append({"row": slots.add(q.rstrip(".")),
                                "label": slots.add(q + "label", choice.get("label", "")),
                                "description": slots.add(q + "description", choice.get("description", ""))})
        views.append(CriterionView(i, kind, whole, f, choices, str(c.get("_answer", "choices")), shares[i],
                                   i == 0, i == len(state["criteria"]) - 1))
    gates_slot = slots.add("gates")
    gates = []
    for g, gate in enumerate(state["gates"]):
        q = f"gates.{g}."
        gates.append({"row": slots.add(q.rstrip(".")),
                      "criterion": slots.add(q + "criterion", gate.get("criterion", "")),
                      "below": slots.add(q + "below", gate.get("below", 1.0))})
    judge = state.get("judge") or {}
    judge_slots = {
        "all": slots.add("judge"),
        "max_criteria_per_call": slots.add("judge.max_criteria_per_call", judge.get("max_criteria_per_call", 1)),
        "group_relative": slots.add("judge.group_relative", bool(judge.get("group_relative"))),
    }
    seen: set[tuple[str, str]] = set()
    for error in errors:
        path, message = str(error.get("path", "")), str(error.get("message", ""))
        message = message_words(_FRIENDLY.get(message, message))
        if (path, message) in seen:
            continue
        seen.add((path, message))
        target, rest = path, []
        while target not in slots or not slots[target].shown:
            target, _, tail = target.rpartition(".")
            rest.insert(0, tail)
        if rest:  # deeper than any input: name the rest, in words, after what the slot itself is called
            where, own = path_words(path), path_words(target) + " · "
            message = f"{where.removeprefix(own) if target else where}: {message}"
        slots[target].errors.append(message)
    keys = [str(c.get("key", "")) for c in state["criteria"] if c.get("key")]
    return EditorView(form, dict(slots), views, gates, general, criteria_slot, gates_slot, judge_slots, keys)


def merge_errors(parse_errors: list[dict[str, str]], other: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Parse errors first; an engine error at a path that already has a parse error is the same problem, twice."""
    taken = {e["path"] for e in parse_errors}
    return [*parse_errors, *({"path": e["path"], "message": e["message"]} for e in other if e["path"] not in taken)]


def editor_for_version(*, name: str, description: str, task_id: int | None, spec: Any,
                       base_number: int | None) -> EditorInput:
    """The editor opened on a saved version (or on a spec drafted elsewhere, with `base_number` of the latest)."""
    return EditorInput(name=name, description=description, task_id=task_id, base_number=base_number,
                       state=state_from_spec(spec))


def editor_blank(*, task_id: int | None = None) -> EditorInput:
    """A new rubric starts with one LM-judge criterion to fill in."""
    return EditorInput(task_id=task_id, state={"criteria": [new_criterion("judge", existing_keys=())], "gates": [],
                                               "judge": judge_options({})})
