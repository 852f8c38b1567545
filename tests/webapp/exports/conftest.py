from __future__ import annotations

import pytest

from tests.factories import (
    ExampleFactory,
    ProjectFactory,
    RolloutFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
    UserFactory,
)
from tests.webapp.api.builders import SPEC
from webapp.judging.models import CriterionScore, RolloutScore
from webapp.reviews.models import HumanLabel, PairwiseLabel

# group -> rewards of its rollouts (sample_index order)
GROUPS = {"g1": [0.2, 0.9, 0.5], "g2": [0.4, 0.4, 0.45], "g3": [0.1, 0.05, 0.0]}


def build_scored_project(project=None, *, task_name: str = "arith") -> dict:
    """A task with 3 examples, each with a GRPO group of 3 rollouts, scored per criterion and in total, two
    labeled by a human, plus one human pairwise preference."""
    project = project or ProjectFactory()
    task = TaskFactory(project=project, name=task_name)
    rubric = RubricFactory(project=project, name=f"{task_name}-rubric", task=task)
    version = RubricVersionFactory(rubric=rubric, number=1, spec=SPEC)
    annotator = UserFactory(username=f"ann-{project.pk}")
    rollouts = []
    for i, (group, rewards) in enumerate(GROUPS.items()):
        example = ExampleFactory(task=task, external_id=f"ex-{i}", prompt=f"What is {i} + 1?", answer=str(i + 1),
                                 split="eval" if i == 2 else "train", info={"level": i})
        for j, reward in enumerate(rewards):
            completion = f"<answer>{i + 1 if reward > 0.3 else 0}</answer> ✓ \"quoted\", comma\nnewline"
            prompt_messages = [{"role": "user", "content": example.prompt}]
            rollout = RolloutFactory(
                project=project, task=task, example=example, group_key=group, sample_index=j, completion=completion,
                prompt_messages=prompt_messages, model_name="bundled", prompt_tokens=10 + j, completion_tokens=5,
                finish_reason="stop", latency_ms=100 * j, metadata={"turns": [{"i": j}], "tool": None},
                messages=[*prompt_messages, {"role": "assistant", "content": completion}],
            )
            rollouts.append(rollout)
            CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                          judge_fingerprint="programmatic", score=1.0 if reward > 0.3 else 0.0)
            CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                                          judge_fingerprint="judge-a", score=reward, raw_choice="yes",
                                          rationale=f"because {reward}")
            RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="judge-a",
                                        total=reward)
    HumanLabel.objects.create(rollout=rollouts[1], rubric_version=version, criterion_key="polite",
                              annotator=annotator, value=1.0, comment="nice")
    HumanLabel.objects.create(rollout=rollouts[2], rubric_version=version, criterion_key="polite",
                              annotator=annotator, value=0.0, comment="rude", reward_hacking=True)
    PairwiseLabel.objects.create(rollout_a=rollouts[3], rollout_b=rollouts[5], rubric_version=version,
                                 annotator=annotator, preferred="b", shown_a_first=True)
    return {"project": project, "task": task, "version": version, "rollouts": rollouts, "annotator": annotator}


@pytest.fixture
def scored(db):
    return build_scored_project()


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
