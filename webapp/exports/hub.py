"""Push an export to the Hugging Face Hub as a dataset repo, with a generated dataset card.

The push runs as a background job (`workers.exports.push_export`, queue `default`). The token is read on the worker
from an environment variable the member names; the variable must pass the operator's key-variable rules
(training.outbound, RUBRICON_ENDPOINT_KEY_VARS), so the app's own and infrastructure credentials can never be sent.
The Hub is `HF_ENDPOINT` of the worker's environment when set (a self-hosted Hub or a test server), else
huggingface.co. Errors (401, network) are stored on the push row with their message.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from training.outbound import ENV_NAME_RE, key_var_allowed
from webapp.core.errors import ApplicationError
from webapp.core.jobs import job_fail, job_finish, job_start
from webapp.core.models import JobStatus
from webapp.exports.models import Export, ExportFormat, ExportKind, HubPush

logger = logging.getLogger(__name__)
DEFAULT_ENDPOINT = "https://huggingface.co"
# The lines file of a verifiers run folder: what the card's config points `datasets` at.
VERIFIERS_LINES = {ExportKind.VERIFIERS: "traces.jsonl", ExportKind.VERIFIERS_03: "results.jsonl"}


def hub_token_var_check(name: str) -> None:
    allowed = tuple(settings.RUBRICON_ENDPOINT_KEY_VARS)
    if not ENV_NAME_RE.match(name or ""):
        raise ApplicationError("Name an environment variable of the worker (upper case, digits and _), e.g. HF_TOKEN.",
                               field="token_env")
    if not key_var_allowed(name, allowed=allowed):
        raise ApplicationError(
            f"${name} may not be used as a token. The operator allows variables named {' or '.join(allowed)} "
            "(RUBRICON_ENDPOINT_KEY_VARS); the app's own and infrastructure credentials (DJANGO_*, DATABASE_*, "
            "CELERY_*, AWS_*, ...) are never allowed.", field="token_env")


def hub_repo_id_check(repo_id: str) -> str:
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError as error:
        raise ApplicationError("huggingface_hub is not installed on this server; install it with "
                               "pip install 'rubricon[hub]'.", status=503) from error

    repo_id = (repo_id or "").strip()
    if repo_id.count("/") != 1:
        raise ApplicationError("Give the repo as namespace/name (your user or organisation, then the dataset name).",
                               field="repo_id")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ApplicationError(f"Not a Hub repo id: {error}", field="repo_id") from error
    return repo_id


@transaction.atomic
def hub_push_create(*, export: Export, repo_id: str, token_env: str, private: bool = True, created_by: Any = None,
                    enqueue: bool = True) -> HubPush:
    """Record a push of a finished export and queue it once the row is committed."""
    if export.status != JobStatus.SUCCEEDED or not export.file:
        raise ApplicationError(f"Export #{export.pk} has no file yet (status {export.status}); push it once it "
                               "has succeeded.", field="export")
    repo_id = hub_repo_id_check(repo_id)
    hub_token_var_check(token_env)
    push = HubPush.objects.create(export=export, repo_id=repo_id, token_env=token_env, private=private,
                                  created_by=created_by)
    if enqueue:
        from webapp.core.jobs import job_enqueue

        job_enqueue("workers.exports.push_export", push_id=push.pk)
    return push


@dataclass(frozen=True)
class Staged:
    files: dict[str, Path]  # path in repo -> local file
    data_files: str  # the path (or glob) the card's `configs` points `datasets` at
    loader_format: str


def stage_files(export: Export, folder: Path) -> Staged:
    """The repo's data files, in `folder`. JSONL, CSV and Parquet go as they are under data/; the Hugging Face zip
    (save_to_disk) becomes Parquet, which the Hub's viewer and `load_dataset` read; a verifiers run keeps its
    folder layout."""
    source = Path(export.file.path)
    if export.kind in VERIFIERS_LINES:
        files: dict[str, Path] = {}
        with zipfile.ZipFile(source) as archive:
            for member in archive.infolist():
                if member.is_dir() or member.filename.startswith("/") or ".." in Path(member.filename).parts:
                    continue
                target = folder / "run" / member.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
                files[member.filename] = target
        lines = VERIFIERS_LINES[ExportKind(export.kind)]
        return Staged(files=files, data_files=lines, loader_format="json")
    if export.format == ExportFormat.HF:
        import datasets

        unzipped = folder / "unzipped"
        with zipfile.ZipFile(source) as archive:
            archive.extractall(unzipped)
        target = folder / "train.parquet"
        datasets.load_from_disk(str(unzipped / "dataset")).to_parquet(str(target))
        return Staged(files={"data/train.parquet": target}, data_files="data/train.parquet", loader_format="parquet")
    extension = {"jsonl": "jsonl", "csv": "csv", "parquet": "parquet"}[export.format]
    name = f"data/train.{extension}"
    return Staged(files={name: source}, data_files=name,
                  loader_format={"jsonl": "json", "csv": "csv", "parquet": "parquet"}[export.format])


def _yaml_str(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid YAML scalar


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _md(text: str) -> str:
    """Text from members (names, instructions) inside a Markdown table cell or line."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;")


