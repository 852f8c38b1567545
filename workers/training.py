"""GRPO runs on queue `train`: launch the training process, then watch it with short self-re-enqueuing tasks.

No Celery message is held for the length of a run: `launch_run` starts `python -m training.grpo.run` in its own
process group and returns; `monitor_run` ingests what is new (webapp.runs.services.training_run_ingest), turns a
cancel into a STOP file (SIGTERM, then SIGKILL, if the process does not stop), and re-enqueues itself every
~1 s while the process lives. Each monitor chain carries the run's `monitor_token`; a chain whose token no longer
matches (a redelivered message after a restart) ends quietly, so there is only ever one.

A worker that starts re-attaches to the runs of its host whose process still lives, and fails the others
("worker lost"): a run is never left "running" with nobody watching. Several training nodes: `launch_run` goes to
the shared `train` queue, every monitor message to `train.<hostname>` of the node that started the process (see
`host_queue`), which each train worker consumes besides `train`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

# Popen objects of the processes this worker process started, so their exit status can be read (and the process
# reaped) by whichever thread runs the next monitor task.
_CHILDREN: dict[int, subprocess.Popen] = {}


def _poll_seconds() -> float:
    return settings.RUBRICON_TRAIN_POLL_S


def host_queue(hostname: str) -> str:
    """The queue only the `train` workers of `hostname` consume. A run's process, sink files and checkpoints live on
    the node that launched it, so its monitor must run there: launch_run (which any train worker may take) sends
    every monitor message of the run to this queue, and each train worker adds its own host's queue on start."""
    return f"train.{hostname}"


def _monitor_later(run_id: int, token: str, hostname: str) -> None:
    monitor_run.apply_async(kwargs={"run_id": run_id, "token": token}, queue=host_queue(hostname),
                            countdown=_poll_seconds())


def _start_process(run) -> subprocess.Popen:
    from webapp.runs.services import run_dir

    directory = run_dir(run.pk)
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "config.json"
    config_path.write_text(json.dumps(run.config), encoding="utf-8")
    env = dict(os.environ)
    threads = settings.RUBRICON_TRAIN_OMP_THREADS
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    arguments = ["--config", str(config_path), "--sink-dir", str(directory), "--output-dir", run.output_dir,
                 "--models-dir", str(settings.MODELS_DIR)]
    processes = int(run.config.get("num_processes") or 1)
    if processes > 1:
        # Several GPUs: accelerate's launcher starts one rank per GPU in the same process group.
        launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes), "-m"]
    else:
        launcher = [sys.executable, "-m"]
    command = [*launcher, "training.grpo.run", *arguments]
    with open(run.log_path, "ab") as log:
        # Its own session: a worker shutdown or crash does not take the run down, and cancel can signal the group.
        return subprocess.Popen(
            command, cwd=settings.BASE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code} without reporting a final status"


def _pid_is_run(pid: int, run_id: int) -> bool:
    """The pid is alive, not a zombie, and still the training process of this run (pids get reused)."""
    proc = Path(f"/proc/{pid}")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except (OSError, IndexError):
        return True  # no /proc (not Linux): trust the signal check
    return state != "Z" and "training.grpo.run" in cmdline and f"{os.sep}{run_id}\x00" in cmdline


def _process_state(run) -> tuple[bool, str | None]:
    """(alive, how it ended when it is not)."""
    child = _CHILDREN.get(run.pk)
    if child is not None:
        code = child.poll()
        if code is None:
            return True, None
        _CHILDREN.pop(run.pk, None)
        return False, _describe_exit(code)
    if run.pid and _pid_is_run(run.pid, run.pk):
        return True, None
    return False, None


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _push_cancel(run) -> None:
    """STOP file at once; SIGTERM after the grace period; SIGKILL after three (a step stuck in generation)."""
    from training.grpo.sinks import request_stop
    from webapp.runs.services import run_dir

    request_stop(run_dir(run.pk))
    grace = settings.RUBRICON_TRAIN_CANCEL_GRACE_S
    waited = (timezone.now() - run.cancel_requested_at).total_seconds()
    if run.pid and waited > 3 * grace:
        _signal_group(run.pid, signal.SIGKILL)
    elif run.pid and waited > grace:
        _signal_group(run.pid, signal.SIGTERM)


@shared_task(name="workers.training.launch_run", ignore_result=True)
def launch_run(*, run_id: int) -> None:
    from webapp.runs import services

    run = services.training_run_claim(run_id=run_id)
    if run is None:
        return  # a duplicate delivery, or cancelled before it started
    from webapp.core.errors import ApplicationError

    try:
        services.training_run_launch_check(run=run)
    except ApplicationError as error:
        services.training_run_fail(run_id=run_id, error=f"refused to start: {error.message}")
        return
    try:
        process = _start_process(run)
    except Exception as error:
        services.training_run_fail(run_id=run_id, error=f"could not start the training process: {error!r}")
        raise
    _CHILDREN[run.pk] = process
    services.training_run_process_started(run_id=run.pk, pid=process.pid, hostname=socket.gethostname())
    _monitor_later(run.pk, run.monitor_token, socket.gethostname())


