"""Rollout text search (`?q=`) on Postgres: the trigram index of migration rollouts.0002_rollout_text_trgm serves the
query the browser really runs, the opt-in character-pair index (webapp.rollouts.search_index, built here through its
service for the tests that need it and dropped after) finds the candidates of a rare term too short for trigrams, and
results are the same as a plain substring test under UPPER() on every path. Without that index: test_search_index.py.

Today's semantics, kept on purpose: Django's `icontains` is `UPPER(completion) LIKE UPPER('%term%')` with `%`, `_`
and `\\` in the term escaped, so a term matches when UPPER(term) is a substring of UPPER(completion). Postgres'
UPPER() maps one character to one character with the database locale's table (glibc here), unlike Python's
`str.upper()`/`casefold()`, which use full Unicode case mapping (ß → SS, ﬁ → FI). The oracle below therefore takes the
per-character case table from the database and does the matching, the part an index, an escape or a pattern could
get wrong, in plain Python.
"""

from __future__ import annotations

import random

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.factories import TaskFactory
from webapp.core.models import Role
from webapp.rollouts.models import Rollout
from webapp.rollouts.search_index import (
    SHORT_TERMS_INDEX,
    short_terms_index_disable,
    short_terms_index_enable,
)
from webapp.rollouts.selectors import (
    SHORT_TERM_PAIRS_CONDITION,
    _rare_short_term_candidates,
    rollout_browse,
)

INDEX = "rollout_completion_trgm"
PAIRS_INDEX = SHORT_TERMS_INDEX
RARE = "quetzalcoatl"
WORDS = ("the", "answer", "is", "because", "first", "then", "we", "compute", "sum", "product", "check", "result",
         "so", "therefore", "value", "number", "total", "step", "add", "subtract", "multiply", "divide",
         "equation", "solve", "final", "boxed", "reasoning", "wait", "let", "me", "verify", "again", "hence",
         "apple", "banana", "train", "station", "distance", "speed", "hour", "minute", "second", "river", "bridge",
         "tower", "market", "price", "cost")


def upper_table(strings: list[str]) -> dict[str, str]:
    """The database's UPPER() of every character that occurs in `strings`."""
    chars = sorted({c for s in strings for c in s})
    with connection.cursor() as cursor:
        cursor.execute("SELECT ch, upper(ch) FROM unnest(%s::text[]) AS ch", [chars])
        return dict(cursor.fetchall())


def matches(term: str, completion: str, table: dict[str, str]) -> bool:
    def up(s: str) -> str:
        return "".join(table[c] for c in s)

    return up(term) in up(completion)


def plan_of(sql: str, params: object = None) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.mark.django_db
def test_upper_semantics_are_per_character_not_casefold():
    """Pins the semantics the oracle relies on; casefold() would answer differently for each of these."""
    table = upper_table(["ßﬁé"])
    assert table["ß"] == "ß" and table["ﬁ"] == "ﬁ"  # no one-character uppercase: unchanged, never "SS" / "FI"
    assert table["é"] == "É"


@pytest.fixture(scope="module")
def short_terms_index(django_db_setup, django_db_blocker):
    """The operator's opt-in, as `manage.py search_index short-terms --enable` makes it (CONCURRENTLY, so outside the
    tests' transactions), for this module's tests that ask for it; dropped after them."""
    with django_db_blocker.unblock():
        assert short_terms_index_enable().valid
        yield
        short_terms_index_disable()


@pytest.fixture
def search_world(db):
    task = TaskFactory()
    return task.project, task


