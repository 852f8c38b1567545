"""The character-pair index for short search terms is an operator's opt-in (webapp.rollouts.search_index), off by
default: a migrated database has none, searches as before at the cost of one catalog query per term without a
trigram, and `manage.py search_index short-terms` enables, reports and disables it on Postgres."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from tests.factories import TaskFactory
from tests.webapp.rollouts.test_text_search import matches, upper_table
from webapp.rollouts.models import Rollout
from webapp.rollouts.search_index import SHORT_TERMS_INDEX, short_terms_index_status
from webapp.rollouts.selectors import _rare_short_term_candidates, rollout_filter

TEXTS = ("the answer is 42", "Xzqy and more", "nothing here", "zq at the start", "a b c", "\u20ac 5", "ZQ")


def functions() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname FROM pg_proc WHERE proname IN ('rollout_text_grams', 'rollout_term_grams')"
                       " ORDER BY proname")
        return [row[0] for row in cursor.fetchall()]


def command(*options: str) -> str:
    out = io.StringIO()
    call_command("search_index", "short-terms", *options, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_migrated_database_has_no_short_term_index_and_searches_as_before():
    """Migrations alone: no index, no functions; every short term finds what the substring oracle finds, a term
    without a trigram costs one query (the statistics look-up, which finds no index) and one with a trigram none."""
    assert short_terms_index_status().exists is False
    assert functions() == []
    task = TaskFactory()
    rollouts = Rollout.objects.bulk_create(Rollout(project=task.project, task=task, group_key=f"g{i}", completion=text)
                                           for i, text in enumerate(TEXTS))
    table = upper_table([*TEXTS, "zq", "\u20ac", "a b", "42", "zqy"])
    for term, queries in (("zq", 1), ("\u20ac", 1), ("a b", 1), ("42", 1), ("zqy", 0)):
        with CaptureQueriesContext(connection) as captured:
            found = rollout_filter(task.project, filters={"q": term})
        assert len(captured.captured_queries) == queries, (term, captured.captured_queries)
        assert "rollout_term_grams" not in " ".join(q["sql"] for q in captured.captured_queries)
        assert set(found.values_list("pk", flat=True)) == {r.pk for r in rollouts if matches(term, r.completion, table)}
        assert _rare_short_term_candidates(task.project, term) is None


@pytest.mark.django_db
def test_the_command_refuses_inside_a_transaction():
    with pytest.raises(CommandError, match="inside a transaction"):
        command("--enable")
    assert short_terms_index_status().exists is False


@pytest.mark.django_db(transaction=True)
def test_enable_status_disable_round_trip_and_an_invalid_leftover_is_rebuilt():
    task = TaskFactory()
    rollouts = Rollout.objects.bulk_create(Rollout(project=task.project, task=task, group_key=f"g{i}", completion=text)
                                           for i, text in enumerate(TEXTS))
    zq = sorted(r.pk for r in rollouts if "ZQ" in r.completion.upper())
    try:
        assert "disabled (the default)" in command("--status")
        assert "9,291 -> 2,927 rows/s" in command("--status")  # the measured trade-off, in the same line

        out = command("--enable")
        assert f"{SHORT_TERMS_INDEX}: enabled, " in out and "kB" in out
        status = short_terms_index_status()
        assert status.exists and status.valid and status.size_bytes > 0
        assert functions() == ["rollout_term_grams", "rollout_text_grams"]
        assert sorted(_rare_short_term_candidates(task.project, "zq") or []) == zq  # the selector reads it
        assert "enabled" in command("--enable")  # again: kept as it is

        # A concurrent build that failed leaves an invalid index under the name: reported, skipped, rebuilt.
        command("--disable")
        with pytest.raises(IntegrityError, match="could not create unique index"), connection.cursor() as cursor:
            cursor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {SHORT_TERMS_INDEX} ON rollouts_rollout (task_id)")
        assert "INVALID" in command("--status")
        assert _rare_short_term_candidates(task.project, "zq") is None
        assert "enabled" in command("--enable")
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_indexdef(%s::regclass)", [SHORT_TERMS_INDEX])
            assert "rollout_text_grams(upper(completion))" in cursor.fetchone()[0]
        assert sorted(_rare_short_term_candidates(task.project, "zq") or []) == zq

        assert "disabled (the default)" in command("--disable")
        assert short_terms_index_status().exists is False
        assert functions() == []
        assert _rare_short_term_candidates(task.project, "zq") is None
        assert sorted(rollout_filter(task.project, filters={"q": "zq"}).values_list("pk", flat=True)) == zq
    finally:
        command("--disable")
