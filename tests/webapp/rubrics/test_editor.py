"""The editor form: POSTed field paths -> spec, structural edits, and errors placed at the input of their path."""

from __future__ import annotations

from django.http import QueryDict

from webapp.rubrics.editor import (
    apply_op,
    editor_blank,
    editor_from_json,
    editor_view,
    merge_errors,
    parse_editor,
    state_from_spec,
)


def post(**fields: str) -> QueryDict:
    data = QueryDict(mutable=True)
    for name, value in fields.items():
        data[name.replace("__", ".")] = value
    return data


def test_posted_fields_become_a_spec_with_numbers_parsed_and_blanks_left_to_defaults():
    data = post(**{
        "name": " Math ", "note": "first", "base_version": "3", "task": "",
        "criteria.0.key": "helpful", "criteria.0.title": "Helpful", "criteria.0.kind": "judge", "criteria.0.weight": "2",
        "criteria.0.question": "Is it right?\r\nAnswer.", "criteria.0.answer": "choices",
        "criteria.0.choices.0.label": "no", "criteria.0.choices.0.description": "wrong",
        "criteria.0.choices.1.label": "yes", "criteria.0.choices.1.description": "",
        "criteria.0.scale.min": "1", "criteria.0.scale.max": "10",
        # index 2, not 1: a browser may post gaps; criteria are renumbered in order
        "criteria.2.key": "correct", "criteria.2.title": "Correct", "criteria.2.kind": "match", "criteria.2.weight": "0.5",
        "criteria.2.extract": "answer_tag", "criteria.2.mode": "numeric", "criteria.2.pattern": "",
        "criteria.2.tolerance": "", "criteria.2.value": "42",
        "criteria.3.key": "short", "criteria.3.title": "Short", "criteria.3.kind": "length", "criteria.3.weight": "0",
        "criteria.3.unit": "chars", "criteria.3.min": "", "criteria.3.max": "300", "criteria.3.slack": "50",
        "gates.0.criterion": "correct", "gates.0.below": "0.5",
        "judge.max_criteria_per_call": "2",
    })
    form = parse_editor(data)
    assert form.errors == [] and form.name == "Math" and form.base_number == 3 and form.task_id is None
    assert form.spec == {
        "criteria": [
            {"key": "helpful", "title": "Helpful", "kind": "judge", "weight": 2, "question": "Is it right?\nAnswer.",
             "choices": [{"label": "no", "description": "wrong"}, {"label": "yes", "description": ""}]},
            {"key": "correct", "title": "Correct", "kind": "match", "weight": 0.5, "extract": "answer_tag",
             "mode": "numeric", "value": 42},
            {"key": "short", "title": "Short", "kind": "length", "weight": 0, "unit": "chars", "max": 300, "slack": 50},
        ],
        "gates": [{"criterion": "correct", "below": 0.5}],
        "judge": {"max_criteria_per_call": 2, "group_relative": False},
    }


def test_judge_scale_replaces_choices_only_in_the_spec():
    data = post(**{"criteria.0.key": "q", "criteria.0.title": "Q", "criteria.0.kind": "judge", "criteria.0.weight": "1",
                   "criteria.0.question": "Rate it", "criteria.0.answer": "scale", "criteria.0.choices.0.label": "no",
                   "criteria.0.choices.1.label": "yes", "criteria.0.scale.min": "0", "criteria.0.scale.max": "5",
                   "criteria.0.use_reference": "on"})
    form = parse_editor(data)
    criterion = form.spec["criteria"][0]
    assert criterion["scale"] == {"min": 0, "max": 5} and "choices" not in criterion and criterion["use_reference"]
    assert [c["label"] for c in form.state["criteria"][0]["choices"]] == ["no", "yes"]  # kept for toggling back


def test_unparseable_numbers_and_json_stay_as_typed_with_an_error_at_their_path():
    data = post(**{"criteria.0.key": "a", "criteria.0.title": "A", "criteria.0.kind": "json", "criteria.0.weight": "x",
                   "criteria.0.extract": "json_block", "criteria.0.schema": '{"type": "object",}',
                   "criteria.1.key": "b", "criteria.1.title": "B", "criteria.1.kind": "length", "criteria.1.weight": "1",
                   "criteria.1.max": "2.5"})
    form = parse_editor(data)
    paths = {e["path"]: e["message"] for e in form.errors}
    assert paths["criteria.0.weight"] == "enter a number"
    assert paths["criteria.0.schema"].startswith("not valid JSON: Expecting property name")
    assert paths["criteria.1.max"] == "enter a whole number"
    assert form.state["criteria"][0]["schema"] == '{"type": "object",}'  # re-shown exactly as typed
    view = editor_view(form, form.errors)
    assert view.slot("criteria.0.schema").text == '{"type": "object",}'
    assert view.slot("criteria.0.weight").errors == ["enter a number"]


