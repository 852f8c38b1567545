from __future__ import annotations

from pathlib import Path
from typing import Any

from django import forms

from training.grpo.config import PRESETS, GRPORunConfig, LoraOptions
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.rubrics.models import RubricVersion
from webapp.rubrics.selectors import rubric_versions_of_project
from webapp.runs.models import Checkpoint, TrainingRun
from webapp.runs.selectors import resumable_checkpoints
from webapp.runs.services import PRESET_LABELS
from webapp.tasks.models import Split, Task

# GRPORunConfig fields the form exposes; empty = the preset's value. Help texts come from the config itself.
OPTION_FIELDS = [
    "num_generations", "per_device_train_batch_size", "max_prompt_length", "max_completion_length",
    "learning_rate", "beta", "loss_type", "scale_rewards", "epsilon", "max_steps", "use_vllm", "seed", "save_steps",
]
_CONFIG_FIELDS = GRPORunConfig.model_fields


def _help(name: str) -> str:
    return _CONFIG_FIELDS[name].description or ""


class TrainingRunForm(forms.Form):
    name = forms.CharField(max_length=200, required=False, help_text="Empty: task × rubric version.")
    preset = forms.ChoiceField(choices=[(k, PRESET_LABELS[k]) for k in PRESETS], initial="cpu-smoke",
                               help_text="Starting values; any field below overrides them.")
    task = forms.ModelChoiceField(queryset=Task.objects.none())
    split = forms.ChoiceField(choices=[*Split.choices, ("", "All splits")], initial=Split.TRAIN, required=False)
    rubric_version = forms.ModelChoiceField(queryset=RubricVersion.objects.none(),
                                            help_text="Its criteria are the reward functions.")
    judge_endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.none(), required=False,
                                            help_text="Needed when the rubric has LM-judge criteria. Any endpoint works: a local "
                                            "one (such as the bundled model) is loaded by the training run itself.")
    base_model = forms.CharField(max_length=300, initial="bundled", help_text=_help("model")
                                 + " A checkpoint of an earlier run is 'checkpoint:<id>' (listed below).")

    num_generations = forms.IntegerField(required=False, min_value=2, help_text=_help("num_generations"))
    per_device_train_batch_size = forms.IntegerField(required=False, min_value=1,
                                                     help_text=_help("per_device_train_batch_size"))
    max_prompt_length = forms.IntegerField(required=False, min_value=1, help_text=_help("max_prompt_length"))
    max_completion_length = forms.IntegerField(required=False, min_value=1, help_text=_help("max_completion_length"))
    learning_rate = forms.FloatField(required=False, help_text=_help("learning_rate"))
    beta = forms.FloatField(required=False, help_text=_help("beta"))
    loss_type = forms.ChoiceField(required=False, help_text=_help("loss_type"), choices=[
        ("", "preset"), *[(v, v) for v in ("dapo", "dr_grpo", "grpo", "bnpo", "cispo", "sapo")]])
    scale_rewards = forms.ChoiceField(required=False, help_text=_help("scale_rewards"), choices=[
        ("", "preset"), ("group", "group"), ("batch", "batch"), ("none", "none")])
    epsilon = forms.FloatField(required=False, help_text=_help("epsilon"))
    max_steps = forms.IntegerField(required=False, min_value=1, help_text=_help("max_steps"))
    use_vllm = forms.NullBooleanField(required=False, label="Use vLLM", help_text=_help("use_vllm"))
    seed = forms.IntegerField(required=False, help_text=_help("seed"))
    save_steps = forms.IntegerField(required=False, min_value=1, help_text=_help("save_steps"))
    lora = forms.BooleanField(required=False, label="LoRA", help_text=LoraOptions.__doc__ or "")
    lora_r = forms.IntegerField(required=False, min_value=1, label="LoRA rank", help_text="Rank of the LoRA update matrices (default 16).")
    lora_alpha = forms.IntegerField(required=False, min_value=1, label="LoRA alpha")

    calibration_override = forms.BooleanField(
        required=False, label="Train on this judge anyway",
        help_text="The judge is not calibrated against human labels; the run records that you chose to go ahead.")
    calibration_note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                       label="Why (kept with the run)")

    def __init__(self, *args: Any, project, refresh_url: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if refresh_url:
            # Another preset or rubric version re-renders the form (placeholders, calibration) with what was typed.
            # The form is disabled while that request is in flight (htmx reads the values first): a choice made
            # meanwhile would be replaced by the re-rendered form and silently lost.
            for name in ("preset", "rubric_version"):
                self.fields[name].widget.attrs.update({
                    "hx-get": refresh_url, "hx-trigger": "change", "hx-target": "#run-form",
                    "hx-swap": "outerHTML", "hx-include": "#run-form",
                    "hx-disabled-elt": "#run-form fieldset, #run-form button",
                })
        self.fields["task"].queryset = Task.objects.filter(project=project).order_by("name")
        self.fields["rubric_version"].queryset = (
            rubric_versions_of_project(project)
        )
        self.fields["use_vllm"].widget.choices = [("unknown", "preset"), ("true", "yes"), ("false", "no")]
        self.fields["judge_endpoint"].queryset = ModelEndpoint.objects.filter(project=project).order_by("name")
        preset = self.data.get("preset") or self.initial.get("preset") or "cpu-smoke"
        for name in OPTION_FIELDS:  # show what "empty" means under the chosen preset
            value = PRESETS.get(preset, {}).get(name, _CONFIG_FIELDS[name].default)
            if value is not None and not isinstance(value, bool):
                self.fields[name].widget.attrs["placeholder"] = str(value)

    def main_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("name", "preset", "task", "split", "rubric_version", "judge_endpoint",
                                        "base_model")]

    def option_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in [*OPTION_FIELDS, "lora", "lora_r", "lora_alpha"]]

    def options(self) -> dict[str, Any]:
        data = self.cleaned_data
        options = {name: data.get(name) for name in OPTION_FIELDS if data.get(name) not in (None, "")}
        if data.get("lora"):
            options["lora"] = {k: v for k, v in (("r", data.get("lora_r")), ("alpha", data.get("lora_alpha")))
                               if v is not None}
        return options