@shared_task(name="workers.training.monitor_run", ignore_result=True)
def monitor_run(*, run_id: int, token: str) -> None:
    from webapp.core.models import JobStatus
    from webapp.runs import services
    from webapp.runs.models import TrainingRun

    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None or run.monitor_token != token or run.status != JobStatus.RUNNING:
        return
    if run.hostname and run.hostname != socket.gethostname():
        # The process and its files live on another node (a message from before per-host queues): hand it over.
        _monitor_later(run_id, token, run.hostname)
        return
    try:
        if services.training_run_ingest(run_id=run_id, token=token) is None:
            return
        _follow(run_id)
        alive, exit_reason = _process_state(run)
        if not alive:
            services.training_run_finish(run_id=run_id, exit_reason=exit_reason)
            _follow(run_id)
            return
        if run.cancel_requested_at is not None:
            _push_cancel(run)
    except Exception as error:
        # Ingest failing is a bug or an outage; the process keeps going, so keep watching rather than orphan it.
        logger.exception("monitoring run %s failed: %r", run_id, error)
    _monitor_later(run_id, token, socket.gethostname())


def _follow(run_id: int) -> None:
    """Review queues that follow the run take their share of its new steps (never stops the monitor)."""
    from webapp.reviews.services import review_queues_follow_run

    try:
        review_queues_follow_run(run_id=run_id)
    except Exception as error:
        logger.exception("sampling run %s into its review queues failed: %r", run_id, error)


def reattach_runs(hostname: str) -> None:
    """Runs of this host still marked running: watch the live ones again, finish the ones whose process is gone."""
    from webapp.core.models import JobStatus
    from webapp.runs import services
    from webapp.runs.models import TrainingRun

    # Claimed, but the worker died before the process started (no pid yet): the launch message is spent.
    stale = timezone.now() - timedelta(seconds=120)
    for run_id in TrainingRun.objects.filter(status=JobStatus.RUNNING, pid__isnull=True, started_at__lt=stale) \
            .values_list("pk", flat=True):
        services.training_run_fail(run_id=run_id, error="worker lost before the training process started")
    for run in TrainingRun.objects.filter(status=JobStatus.RUNNING, hostname=hostname):
        if run.pid and _pid_is_run(run.pid, run.pk):
            token = services.training_run_reattach(run_id=run.pk)
            _monitor_later(run.pk, token, hostname)
        elif run.pk not in _CHILDREN:
            services.training_run_finish(
                run_id=run.pk, exit_reason="ended while no worker was watching it (worker lost)"
            )


@worker_ready.connect
def _reattach_on_start(sender, **kwargs) -> None:
    consumed = sender.app.amqp.queues.consume_from
    if "train" not in consumed:
        return
    queue = host_queue(socket.gethostname())
    sender.add_task_queue(queue, exchange=queue, exchange_type="direct", routing_key=queue)
    reattach_runs(socket.gethostname())


# Steps in a row that may fail with an unexpected error before the evaluation fails with it (a database that is
# away is waited out instead: its errors do not count).
EVALUATION_STEP_ATTEMPTS = 3


@shared_task(name="workers.training.advance_evaluation", ignore_result=True)
def advance_evaluation(*, evaluation_id: int, chain: str = "", failures: int = 0) -> None:
    """Bookkeeping of a checkpoint evaluation (queue `default`): re-enqueues itself until the evaluation is done.

    `chain` is the token of the chain this message belongs to; a superseded chain stops here. Each step renews the
    chain's lease; the workers' lapsed-lease check (workers.system) starts a new chain when a message was lost.
    A message without one (sent before chains held leases) starts a chain if the evaluation has none. `failures`
    counts the steps before this one that failed in a row; at EVALUATION_STEP_ATTEMPTS the evaluation fails with the
    error, rather than the chain retrying it forever."""
    from django.db import InterfaceError, OperationalError

    from webapp.core.jobs import job_chain_end, job_chain_step, job_chain_take_over
    from webapp.core.models import JobChunk
    from webapp.runs import services

    kind = JobChunk.Kind.EVALUATION
    if not chain:
        chain = job_chain_take_over(kind=kind, job_id=evaluation_id, lapsed_only=True) or ""
    if not chain or not job_chain_step(kind=kind, job_id=evaluation_id, token=chain):
        return
    try:
        more, failures = services.checkpoint_evaluation_advance(evaluation_id=evaluation_id), 0
    except (OperationalError, InterfaceError) as error:  # the database is away: try again, however long it takes
        logger.warning("advancing evaluation %s: the database is unavailable (%r); trying again", evaluation_id, error)
        more = True
    except Exception as error:
        failures += 1
        logger.exception("advancing evaluation %s failed (%d in a row): %r", evaluation_id, failures, error)
        more = failures < EVALUATION_STEP_ATTEMPTS
        if not more:
            services.checkpoint_evaluation_fail(
                evaluation_id=evaluation_id,
                error=f"Advancing the evaluation failed {failures} times in a row; the last error: {error!r}",
            )
    if more:
        advance_evaluation.apply_async(kwargs={"evaluation_id": evaluation_id, "chain": chain, "failures": failures},
                                       queue="default", countdown=max(_poll_seconds(), 1.0))
    else:  # ended with the evaluation already; also when it was finished elsewhere (cancelled)
        job_chain_end(kind=kind, job_id=evaluation_id)
