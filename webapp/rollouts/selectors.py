from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.models import Project
from webapp.rollouts.models import GenerationJob, Rollout
from webapp.rollouts.search_index import SHORT_TERMS_INDEX

# Filters that read other apps' rows (judge scores, human labels) are contributed by those apps, which sit above
# rollouts in the app order: each registers a clause in its AppConfig.ready (judging: score bounds and the scores of
# the chosen rubric version; reviews: labeled or not). One selector, one meaning of every filter, for the rollout
# browser, judge and review selections, exports and the API; where a caller's filter means more, it says so with an
# explicit `RolloutFilterMeaning` flag rather than a filter of its own.


@dataclass(frozen=True)
class RolloutFilterMeaning:
    """How the score and label filters read, per caller (the defaults are the rollout browser's)."""

    # Blind review: rollouts whose scores the caller may not see; no score bound matches them. Other annotators'
    # labels of them are hidden from the caller too: `labeled` counts only `viewer`'s own labels there.
    hidden_scores: QuerySet[Any] | None = None
    viewer: int | None = None
    # `rubric_version` also keeps only rollouts scored under it (API). Otherwise it only chooses whose scores the
    # bounds compare and the page shows.
    scored_under: bool = False
    # Score bounds without a `rubric_version` compare the totals of any version (API); otherwise they are ignored.
    bounds_any_version: bool = False
    # `labeled` counts only labels under `rubric_version`, when one is given (exports, API); otherwise any label.
    labels_under_version: bool = False
    # Prefetch the chosen version's totals into `selected_scores` (the browser's list).
    prefetch_scores: bool = False


RolloutFilterClause = Callable[[QuerySet[Rollout], Mapping[str, Any], RolloutFilterMeaning], QuerySet[Rollout]]
_clauses: list[RolloutFilterClause] = []
# filter name -> lookup, for the filters that compare a column of the rollout.
_FIELDS = (("task", "task_id"), ("job", "job_id"), ("run", "run_id"), ("model", "model_name"), ("source", "source"),
           ("split", "example__split"), ("example", "example_id"), ("step", "step"), ("group_key", "group_key"))


def rollout_filter_register(clause: RolloutFilterClause) -> None:
    if clause not in _clauses:
        _clauses.append(clause)


# A run of three letters or digits: pg_trgm finds a trigram of the term's own and the trigram index serves the search.
_TRIGRAM = re.compile(r"[^\W_]{3}")
# At most this many candidates from the character-pair index go into the query as ids; a term likely to be in more
# rollouts is left to the newest-first scan, which finds a page of a common term quickly.
SHORT_TERM_CANDIDATES = 2_000
# How many rollouts the statistics of the character-pair index expect to have every pair of the term (as many as have
# its rarest pair; a pair missing from the index's most common elements counts as in none). NULL without a valid
# index: it is an operator's opt-in (webapp.rollouts.search_index), off by default, and a concurrent build can fail or
# be interrupted; the candidates would then be computed row by row, or not at all, its functions being gone too. The
# check is folded in here rather than cached per process: a default installation pays this one query for a term
# without a trigram (an uncorrelated EXISTS, evaluated once before anything else: well under a millisecond), and a
# process can never use an index that `--disable` has dropped since. The term's pairs are listed as
# rollout_term_grams() lists them, written out so that this also runs without that function.
_SHORT_TERM_EXPECTED_SQL = f"""
    WITH term AS (SELECT UPPER(%(q)s) AS t),
    pairs AS (SELECT substr(t, i, LEAST(length(t), 2)) AS gram
              FROM term, generate_series(1, GREATEST(length(t) - 1, 1)) AS i),
    stats AS (SELECT unnest(most_common_elems::text::text[]) AS gram, unnest(most_common_elem_freqs) AS freq
              FROM pg_stats WHERE schemaname = current_schema() AND tablename = '{SHORT_TERMS_INDEX}')
    SELECT MIN(COALESCE(stats.freq, 0)) * (SELECT GREATEST(reltuples, 0) FROM pg_class
                                           WHERE oid = 'rollouts_rollout'::regclass)
    FROM pairs LEFT JOIN stats USING (gram)
    WHERE EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('{SHORT_TERMS_INDEX}') AND indisvalid)
"""
# Written as the index's expression, so the planner reads the index.
SHORT_TERM_PAIRS_CONDITION = 'rollout_text_grams(UPPER(completion)) COLLATE "C" @> rollout_term_grams(UPPER(%(q)s))'
_SHORT_TERM_CANDIDATES_SQL = (
    f"SELECT id FROM rollouts_rollout WHERE project_id = %(project)s AND {SHORT_TERM_PAIRS_CONDITION}"
)


