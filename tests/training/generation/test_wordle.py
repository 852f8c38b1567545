from __future__ import annotations

import pytest

from training.generation.environments.base import EpisodeError
from training.generation.environments.wordle import (
    WordleEnvironment,
    parse_guess,
    score_guess,
    word_list,
    wordle_examples,
)
from training.generation.types import Example


@pytest.mark.parametrize(
    ("guess", "secret", "feedback"),
    [
        ("CRANE", "CRANE", "GGGGG"),
        ("CRANE", "SLOTH", "XXXXX"),
        ("CRANE", "NACRE", "YYYYG"),
        ("SPEED", "ABIDE", "XXYXY"),  # one E in the secret: only the first unmatched E is yellow
        ("SPEED", "CREPE", "XYGYX"),  # green E matched first, then one yellow for the remaining E
        ("EERIE", "THREE", "YXGXG"),  # last E green; the one other E in THREE goes to the first E only
        ("LLAMA", "HELLO", "YYXXX"),
        ("ALLOT", "HELLO", "XYGYX"),  # green L at position 3 consumes one L, the other L is yellow
        ("BOOKS", "ROBOT", "YGYXX"),
        ("geese", "eerie", "XGYXG"),  # case-insensitive
    ],
)
def test_feedback_handles_duplicate_letters(guess: str, secret: str, feedback: str) -> None:
    assert score_guess(guess, secret) == feedback


def test_feedback_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError):
        score_guess("CAT", "CRANE")


@pytest.mark.parametrize(
    ("text", "guess"),
    [
        ("<guess>CRANE</guess>", "CRANE"),
        ("I think... <guess> slate </guess>", "slate"),
        ("<guess>AUDIO</guess> no wait <GUESS>CRANE</GUESS>", "CRANE"),  # the last tag counts
        ("CRANE", None),
        ("<guess>CRANE", None),
        ("", None),
    ],
)
def test_parse_guess(text: str, guess: str | None) -> None:
    assert parse_guess(text) == guess


def test_shipped_word_list_is_a_few_hundred_distinct_five_letter_words() -> None:
    words = word_list()
    assert 300 <= len(words) == len(set(words))
    assert all(len(w) == 5 and w.isalpha() and w.isupper() for w in words)


def test_wordle_examples_are_repeatable_and_distinct() -> None:
    first, again = wordle_examples(5, seed=3), wordle_examples(5, seed=3)
    assert [e.answer for e in first] == [e.answer for e in again]
    assert len({e.answer for e in first}) == 5 and all(e.answer in word_list() for e in first)


def _say(env: WordleEnvironment, text: str):
    return env.step({"role": "assistant", "content": text})


def test_a_solved_game() -> None:
    env = WordleEnvironment()
    opening = env.reset(Example(id=1, answer="crane"))
    assert [m["role"] for m in opening] == ["system", "user"] and "<guess>" in opening[0]["content"]

    reply, done, info = _say(env, "Let me start. <guess>SLATE</guess>")
    assert not done
    assert reply == [{"role": "user", "content": "SLATE\nX X G X G\nYou have 5 guesses left."}]
    reply, done, info = _say(env, "<guess>CRANE</guess>")
    assert done and "Solved in 2 guesses" in reply[0]["content"]
    assert info == {
        "solved": True,
        "turns_used": 2,
        "guesses_used": 2,
        "invalid_guesses": 0,
        "format_errors": 0,
        "guesses": ["SLATE", "CRANE"],
        "feedback": ["XXGXG", "GGGGG"],
        "secret": "CRANE",
        "max_guesses": 6,
        "partial_credit": 1.0,
        "lost_on_invalid_moves": False,
    }


def test_wrong_format_gets_a_corrective_reply_and_is_counted() -> None:
    env = WordleEnvironment()
    env.reset(Example(id=1, answer="CRANE"))
    reply, done, info = _say(env, "My guess is CRANE")
    assert not done
    assert "<guess>WORD</guess>" in reply[0]["content"]
    assert info["format_errors"] == 1 and info["guesses_used"] == 0 and info["turns_used"] == 1


@pytest.mark.parametrize(
    ("text", "problem"),
    [("<guess>CAT</guess>", "3 letters"), ("<guess>CR4NE</guess>", "A-Z"), ("<guess>ÉCLAT</guess>", "A-Z")],
)
def test_invalid_guesses_are_counted_not_played(text: str, problem: str) -> None:
    env = WordleEnvironment()
    env.reset(Example(id=1, answer="CRANE"))
    reply, done, info = _say(env, text)
    assert not done and problem in reply[0]["content"]
    assert info["invalid_guesses"] == 1 and info["guesses"] == []


def test_known_word_requirement_is_optional() -> None:
    env = WordleEnvironment(require_known_word=True)
    env.reset(Example(id=1, answer="CRANE"))
    _, _, info = _say(env, "<guess>QZXVW</guess>")
    assert info["invalid_guesses"] == 1
    relaxed = WordleEnvironment()
    relaxed.reset(Example(id=1, answer="CRANE"))
    assert relaxed.step({"role": "assistant", "content": "<guess>QZXVW</guess>"}).info["guesses"] == ["QZXVW"]


