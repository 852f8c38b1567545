"""Issue 19: a checkpoint evaluation advances by a task that re-enqueues itself. If one message is lost (a broker
error, a worker killed between steps), the workers' lapsed-lease check (workers.system) starts its chain again."""

from __future__ import annotations

import time

import pytest

from tests.conftest import WorkerProcess
from tests.training.grpo.conftest import tiny_model_dir  # noqa: F401  (session fixture)
from tests.webapp.runs.test_evaluation import generate, setup  # noqa: F401  (fixture)
from webapp.core.jobs import job_chain_end, job_chain_start, job_chain_step, job_chain_take_over
from webapp.core.models import JobChunk, JobStatus
from webapp.runs import services
from webapp.runs.models import CheckpointEvaluation

KIND = JobChunk.Kind.EVALUATION


@pytest.mark.django_db
def test_a_new_chain_supersedes_the_old_one_whose_late_message_stops(settings):
    settings.RUBRICON_JOB_LEASE_S = 60
    first = job_chain_start(kind=KIND, job_id=7)
    assert job_chain_step(kind=KIND, job_id=7, token=first)
    assert job_chain_take_over(kind=KIND, job_id=7, lapsed_only=True) is None  # alive: the check leaves it alone
    second = job_chain_take_over(kind=KIND, job_id=7, lapsed_only=False)  # a worker starting takes it over
    assert second and second != first
    assert not job_chain_step(kind=KIND, job_id=7, token=first)  # the old chain's late message stops there
    assert job_chain_step(kind=KIND, job_id=7, token=second)
    job_chain_end(kind=KIND, job_id=7)
    assert not job_chain_step(kind=KIND, job_id=7, token=second)
    # The lapsed-lease check leaves an ended chain ended (it brought it back, for one step, before).
    assert job_chain_take_over(kind=KIND, job_id=7, lapsed_only=True) is None
    assert JobChunk.objects.get(kind=KIND, job_id=7, index=0).done
    # An evaluation from before chains held leases has no row: the check starts one.
    assert job_chain_take_over(kind=KIND, job_id=8, lapsed_only=True)


@pytest.mark.django_db(transaction=True)
def test_an_evaluation_whose_next_step_was_never_sent_is_resumed_and_finishes(setup, start_worker,  # noqa: F811
                                                                               private_broker, settings):
    project, run, engine, (checkpoint, _) = setup
    # The chain this process starts lapses in 1 s, not the default 60 s. The worker checks every 3 s: its own steps
    # (1 s apart) renew the chain well within that, so it is taken over once, not at every step.
    settings.RUBRICON_JOB_LEASE_S = 1
    worker = start_worker("rescuer", {"CELERY_BROKER_URL": private_broker, "RUBRICON_JOB_LEASE_S": "3"})
    # Created after the worker started (its start-up resume is behind it), with its first message never sent: what
    # a lost message leaves. Its rollouts are generated here; the worker must judge them and finish it.
    evaluation = services.checkpoint_evaluation_create(run=run, checkpoint=checkpoint, endpoint=engine, enqueue=False)
    generate(evaluation.base_job)
    generate(evaluation.checkpoint_job)
    deadline = time.monotonic() + 120
    while evaluation.status not in JobStatus.finished():
        assert time.monotonic() < deadline, f"the stalled evaluation was never resumed\n{worker.log()}"
        time.sleep(0.5)
        evaluation.refresh_from_db()
    assert evaluation.status == JobStatus.SUCCEEDED, evaluation.error
    assert (evaluation.done, evaluation.total) == (4, 4)
    evaluation = CheckpointEvaluation.objects.select_related("base_judge_job", "checkpoint_judge_job").get(
        pk=evaluation.pk)
    assert evaluation.base_judge_job.status == evaluation.checkpoint_judge_job.status == JobStatus.SUCCEEDED
    # The whole log: the resume now comes while this process still generates, so many steps are logged after it.
    # Any worker of this test process may be the one: the session worker (its own broker, checking every 60 s)
    # scans the same database, and on a slow machine its check can come first.
    logs = {w.name: w.log_path.read_text(errors="replace") for w in WorkerProcess.started if w.log_path.exists()}
    assert any("whose worker stopped renewing its lease" in log for log in logs.values()), worker.log()
    chain = JobChunk.objects.get(kind=KIND, job_id=evaluation.pk, index=0)
    assert chain.done and chain.lease_expires_at is None  # ended with the evaluation: the check sends nothing more


@pytest.mark.django_db
def test_an_evaluation_whose_step_keeps_failing_fails_with_the_error_instead_of_retrying_forever(setup, eager_celery):  # noqa: F811
    """A step that raises (here Postgres refusing the judge job: a trigger, as a broken constraint or a full disk
    would) is tried again, but not forever: the third failure in a row ends the evaluation with the error."""
    from django.db import connection

    from tests.factories import RolloutFactory
    from webapp.judging.models import JudgeJob
    from webapp.rollouts.models import GenerationJob
    from workers.training import EVALUATION_STEP_ATTEMPTS, advance_evaluation

    project, run, engine, (checkpoint, _) = setup
    evaluation = services.checkpoint_evaluation_create(run=run, checkpoint=checkpoint, endpoint=engine, enqueue=False)
    base = evaluation.base_job
    RolloutFactory(project=project, task=run.task, job=base, example=run.task.examples.filter(split="eval").first())
    GenerationJob.objects.filter(pk=base.pk).update(status=JobStatus.SUCCEEDED)
    table = connection.ops.quote_name(JudgeJob._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute("CREATE FUNCTION refuse_judge_job() RETURNS trigger LANGUAGE plpgsql AS"
                       " $$ BEGIN RAISE EXCEPTION 'judge jobs refused by the test'; END $$")
        cursor.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse_judge_job()")
    chain = JobChunk.objects.get(kind=KIND, job_id=evaluation.pk, index=0).leased_by
    advance_evaluation(evaluation_id=evaluation.pk, chain=chain)  # eager: each next step runs inline
    evaluation.refresh_from_db()
    assert evaluation.status == JobStatus.FAILED
    assert f"failed {EVALUATION_STEP_ATTEMPTS} times in a row" in evaluation.error
    assert "judge jobs refused by the test" in evaluation.error
    assert JobChunk.objects.get(kind=KIND, job_id=evaluation.pk, index=0).done  # the chain ended with it