def _rare_short_term_candidates(project: Project, q: str) -> list[int] | None:
    """For a term too short for trigrams (all its words under three characters), on Postgres: the ids of the
    project's rollouts whose text has every character pair of the term (the opt-in index of
    webapp.rollouts.search_index answers that), a superset of the rollouts that contain it; None when the term
    has a trigram, when the index is not there (or not valid), or when its statistics say a pair of the term is in
    more than SHORT_TERM_CANDIDATES rollouts (or the index finds more): the search then goes as before.

    A rare term's page then reads a few rows by id instead of the whole table. The decision is made here, from the
    pairs' statistics, rather than by the planner: it cannot tell an absent pair from a merely uncommon one and
    would then walk the table evaluating the pairs of every text."""
    if connection.vendor != "postgresql" or _TRIGRAM.search(q):
        return None
    params: dict[str, str | int] = {"q": q, "project": project.pk}
    with connection.cursor() as cursor:
        cursor.execute(_SHORT_TERM_EXPECTED_SQL, params)
        (expected,) = cursor.fetchone()
        if expected is None or expected > SHORT_TERM_CANDIDATES:
            return None
        # A second statement rather than a branch of the first: a plan for the common case would be built (and
        # JIT-compiled) even when unused.
        cursor.execute(_SHORT_TERM_CANDIDATES_SQL, params)
        ids = [row[0] for row in cursor.fetchmany(SHORT_TERM_CANDIDATES + 1)]
    return ids if len(ids) <= SHORT_TERM_CANDIDATES else None


def rollout_filter(
    project: Project, *, filters: Mapping[str, Any] | None = None, meaning: RolloutFilterMeaning | None = None
) -> QuerySet[Rollout]:
    """The project's rollouts under typed filters (no order, no columns chosen): task, job, run, model, source,
    split, example, step, group_key, ids, errors_only, q (text in the completion), and the registered clauses'
    rubric_version, score_min, score_max, labeled ("yes"/"no"). Empty values (None, "") are no filter. A `q` too short
    for trigrams costs one query here on Postgres, two for a rare one where the short-term index is enabled
    (`_rare_short_term_candidates`)."""
    f = {k: v for k, v in (filters or {}).items() if v is not None and v != ""}
    rollouts = Rollout.objects.filter(project=project)
    for field, lookup in _FIELDS:
        if field in f:
            rollouts = rollouts.filter(**{lookup: f[field]})
    if f.get("ids"):
        rollouts = rollouts.filter(pk__in=f["ids"])
    if f.get("errors_only"):
        rollouts = rollouts.exclude(error="")
    if f.get("q"):
        candidates = _rare_short_term_candidates(project, f["q"])
        if candidates is not None:
            rollouts = rollouts.filter(pk__in=candidates)
        # On Postgres this is UPPER(completion) LIKE UPPER('%q%'), the exact expression the trigram index of
        # migration rollouts.0002_rollout_text_trgm serves; another lookup (iregex, ILIKE) would miss the index.
        rollouts = rollouts.filter(completion__icontains=f["q"])
    meaning = meaning or RolloutFilterMeaning()
    for clause in _clauses:
        rollouts = clause(rollouts, f, meaning)
    return rollouts


def rollout_browse(
    project: Project,
    *,
    filters: Mapping[str, Any] | None = None,
    hidden_scores: QuerySet[Any] | None = None,
    viewer: int | None = None,
) -> QuerySet[Rollout]:
    """Rollouts of a project under the browser's filters, newest first; scores of the chosen rubric version
    are prefetched into `selected_scores` so a page costs the same number of queries at any size."""
    meaning = RolloutFilterMeaning(hidden_scores=hidden_scores, viewer=viewer, prefetch_scores=True)
    rollouts = rollout_filter(project, filters=filters, meaning=meaning)
    # The list shows a preview; the full trajectory is loaded on the detail and group pages only.
    return rollouts.select_related("task", "example").defer("messages", "prompt_messages", "metadata")


def rollout_get(project: Project, rollout_id: int) -> Rollout:
    return get_object_or_404(
        Rollout.objects.select_related("task", "example", "job", "run"), project=project, pk=rollout_id
    )


def generation_job_list(project: Project) -> QuerySet[GenerationJob]:
    return project.generation_jobs.select_related("task", "endpoint").order_by("-id")


def rollouts_project_counts(project: Project) -> dict[str, int]:
    """This app's headline numbers on the project overview (registered with core in apps.py)."""
    return {
        "rollouts": Rollout.objects.filter(project=project).count(),
            "generation_jobs": GenerationJob.objects.filter(project=project).count(),
    }
