"""One of everything in a project, with names tagged so a leak of another project's data is visible."""

from __future__ import annotations

from tests.factories import (
    EndpointFactory,
    ExampleFactory,
    GenerationJobFactory,
    RolloutFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
    UserFactory,
)
from webapp.exports.models import Export
from webapp.judging.models import CriterionScore, JudgeJob, RolloutScore
from webapp.reviews.models import GoldResponse, HumanLabel, RankingLabel, ReviewItem, ReviewQueue
from webapp.runs.models import Checkpoint, TrainingMetric, TrainingRun

SPEC = {
    "criteria": [
        {"key": "correct", "title": "Correct", "kind": "match", "weight": 1.0, "extract": "answer_tag",
         "mode": "numeric", "tolerance": 0.0},
        {"key": "polite", "title": "Polite", "question": "Is the answer polite?", "kind": "judge", "weight": 0.5,
         "choices": [{"label": "no", "description": ""}, {"label": "yes", "description": ""}]},
    ]
}


def one_of_everything(project, tag: str) -> dict:
    task = TaskFactory(project=project, name=f"{tag}-task")
    example = ExampleFactory(task=task, prompt=f"{tag}-prompt", external_id=f"{tag}-ex")
    rubric = RubricFactory(project=project, name=f"{tag}-rubric", task=task)
    version = RubricVersionFactory(rubric=rubric, number=1, spec=SPEC)
    endpoint = EndpointFactory(project=project, name=f"{tag}-endpoint", api_key_env="VENDOR_API_KEY")
    job = GenerationJobFactory(project=project, task=task, model_name=f"{tag}-model")
    rollout = RolloutFactory(project=project, task=task, example=example, job=job, completion=f"{tag}-completion",
                             group_key=f"{tag}-g")
    judge_job = JudgeJob.objects.create(project=project, rubric_version=version, endpoint=endpoint)
    score = CriterionScore.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                          judge_fingerprint="programmatic", job=judge_job, score=1.0,
                                          rationale=f"{tag}-rationale")
    total = RolloutScore.objects.create(rollout=rollout, rubric_version=version, judge_fingerprint="programmatic",
                                        job=judge_job, total=1.0)
    queue = ReviewQueue.objects.create(project=project, name=f"{tag}-queue", rubric_version=version)
    annotator = UserFactory(username=f"{tag}-annotator")
    label = HumanLabel.objects.create(rollout=rollout, rubric_version=version, criterion_key="correct",
                                      annotator=annotator, queue=queue, value=1.0, comment=f"{tag}-comment")
    # Not blind: the rollout's scores stay readable to annotators here (the blind walk builds its own blind queues).
    ranking_queue = ReviewQueue.objects.create(project=project, name=f"{tag}-ranking-queue", rubric_version=version,
                                               mode="ranking", blind=False)
    item = ReviewItem.objects.create(queue=ranking_queue, position=1, rollout=rollout,
                                     group_rollout_ids=[rollout.pk])
    gold = GoldResponse.objects.create(rollout=rollout, annotator=annotator, queue=ranking_queue, text=f"{tag}-gold")
    ranking = RankingLabel.objects.create(item=item, rubric_version=version, annotator=annotator, queue=ranking_queue,
                                          ranking=[rollout.pk], comment=f"{tag}-ranking")
    run = TrainingRun.objects.create(project=project, name=f"{tag}-run", task=task, rubric_version=version,
                                     base_model="bundled")
    metric = TrainingMetric.objects.create(run=run, step=1, metrics={"loss": 1.0})
    checkpoint = Checkpoint.objects.create(run=run, step=1, path=f"/tmp/{tag}-ckpt")
    export = Export.objects.create(project=project, kind="rollouts", format="jsonl")
    return {
        "project": project, "task": task, "example": example, "rubric": rubric, "version": version,
        "endpoint": endpoint, "job": job, "rollout": rollout, "judge_job": judge_job, "score": score,
        "total": total, "queue": queue, "label": label, "item": item, "gold": gold, "ranking": ranking,
        "ranking_queue": ranking_queue, "annotator": annotator, "run": run, "metric": metric,
        "checkpoint": checkpoint, "export": export,
    }


# url segment -> keys of the other objects a listing shows
ALSO_LISTED = {"review-queues": ("ranking_queue",)}

# url segment -> key of the object in one_of_everything
RESOURCES = {
    "tasks": "task", "examples": "example", "rubrics": "rubric", "rubric-versions": "version",
    "endpoints": "endpoint", "generation-jobs": "job", "rollouts": "rollout", "judge-jobs": "judge_job",
    "criterion-scores": "score", "rollout-scores": "total", "review-queues": "queue", "labels": "label",
    "review-items": "item", "gold-responses": "gold", "ranking-labels": "ranking",
    "training-runs": "run", "training-metrics": "metric", "checkpoints": "checkpoint", "exports": "export",
}