@pytest.mark.django_db
def test_rare_and_absent_terms_read_the_trigram_index_on_the_browser_query(make_member, client):
    """20,000 rollouts of varied text, 5 with a rare word, ANALYZE: the planner picks the trigram index by itself for
    the query the browser page really sends (keyset order, page size, with and without a cursor), instead of walking
    the primary key from the newest row."""
    user, project = make_member(Role.VIEWER)
    task = TaskFactory(project=project)
    rng = random.Random(20)
    rare_at = {1_000, 7_000, 12_000, 15_500, 19_990}
    Rollout.objects.bulk_create(
        (Rollout(project=project, task=task, group_key=f"g{i // 8}", sample_index=i % 8,
                 completion=" ".join(rng.choices(WORDS, k=rng.randint(8, 30))) + f" {rng.randint(0, 10_000)}"
                 + (f" the {RARE.capitalize()} flies" if i in rare_at else ""))
         for i in range(20_000)),
        batch_size=2_000,
    )
    with connection.cursor() as cursor:
        # Rows inserted since the index was built wait in the GIN pending list, which the planner costs as a scan
        # of the whole list; autovacuum merges it into the index in a running database, as this call does.
        cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [INDEX])
        cursor.execute(f"ANALYZE {Rollout._meta.db_table}")
    rare_ids = sorted(Rollout.objects.filter(completion__contains=RARE.capitalize()).values_list("pk", flat=True),
                      reverse=True)
    assert len(rare_ids) == 5
    client.force_login(user)
    url = reverse("rollouts:list", args=[project.pk])
    for query in ({"q": RARE.upper()}, {"q": "xylophonist"}, {"q": RARE, "before": rare_ids[1]}):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, query)
        assert response.status_code == 200
        searches = [q["sql"] for q in queries.captured_queries if " LIKE " in q["sql"]]
        assert len(searches) == 1, searches
        plan = plan_of(searches[0])
        assert INDEX in plan, plan
        page = [r.pk for r in response.context["page"].items]
        if query["q"] == "xylophonist":
            assert page == []
        else:
            assert page == [pk for pk in rare_ids if pk < query.get("before", float("inf"))]


@pytest.mark.django_db
@pytest.mark.usefixtures("short_terms_index")
def test_rare_short_terms_read_the_character_pair_index_and_common_ones_walk_the_newest(make_member, client):
    """5,000 rollouts, 3 with a rare two-letter run ("zq"), ANALYZE: a search for it, for a rare one-character term
    and for an absent two-letter term takes its candidates from the character-pair index (the plan says so) and
    reads them by id; a common two-letter term ("th", in every rollout) goes as before, newest first, without
    asking the index for candidates. Every page is the oracle's."""
    user, project = make_member(Role.VIEWER)
    task = TaskFactory(project=project)
    rng = random.Random(3)
    rare_at = {400, 2_500, 4_900}
    rollouts = Rollout.objects.bulk_create(
        (Rollout(project=project, task=task, group_key=f"g{i // 8}", sample_index=i % 8,
                 completion="the " + " ".join(rng.choices(WORDS, k=rng.randint(8, 30)))
                 + (" Xzqy and \u20ac" if i in rare_at else ""))
         for i in range(5_000)),
        batch_size=1_000,
    )
    with connection.cursor() as cursor:
        for index in (INDEX, PAIRS_INDEX):
            cursor.execute("SELECT gin_clean_pending_list(%s::regclass)", [index])
        cursor.execute(f"ANALYZE {Rollout._meta.db_table}")
    client.force_login(user)
    url = reverse("rollouts:list", args=[project.pk])
    newest_first = sorted(rollouts, key=lambda r: r.pk, reverse=True)
    for term, candidates_asked in (("ZQ", True), ("\u20ac", True), ("qz", True), ("th", False)):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, {"q": term})
        assert response.status_code == 200
        asked = [q["sql"] for q in queries.captured_queries if "@> rollout_term_grams" in q["sql"]]
        assert bool(asked) == candidates_asked, (term, asked)
        if asked:
            assert PAIRS_INDEX in plan_of(asked[0]), plan_of(asked[0])
        table = upper_table([term, *(r.completion for r in rollouts)])
        expected = [r.pk for r in newest_first if matches(term, r.completion, table)]
        assert [r.pk for r in response.context["page"].items] == expected[:50], term
        assert (len(expected) > 50) == (not candidates_asked)
    assert sorted(_rare_short_term_candidates(project, "zq") or []) == sorted(r.pk for r in rollouts
                                                                             if "zq" in r.completion)
    assert _rare_short_term_candidates(project, "th") is None  # in every rollout: more than the cap expects
    assert _rare_short_term_candidates(project, "zqy") is None  # has a trigram: the trigram index's
    # Without the index (disabled, a failed build) the search goes as before, rather than computing the pairs of every
    # text or failing.
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX {PAIRS_INDEX}")
            cursor.execute("DROP FUNCTION rollout_text_grams(text), rollout_term_grams(text)")
        assert _rare_short_term_candidates(project, "zq") is None
        assert sorted(rollout_browse(project, filters={"q": "zq"}).values_list("pk", flat=True)) == \
            sorted(r.pk for r in rollouts if "zq" in r.completion)
        transaction.set_rollback(True)


