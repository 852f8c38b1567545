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


class GenerationJobForm(forms.Form):
    task = forms.ModelChoiceField(queryset=None)
    split = forms.ChoiceField(choices=[("", "All examples"), ("train", "Train"), ("eval", "Eval")], required=False)
    endpoint = forms.ModelChoiceField(queryset=None, label="Model endpoint")
    example_count = forms.IntegerField(
        required=False, min_value=1, label="Examples",
        help_text="Empty: every example of the split. A number: a random sample of that many, the same for the same seed.",
    )
    example_seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0, required=False, label="Example seed")
    samples_per_example = forms.IntegerField(min_value=1, max_value=256, initial=4,
                                             help_text="The GRPO group size: completions per prompt.")
    temperature = forms.FloatField(min_value=0, max_value=10, initial=1.0)
    max_tokens = forms.IntegerField(min_value=1, max_value=32768, initial=256, help_text="Per turn.")
    top_p = forms.FloatField(min_value=0.01, max_value=1, initial=1.0)
    seed = forms.IntegerField(required=False, help_text="Makes sampling reproducible.")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task"].queryset = project.tasks.order_by("name")
        self.fields["endpoint"].queryset = project.endpoints.order_by("name")

    def params(self) -> dict:
        data = self.cleaned_data
        params = {"temperature": data["temperature"], "max_tokens": data["max_tokens"], "top_p": data["top_p"]}
        if data.get("seed") is not None:
            params["seed"] = data["seed"]
        return params
