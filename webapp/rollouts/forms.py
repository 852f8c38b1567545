from __future__ import annotations

from django import forms

from webapp.rollouts.models import RolloutSource


class RolloutFilterForm(forms.Form):
    """The rollout browser's filters, parsed from the query string (invalid values are ignored, not 500s)."""

    task = forms.IntegerField(required=False, min_value=1)
    job = forms.IntegerField(required=False, min_value=1)
    run = forms.IntegerField(required=False, min_value=1)
    model = forms.CharField(required=False, max_length=300)
    source = forms.ChoiceField(required=False, choices=[("", "Any source"), *RolloutSource.choices])
    rubric_version = forms.IntegerField(required=False, min_value=1, label="Scores of rubric version")
    score_min = forms.FloatField(required=False, min_value=0, max_value=1)
    score_max = forms.FloatField(required=False, min_value=0, max_value=1)
    labeled = forms.ChoiceField(
        required=False, choices=[("", "Labeled or not"), ("yes", "Has human labels"), ("no", "No human labels")]
    )
    errors_only = forms.BooleanField(required=False, label="Failed only")
    q = forms.CharField(required=False, max_length=200, label="Text")

    def filters(self) -> dict:
        """The valid filters only; a bad value drops that filter and is reported next to its field."""
        self.is_valid()
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "", False)}
