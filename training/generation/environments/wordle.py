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

Options (a task's `environment_config`), with textarena 0.7.4 Wordle-v0's rules beside ours (`rules="textarena"`
sets all of them; the feedback colouring is the same either way):

| option | default | textarena Wordle-v0 |
|---|---|---|
| `max_guesses` | 6 | 6 (`num_guesses`) |
| `guess_format` | `"tag"`: the last `<guess>WORD</guess>` | `"brackets"`: the first `[word]` |
| `require_known_word` | False | True (a dictionary; here `word_list` or the shipped list) |
| `word_list` | the shipped list | nltk's English words |
| `allow_repeated_guesses` | True | False (a repeat is an invalid move) |
| `invalid_move_limit` | None: invalid moves only use turns | 1: a second invalid move in a row ends the game |
| `max_turns` | 10 | none (invalid moves are bounded by the limit) |

Rewards are the rubric's, from `info`; `info["partial_credit"]` is textarena's reward: 1 for a win, otherwise
(greens + 0.5 · yellows) / 5 of the last valid guess (0 before any), also when an invalid move ends the game.
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
_BRACKETS = re.compile(r"\[(\w+)\]")  # textarena's: the first [word]
GUESS_FORMATS = ("tag", "brackets")
TEXTARENA_RULES = {"guess_format": "brackets", "require_known_word": True, "allow_repeated_guesses": False,
                   "invalid_move_limit": 1, "max_guesses": 6}

SYSTEM_PROMPT = """You are playing Wordle. Find the secret 5-letter English word in at most {max_guesses} guesses.
After each guess you get one feedback letter per position:
G = right letter in the right spot, Y = the letter is in the word but in another spot, X = not in the word.
Think briefly, then write your guess as {example}."""
FORMAT_EXAMPLES = {"tag": "<guess>WORD</guess>, for example <guess>CRANE</guess>",
                   "brackets": "a word in square brackets, for example [crane]"}


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


def parse_guess(text: str, guess_format: str = "tag") -> str | None:
    """The guess in a message, or None when it has none: the content of the last <guess> tag, or (format
    "brackets", as textarena reads it) the first [word]."""
    if guess_format == "brackets":
        match = _BRACKETS.search(text or "")
        return match.group(1) if match else None
    found = _GUESS.findall(text or "")
    return found[-1] if found else None


def partial_credit(feedback: list[str], solved: bool) -> float:
    """textarena Wordle-v0's reward: 1 for a win, else (greens + 0.5 · yellows) / length of the last guess."""
    if solved:
        return 1.0
    if not feedback:
        return 0.0
    last = feedback[-1]
    return (last.count("G") + 0.5 * last.count("Y")) / len(last)


def wordle_examples(count: int, *, seed: int = 0) -> list[Example]:
    """`count` examples with distinct secrets drawn from the shipped list (repeatable with `seed`)."""
    words = word_list()
    secrets = random.Random(seed).sample(words, k=min(count, len(words)))
    return [Example(id=f"wordle-{s.lower()}", prompt=None, answer=s, info={"secret": s}) for s in secrets]


class WordleEnvironment:
    tools: list[dict[str, Any]] | None = None

    def __init__(
        self, *, max_guesses: int = 6, max_turns: int = 10, require_known_word: bool = False,
        guess_format: str = "tag", word_list: list[str] | None = None, allow_repeated_guesses: bool = True,
        invalid_move_limit: int | None = None, rules: str | None = None,
    ) -> None:
        """`require_known_word`: only words in `word_list` (default: the shipped list) count as valid guesses
        (off by default: the shipped list is a few hundred words, and rejecting real words would punish the model
        unfairly). `rules="textarena"` plays by textarena Wordle-v0's rules (the module docstring has the table);
        options given next to it override it."""
        if rules is not None:
            if rules != "textarena":
                raise ValueError(f"rules must be 'textarena' or left out, not {rules!r}")
            defaults = {"max_guesses": 6, "max_turns": 10, "require_known_word": False, "guess_format": "tag",
                        "allow_repeated_guesses": True, "invalid_move_limit": None}
            given = {"max_guesses": max_guesses, "max_turns": max_turns, "require_known_word": require_known_word,
                     "guess_format": guess_format, "allow_repeated_guesses": allow_repeated_guesses,
                     "invalid_move_limit": invalid_move_limit}
            chosen = {k: v for k, v in given.items() if v != defaults[k]}  # what the task set beside the rules
            merged: dict[str, Any] = {**defaults, **TEXTARENA_RULES, **chosen}
            max_guesses, max_turns = merged["max_guesses"], merged["max_turns"]
            require_known_word, guess_format = merged["require_known_word"], merged["guess_format"]
            allow_repeated_guesses, invalid_move_limit = merged["allow_repeated_guesses"], merged["invalid_move_limit"]
        if max_turns < max_guesses:
            raise ValueError(f"max_turns ({max_turns}) must be at least max_guesses ({max_guesses})")
        if guess_format not in GUESS_FORMATS:
            raise ValueError(f"guess_format must be one of {', '.join(GUESS_FORMATS)}, not {guess_format!r}")
        if invalid_move_limit is not None and invalid_move_limit < 0:
            raise ValueError(f"invalid_move_limit ({invalid_move_limit}) must be 0 or more, or left out")
        words = [w.strip().upper() for w in word_list] if word_list is not None else None
        if words is not None and (not words or any(not re.fullmatch(r"[A-Z]{5}", w) for w in words)):
            raise ValueError("word_list must be a non-empty list of 5-letter words (A-Z)")
        self.max_guesses = max_guesses
        self.max_turns = max_turns
        self.require_known_word = require_known_word
        self.guess_format = guess_format
        self.known_words = frozenset(words) if words is not None else None
        self.allow_repeated_guesses = allow_repeated_guesses
        self.invalid_move_limit = invalid_move_limit
        self.invalid_in_a_row = 0
        self.lost_on_invalid_moves = False
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
            {"role": "system", "content": SYSTEM_PROMPT.format(max_guesses=self.max_guesses,
                                                                example=FORMAT_EXAMPLES[self.guess_format])},
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
            "partial_credit": partial_credit(self.feedback, self.solved),
            "lost_on_invalid_moves": self.lost_on_invalid_moves,
        }

    def step(self, message: Message) -> StepResult:
        self.turns_used += 1
        raw = parse_guess(message.get("content") or "", self.guess_format)
        valid = False
        if raw is None:
            self.format_errors += 1
            reply = (
                "I found no guess in your answer. Write exactly one guess as "
                f"{FORMAT_EXAMPLES[self.guess_format]}."
            )
        else:
            guess = raw.upper()
            problem = self._invalid(guess)
            if problem:
                self.invalid_guesses += 1
                reply = f"{raw!r} is not a valid guess: {problem}. Guess a 5-letter English word."
            else:
                valid = True
                reply = self._play(guess)
        # textarena's error allowance: invalid moves in a row beyond the limit end the game.
        self.invalid_in_a_row = 0 if valid else self.invalid_in_a_row + 1
        if self.invalid_move_limit is not None and self.invalid_in_a_row > self.invalid_move_limit:
            self.lost_on_invalid_moves = True
        done = (self.solved or len(self.guesses) >= self.max_guesses or self.turns_used >= self.max_turns
                or self.lost_on_invalid_moves)
        if done and not self.solved:
            reply += f"\nGame over. The word was {self.secret}."
        return StepResult([{"role": "user", "content": reply}], done, self.info())

    def _invalid(self, guess: str) -> str | None:
        if len(guess) != 5:
            return f"it has {len(guess)} letters, not 5"
        if not guess.isascii() or not guess.isalpha():
            return "it must contain only the letters A-Z"
        if self.require_known_word and guess not in (self.known_words or word_list()):
            return "it is not in the word list"
        if not self.allow_repeated_guesses and guess in self.guesses:
            return "you guessed it before"
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
