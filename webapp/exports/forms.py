from __future__ import annotations

from django import forms

from webapp.core.models import Project
from webapp.exports.import_rollouts import FORMATS as IMPORT_FORMATS
from webapp.exports.models import ExportFormat, ExportKind
from webapp.exports.selectors import (
    AGREEMENTS,
    FILTERS,
    LABEL_STATUSES,
    PREFERENCE_SOURCES,
    SFT_SOURCES,
    filter_applies,
)
from webapp.rollouts.models import RolloutSource
from webapp.rollouts.pickers import PICKED, picked_values, picker_field
from webapp.tasks.forms import JSONObjectField
from webapp.tasks.models import Split

# Filters with a fixed set of values are menus on the page.
FILTER_CHOICES = {"split": Split.values, "source": RolloutSource.values, "label_status": LABEL_STATUSES,
                  "preference_source": PREFERENCE_SOURCES, "agreement": AGREEMENTS, "sft_source": SFT_SOURCES}
PICKER_LABELS = {"task": "Task", "job": "Generation job", "run": "Training run", "rubric_version": "Rubric version"}
# FILTERS' help speaks of ids (the API and the command line take ids); the form's menus take names.
PICKER_HELP = {"task": "Only rollouts of this task.", "job": "Only rollouts of this generation job.",
               "run": "Only rollouts of this training run."}


class ExportForm(forms.Form):
    """Filters that do not apply to the chosen kind are ignored (and hidden by static/js/export-form.js)."""

    kind = forms.ChoiceField(choices=ExportKind.choices)
    format = forms.ChoiceField(choices=ExportFormat.choices)

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        for name, (kind, help_text) in FILTERS.items():
            if name in PICKED:
                self.fields[name] = picker_field(
                    project=project, name=name, label=PICKER_LABELS[name], help_text=PICKER_HELP.get(name, help_text),
                    include=picked_values(name, self.data, self.initial))
            elif name in FILTER_CHOICES:
                self.fields[name] = forms.ChoiceField(
                    required=False, help_text=help_text, choices=[("", "—"), *[(v, v) for v in FILTER_CHOICES[name]]])
            else:
                field = forms.IntegerField if kind is int else forms.FloatField if kind is float else forms.CharField
                self.fields[name] = field(required=False, help_text=help_text)
            kinds = [k for k in ExportKind.values if filter_applies(name, k)]
            if len(kinds) < len(ExportKind.values):
                self.fields[name].widget.attrs["data-export-kinds"] = " ".join(kinds)

    def clean(self) -> dict:
        # A value in a field hidden for this kind is ignored, so it cannot make the form invalid either.
        kind = self.cleaned_data.get("kind")
        for name in [n for n in self.errors if n in FILTERS and not filter_applies(n, kind)]:
            del self.errors[name]
        return self.cleaned_data

    def filters(self) -> dict:
        kind = self.cleaned_data.get("kind")
        return {name: self.cleaned_data.get(name) for name in FILTERS
                if self.cleaned_data.get(name) not in (None, "") and filter_applies(name, kind)}


class ImportForm(forms.Form):
    """Empty kind = rollouts (what the form imported before it knew other kinds)."""

    kind = forms.ChoiceField(choices=ExportKind.choices, initial=ExportKind.ROLLOUTS, required=False,
                             help_text="What the file holds: an export of this kind, or a verifiers run (either "
                                       "verifiers kind reads both layouts).")
    file = forms.FileField(help_text="The export file (.jsonl, .csv, .parquet, or the Hugging Face .zip). For "
                                     "verifiers: the zip of the run folder, or its traces.jsonl (0.4) / results.jsonl (≤ 0.3).")
    format = forms.ChoiceField(choices=[(f, f) for f in IMPORT_FORMATS],
                               help_text="hf = the Hugging Face datasets zip. Ignored for verifiers.")
    metadata = forms.FileField(required=False, help_text="verifiers only: configs/resolved/eval.json (0.4) "
                                                          "or metadata.json (≤ 0.3), when the file is not a zip.")
    allow_duplicate = forms.BooleanField(required=False, label="Import a copy",
                                         help_text="Import the file even if it was imported here before (a file "
                                                   "already imported is otherwise refused, so a retry cannot "
                                                   "double the rows).")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task"] = picker_field(
            project=project, name="task", label="Task", empty_label="From the file's 'task' column",
            help_text="The task of every row; empty = the file's 'task' column.",
            include=picked_values("task", self.data, self.initial))
        self.fields["rubric_version"] = picker_field(
            project=project, name="rubric_version", label="Rubric version", empty_label="None",
            help_text="Store the file's rewards, scores and labels under this rubric version (needed for SFT, "
                      "preference, reward-model and calibration files).",
            include=picked_values("rubric_version", self.data, self.initial))


class HubPushForm(forms.Form):
    """Push a finished export to the Hugging Face Hub (webapp.exports.hub)."""

    export = forms.TypedChoiceField(coerce=int, help_text="A finished export of this project.")
    repo_id = forms.CharField(label="Repo id", max_length=200,
                              help_text="namespace/name of the dataset repo on the Hub; created if missing.")
    private = forms.BooleanField(required=False, initial=True, help_text="Create the repo as private.")
    token_env = forms.CharField(label="Token variable", max_length=128, initial="HF_TOKEN",
                                help_text="Environment variable of the worker holding a Hub token with write access; "
                                          "the operator decides which names are allowed.")

    def __init__(self, *args, exports: list, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["export"].choices = [  # type: ignore[attr-defined]  # a ChoiceField
            (e.pk, f"#{e.pk} {e.get_kind_display()} ({e.format}, {e.done} rows)") for e in exports]


class ReasoningGymForm(forms.Form):
    """Generate a task from a reasoning-gym dataset (webapp.exports.sources)."""

    dataset = forms.ChoiceField(help_text="A reasoning-gym dataset (procedurally generated tasks).")
    size = forms.IntegerField(min_value=1, max_value=10_000, initial=100, help_text="Examples to generate.")
    seed = forms.IntegerField(min_value=0, max_value=2**32 - 1, initial=42,
                              help_text="The same seed gives the same examples.")
    config = JSONObjectField(help_text='Other config fields of the dataset as JSON, e.g. '
                                       '{"min_terms": 2, "max_terms": 3}; blank = its defaults.')
    task_name = forms.CharField(required=False, max_length=200, label="Task name",
                                help_text="Blank: the dataset name with seed and size.")
    eval_size = forms.IntegerField(min_value=0, initial=0, required=False, label="Eval examples",
                                   help_text="The last N examples go to the eval split.")
    with_rubric = forms.BooleanField(required=False, initial=True, label="Create a rubric",
                                     help_text="A rubric whose criterion is the dataset's own score_answer.")

    def __init__(self, *args, datasets: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].choices = [(name, name) for name in datasets]  # type: ignore[attr-defined]


class VerifiersTaskForm(forms.Form):
    """A task backed by a verifiers 0.4 taskset (webapp.exports.verifiers_tasks)."""

    name = forms.CharField(max_length=200, label="Task name")
    taskset = JSONObjectField(label="Taskset", required=True,
                              help_text='The verifiers taskset config, e.g. {"id": "textarena", "game": "Wordle-v0"} '
                                        'or {"id": "rubricon_wordle"} (offline).')
    harness = JSONObjectField(label="Harness", help_text='Blank: {"id": "rubricon_chat"} (a plain chat loop).')
    count = forms.IntegerField(min_value=1, max_value=1000, initial=10, help_text="Taskset tasks to make examples of.")
    max_turns = forms.IntegerField(min_value=1, max_value=100, required=False, help_text="Turns per episode.")