def dataset_card(export: Export, staged: Staged, *, repo_id: str) -> str:
    """README.md of the repo: YAML metadata the Hub reads (configs, tags) and what the export holds: task, rubric
    version, filters, counts and judge–human agreement where the rubric version has labels."""
    from webapp.rollouts.pickers import selection_display, selection_names
    from webapp.rubrics.models import RubricVersion
    from webapp.tasks.models import Task

    project = export.project
    filters = dict(export.filters or {})
    names = selection_names(project=project, selections=[filters])
    lines = [
        "---",
        f"pretty_name: {_yaml_str(f'{project.name} · {export.get_kind_display()}')}",
        "tags:",
        "- rubricon",
        f"- {export.kind.replace('_', '-')}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {_yaml_str(staged.data_files)}",
        "---",
        "",
        f"# {_md(project.name)}: {_md(export.get_kind_display())}",
        "",
        f"Exported by Rubricon (export #{export.pk}, {export.get_format_display()}, "
        f"{(export.finished_at or export.created_at):%Y-%m-%d %H:%M} UTC).",
        "",
        "## Task",
        "",
    ]
    task_id = filters.get("task")
    task = Task.objects.filter(project=project, pk=task_id).first() if task_id else None
    if task is not None:
        lines += [f"**{_md(task.name)}**", ""]
        if task.instructions:
            lines += [f"> {_md(task.instructions[:1000])}", ""]
        lines += [f"Examples in the task: {task.examples.count()}.", ""]
    else:
        tasks = list(Task.objects.filter(project=project).order_by("name").values_list("name", flat=True)[:50])
        lines += [f"No task filter: rows may come from any task of the project ({', '.join(map(_md, tasks)) or '—'}).",
                  ""]
    lines += ["## Rubric version", ""]
    version = None
    if filters.get("rubric_version"):
        version = RubricVersion.objects.select_related("rubric").filter(
            rubric__project=project, pk=filters["rubric_version"]).first()
    if version is not None:
        lines += [f"**{_md(version.rubric.name)} v{version.number}**"
                  + (f": {_md(version.note)}" if version.note else ""), "",
                  "| criterion | kind | weight |", "|---|---|---|"]
        for criterion in version.criteria:
            lines.append(f"| {_md(criterion.get('key', ''))} | {_md(criterion.get('kind', ''))} | "
                         f"{criterion.get('weight', 1)} |")
        lines.append("")
    else:
        lines += ["No rubric version chosen: scores of every version are included where the kind carries them.", ""]
    lines += ["## Filters", ""]
    shown = selection_display(filters, names)
    lines += [f"- {_md(key)}: {_md(value)}" for key, value in shown] or ["- none"]
    lines += ["", "## Counts", "", f"- rows: {export.done}", f"- data file: `{staged.data_files}`"]
    if task is not None:
        lines.append(f"- examples in the task: {task.examples.count()}")
    lines += ["", "## Judge–human agreement", ""]
    lines += _agreement_lines(version)
    lines += ["", "## Loading", "", "```python", "from datasets import load_dataset", "",
              f"ds = load_dataset({_yaml_str(repo_id)}, split=\"train\")", "```", ""]
    return "\n".join(lines)


