"""The transformers fallback backend on the bundled SmolLM2."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.generation import GenerationError, SamplingParams
from training.generation.backends.transformers_backend import TransformersBackend

SHORT = [{"role": "user", "content": "Hi!"}]
LONG = [
    {"role": "system", "content": "You are a helpful assistant who answers in full sentences."},
    {"role": "user", "content": "Explain in one sentence why the sky looks blue during the day."},
]


def test_unknown_model_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="does not exist"):
        TransformersBackend(tmp_path / "missing")


@pytest.mark.slow
def test_left_padded_batch_matches_unbatched_greedy(transformers_backend: TransformersBackend) -> None:
    greedy = SamplingParams(max_tokens=8, temperature=0)
    batched = transformers_backend.generate([SHORT, LONG], greedy)
    alone = [transformers_backend.generate([c], greedy)[0] for c in (SHORT, LONG)]
    assert [g[0].text for g in batched] == [g[0].text for g in alone]
    for (completion,) in batched:
        assert completion.ok and completion.text and completion.finish_reason in ("stop", "length")
        assert 0 < completion.completion_tokens <= 8
    assert batched[0][0].prompt_tokens < batched[1][0].prompt_tokens  # padding is not counted


@pytest.mark.slow
def test_groups_of_n_with_seed_and_logprobs(transformers_backend: TransformersBackend) -> None:
    params = SamplingParams(n=2, max_tokens=8, temperature=1.0, seed=11, logprobs=True)
    groups = transformers_backend.generate([SHORT, LONG], params)
    assert [len(g) for g in groups] == [2, 2]
    for group in groups:
        for completion in group:
            assert (
                completion.logprobs is not None and len(completion.logprobs) == completion.completion_tokens
            )
            assert all(lp <= 0 for lp in completion.logprobs)
    again = transformers_backend.generate([SHORT, LONG], params)
    assert [[c.text for c in g] for g in again] == [[c.text for c in g] for g in groups]


@pytest.mark.slow
def test_stop_strings_length_and_overflow(transformers_backend: TransformersBackend) -> None:
    counting = [{"role": "user", "content": "Count from 1 to 10, separated by commas."}]
    too_long = [{"role": "user", "content": "word " * (transformers_backend.max_model_len + 10)}]
    stopped, short, overflow = transformers_backend.generate(
        [counting, LONG, too_long], SamplingParams(max_tokens=24, temperature=0, stop=["5"])
    )
    assert "5" not in stopped[0].text and stopped[0].finish_reason == "stop"
    assert short[0].ok
    assert overflow[0].error_kind == "context_overflow" and "context is 8192 tokens" in (
        overflow[0].error or ""
    )
    ((cut,),) = transformers_backend.generate([LONG], SamplingParams(max_tokens=3, temperature=0))
    assert cut.finish_reason == "length" and cut.completion_tokens == 3
