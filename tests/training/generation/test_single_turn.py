from __future__ import annotations

import pytest

from training.generation import BackendConfig, SamplingParams
from training.generation.environments import PromptTemplateError, SingleTurnEnvironment
from training.generation.types import Example


def test_prompt_is_rendered_through_the_template_after_the_system_prompt() -> None:
    env = SingleTurnEnvironment(
        system_prompt="You are a careful tutor.",
        prompt_template="Solve: {{ prompt }}{% if info.level %} (level {{ info.level }}){% endif %}",
    )
    messages = env.reset(Example(id=7, prompt="2 + 2", info={"level": 1}))
    assert messages == [
        {"role": "system", "content": "You are a careful tutor."},
        {"role": "user", "content": "Solve: 2 + 2 (level 1)"},
    ]
    assert env.step({"role": "assistant", "content": "4"}) == ([], True, {})


def test_without_template_or_system_prompt_the_prompt_is_the_user_message() -> None:
    assert SingleTurnEnvironment().reset(Example(prompt="hi")) == [{"role": "user", "content": "hi"}]


def test_example_messages_are_used_as_they_are_with_the_system_prompt_first() -> None:
    env = SingleTurnEnvironment(system_prompt="Be brief.", prompt_template="ignored {{ prompt }}")
    history = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "2+2?"},
    ]
    messages = env.reset(Example(messages=history))
    assert messages == [{"role": "system", "content": "Be brief."}, *history]
    assert history[0] == {"role": "user", "content": "Hi"}  # the example itself is not modified


def test_a_template_that_does_not_compile_is_a_clear_error() -> None:
    with pytest.raises(PromptTemplateError, match=r"does not compile \(line 1\)"):
        SingleTurnEnvironment(prompt_template="{% if prompt %}unclosed")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{{ question }}", "'question' is undefined"),
        ("{{ info.missing }}", "has no attribute 'missing'"),
        ("{{ prompt.__class__.__mro__ }}", "SecurityError"),
        ("{{ info.update(x=1) }}", "SecurityError"),
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ],
)
def test_a_template_that_fails_for_an_example_names_the_example(template: str, message: str) -> None:
    env = SingleTurnEnvironment(prompt_template=template)
    with pytest.raises(PromptTemplateError, match="example 'ex-9'") as caught:
        env.reset(Example(id="ex-9", prompt="p", info={}))
    assert message in str(caught.value)


def test_an_example_without_prompt_or_messages_is_an_error() -> None:
    with pytest.raises(PromptTemplateError, match="neither a prompt nor messages"):
        SingleTurnEnvironment().reset(Example(id=3))


def test_sampling_params_explain_bad_values() -> None:
    with pytest.raises(ValueError, match="identical completions"):
        SamplingParams(n=4, temperature=0.0)
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError, match="base_url is required"):
        BackendConfig(kind="openai", model="m")


def test_unseeded_identical_prompts_of_different_examples_go_in_one_engine_call(transformers_backend) -> None:
    """Merging them would make groups of 2n and one call per group size (the job then ran at 0.58x raw vLLM).
    Seeded, they are merged so that one prompt does not get the same samples twice (test_runner's Wordle test)."""
    from training.generation import run_episodes

    calls: list[int] = []
    generate = transformers_backend.generate

    def counting_generate(conversations, params, **kwargs):
        calls.append(len(conversations))
        return generate(conversations, params, **kwargs)

    transformers_backend.generate = counting_generate
    try:
        examples = [Example(id=i, prompt="Say hi." if i % 2 else f"Count to {i}.") for i in range(6)]
        trajectories = run_episodes(
            transformers_backend, SingleTurnEnvironment, examples, SamplingParams(n=2, max_tokens=4)
        )
    finally:
        del transformers_backend.generate
    assert calls == [6]  # one call, every example's group with n=2
    assert [(t.example_id, t.sample_index) for t in trajectories] == [(i, s) for i in range(6) for s in range(2)]
    assert all(t.error is None for t in trajectories)
