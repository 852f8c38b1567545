"""Wordle, the multi-turn example from the verifiers talk.

The model guesses a secret 5-letter word; each guess is written `<guess>WORD</guess>` (the last such tag
in a message counts, so the model may think first). Feedback per letter: G = right letter, right spot;
Y = in the word, elsewhere; X = not in the word (or already accounted for: a letter repeated in a guess
is marked Y/G only as many times as it occurs in the secret, greens first).

Episode ends when solved, after `max_guesses` valid guesses, or after `max_turns` model turns (turns
with a malformed or invalid guess count towards `max_turns` only). Facts for the rubric in `info`:
solved, turns_used, guesses_used, invalid_guesses, format_errors, guesses, feedback, secret.

Secrets come from `example.answer` (or `example.info["secret"]`); `wordle_examples()` draws examples
from the shipped word list (`wordle_words.txt`).
"""

from __future__ import annotations

import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from training.generation.environments.base import EpisodeError, StepResult
from training.generation.types import Conversation, Example, Message

WORD_LIST_PATH = Path(__file__).with_name("wordle_words.txt")
_GUESS = re.compile(r"<guess>\s*(.*?)\s*</guess>", re.IGNORECASE | re.DOTALL)

SYSTEM_PROMPT = """You are playing Wordle. Find the secret 5-letter English word in at most {max_guesses} guesses.
After each guess you get one feedback letter per position:
G = right letter in the right spot, Y = the letter is in the word but in another spot, X = not in the word.
Think briefly, then write your guess as <guess>WORD</guess>, for example <guess>CRANE</guess>."""


@lru_cache(maxsize=1)
def word_list() -> tuple[str, ...]:
    """The shipped word list, upper case."""
    lines = WORD_LIST_PATH.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip().upper() for line in lines if line.strip() and not line.startswith("#"))


def score_guess(guess: str, secret: str) -> str:
    """Feedback string for `guess` against `secret`, e.g. "GXYXX".

    Duplicate letters: greens are matched first, then yellows left to right while the secret still has
    unmatched copies of the letter; extra copies are X (guess SPEED vs secret ABIDE -> XXYXY).
    """
    guess, secret = guess.upper(), secret.upper()
    if len(guess) != len(secret):
        raise ValueError(f"guess {guess!r} and secret {secret!r} differ in length")
    result = ["X"] * len(guess)
    unmatched: dict[str, int] = {}
    for i, (g, s) in enumerate(zip(guess, secret, strict=True)):
        if g == s:
            result[i] = "G"
        else:
            unmatched[s] = unmatched.get(s, 0) + 1
    for i, g in enumerate(guess):
        if result[i] != "G" and unmatched.get(g, 0) > 0:
            result[i] = "Y"
            unmatched[g] -= 1
    return "".join(result)


def parse_guess(text: str) -> str | None:
    """The content of the last <guess> tag, or None when the message has none."""
    found = _GUESS.findall(text or "")
    return found[-1] if found else None


def wordle_examples(count: int, *, seed: int = 0) -> list[Example]:
    """`count` examples with distinct secrets drawn from the shipped list (repeatable with `seed`)."""
    words = word_list()
    secrets = random.Random(seed).sample(words, k=min(count, len(words)))
    return [Example(id=f"wordle-{s.lower()}", prompt=None, answer=s, info={"secret": s}) for s in secrets]


class WordleEnvironment:
    tools: list[dict[str, Any]] | None = None

    def __init__(
        self, *, max_guesses: int = 6, max_turns: int = 10, require_known_word: bool = False
    ) -> None:
        """`require_known_word`: only words in the shipped list count as valid guesses (off by default:
        the list is a few hundred words, and rejecting real words would punish the model unfairly)."""
        if max_turns < max_guesses:
            raise ValueError(f"max_turns ({max_turns}) must be at least max_guesses ({max_guesses})")
        self.max_guesses = max_guesses
        self.max_turns = max_turns
        self.require_known_word = require_known_word
        self.secret = ""
        self.guesses: list[str] = []
        self.feedback: list[str] = []
        self.turns_used = 0
        self.invalid_guesses = 0
        self.format_errors = 0
        self.solved = False

    def reset(self, example: Example) -> Conversation:
        secret = (example.answer or example.info.get("secret") or "").strip().upper()
        if not re.fullmatch(r"[A-Z]{5}", secret):
            raise EpisodeError(
                f"Wordle example {example.id!r} needs a 5-letter secret word in its answer or info['secret'], "
                f"got {secret!r}"
            )
        self.secret = secret
        return [
            {"role": "system", "content": SYSTEM_PROMPT.format(max_guesses=self.max_guesses)},
            {"role": "user", "content": f"Guess the word. You have {self.max_guesses} guesses."},
        ]

    def info(self) -> dict[str, Any]:
        return {
            "solved": self.solved,
            "turns_used": self.turns_used,
            "guesses_used": len(self.guesses),
            "invalid_guesses": self.invalid_guesses,
            "format_errors": self.format_errors,
            "guesses": list(self.guesses),
            "feedback": list(self.feedback),
            "secret": self.secret,
            "max_guesses": self.max_guesses,
        }

    def step(self, message: Message) -> StepResult:
        self.turns_used += 1
        raw = parse_guess(message.get("content") or "")
        if raw is None:
            self.format_errors += 1
            reply = (
                "I found no guess in your answer. Write exactly one guess in the format "
                "<guess>WORD</guess>, for example <guess>CRANE</guess>."
            )
        else:
            guess = raw.upper()
            problem = self._invalid(guess)
            if problem:
                self.invalid_guesses += 1
                reply = f"{raw!r} is not a valid guess: {problem}. Guess a 5-letter English word."
            else:
                reply = self._play(guess)
        done = self.solved or len(self.guesses) >= self.max_guesses or self.turns_used >= self.max_turns
        if done and not self.solved:
            reply += f"\nGame over. The word was {self.secret}."
        return StepResult([{"role": "user", "content": reply}], done, self.info())

    def _invalid(self, guess: str) -> str | None:
        if len(guess) != 5:
            return f"it has {len(guess)} letters, not 5"
        if not guess.isascii() or not guess.isalpha():
            return "it must contain only the letters A-Z"
        if self.require_known_word and guess not in word_list():
            return "it is not in the word list"
        return None

    def _play(self, guess: str) -> str:
        feedback = score_guess(guess, self.secret)
        self.guesses.append(guess)
        self.feedback.append(feedback)
        if feedback == "GGGGG":
            self.solved = True
            return f"{guess}\n{' '.join(feedback)}\nSolved in {len(self.guesses)} guesses!"
        left = self.max_guesses - len(self.guesses)
        return f"{guess}\n{' '.join(feedback)}\nYou have {left} guess{'es' if left != 1 else ''} left."