# Characters whose case rules differ between UPPER(), lower() and casefold(), LIKE's metacharacters and its escape,
# a combining accent and an astral-plane character; then anything Postgres can store.
TRICKY = "aAbzZ sS\u017f\u00df\u1e9ekK\u212a\u03c2\u03c3\u03a3\u0131iI\u0130\u00e9\u00c9e\u0301\ufb01%_\\.-0\U0001f600"
chars = st.one_of(st.sampled_from(TRICKY), st.characters(exclude_categories=("Cs", "Cc")))


@st.composite
def corpus_and_term(draw) -> tuple[list[str], str]:
    completions = draw(st.lists(st.text(chars, max_size=12), min_size=1, max_size=8))
    source = draw(st.sampled_from(completions))
    if source and draw(st.booleans()):  # a piece of one completion, maybe with its case flipped
        start = draw(st.integers(0, len(source) - 1))
        term = source[start:draw(st.integers(start + 1, len(source)))]
        if draw(st.booleans()):
            term = term.swapcase()
    else:  # short random terms: often absent, and under three characters the index has no trigram to use
        term = draw(st.text(chars, min_size=1, max_size=4))
    return completions, term


@pytest.mark.django_db
@pytest.mark.usefixtures("short_terms_index")
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=corpus_and_term())
@example(case=(["100% sure", "1000 sure", "100 % sure"], "0% s"))
@example(case=(["a_b", "axb", "A_B"], "_b"))
@example(case=(["back\\slash", "backslash", "back\\\\slash"], "K\\S"))
@example(case=(["STRASSE", "straße", "STRAẞE"], "ß"))
@example(case=(["\u212aelvin", "kelvin", "Kelvin"], "k"))
@example(case=(["mass", "maſs", "MASS"], "ſ"))
@example(case=(["ΟΔΟΣ", "οδος", "οδοσ"], "ς"))
@example(case=(["file", "ﬁle", "FILE"], "fi"))
@example(case=(["line\nbreak", "line break", "LINE\n"], "e\n"))
@example(case=(["a", "", "ab", "ba"], "a"))
@example(case=(["tab\there", "€ 5", "5 €"], "€ "))
def test_search_finds_exactly_what_an_upper_substring_test_finds(case, search_world):
    """Through the browser's selector (on a table without statistics, a term without trigrams takes the
    character-pair path), the plain LIKE the selector falls back to for a common short term, the trigram index
    itself and the character-pair index itself (other paths switched off, the plans checked): the same ids as the
    oracle, and the character-pair index never misses a match."""
    completions, term = case
    project, task = search_world
    with transaction.atomic():
        rollouts = Rollout.objects.bulk_create(
            Rollout(project=project, task=task, group_key=f"g{i}", completion=text) for i, text in enumerate(completions)
        )
        table = upper_table([*completions, term])
        expected = {r.pk for r in rollouts if matches(term, r.completion, table)}

        assert set(rollout_browse(project, filters={"q": term}).values_list("pk", flat=True)) == expected
        assert set(Rollout.objects.filter(completion__icontains=term).values_list("pk", flat=True)) == expected

        with connection.cursor() as cursor:  # undone with the savepoint below
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
        through_index = Rollout.objects.filter(completion__icontains=term).values_list("pk", flat=True)
        assert INDEX in through_index.explain()
        assert set(through_index) == expected

        pairs = f"SELECT id FROM {Rollout._meta.db_table} WHERE {SHORT_TERM_PAIRS_CONDITION}"
        assert PAIRS_INDEX in plan_of(pairs, {"q": term})
        with connection.cursor() as cursor:
            cursor.execute(pairs, {"q": term})
            candidates = {row[0] for row in cursor.fetchall()}
        assert expected <= candidates
        if len(term) <= 2:  # one or two characters: having the pair (or the character) is containing the term
            assert candidates == expected, (term, completions)
        assert set(Rollout.objects.filter(pk__in=candidates, completion__icontains=term)
                   .values_list("pk", flat=True)) == expected
        transaction.set_rollback(True)
