"""How a stored criterion score reads on a page: which judge gave it, with which settings, and its verdict.

Two judges scoring the same criterion used to show as two unlabelled rows; a programmatic check showed "(1.00)".
Every page that lists criterion scores (rollout detail, the labeling page's judge lines and reveal, disagreements)
goes through these functions, so they name judges and verdicts the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from webapp.judging.models import PROGRAMMATIC, CriterionScore, JudgeJob


def judge_label(*, fingerprint: str, endpoint_name: str | None = None, endpoint_model: str | None = None) -> str:
    """"endpoint name (model)" when the judge job that wrote the score names its endpoint; else the model the
    fingerprint records ("model|{sampling params}"); "programmatic check" for checks computed without a judge."""
    if fingerprint == PROGRAMMATIC:
        return "programmatic check"
    if endpoint_name:
        return f"{endpoint_name} ({endpoint_model})" if endpoint_model else endpoint_name
    return fingerprint.split("|", 1)[0] or fingerprint


def judge_settings(fingerprint: str) -> str:
    """The sampling parameters in a fingerprint, as read ("max_tokens 512 · temperature 0"), or ""."""
    parts = fingerprint.split("|")
    if len(parts) < 2:
        return ""
    try:
        params = json.loads(parts[1])
    except ValueError:
        return ""
    if not isinstance(params, dict):
        return ""
    shown = " · ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(params.items()))
    return " · ".join(p for p in (shown, *parts[2:]) if p)


def is_pass_fail(kind: str | None) -> bool:
    """Programmatic criteria (match, format, json, length, python) pass or fail; judge criteria have choices or a
    scale (webapp.reviews.criteria labels them the same way)."""
    return bool(kind) and kind != "judge"


def verdict(*, kind: str | None, score: float | None, raw_choice: str = "") -> str:
    """"Pass" / "Fail" for a pass/fail criterion's 1 / 0; else the judge's choice and the 0..1 score; "failed"
    when the judge call failed."""
    if score is None:
        return "failed"
    if is_pass_fail(kind) and score in (0.0, 1.0):
        return "Pass" if score == 1.0 else "Fail"
    number = f"{score:.2f}"
    return f"{raw_choice} ({number})" if raw_choice else number


def _kinds(criteria: Iterable[dict[str, Any]]) -> dict[str, str]:
    return {c.get("key", ""): c.get("kind", "") for c in criteria}


def scores_presented(scores: Iterable[CriterionScore], *, criteria: Iterable[dict[str, Any]] | None = None
                     ) -> list[CriterionScore]:
    """The scores, each given `judge`, `judge_settings` and `verdict` for templates. Criterion kinds come from
    `criteria` (one rubric version's spec) or from each score's loaded rubric version; the judge's endpoint from
    its loaded job (select_related("job__endpoint")), so this costs no query."""
    scores = list(scores)
    given = _kinds(criteria) if criteria is not None else None
    by_version: dict[int, dict[str, str]] = {}
    for score in scores:
        if given is not None:
            kinds = given
        else:
            kinds = by_version.setdefault(score.rubric_version_id, _kinds(score.rubric_version.criteria))
        job = score.job if score.job_id and CriterionScore.job.is_cached(score) else None
        endpoint = job.endpoint if job is not None and job.endpoint_id and JudgeJob.endpoint.is_cached(job) else None
        score.judge = judge_label(fingerprint=score.judge_fingerprint, endpoint_name=endpoint.name if endpoint else None,
                                  endpoint_model=endpoint.model if endpoint else None)
        score.judge_settings = judge_settings(score.judge_fingerprint)
        score.verdict = verdict(kind=kinds.get(score.criterion_key), score=score.score, raw_choice=score.raw_choice)
    return scores
