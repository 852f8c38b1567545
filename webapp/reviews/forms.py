from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from webapp.core.models import Project, Role
from webapp.reviews.models import ReviewMode, SamplingStrategy
from webapp.rollouts.models import RolloutSource
from webapp.rollouts.pickers import picked_values, picker_field
from webapp.rubrics.selectors import rubric_versions_of_project


class QueueCreateForm(forms.Form):
    name = forms.CharField(max_length=200)
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
    guidelines = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Markdown, shown on the labeling page. Empty = the newest guidelines written for this rubric.")
    # The rollout browser's filters (task, job and run are menus of the project's, added in __init__).
    model = forms.CharField(required=False, max_length=300)
    source = forms.ChoiceField(required=False, choices=[("", "Any source"), *RolloutSource.choices])
    q = forms.CharField(required=False, max_length=200, label="Text")

    SELECTION = ("task", "job", "run", "model", "source", "q")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        for name, label in (("task", "Task"), ("job", "Generation job"), ("run", "Training run")):
            self.fields[name] = picker_field(project=project, name=name, label=label,
                                             include=picked_values(name, self.data, self.initial))
        self.project = project
        version = picker_field(project=project, name="rubric_version", label="Rubric version", empty_label="—",
                               include=picked_values("rubric_version", self.data, self.initial))
        version.required = True
        self.fields["rubric_version"] = version
        self.order_fields(["name", "rubric_version", *[n for n in self.fields if n not in self.SELECTION],
                           *self.SELECTION])
        self.fields["assignees"].queryset = get_user_model().objects.filter(
            memberships__project=project, memberships__role__in=[Role.ANNOTATOR, Role.EDITOR, Role.OWNER]
        ).order_by("username")

    def service_kwargs(self) -> dict:
        data = dict(self.cleaned_data)
        selection = {k: data.pop(k) for k in self.SELECTION}
        data["assignees"] = list(data["assignees"])
        data["guidelines"] = data.get("guidelines") or None
        data["rubric_version"] = rubric_versions_of_project(self.project).get(pk=data["rubric_version"])
        return {**data, "selection": selection}
