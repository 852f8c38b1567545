"""Judge output parsing: structured JSON, the shapes real judges produce instead, and garbage (never a crash)."""

from __future__ import annotations

import json
import random
import string

import pytest

from training.rubrics import validate_spec
from training.rubrics.parsing import match_choice, parse_group_verdicts, parse_verdicts
from training.rubrics.spec import JudgeCriterion

LABELS = ["incorrect", "partially correct", "correct"]


def judges(*extra: dict[str, object]) -> list[JudgeCriterion]:
    base = {"kind": "judge", "title": "T", "question": "Q?"}
    items = [
        {**base, "key": "correct", "title": "Correctness", "choices": [{"label": label} for label in LABELS]},
        {**base, "key": "style", "scale": {"min": 1, "max": 10}},
        *extra,
    ]
    return validate_spec({"criteria": items}).judge_criteria  # type: ignore[return-value]


ONE = judges()[:1]
TWO = judges()


@pytest.mark.parametrize(
    ("verdict", "index"),
    [
        ("correct", 2),
        ("Correct.", 2),
        ("**CORRECT**", 2),
        ('"partially correct"', 1),
        ("incorrect", 0),
        ("The answer is partially correct", 1),
        ("not correct", None),
        ("correct or incorrect", None),
        ("", None),
        ("banana", None),
        ("2", None),
    ],
)
def test_match_choice(verdict: str, index: int | None) -> None:
    assert match_choice(verdict, LABELS) == index


@pytest.mark.parametrize(
    "text",
    [
        '{"verdicts": [{"key": "correct", "rationale": "right", "verdict": "correct"}]}',
        'Sure.\n```json\n{"verdicts": [{"key": "correct", "rationale": "right", "verdict": "correct"}]}\n```',
        'Thinking... {"verdicts": [{"key": "correct", "rationale": "right", "verdict": "Correct"}]} done',
        '{"rationale": "right", "verdict": "correct"}',
        '{"reasoning": "right", "answer": "correct"}',
        '{"verdicts": {"correct": "correct"}}',
        '{"correct": {"reason": "right", "verdict": "correct"}}',
        '[{"name": "Correctness", "explanation": "right", "verdict": "correct"}]',
        "The final number matches.\nVerdict: correct",
        "It matches.\n\n**Final verdict:** Correct",
        "It matches the reference.\ncorrect",
        '{"verdicts": [{"key": "correct", "rationale": "x", "verdict": 3}]}',  # 1-based position
    ],
)
def test_single_criterion_shapes(text: str) -> None:
    parsed = parse_verdicts(text, ONE)["correct"]
    assert parsed.score == 1.0, parsed
    assert parsed.choice == "correct"


def test_rationale_is_kept() -> None:
    parsed = parse_verdicts(
        '{"verdicts": [{"key": "correct", "rationale": "cites line 2", "verdict": "incorrect"}]}', ONE
    )
    assert parsed["correct"].rationale == "cites line 2" and parsed["correct"].score == 0.0
    prose = parse_verdicts("The sum is wrong.\nVerdict: incorrect", ONE)["correct"]
    assert prose.rationale == "The sum is wrong." and prose.score == 0.0


def test_several_criteria_in_one_response() -> None:
    text = json.dumps(
        {
            "verdicts": [
                {"key": "style", "rationale": "ok", "verdict": "7"},
                {"key": "correct", "rationale": "half", "verdict": "partially correct"},
            ]
        }
    )
    parsed = parse_verdicts(text, TWO)
    assert parsed["correct"].score == 0.5
    assert parsed["style"].score == pytest.approx(6 / 9)


def test_several_criteria_in_prose() -> None:
    text = "## correct\nThe total is right.\nVerdict: correct\n\n## style\nClear enough.\nScore: 8/10"
    parsed = parse_verdicts(text, TWO)
    assert parsed["correct"].score == 1.0
    assert parsed["style"].score == pytest.approx(7 / 9)


