from __future__ import annotations

from django import forms

from webapp.exports.importers import FORMATS as IMPORT_FORMATS
from webapp.exports.models import ExportFormat, ExportKind
from webapp.exports.selectors import FILTERS


class ExportForm(forms.Form):
    kind = forms.ChoiceField(choices=ExportKind.choices)
    format = forms.ChoiceField(choices=ExportFormat.choices)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, (kind, help_text) in FILTERS.items():
            field = forms.IntegerField if kind is int else forms.FloatField if kind is float else forms.CharField
            self.fields[name] = field(required=False, help_text=help_text)

    def filters(self) -> dict:
        return {name: self.cleaned_data.get(name) for name in FILTERS if self.cleaned_data.get(name) not in (None, "")}


class ImportForm(forms.Form):
    file = forms.FileField(help_text="A rollouts export (.jsonl, .csv or .parquet).")
    format = forms.ChoiceField(choices=[(f, f) for f in IMPORT_FORMATS])
    task = forms.IntegerField(required=False, help_text="Task id for every row; empty = the file's 'task' column.")