def _checkpoint_label(checkpoint: Checkpoint) -> str:
    return f"step {checkpoint.step} · {Path(checkpoint.path).name}"


class EvaluateCheckpointForm(forms.Form):
    checkpoint = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), empty_label=None)
    endpoint = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.none(), label="Engine", empty_label=None,
        help_text="A local vLLM or transformers endpoint: it loads the run's base model and the checkpoint in turn.",
    )
    samples_per_example = forms.IntegerField(
        min_value=1, max_value=64, initial=1,
        help_text="Completions per eval example, sampled as in training (temperature, length, seed).",
    )

    def __init__(self, *args: Any, run: TrainingRun, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["checkpoint"].queryset = Checkpoint.objects.filter(run=run).order_by("-step")
        self.fields["checkpoint"].label_from_instance = _checkpoint_label
        self.fields["endpoint"].queryset = ModelEndpoint.objects.filter(
            project_id=run.project_id, kind__in=[EndpointKind.VLLM, EndpointKind.TRANSFORMERS]
        ).order_by("name")


class ResumeRunForm(forms.Form):
    checkpoint = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), empty_label=None,
                                        help_text="Checkpoints saved with optimizer state (checkpoint-N).")
    max_steps = forms.IntegerField(required=False, min_value=1, help_text="Empty: the run's own max_steps.")

    def __init__(self, *args: Any, run: TrainingRun, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["checkpoint"].queryset = resumable_checkpoints(run)
        self.fields["checkpoint"].label_from_instance = _checkpoint_label
        self.fields["max_steps"].widget.attrs["placeholder"] = str(run.config.get("max_steps") or "")


class RunReviewForm(forms.Form):
    """"Send to review": a blind queue of the run's rubric version that follows the run as it trains."""

    name = forms.CharField(max_length=200, required=False, help_text="Empty: named after the run.")
    size = forms.IntegerField(min_value=1, max_value=5000, initial=50, label="Items, at most",
                              help_text="Spread over the run's steps, stratified by reward within each step.")
    reviewers_per_item = forms.IntegerField(min_value=1, max_value=10, initial=1)
    blind = forms.BooleanField(required=False, initial=True, help_text="Hide rewards until the label is submitted.")
