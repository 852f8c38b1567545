"""The version diff and weight shares: pure functions over spec dicts."""

from __future__ import annotations

from webapp.rubrics.specs import ABSENT, display_value, spec_diff, weight_shares

JUDGE = {"key": "helpful", "title": "Helpful", "kind": "judge", "question": "Is it helpful?",
         "choices": [{"label": "no"}, {"label": "yes"}]}
MATCH = {"key": "correct", "title": "Correct", "kind": "match", "mode": "numeric", "weight": 2}
LENGTH = {"key": "short", "title": "Short", "kind": "length", "max": 200}
FORMAT = {"key": "tags", "title": "Tags", "kind": "format", "check": "answer_tag", "weight": 0.5}


def rows(diff, key):
    return {r.field: (r.old, r.new) for r in next(c for c in diff.criteria if c.key == key).changes}


def test_identical_specs_have_an_empty_diff_and_defaults_compare_equal():
    old = {"criteria": [JUDGE, MATCH]}
    new = {"criteria": [{**JUDGE, "weight": 1.0, "description": "", "use_reference": False},
                        {**MATCH, "tolerance": 0, "extract": "answer_tag"}],
           "judge": {"max_criteria_per_call": 1, "group_relative": False}, "gates": []}
    diff = spec_diff(old, new)
    assert diff.is_empty and [c.status for c in diff.criteria] == ["unchanged", "unchanged"]
    assert diff.summary() == "no changes"


def test_added_removed_changed_and_moved_criteria_matched_by_key():
    old = {"criteria": [JUDGE, MATCH, FORMAT]}
    new = {"criteria": [{**MATCH, "weight": 1, "tolerance": 0.01}, {**JUDGE, "choices": [{"label": "no"},
                        {"label": "partly"}, {"label": "yes"}]}, LENGTH],
           "gates": [{"criterion": "correct", "below": 0.5}], "judge": {"max_criteria_per_call": 2}}
    diff = spec_diff(old, new)
    statuses = [(c.key, c.status) for c in diff.criteria]
    # new order, the removed criterion after its old predecessor
    assert statuses == [("correct", "changed"), ("tags", "removed"), ("helpful", "changed"), ("short", "added")]
    assert rows(diff, "correct") == {"weight": (2, 1), "tolerance": (0.0, 0.01)}
    assert list(rows(diff, "helpful")) == ["choices"]
    assert (diff.added, diff.removed, diff.changed) == (1, 1, 2)
    correct = diff.criteria[0]
    assert correct.moved and (correct.old_position, correct.new_position) == (2, 1)
    added = next(c for c in diff.criteria if c.key == "short")
    assert all(r.old is ABSENT for r in added.rows) and {r.field for r in added.rows} >= {"max", "unit", "slack"}
    removed = next(c for c in diff.criteria if c.key == "tags")
    assert all(r.new is ABSENT for r in removed.rows) and removed.title == "Tags"
    assert [(g.field, g.old, g.new) for g in diff.gate_changes] == [("correct", ABSENT, 0.5)]
    assert [(j.field, j.old, j.new) for j in diff.judge_changes] == [("max_criteria_per_call", 1, 2)]
    assert diff.summary() == ("changed correct (weight, tolerance); removed tags; changed helpful (choices); "
                              "added short; gates on correct; judge options (max_criteria_per_call)")


def test_kind_change_and_a_removed_gate():
    old = {"criteria": [MATCH, {**FORMAT}], "gates": [{"criterion": "tags"}]}
    new = {"criteria": [MATCH, {"key": "tags", "title": "Tags", "kind": "length", "max": 50, "weight": 0.5}]}
    diff = spec_diff(old, new)
    changes = rows(diff, "tags")
    assert changes["kind"] == ("format", "length") and changes["check"] == ("answer_tag", ABSENT)
    assert changes["max"] == (ABSENT, 50)
    assert [(g.field, g.old, g.new) for g in diff.gate_changes] == [("tags", 1.0, ABSENT)]


def test_reorder_only_is_a_change():
    diff = spec_diff({"criteria": [JUDGE, MATCH]}, {"criteria": [MATCH, JUDGE]})
    assert not diff.is_empty and diff.summary() == "reordered criteria"


def test_weight_shares_over_positive_weights_with_zero_as_metric():
    assert weight_shares([1, 1, 2, 0]) == ["25%", "25%", "50%", "metric"]
    assert weight_shares([1, 1, 1]) == ["33.3%"] * 3
    assert weight_shares(["abc", 1, -1, None]) == ["—", "100%", "—", "—"]
    assert weight_shares([0, 0]) == ["metric", "metric"]


def test_display_values():
    assert display_value([{"label": "no", "description": "wrong"}, {"label": "yes"}]) == "1. no — wrong\n2. yes"
    assert display_value(True) == "yes" and display_value(0.5) == "0.5" and display_value(None) == "—"
    assert display_value({"type": "object"}) == '{"type": "object"}' and display_value(ABSENT) == ""
