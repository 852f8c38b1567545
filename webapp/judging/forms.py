from __future__ import annotations

from django import forms

from webapp.endpoints.models import ModelEndpoint
from webapp.rollouts.models import GenerationJob
from webapp.rubrics.models import RubricVersion
from webapp.rubrics.selectors import rubric_versions_of_project
from webapp.tasks.models import Task


class JudgeJobForm(forms.Form):
    rubric_version = forms.ModelChoiceField(queryset=RubricVersion.objects.none())
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), required=False, label="Judge endpoint",
                                      help_text="Needed when the rubric has LM-judge criteria.")
    task = forms.ModelChoiceField(queryset=Task.objects.none(), required=False, label="Only rollouts of task")
    job = forms.ModelChoiceField(queryset=GenerationJob.objects.none(), required=False, label="Only rollouts of job")

    def __init__(self, *args, project, rubric=None, **kwargs):
        super().__init__(*args, **kwargs)
        versions = rubric_versions_of_project(project)
        if rubric is not None:
            versions = versions.filter(rubric=rubric)
        self.fields["rubric_version"].queryset = versions
        self.fields["endpoint"].queryset = ModelEndpoint.objects.filter(project=project).order_by("name")
        self.fields["task"].queryset = Task.objects.filter(project=project).order_by("name")
        self.fields["job"].queryset = GenerationJob.objects.filter(project=project).order_by("-id")

    def selection(self) -> dict:
        return {k: self.cleaned_data[k].pk for k in ("task", "job") if self.cleaned_data.get(k)}
