"""verifiers 0.4 taskset plugin `rubricon_wordle`: Wordle with textarena Wordle-v0's rules and reward, playable
offline.

textarena's Wordle needs nltk's `words` corpus and its POS tagger, which nltk downloads at run time; a machine
without network cannot play it. This taskset has the same shape as verifiers' `textarena` taskset (the env steps
the game host-side as the run's user, the model moves first, `[word]` guesses, a finished game ends the exchange,
the outcome recorded as reward `game_reward`), with Rubricon's Wordle engine (textarena's feedback colouring and
win / partial-credit reward, matched on 93,398 pairs) and its shipped word list.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import verifiers.v1 as vf

from training.generation.environments.wordle import WordleEnvironment, word_list
from training.generation.types import Example

SYSTEM_PROMPT = (
    "You are a competitive game player. Read the game instructions carefully and always use the exact move format "
    "the game requires. Think step-by-step first, then give your move as the only square-bracketed token in your "
    "reply."
)
PROMPT = (
    "You are Playing Wordle.\nA secret 5-letter word has been chosen. You have 6 attempts to guess it.\n"
    "For each guess, wrap your word in square brackets (e.g., '[apple]').\nFeedback for each letter will be given "
    "as follows:\n  - G (green): correct letter in the correct position\n  - Y (yellow): letter exists in the word "
    "but in the wrong position\n  - X (wrong): letter is not in the word\nEnter your guess to begin.\n"
)


class RubriconWordleConfig(vf.TasksetConfig):
    max_guesses: int = 6
    max_turns: int = 6


class RubriconWordleData(vf.TaskData):
    info: dict
    """The secret word and the seed it was drawn with."""


class RubriconWordleTask(vf.Task[RubriconWordleData, vf.State, vf.TaskConfig]):
    pass


class RubriconWordleEnvConfig(vf.EnvConfig):
    player: vf.AgentConfig = vf.AgentConfig()


class RubriconWordleEnv(vf.Env[RubriconWordleEnvConfig]):
    async def run(self, task, agents):
        config = self.taskset.config
        game = WordleEnvironment(rules="textarena", max_guesses=config.max_guesses,
                                 max_turns=max(config.max_turns, config.max_guesses), guess_format="brackets")
        game.reset(Example(id=task.data.name, prompt=None, answer=task.data.info["secret"], info={}))
        reward = 0.0
        async with agents.player.interaction(task) as interaction:
            segment = await interaction.turn()
            while not segment.terminated:
                result = game.step({"role": "assistant", "content": segment.last_reply or ""})
                if result.done:
                    break
                segment = await interaction.turn(result.messages[-1]["content"])
            info = game.info()
            reward = 1.0 if info["solved"] else float(info["partial_credit"])
        trace = interaction.trace
        trace.record_reward("game_reward", reward, 1.0)
        trace.info["game_outcome"] = "solved" if game.solved else f"not solved; the word was {game.secret}"


class RubriconWordleTaskset(vf.Taskset[RubriconWordleTask, RubriconWordleConfig]):
    INFINITE = True

    def load(self) -> Iterator[RubriconWordleTask]:
        words = sorted(word_list())
        i = 0
        while True:
            secret = random.Random(i).choice(words)
            yield RubriconWordleTask(
                RubriconWordleData(name=f"rubricon-wordle#{i}", prompt=PROMPT, system_prompt=SYSTEM_PROMPT,
                                   info={"secret": secret, "seed": i}),
                self.config.task,
            )
            i += 1


__all__ = ["RubriconWordleConfig", "RubriconWordleData", "RubriconWordleEnv", "RubriconWordleEnvConfig",
           "RubriconWordleTask", "RubriconWordleTaskset"]
