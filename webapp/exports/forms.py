from __future__ import annotations

from django import forms

from webapp.exports.importers import FORMATS as IMPORT_FORMATS
from webapp.exports.models import ExportFormat, ExportKind
from webapp.exports.selectors import AGREEMENTS, FILTERS, LABEL_STATUSES, PREFERENCE_SOURCES
from webapp.rollouts.models import RolloutSource
from webapp.tasks.models import Split

# Filters with a fixed set of values are menus on the page.
FILTER_CHOICES = {"split": Split.values, "source": RolloutSource.values, "label_status": LABEL_STATUSES,
                  "preference_source": PREFERENCE_SOURCES, "agreement": AGREEMENTS}


class ExportForm(forms.Form):
    kind = forms.ChoiceField(choices=ExportKind.choices)
    format = forms.ChoiceField(choices=ExportFormat.choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, (kind, help_text) in FILTERS.items():
            if name in FILTER_CHOICES:
                self.fields[name] = forms.ChoiceField(
                    required=False, help_text=help_text, choices=[("", "—"), *[(v, v) for v in FILTER_CHOICES[name]]])
                continue
            field = forms.IntegerField if kind is int else forms.FloatField if kind is float else forms.CharField
            self.fields[name] = field(required=False, help_text=help_text)

    def filters(self) -> dict:
        return {name: self.cleaned_data.get(name) for name in FILTERS if self.cleaned_data.get(name) not in (None, "")}


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
    task = forms.IntegerField(required=False, min_value=1,
                              help_text="Task id for every row; empty = the file's 'task' column.")
    rubric_version = forms.IntegerField(required=False, min_value=1,
                                        help_text="Store the file's rewards, scores and labels under this rubric "
                                                  "version (needed for SFT, preference, reward-model and calibration "
                                                  "files).")