def test_partial_answers_leave_the_rest_unscored() -> None:
    parsed = parse_verdicts('{"verdicts": [{"key": "correct", "rationale": "", "verdict": "correct"}]}', TWO)
    assert parsed["correct"].score == 1.0
    assert parsed["style"].score is None and "no verdict for criterion 'style'" in (
        parsed["style"].error or ""
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty response"),
        ("   ", "empty response"),
        ('{"verdicts": [{"key": "correct", "verdict": "maybe"}]}', "matches none"),
        ('{"verdicts": [{"key": "correct", "verdict": ""}]}', "empty verdict"),
        ("I cannot grade this.", "no verdict"),
        ('{"verdicts": [{"key": "correct", "rationale": "the answ', "no verdict"),  # truncated JSON
        ("It is not correct at all, although parts are correct and others incorrect.", "no verdict"),
    ],
)
def test_unparseable_output_gives_none_with_reason(text: str, fragment: str) -> None:
    parsed = parse_verdicts(text, ONE)["correct"]
    assert parsed.score is None
    assert fragment in (parsed.error or "")


@pytest.mark.parametrize(
    ("verdict", "fragment"), [("11", "outside the scale"), ("high", "not a number"), (0, "outside")]
)
def test_scale_bounds(verdict: object, fragment: str) -> None:
    text = json.dumps({"verdicts": [{"key": "style", "rationale": "", "verdict": verdict}]})
    parsed = parse_verdicts(text, TWO)["style"]
    assert parsed.score is None and fragment in (parsed.error or "")


def test_fuzz_never_raises() -> None:
    rng = random.Random(1234)
    pieces = [
        '{"verdicts": [',
        '{"key": "correct"',
        '"verdict": ',
        '"correct"',
        "}",
        "]",
        "```json",
        "```",
        "Verdict:",
        "Score: 7",
        "correct",
        "\n",
        ",",
        '"',
        "{",
        "[",
        "null",
        "1e999",
        "\\u0000",
        "🙂",
    ]
    for _ in range(2000):
        text = "".join(rng.choice(pieces + list(string.printable)) for _ in range(rng.randint(0, 40)))
        for parsed in parse_verdicts(text, TWO).values():
            assert parsed.score is None or 0.0 <= parsed.score <= 1.0
            assert parsed.score is not None or parsed.error
        for parsed in parse_group_verdicts(text, TWO, 3).values():
            assert parsed.score is None or 0.0 <= parsed.score <= 1.0


def test_group_verdicts_json() -> None:
    text = json.dumps(
        {
            "verdicts": [
                {"rollout": 2, "key": "correct", "rationale": "b", "verdict": "incorrect"},
                {"rollout": 1, "key": "correct", "rationale": "a", "verdict": "correct"},
                {"rollout": "3", "key": "correct", "rationale": "c", "verdict": "partially correct"},
            ]
        }
    )
    parsed = parse_group_verdicts(text, ONE, 3)
    assert [parsed[(i, "correct")].score for i in range(3)] == [1.0, 0.0, 0.5]
    assert parsed[(1, "correct")].rationale == "b"


def test_group_verdicts_prose_and_missing_rollouts() -> None:
    text = "Rollout 1: solid work. Verdict: correct\nRollout 2: wrong sum. Verdict: incorrect\n"
    parsed = parse_group_verdicts(text, ONE, 3)
    assert parsed[(0, "correct")].score == 1.0
    assert parsed[(1, "correct")].score == 0.0
    assert parsed[(2, "correct")].score is None and "rollout 3" in (parsed[(2, "correct")].error or "")


def test_group_verdicts_out_of_range_rollout_is_ignored() -> None:
    text = json.dumps({"verdicts": [{"rollout": 9, "key": "correct", "verdict": "correct"}]})
    assert parse_group_verdicts(text, ONE, 2)[(0, "correct")].score is None
