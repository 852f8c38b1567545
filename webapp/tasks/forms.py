from __future__ import annotations

import json

from django import forms
from django.http import QueryDict

from webapp.core import safejson
from webapp.core.errors import ApplicationError, ConflictError
from webapp.tasks.example_files import ROLE_LABELS, ColumnRole, guess_roles
from webapp.tasks.models import Split, TaskKind
from webapp.tasks.services import ENVIRONMENTS

JSON_OBJECT_INVALID = "Enter valid JSON, e.g. {\"max_turns\": 6}."


class StrictJSONDecoder(safejson.DepthLimitedDecoder):
    """Python's json accepts NaN and Infinity; JSON and Postgres jsonb do not."""

    def __init__(self, *args, **kwargs):
        def refuse(name: str):
            raise json.JSONDecodeError(f"{name} is not valid JSON", name, 0)

        super().__init__(*args, **{**kwargs, "parse_constant": refuse})


class JSONObjectField(forms.JSONField):
    """A JSON object typed into a textarea; empty means {}."""

    default_error_messages = {"invalid": JSON_OBJECT_INVALID}

    def __init__(self, **kwargs):
        kwargs.setdefault("decoder", StrictJSONDecoder)
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3}))
        super().__init__(**kwargs)

    def prepare_value(self, value):
        # Typed-in JSON is shown again on an error; a lone surrogate ("\ud800") stays escaped, as the page is UTF-8.
        text = super().prepare_value(value)
        if isinstance(text, str) and not isinstance(value, str) and safejson.has_lone_surrogate(value):
            return json.dumps(value, ensure_ascii=True)
        return text

    def clean(self, value):
        value = super().clean(value)
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Enter a JSON object ({...}), not a list or a single value.")
        if "\\u0000" in json.dumps(value):
            raise forms.ValidationError("The JSON contains a NUL character (\\u0000), which cannot be stored.")
        if safejson.has_lone_surrogate(value):
            raise forms.ValidationError("The JSON contains a lone surrogate (such as \\ud800), which cannot be stored.")
        return value


class TaskForm(forms.Form):
    name = forms.CharField(max_length=200)
    instructions = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                   help_text="What the model is asked to do, in words.")
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    prompt_template = forms.CharField(
        initial="{{ prompt }}", widget=forms.Textarea(attrs={"rows": 3}), strip=False,
        help_text="Jinja template for the user turn. Variables: prompt, answer, info (e.g. {{ info.topic }}).")
    kind = forms.ChoiceField(choices=TaskKind.choices, initial=TaskKind.SINGLE_TURN)
    environment = forms.ChoiceField(
        required=False, choices=[("", "—"), *[(name, name.capitalize()) for name in ENVIRONMENTS]],
        help_text="Only for multi-turn environments.")
    environment_config = JSONObjectField(help_text="JSON object passed to the environment, e.g. {\"max_turns\": 6}.")
    row_version = forms.IntegerField(required=False, widget=forms.HiddenInput)


class ExampleForm(forms.Form):
    """Several of these can be open on one page (plus the add form): views give each its own `auto_id`."""

    prompt = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 3}))
    answer = forms.CharField(required=False, strip=False, label="Reference answer",
                             widget=forms.Textarea(attrs={"rows": 2}))
    split = forms.ChoiceField(choices=Split.choices)
    info = JSONObjectField(widget=forms.Textarea(attrs={"rows": 2}))
    row_version = forms.IntegerField(widget=forms.HiddenInput)


class ExampleCreateForm(ExampleForm):
    external_id = forms.CharField(max_length=200, label="Id")
    row_version = None  # type: ignore[assignment]
    field_order = ["external_id", "prompt", "answer", "split", "info"]

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "id_new_%s")
        super().__init__(*args, **kwargs)


class ExampleSplitForm(forms.Form):
    split = forms.ChoiceField(choices=Split.choices)
    row_version = forms.IntegerField()


class ImportUploadForm(forms.Form):
    file = forms.FileField(help_text="JSON Lines (.jsonl), CSV (.csv, .tsv) or Parquet (.parquet), UTF-8.")

    def __init__(self, *args, max_bytes: int, **kwargs):
        super().__init__(*args, **kwargs)
        # static/js/import-size.js refuses a larger file in the browser, before the upload starts.
        self.fields["file"].widget.attrs.update({"data-max-bytes": str(max_bytes), "data-error-target": "file-size-error",
                                                 "accept": ".jsonl,.ndjson,.json,.csv,.tsv,.txt,.parquet,.pq"})


UNKNOWN_CHOICES = [(ColumnRole.INFO.value, "Keep them in info"), (ColumnRole.IGNORE.value, "Ignore them")]


class ImportMappingForm(forms.Form):
    """One role per column (fields col_0, col_1, ... because column names can be anything)."""

    token = forms.CharField(widget=forms.HiddenInput)
    default_split = forms.ChoiceField(choices=Split.choices, initial=Split.TRAIN,
                                      help_text="For rows without a split column or with an empty split.")
    unknown_columns = forms.ChoiceField(
        choices=UNKNOWN_CHOICES, initial=ColumnRole.INFO.value, label="Columns not in the preview",
        help_text="JSON Lines rows further down may have keys the first rows do not.")
    allow_duplicate = forms.BooleanField(
        required=False, label="Import a copy",
        help_text="Import this file even if it was imported into this task before (otherwise refused, so a "
                  "retried upload cannot double the examples).")

    def __init__(self, *args, columns: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = columns
        guesses = guess_roles(columns)
        for index, column in enumerate(columns):
            self.fields[f"col_{index}"] = forms.ChoiceField(
                label=column, choices=[(role.value, label) for role, label in ROLE_LABELS.items()],
                initial=guesses[column].value)

    def column_fields(self):
        return [self[f"col_{index}"] for index in range(len(self.columns))]

    def roles(self) -> dict[str, ColumnRole]:
        return {column: ColumnRole(self.cleaned_data[f"col_{index}"]) for index, column in enumerate(self.columns)}


_NOT_SHOWN = object()


def field_rows(form, current: dict | None) -> list[dict]:
    """Each visible field with, after a conflict, the value someone else saved when it differs from this input."""
    cleaned = getattr(form, "cleaned_data", {})
    rows = []
    for bound in form.visible_fields():
        shown = _NOT_SHOWN
        if current and bound.name in current and current[bound.name] != cleaned.get(bound.name):
            value = current[bound.name]
            shown = json.dumps(value, indent=1, ensure_ascii=False) if isinstance(value, dict | list) else value
        rows.append({"field": bound, "conflict": shown is not _NOT_SHOWN, "current": "" if shown is _NOT_SHOWN else shown})
    return rows


def form_error(form: forms.Form, error: ApplicationError) -> None:
    """Show a service's error at the field it names, or above the form."""
    form.add_error(error.field if error.field in form.fields else None, error.message)


def conflict_form(form_class, data: QueryDict, error: ConflictError, **kwargs):
    """Re-show the user's input next to the current values after a stale edit. The form now carries the current
    row version, so saving again is a deliberate choice to replace what the other person saved."""
    current = error.extra["current"]
    data = data.copy()
    data["row_version"] = str(current["row_version"])
    form = form_class(data, **kwargs)
    form.is_valid()
    form.add_error(None, error.message)
    return form, current
