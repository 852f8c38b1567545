from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from webapp.core.models import Project, Role
from webapp.reviews.models import ReviewMode, SamplingStrategy
from webapp.rollouts.models import RolloutSource
from webapp.rubrics.models import RubricVersion


class QueueCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
    rubric_version = forms.ModelChoiceField(queryset=RubricVersion.objects.none())
    strategy = forms.ChoiceField(choices=SamplingStrategy.choices, initial=SamplingStrategy.RANDOM)
    mode = forms.ChoiceField(choices=ReviewMode.choices, initial=ReviewMode.CRITERIA)
    size = forms.IntegerField(min_value=1, max_value=5000, initial=50, label="Items")
    seed = forms.IntegerField(min_value=0, initial=0, help_text="Same seed, same sample.")
    reviewers_per_item = forms.IntegerField(min_value=1, max_value=10, initial=1)
    reservation_minutes = forms.IntegerField(min_value=1, initial=30)
    blind = forms.BooleanField(required=False, initial=True, help_text="Hide judge scores until the label is submitted.")
    assignees = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(), required=False, help_text="None = open pool of annotators."
    )
    # The rollout browser's filters.
    task = forms.IntegerField(required=False, min_value=1)
    job = forms.IntegerField(required=False, min_value=1)
    run = forms.IntegerField(required=False, min_value=1)
    model = forms.CharField(required=False, max_length=300)
    source = forms.ChoiceField(required=False, choices=[("", "Any source"), *RolloutSource.choices])
    q = forms.CharField(required=False, max_length=200, label="Text")

    SELECTION = ("task", "job", "run", "model", "source", "q")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["rubric_version"].queryset = RubricVersion.objects.filter(rubric__project=project).select_related("rubric")
        self.fields["assignees"].queryset = get_user_model().objects.filter(
            memberships__project=project, memberships__role__in=[Role.ANNOTATOR, Role.EDITOR, Role.OWNER]
        ).order_by("username")

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        selection = {k: data.pop(k) for k in self.SELECTION}
        data["assignees"] = list(data["assignees"])
        return {**data, "selection": selection}
