from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from webapp.core.errors import ApplicationError
from webapp.core.models import Project
from webapp.exports.models import Export
from webapp.reviews.dashboard import item_agreement
from webapp.rollouts.models import Rollout, RolloutSource
from webapp.rollouts.selectors import RolloutFilterMeaning, rollout_filter
from webapp.rubrics.models import RubricVersion
from webapp.tasks.models import Split

# name -> (type, help). Every export and the export form accept exactly these.
FILTERS: dict[str, tuple[type, str]] = {
    "task": (int, "Task id"),
    "job": (int, "Generation job id"),
    "run": (int, "Training run id"),
    "rubric_version": (int, "Rubric version whose scores and labels are exported (required for SFT, preferences, "
                            "reward-model, calibration and verifiers exports)"),
    "split": (str, "train or eval (the rollout's example split)"),
    "source": (str, "generation, training or import"),
    "model": (str, "The model that wrote the rollout (its model name, exactly)"),
    "q": (str, "Text the completion contains (case-insensitive)"),
    "score_min": (float, "Keep rollouts whose total score is ≥ this"),
    "score_max": (float, "Keep rollouts whose total score is ≤ this"),
    "label_status": (str, "labeled or unlabeled (human labels under the rubric version)"),
    "threshold": (float, "SFT: the best rollout of a group must score at least this (without it, groups whose "
                         "best reward is 0 are left out; 0 keeps them)"),
    "margin": (float, "Preferences and reward-model pairs: chosen − rejected reward must be at least this "
                      "(default > 0)"),
    "preference_source": (str, "Preferences: 'reward' (best vs worst of a group), 'labels' (human pairwise labels) or "
                               "'ranking' (every pair implied by human rankings of a group)"),
    "sft_source": (str, "SFT: 'best' (the best rollout of each group, by reward; the default) or 'gold' (corrected "
                        "responses annotators wrote while labeling)"),
    "agreement": (str, "agree or disagree: rollouts whose judge scores and human labels under the rubric version "
                       "agree on every criterion both scored (gap < agreement_tolerance), or differ on at least one "
                       "(gap ≥ it), paired as on the agreement dashboard (the judge on the criterion's scale, one "
                       "human value per item; items whose labels split are left out). Rollouts without a judged and "
                       "labeled criterion are left out either way"),
    "agreement_tolerance": (float, "The judge–human gap, on 0..1 (one step of a yes/no question is 1), from which a "
                                   "criterion counts as disagreeing; default 0.5 (another choice of a yes/no "
                                   "question)"),
    "limit": (int, "At most this many rollouts"),
}
# Filters read by some export kinds only; every other filter narrows the rollout selection of every kind.
KIND_FILTERS: dict[str, tuple[str, ...]] = {
    "threshold": ("sft",),
    "margin": ("preferences", "reward_pairs"),
    "preference_source": ("preferences",),
    "sft_source": ("sft",),
}
LABEL_STATUSES = ("labeled", "unlabeled")
# The filters that go to the rollout filter as they are (label_status is translated; agreement is applied on top).
_SELECTION = ("task", "job", "run", "split", "source", "model", "q", "rubric_version", "score_min", "score_max")
PREFERENCE_SOURCES = ("reward", "labels", "ranking")
SFT_SOURCES = ("best", "gold")
AGREEMENTS = ("agree", "disagree")
# Judge and human agree when their 0..1 values are closer than this: for a yes/no criterion, the same answer.
AGREEMENT_TOLERANCE = 0.5


def filter_applies(name: str, kind: str | None) -> bool:
    """Whether an export of `kind` reads filter `name` (the form shows and keeps only these)."""
    return name not in KIND_FILTERS or kind in KIND_FILTERS[name]


def export_list(project: Project) -> QuerySet[Export]:
    return project.exports.select_related("created_by").order_by("-id")


def export_filters_clean(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate and type filters (from JSON, a form or the command line); drop empty values."""
    if not isinstance(raw, dict):
        raise ApplicationError("Filters must be an object.", field="filters")
    unknown = sorted(set(raw) - set(FILTERS))
    if unknown:
        raise ApplicationError(
            f"Unknown filter {unknown[0]!r}; use {', '.join(FILTERS)}.", field="filters"
        )
    clean: dict[str, Any] = {}
    for name, value in raw.items():
        if value in (None, ""):
            continue
        kind = FILTERS[name][0]
        try:
            typed = kind(value) if not isinstance(value, bool) else None
        except (TypeError, ValueError):
            typed = None
        if typed is None or (kind is float and typed != typed):
            raise ApplicationError(f"Filter {name!r} must be a {kind.__name__}, not {value!r}.", field="filters")
        if kind is int and not 0 < typed < 2**63:
            raise ApplicationError(f"Filter {name!r} must be a positive integer.", field="filters")
        clean[name] = typed
    for name, allowed in (
        ("split", Split.values), ("source", RolloutSource.values), ("label_status", LABEL_STATUSES),
        ("preference_source", PREFERENCE_SOURCES), ("agreement", AGREEMENTS), ("sft_source", SFT_SOURCES),
    ):
        if name in clean and clean[name] not in allowed:
            raise ApplicationError(f"Filter {name!r} must be one of {', '.join(allowed)}.", field="filters")
    if "agreement_tolerance" in clean and not 0 < clean["agreement_tolerance"] <= 1:
        raise ApplicationError("Filter 'agreement_tolerance' must be above 0 and at most 1.", field="filters")
    if "agreement_tolerance" in clean and "agreement" not in clean:
        raise ApplicationError("Filter 'agreement_tolerance' needs 'agreement' (agree or disagree).", field="filters")
    needs_version = ("score_min", "score_max", "label_status", "agreement")
    if any(name in clean for name in needs_version) and "rubric_version" not in clean:
        raise ApplicationError("Score, label and agreement filters need a rubric_version.", field="filters")
    return clean


def rollouts_by_agreement(
    rollouts: QuerySet[Rollout], *, rubric_version_id: int, agreement: str, tolerance: float | None = None
) -> QuerySet[Rollout]:
    """Rollouts where judges and humans agree (every judged and labelled criterion less than `tolerance` apart on
    0..1) or disagree (at least one criterion `tolerance` or more apart). Items are paired as on the agreement
    dashboard (`reviews.dashboard.item_agreement`): one human value per item, split items left out."""
    version = RubricVersion.objects.filter(pk=rubric_version_id).first()
    if version is None:
        return rollouts.none()
    split = item_agreement(version, tolerance=AGREEMENT_TOLERANCE if tolerance is None else tolerance)
    return rollouts.filter(pk__in=sorted(split.disagree if agreement == "disagree" else split.agree))


def rollout_selection(project: Project, filters: dict[str, Any]) -> QuerySet[Rollout]:
    """The project's rollouts matching cleaned export filters (no ordering, no columns chosen), through the one
    rollout filter: labels count under the rubric version (which export_filters_clean requires with them)."""
    selection = {name: filters[name] for name in _SELECTION if name in filters}
    if "label_status" in filters:
        selection["labeled"] = "yes" if filters["label_status"] == "labeled" else "no"
    rollouts = rollout_filter(project, filters=selection, meaning=RolloutFilterMeaning(labels_under_version=True))
    if "agreement" in filters:
        rollouts = rollouts_by_agreement(rollouts, rubric_version_id=filters["rubric_version"],  # required with agreement
                                          agreement=filters["agreement"],
                                         tolerance=filters.get("agreement_tolerance"))
    return rollouts


def exports_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "exports": Export.objects.filter(project=project).count(),
    }
