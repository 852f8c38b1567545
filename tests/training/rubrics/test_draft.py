"""Parsing an LM's rubric proposal: clean JSON, the malformed JSON small models write, bullet lists, nothing usable.
Every outcome must be a spec the rubric engine accepts."""

from __future__ import annotations

import json

import pytest

from training.rubrics.draft import DraftExample, draft_messages, loads_lenient, parse_draft, slug_key
from training.rubrics.spec import validate_spec

EXAMPLES = [DraftExample("ex-1", "What is 12 + 7?", "19"), DraftExample("ex-2", "What is 3 * 4?", "12")]


def parse(text: str, **kwargs):
    proposal = parse_draft(text, examples=EXAMPLES, instructions="Solve the arithmetic problem.", **kwargs)
    validate_spec(proposal.spec)  # always valid
    return proposal


def test_prompt_names_examples_references_and_the_json_shape():
    messages = draft_messages(instructions="Solve it.", examples=EXAMPLES, system_prompt="Be brief.")
    user = messages[1]["content"]
    assert messages[0]["role"] == "system" and "JSON" in messages[0]["content"]
    assert "Example id ex-1" in user and "Reference answer: 19" in user and "Be brief." in user
    assert '"checklists"' in user and '"criteria"' in user


def test_clean_json_becomes_yes_no_judge_criteria_and_checklists():
    text = json.dumps({
        "criteria": [
            {"title": "Correct final answer", "question": "Does the response match the reference answer?", "weight": 3},
            {"title": "Shows work", "question": "Does it show the steps?", "weight": 1},
            {"title": "Shows work", "question": "duplicate"},
            {"title": "Concise", "question": "Is it short?", "weight": 0.5},
        ],
        "checklists": {"ex-1": ["Answer is 19", "Uses <answer> tags"], "ex-2": ["Answer is 12"]},
    })
    proposal = parse(text, has_reference=True)
    criteria = proposal.spec["criteria"]
    assert [c["key"] for c in criteria] == ["correct_final_answer", "shows_work", "concise"]
    assert criteria[0]["use_reference"] is True and criteria[1]["use_reference"] is False
    assert criteria[0]["weight"] == 3 and criteria[0]["kind"] == "judge"
    assert [c["label"] for c in criteria[0]["choices"]] == ["no", "yes"]
    assert proposal.checklists == {"ex-1": ["Answer is 19", "Uses <answer> tags"], "ex-2": ["Answer is 12"]}
    assert proposal.source == "json" and proposal.notes == []


@pytest.mark.parametrize("text", [
    # fenced, trailing commas
    '```json\n{"criteria": [{"title": "Correct", "question": "Is it right?",},],}\n```',
    # truncated mid-way (max_tokens reached)
    'Here is the rubric: {"criteria": [{"title": "Correct", "question": "Is it right?"}, {"title": "Clea',
    # single quotes
    "{'criteria': [{'title': 'Correct', 'question': 'Is it right?'}]}",
])
def test_malformed_json_is_repaired(text):
    proposal = parse(text)
    assert proposal.spec["criteria"][0]["title"] == "Correct" and proposal.source == "json"


def test_other_shapes_strings_and_odd_weights():
    text = '[{"name": "Correct", "points": "lots"}, "Concise", {"criterion": "Negative", "weight": -2}, 42]'
    proposal = parse(text)
    criteria = proposal.spec["criteria"]
    assert [c["title"] for c in criteria] == ["Correct", "Concise", "Negative"]  # 42 is not a criterion
    assert [c["weight"] for c in criteria] == [1.0, 1.0, 1.0]
    assert criteria[1]["question"] == "Does the response satisfy this criterion: Concise?"


def test_checklists_as_a_list_in_example_order_and_as_objects():
    in_order = parse('{"criteria": ["Correct"], "checklists": [["is 19"], ["is 12", "is 12"]]}')
    assert in_order.checklists == {"ex-1": ["is 19"], "ex-2": ["is 12"]}
    as_objects = parse('{"criteria": ["Correct"], "checklists": [{"id": "ex-2", "items": [{"text": "is 12"}]}]}')
    # ex-1 got none from the model: one item built from its reference answer
    assert as_objects.checklists == {"ex-2": ["is 12"], "ex-1": ["Reaches the reference answer: 19"]}
    assert any("no checklist for 1 example(s) with a reference answer" in n for n in as_objects.notes)
    no_reference = parse_draft('{"criteria": ["Correct"]}', examples=[DraftExample("q", "Why?")])
    assert no_reference.checklists == {} and "No checklist for 1 of 1 examples (q)." in no_reference.notes


def test_bullet_lists_become_criteria():
    text = "Criteria:\n1. **Correctness**: the answer is right\n2. Clarity\n- Uses tags\nThanks!"
    proposal = parse(text)
    assert [c["title"] for c in proposal.spec["criteria"]] == ["Correctness: the answer is right", "Clarity", "Uses tags"]
    assert proposal.source == "lines" and "did not answer in JSON" in proposal.notes[0]


@pytest.mark.parametrize("text", ["", "I cannot help with that.", '{"foo": 1}', "{{{{"])
def test_nothing_usable_gives_a_skeleton(text):
    proposal = parse(text, has_reference=True)
    assert proposal.source == "skeleton" and "starting skeleton" in proposal.notes[0]
    keys = [c["key"] for c in proposal.spec["criteria"]]
    assert keys[0] == "matches_the_reference_answer" and proposal.spec["criteria"][0]["use_reference"]
    assert len(keys) == len(set(keys)) == 4
    without_reference = parse(text)
    assert "matches_the_reference_answer" not in [c["key"] for c in without_reference.spec["criteria"]]


def test_model_text_cannot_inject_jinja():
    text = json.dumps({"criteria": [{"title": "{{ ''.__class__ }}", "question": "{% for x in y %}bad{% endfor %} {{ info.x }}"}]})
    proposal = parse(text)
    criterion = proposal.spec["criteria"][0]
    assert "{" not in criterion["title"] + criterion["question"] and "}" not in criterion["question"]


def test_helpers():
    taken: set[str] = set()
    assert [slug_key(t, taken) for t in ["Correct!", "correct", "", "9 lives"]] == [
        "correct", "correct_2", "criterion", "c_9_lives"]
    assert loads_lenient("no json here") is None
    assert loads_lenient('x {"a": [1, 2,') == ({"a": [1, 2]}, True)


def test_degenerate_output_of_a_small_model_is_not_a_criterion():
    looping = "The criteria are:\n\n1. 1.1.1: 1.1.1: 1.1.1: 1.1.1:\n2. the the the the the the the the\n3. !!!"
    assert parse(looping).source == "skeleton"


def test_a_short_list_is_completed_with_general_criteria():
    proposal = parse('{"criteria": [{"title": "Gives 19 for ex-1"}]}', has_reference=True)
    titles = [c["title"] for c in proposal.spec["criteria"]]
    assert titles == ["Gives 19 for ex-1", "Matches the reference answer", "Follows the instructions"]
    assert "only 1 usable criteria; 2 general ones were added" in proposal.notes[0]
