"""The forms of the rubric tools' pages (preview, draft, dry run) and the choices they offer."""

from __future__ import annotations

from django import forms

from webapp.core.models import Project
from webapp.endpoints.models import ModelEndpoint
from webapp.rubric_tools import drafting, dryrun
from webapp.tasks.models import Task


def endpoint_choices(project: Project):
    return ModelEndpoint.objects.filter(project=project).order_by("name")


def task_choices(project: Project):
    return Task.objects.filter(project=project).order_by("name")


class PreviewForm(forms.Form):
    version = forms.IntegerField(required=False, widget=forms.HiddenInput)
    spec_json = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 10, "class": "mono"}),
                                label="Spec (JSON)")
    task = forms.IntegerField(required=False, widget=forms.HiddenInput)
    rollouts = forms.TypedMultipleChoiceField(coerce=int, required=False, widget=forms.CheckboxSelectMultiple,
                                              label="Rollouts")
    completion = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 5}),
                                 label="…or paste a completion")
    prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label="Prompt (optional)")
    reference = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                label="Reference answer (optional)")
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), required=False, label="Judge endpoint",
                                      help_text="Used for LM-judge criteria.")

    def __init__(self, *args, project: Project, candidates=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["endpoint"].queryset = endpoint_choices(project)
        self.fields["rollouts"].choices = [(r.pk, f"#{r.pk}") for r in candidates]


class DraftForm(forms.Form):
    task = forms.ModelChoiceField(queryset=Task.objects.none())
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), label="Model that drafts",
                                      help_text="The bundled model works; a stronger endpoint drafts better.")
    examples = forms.IntegerField(min_value=0, max_value=drafting.DRAFT_MAX_EXAMPLES, initial=3,
                                  label="Examples shown to the model")
    max_tokens = forms.IntegerField(min_value=32, max_value=4096, initial=drafting.DRAFT_DEFAULT_MAX_TOKENS,
                                    label="Max tokens of the draft")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task"].queryset = task_choices(project)
        self.fields["endpoint"].queryset = endpoint_choices(project)


class DryRunForm(forms.Form):
    task = forms.ModelChoiceField(queryset=Task.objects.none(), help_text="Whose rollouts would be judged.")
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), required=False, label="Judge endpoint")
    groups = forms.IntegerField(min_value=1, max_value=dryrun.DRY_RUN_MAX_GROUPS, initial=dryrun.DRY_RUN_DEFAULT_GROUPS,
                                label="Groups to sample")

    def __init__(self, *args, project: Project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task"].queryset = task_choices(project)
        self.fields["endpoint"].queryset = endpoint_choices(project)