def _agreement_lines(version: Any) -> list[str]:
    if version is None:
        return ["Agreement figures belong to a rubric version; this export was not filtered by one."]
    from webapp.reviews.dashboard import agreement_dashboard_cached

    rows = agreement_dashboard_cached(version)
    if not rows:
        return [f"No human labels on {_md(str(version))} yet, so no agreement figures."]
    out = ["| criterion | judge | figure | value | 95 % interval | n |", "|---|---|---|---|---|---|"]
    for row in rows:
        stat = row.headline
        interval = f"{_fmt(stat.ci_low)} – {_fmt(stat.ci_high)}" if stat.ci_low is not None else "—"
        out.append(f"| {_md(row.criterion.key)} | {_md(row.judge_name)} | {_md(row.headline_name)} | "
                   f"{_fmt(stat.value)} | {interval} | {stat.n} |")
    return out


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _claim(push_id: int) -> HubPush | None:
    if not job_start(model=HubPush, job_id=push_id, total=1):
        return None
    return HubPush.objects.select_related("export", "export__project").get(pk=push_id)


def _fail(push: HubPush, message: str) -> HubPush:
    job_fail(model=HubPush, job_id=push.pk, error=message[:2000])
    return HubPush.objects.get(pk=push.pk)


def _hub_error_message(error: Exception, endpoint: str) -> str:
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return "The worker runs with HF_HUB_OFFLINE=1; unset it on the workers that push to the Hub."
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        first = " — ".join(line.strip() for line in str(error).splitlines()
                           if line.strip() and not line.startswith("For more information")) or type(error).__name__
        if status == 401:
            return f"The Hub at {endpoint} refused the token (401 Unauthorized): {first}"
        if status == 403:
            return f"The token may not write to this repo (403 Forbidden): {first}"
        return f"The Hub at {endpoint} answered {status}: {first}"
    # huggingface_hub's HTTP client (httpx, or its fork httpx2) raises TransportError subclasses on network failures.
    if isinstance(error, OSError) or any(cls.__name__ == "TransportError" for cls in type(error).__mro__):
        return f"Could not reach the Hub at {endpoint}: {type(error).__name__}: {error}"
    return f"{type(error).__name__}: {error}"


def hub_push_run(*, push_id: int) -> HubPush | None:
    """Create the repo (if missing) and commit the data files and README.md in one commit. Safe to run twice: only
    a pending push is claimed."""
    push = _claim(push_id)
    if push is None:
        logger.info("hub push %s is not pending; nothing to do", push_id)
        return None
    export = push.export
    try:
        hub_token_var_check(push.token_env)  # again: the operator's rules may have changed since the row was saved
    except ApplicationError as error:
        return _fail(push, error.message)
    token = os.environ.get(push.token_env, "")
    if not token:
        return _fail(push, f"${push.token_env} is not set (or empty) in the worker's environment.")
    if not export.file or not Path(export.file.path).exists():
        return _fail(push, f"The file of export #{export.pk} is gone; run the export again.")
    endpoint = hub_endpoint()
    try:
        from huggingface_hub import CommitOperationAdd, HfApi

        with tempfile.TemporaryDirectory(dir=Path(export.file.path).parent) as tmp:
            staged = stage_files(export, Path(tmp))
            card = dataset_card(export, staged, repo_id=push.repo_id)
            api = HfApi(endpoint=endpoint, token=token, library_name="rubricon")
            api.create_repo(push.repo_id, repo_type="dataset", private=push.private, exist_ok=True)
            operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
                          for name, path in staged.files.items()]
            operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
            commit = api.create_commit(
                repo_id=push.repo_id, repo_type="dataset", operations=operations,
                commit_message=f"Rubricon export #{export.pk} ({export.kind}, {export.format})")
    except Exception as error:  # every failure is the push's state, readable on the page and in the API
        logger.info("hub push %s failed", push_id, exc_info=True)
        return _fail(push, _hub_error_message(error, endpoint))
    job_finish(model=HubPush, job_id=push.pk, status=JobStatus.SUCCEEDED, done=1, url=str(commit.commit_url)[:500],
               commit_oid=str(commit.oid or "")[:64], files=[*staged.files, "README.md"])
    return HubPush.objects.get(pk=push.pk)