def test_game_ends_after_max_guesses_and_reveals_the_word() -> None:
    env = WordleEnvironment(max_guesses=2)
    env.reset(Example(id=1, answer="CRANE"))
    assert not _say(env, "<guess>SLATE</guess>").done
    reply, done, info = _say(env, "<guess>PIOUS</guess>")
    assert done and not info["solved"] and info["guesses_used"] == 2
    assert reply[0]["content"].endswith("Game over. The word was CRANE.")


def test_turn_limit_bounds_a_model_that_never_guesses() -> None:
    env = WordleEnvironment(max_guesses=2, max_turns=3)
    env.reset(Example(id=1, answer="CRANE"))
    results = [_say(env, "hmm") for _ in range(3)]
    assert [r.done for r in results] == [False, False, True]
    assert results[-1].info["format_errors"] == 3 and results[-1].info["turns_used"] == 3


def test_secret_from_info_and_bad_secrets() -> None:
    env = WordleEnvironment()
    env.reset(Example(id=1, info={"secret": "plant"}))
    assert env.secret == "PLANT"
    with pytest.raises(EpisodeError, match="5-letter secret"):
        WordleEnvironment().reset(Example(id=2, answer="toolong"))
    with pytest.raises(ValueError, match="max_turns"):
        WordleEnvironment(max_guesses=6, max_turns=3)


# --- textarena Wordle-v0's rules as options ---------------------------------------------------------------------
# Restated from textarena 0.7.4 (envs/Wordle/env.py, state.py), which cannot run here: importing it downloads nltk
# corpora. Reward: 1 for a win, else (greens + 0.5 * yellows) / word length of the latest valid guess; a guess is
# the first `\[(\w+)\]`; wrong format, wrong length, a repeat or a non-word is an invalid move, and with
# error_allowance 1 the second invalid move in a row ends the game (a valid move resets the count).


def _textarena_reward(feedback: list[str], solved: bool) -> float:
    if solved:
        return 1.0
    if not feedback:
        return 0.0
    latest = feedback[-1]
    return (sum(f == "G" for f in latest) + sum(f == "Y" for f in latest) * 0.5) / len(latest)


@pytest.mark.parametrize(("guesses", "secret"), [
    (["SLATE", "CRANE"], "CRANE"), (["SLATE"], "CRANE"), (["NACRE"], "CRANE"), (["SPEED", "ABIDE"], "ABIDE"),
    (["LLAMA", "BOOKS"], "HELLO"), ([], "CRANE"),
])
def test_partial_credit_is_textarenas_reward(guesses: list[str], secret: str) -> None:
    env = WordleEnvironment(rules="textarena", word_list=[*guesses, secret, "OTHER"])
    env.reset(Example(id=1, answer=secret))
    info = env.info()
    for guess in guesses:
        _, _, info = _say(env, f"I guess [{guess.lower()}]")
    assert info["partial_credit"] == _textarena_reward(info["feedback"], info["solved"])
    assert info["solved"] == (secret in guesses)


def test_textarena_rules_read_brackets_and_end_on_the_second_invalid_move_in_a_row() -> None:
    env = WordleEnvironment(rules="textarena", word_list=["CRANE", "SLATE", "NACRE"])
    opening = env.reset(Example(id=1, answer="crane"))
    assert "[crane]" in opening[0]["content"] and "<guess>" not in opening[0]["content"]
    reply, done, info = _say(env, "[nacre] then maybe [slate]")  # the first [word] counts
    assert not done and info["guesses"] == ["NACRE"] and info["partial_credit"] == 0.6
    reply, done, _ = _say(env, "<guess>SLATE</guess>")  # our format is not textarena's: invalid, one allowed
    assert not done and "no guess" in reply[0]["content"]
    reply, done, _ = _say(env, "[slate]")  # a valid move resets the count
    assert not done
    reply, done, _ = _say(env, "[slate]")  # a repeat is invalid
    assert not done and "guessed it before" in reply[0]["content"]
    reply, done, info = _say(env, "[zzzzz]")  # not a word: second invalid move in a row
    assert done and info["lost_on_invalid_moves"] and not info["solved"]
    assert info["partial_credit"] == _textarena_reward(["YYYYG", "XXGXG"], False) == 0.4
    assert "The word was CRANE" in reply[0]["content"]


def test_rules_and_options_combine_and_bad_options_are_refused() -> None:
    env = WordleEnvironment(rules="textarena", invalid_move_limit=3, max_guesses=4)
    assert (env.guess_format, env.invalid_move_limit, env.max_guesses, env.allow_repeated_guesses) == (
        "brackets", 3, 4, False)
    ours = WordleEnvironment()
    assert (ours.guess_format, ours.invalid_move_limit, ours.allow_repeated_guesses) == ("tag", None, True)
    for options, message in (({"rules": "chess"}, "rules"), ({"guess_format": "xml"}, "guess_format"),
                             ({"invalid_move_limit": -1}, "invalid_move_limit"),
                             ({"word_list": ["CAT"]}, "word_list")):
        with pytest.raises(ValueError, match=message):
            WordleEnvironment(**options)
