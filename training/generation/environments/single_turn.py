"""Single-turn environment: task system prompt + the example's prompt rendered through the task's template.

Prompt templates are Jinja2, rendered in an `ImmutableSandboxedEnvironment` with `StrictUndefined`: task
authors are users, so a template can read the example but cannot reach Python internals, and a misspelt
variable is an error instead of an empty string. Variables: `prompt`, `answer`, `info` (the example's info
dict), `id`.

    make_env = functools.partial(
        SingleTurnEnvironment, system_prompt="Answer with a number.", prompt_template="Q: {{ prompt }}"
    )
    trajectories = run_episodes(backend, make_env, examples, params)

A template that does not compile raises `PromptTemplateError` at construction (a task error, reported
once); one that fails for a given example fails only that example's rollouts.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError

from training.generation.environments.base import PromptTemplateError, StepResult
from training.generation.types import Conversation, Example, Message
from training.templating import bounded_environment

DEFAULT_PROMPT_TEMPLATE = "{{ prompt }}"

_JINJA = bounded_environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


class PromptBuilder:
    """Builds the opening messages of an episode from a task's system prompt and prompt template."""

    def __init__(self, system_prompt: str | None = None, prompt_template: str | None = None) -> None:
        self.system_prompt = system_prompt or None
        source = prompt_template or DEFAULT_PROMPT_TEMPLATE
        try:
            self._template = _JINJA.from_string(source)
        except TemplateError as exc:
            line = getattr(exc, "lineno", None)
            where = f" (line {line})" if line else ""
            raise PromptTemplateError(f"prompt template does not compile{where}: {exc}") from exc

    def build(self, example: Example, *, system_suffix: str = "") -> Conversation:
        """Opening messages for `example`. `system_suffix` lets an environment add its own instructions."""
        system = "\n\n".join(part for part in (self.system_prompt, system_suffix) if part) or None
        if example.messages:
            messages: list[Message] = [dict(m) for m in example.messages]
            if system and messages[0].get("role") != "system":
                messages.insert(0, {"role": "system", "content": system})
            elif system and system_suffix:
                messages[0]["content"] = f"{messages[0].get('content') or ''}\n\n{system_suffix}"
            return messages
        if example.prompt is None:
            raise PromptTemplateError(f"example {example.id!r} has neither a prompt nor messages")
        try:
            user = self._template.render(
                prompt=example.prompt, answer=example.answer, info=example.info, id=example.id
            )
        except Exception as exc:  # undefined variables, sandbox violations, errors inside expressions
            raise PromptTemplateError(
                f"prompt template failed for example {example.id!r}: {type(exc).__name__}: {exc}"
            ) from exc
        opening: list[Message] = [{"role": "system", "content": system}] if system else []
        opening.append({"role": "user", "content": user})
        return opening


class SingleTurnEnvironment:
    """One prompt, one completion; `info` carries nothing (rubrics score the completion text)."""

    tools: list[dict[str, Any]] | None = None
    single_turn = True  # every episode ends with its first completion (the runner counts progress as they arrive)

    def __init__(self, system_prompt: str | None = None, prompt_template: str | None = None) -> None:
        self.builder = PromptBuilder(system_prompt, prompt_template)

    def reset(self, example: Example) -> Conversation:
        return self.builder.build(example)

    def step(self, message: Message) -> StepResult:
        return StepResult([], True, {})
