"""The calibration gate: judge–human agreement per judge criterion, from stored scores and labels."""

from __future__ import annotations

import pytest

from tests.factories import SIMPLE_SPEC, RolloutFactory, RubricVersionFactory, TaskFactory, UserFactory
from webapp.judging.models import CriterionScore
from webapp.reviews.calibration import calibration_status
from webapp.reviews.models import HumanLabel

JUDGED = {
    "criteria": [
        *SIMPLE_SPEC["criteria"],
        {"key": "polite", "title": "Polite", "kind": "judge", "weight": 0.5, "question": "Is it polite?",
         "choices": [{"label": "no"}, {"label": "somewhat"}, {"label": "yes"}]},
    ]
}


def pair(version, rollout, *, judge: float, humans: list[float], fingerprint: str = "judge-fp") -> None:
    CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                                  judge_fingerprint=fingerprint, score=judge)
    for value in humans:
        HumanLabel.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                                  annotator=UserFactory(), value=value)


@pytest.fixture
def judged(db):
    task = TaskFactory()
    version = RubricVersionFactory(rubric__project=task.project, spec=JUDGED)
    rollouts = [RolloutFactory(project=task.project, task=task) for _ in range(24)]
    return version, rollouts


@pytest.mark.django_db
def test_a_programmatic_rubric_needs_no_calibration():
    status = calibration_status(RubricVersionFactory())
    assert status.ok and not status.needs_calibration and status.criteria == []


def test_no_labels_means_not_calibrated_with_a_reason_to_act_on(judged):
    version, rollouts = judged
    CriterionScore.objects.create(rollout=rollouts[0], rubric_version=version, criterion_key="polite",
                                  judge_fingerprint="judge-fp", score=1.0)
    status = calibration_status(version)
    assert status.needs_calibration and not status.ok
    [criterion] = status.criteria
    assert (criterion.key, criterion.n, criterion.kappa) == ("polite", 0, None)
    assert "need 20" in criterion.reason and "polite" in status.summary


def test_agreeing_judge_on_enough_items_passes_and_disagreeing_one_fails(judged, django_assert_max_num_queries):
    version, rollouts = judged
    values = [0.0, 0.5, 1.0]
    for i, rollout in enumerate(rollouts):
        # Two annotators per item: their mean is the human value; one off-by-one-step disagreement.
        human = values[i % 3]
        pair(version, rollout, judge=human if i else 0.5, humans=[human, human])
    # Programmatic and training rewards are not the judge: they never pair.
    CriterionScore.objects.create(rollout=rollouts[1], rubric_version=version, criterion_key="polite",
                                  judge_fingerprint="training-reward", score=0.0)
    # The gate reads the dashboard's figures (one definition, issue 16): its queries, then the shared cache.
    with django_assert_max_num_queries(14):
        status = calibration_status(version)
    with django_assert_max_num_queries(5):
        calibration_status(version)
    [criterion] = status.criteria
    assert criterion.n == 24 and criterion.kappa > 0.9 and status.ok

    assert not calibration_status(version, threshold=0.99).ok
    inverted = RubricVersionFactory(rubric=version.rubric, spec=JUDGED)
    for i, rollout in enumerate(rollouts):
        pair(inverted, rollout, judge=1.0 - values[i % 3], humans=[values[i % 3]])
    status = calibration_status(inverted)
    assert not status.ok and status.criteria[0].kappa < 0 and "below 0.6" in status.criteria[0].reason
