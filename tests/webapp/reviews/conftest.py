from __future__ import annotations

import pytest

from tests.factories import ExampleFactory, RolloutFactory, RubricVersionFactory, TaskFactory
from webapp.core.models import Role
from webapp.judging.models import CriterionScore, RolloutScore

JUDGE_FP = "judge-a"

SPEC = {
    "criteria": [
        {"key": "helpful", "title": "Helpful", "kind": "judge", "weight": 1.0,
         "question": "Is {{ completion }} helpful?",
         "choices": [{"label": "no"}, {"label": "partly"}, {"label": "yes"}]},
        {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag",
         "mode": "numeric", "tolerance": 0.0},
    ]
}


@pytest.fixture
def review_setup(make_member):
    return build_review_setup(make_member)


def build_review_setup(make_member):
    """A project with an editor, two annotators, a two-criterion rubric and 12 scored rollouts in 4 groups of 3."""
    editor, project = make_member(Role.EDITOR)
    ann1, _ = make_member(Role.ANNOTATOR, project)
    ann2, _ = make_member(Role.ANNOTATOR, project)
    version = RubricVersionFactory(rubric__project=project, spec=SPEC)
    task = TaskFactory(project=project)
    rollouts = []
    for g in range(4):
        example = ExampleFactory(task=task)
        for s in range(3):
            rollouts.append(RolloutFactory(
                project=project, task=task, example=example, group_key=f"grp{g}", sample_index=s,
                completion=f"<answer>{g}{s}</answer> <script>alert(1)</script>", model_name="qwen2.5-7b",
            ))
    for i, r in enumerate(rollouts):
        helpful = [0.0, 0.5, 1.0][i % 3]
        correct = 1.0 if i % 2 else 0.0
        CriterionScore.objects.create(rollout=r, rubric_version=version, criterion_key="helpful",
                                      judge_fingerprint=JUDGE_FP, raw_choice=["no", "partly", "yes"][i % 3], score=helpful)
        CriterionScore.objects.create(rollout=r, rubric_version=version, criterion_key="correct",
                                      judge_fingerprint="programmatic", score=correct)
        # group 0 is flat (zero variance): every sample totals 0.5
        total = 0.5 if r.group_key == "grp0" else (helpful + correct) / 2
        RolloutScore.objects.create(rollout=r, rubric_version=version, judge_fingerprint=JUDGE_FP, total=total)
    return {"project": project, "editor": editor, "ann1": ann1, "ann2": ann2, "version": version, "rollouts": rollouts}
