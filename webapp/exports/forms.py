from __future__ import annotations

from django import forms

from webapp.core.models import Project
from webapp.exports.importers import FORMATS as IMPORT_FORMATS
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