def test_structural_edits():
    form = editor_blank()
    assert [c["kind"] for c in form.state["criteria"]] == ["judge"]
    apply_op(form, "add:match")
    apply_op(form, "add:length")
    apply_op(form, "add:judge")
    keys = [c["key"] for c in form.state["criteria"]]
    assert keys == ["judge_1", "match_1", "length_1", "judge_2"] and form.focus == "criteria.3.title"
    apply_op(form, "up:2")
    assert [c["key"] for c in form.state["criteria"]] == ["judge_1", "length_1", "match_1", "judge_2"]
    assert form.focus == "criteria.1.up"
    apply_op(form, "down:3")  # already last: nothing moves
    # A new gate starts on the first programmatic criterion not gated yet (issue 19: it took the LM judge), then on
    # the first ungated judge once every programmatic one is gated.
    apply_op(form, "add_gate")
    assert form.state["gates"] == [{"criterion": "length_1", "below": 0.5}]
    apply_op(form, "add_gate")
    apply_op(form, "add_gate")
    assert [g["criterion"] for g in form.state["gates"]] == ["length_1", "match_1", "judge_1"]
    apply_op(form, "remove:1")  # removing a criterion drops its gate
    assert [c["key"] for c in form.state["criteria"]] == ["judge_1", "match_1", "judge_2"]
    assert [g["criterion"] for g in form.state["gates"]] == ["match_1", "judge_1"]
    apply_op(form, "add_choice:2")
    assert len(form.state["criteria"][2]["choices"]) == 3 and form.focus == "criteria.2.choices.2.label"
    apply_op(form, "choice_down:2:0")
    assert [c["label"] for c in form.state["criteria"][2]["choices"]] == ["yes", "no", ""]
    apply_op(form, "remove_choice:2:2")
    apply_op(form, "remove:99")
    apply_op(form, "bogus")
    assert len(form.state["criteria"]) == 3


def test_errors_land_on_their_input_or_the_nearest_shown_ancestor():
    form = parse_editor(post(**{"criteria.0.key": "a", "criteria.0.title": "A", "criteria.0.kind": "match",
                                "criteria.0.weight": "1", "criteria.0.mode": "regex", "criteria.0.pattern": "(a+"}))
    errors = [{"path": "criteria.0.pattern", "message": "invalid regex (missing ))"},
              {"path": "criteria", "message": "all weights are 0"},
              {"path": "criteria.0.unknown_field", "message": "unknown field"},
              {"path": "criteria.0.up", "message": "never shown at a button"},
              {"path": "criteria.7.title", "message": "no such criterion"},
              {"path": "criteria.0.title", "message": "String should have at least 1 character"}]
    view = editor_view(form, errors)
    assert view.slot("criteria.0.pattern").errors == ["invalid regex (missing ))"]
    assert view.criteria_slot.errors == ["all weights are 0", "Criterion 8 · Title: no such criterion"]
    assert view.criteria[0].whole.errors == ["unknown field: unknown field", "Move up: never shown at a button"]
    assert view.slot("criteria.0.title").errors == ["this field is required"]
    assert view.error_count == 6 and view.slot("criteria.0.pattern").id == "f-criteria-0-pattern"


def test_parse_errors_win_over_the_engine_at_the_same_path():
    merged = merge_errors([{"path": "criteria.0.weight", "message": "enter a number"}],
                          [{"path": "criteria.0.weight", "message": "Input should be a valid number"},
                           {"path": "criteria.0.title", "message": "required"}])
    assert merged == [{"path": "criteria.0.weight", "message": "enter a number"},
                      {"path": "criteria.0.title", "message": "required"}]


def test_a_spec_from_elsewhere_prefills_the_editor():
    spec = {"criteria": [{"key": "r", "title": "R", "kind": "judge", "question": "Q?", "scale": {"min": 1, "max": 5}}]}
    state = state_from_spec(spec)
    assert state["criteria"][0]["_answer"] == "scale" and state["criteria"][0]["choices"]  # spare choices
    form = editor_from_json(post(spec_json='{"criteria": [{"key": "r", "title": "R", "kind": "format", '
                                           '"check": "boxed"}]}', name="Drafted", task="7"))
    assert form.name == "Drafted" and form.task_id == 7 and form.errors == []
    assert form.spec == {"criteria": [{"key": "r", "title": "R", "kind": "format", "check": "boxed"}]}
    broken = editor_from_json(post(spec_json="{nope"))
    assert broken.errors[0]["path"] == "" and "unusable" in broken.errors[0]["message"]
