"""LM judge on a local transformers model (the bundled SmolLM2 by default; any causal LM with a chat template).

    judge = TransformersJudge("var/models/smollm2-135m-instruct", max_new_tokens=256, temperature=0.0)
    judge = TransformersJudge(model=model, tokenizer=tokenizer, name="tiny-llama")   # already loaded
    engine = RubricEngine(spec, judge=CachedJudge(judge, cache))

The model is loaded on first use (torch and transformers are imported then, not at import time). Work runs in a
worker thread, one call at a time, so the event loop stays responsive.

verdict_mode="choices" (default): for choice criteria the judge does not write free text. It scores each label's
log-probability after the prompt (the prompt runs through the model once; then one small batched pass per criterion
over its own tokens and its labels') and answers with the most likely label, reporting the log-probabilities as the
rationale. Small models such as the bundled 135M one rarely produce a parseable verdict when generating, but rank
labels sensibly; this is also much faster than generation on a CPU.
Numeric scales and group-relative calls fall back to generation.
verdict_mode="generate": free generation (rationale, then verdict); the parser takes what it can.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from pathlib import Path
from typing import Any

from training.judges.base import JudgeCallError, JudgeCompletion, sampling_fingerprint
from training.models import MODEL_LOAD_LOCK


def _common_prefix_length(sequences: list[list[int]]) -> int:
    """How many leading tokens all the sequences have in common."""
    length = 0
    for column in zip(*sequences, strict=False):
        if any(token != column[0] for token in column):
            break
        length += 1
    return length


def _croppable(cache: Any) -> bool:
    """Whether dropping tokens from the end of `cache` gives the cache of the shorter prompt: plain key/value layers
    only (a sliding-window layer may already have dropped the prompt's first tokens; recurrent states cannot be
    rolled back). Unknown kinds of cache are not cropped."""
    return bool(getattr(cache, "is_croppable", False)) and not any(getattr(cache, "is_sliding", [True]))


def _choice_variants(schema: dict[str, Any]) -> list[tuple[str, list[str]]] | None:
    """(criterion key, labels) from a verdicts schema of training.rubrics.prompts; None when any criterion is not a
    plain choice (numeric scale) or the call covers a group of rollouts."""
    try:
        items = schema["properties"]["verdicts"]["items"]
        out = []
        for variant in items.get("anyOf", [items]):
            props = variant["properties"]
            if "rollout" in props or "enum" not in props["verdict"]:
                return None
            out.append((props["key"]["enum"][0], list(props["verdict"]["enum"])))
        return out
    except (KeyError, TypeError, IndexError):
        return None


class TransformersJudge:
    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        name: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        device: str = "cpu",
        seed: int = 0,
        verdict_mode: str = "choices",
    ) -> None:
        if verdict_mode not in ("choices", "generate"):
            raise ValueError(f"verdict_mode must be 'choices' or 'generate', got {verdict_mode!r}")
        if model_path is None and (model is None or tokenizer is None):
            raise ValueError("give model_path, or both model and tokenizer")
        self.model_path = Path(model_path) if model_path is not None else None
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.verdict_mode = verdict_mode
        # "choices" constrains verdicts to the schema's labels, which is what structured output means here.
        self.supports_structured_output = verdict_mode == "choices"
        self.params: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
            "verdict_mode": verdict_mode,
        }
        label = name or (self.model_path.name if self.model_path is not None else type(model).__name__)
        self.fingerprint = sampling_fingerprint(f"transformers:{label}", self.params)
        engine = str(self.model_path.resolve()) if self.model_path is not None else f"{type(model).__name__}@{id(model)}"
        self.cache_identity = f"{engine}|{self.fingerprint}"
        self._lock = threading.Lock()
        # The keys and values of the last call's shared prompt tokens (`_choose`): the next call runs only what
        # follows the tokens it has in common with them. One prompt's worth of memory (~21 MB for the bundled model).
        self._kept: tuple[list[int], Any] | None = None

    def _load(self) -> None:
        if self.model is not None and self.tokenizer is not None:
            return
        assert self.model_path is not None
        with MODEL_LOAD_LOCK:  # not beside another load in this process (training/models.py)
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=torch.float32)
            self.model = model.to(self.device)  # type: ignore[arg-type]  # transformers types .to() as bound to a PreTrainedModel
        self.model.eval()

    def _generate(self, messages: list[dict[str, Any]]) -> JudgeCompletion:
        import torch

        with self._lock:
            self._load()
            started = time.perf_counter()
            inputs = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            ).to(self.device)
            temperature = self.params["temperature"]
            sampling: dict[str, Any] = {"do_sample": temperature > 0}
            if temperature > 0:
                sampling["temperature"] = temperature
                torch.manual_seed(self.params["seed"])
            with torch.inference_mode():
                output = self.model.generate(
                    **inputs,
                    max_new_tokens=self.params["max_new_tokens"],
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    **sampling,
                )
            prompt_length = inputs["input_ids"].shape[1]
            new_tokens = output[0, prompt_length:]
            text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
            return JudgeCompletion(
                text=text,
                prompt_tokens=int(prompt_length),
                completion_tokens=int(new_tokens.shape[0]),
                latency_ms=(time.perf_counter() - started) * 1000,
            )

    def _choose(self, messages: list[dict[str, Any]], json_schema: dict[str, Any]) -> JudgeCompletion | None:
        """Pick each criterion's label by the model's log-probability of it after the prompt; None = not possible.

        The prompt is run through the model once: its keys and values are reused for every criterion and label, and
        each criterion's forward pass covers only what follows the shared tokens (the criterion's own few tokens and
        its labels', one row per label). Running the whole prompt again per label and criterion, as before, cost the
        prompt's length times the number of labels of every criterion. Of the prompt itself, only what follows the
        tokens it shares with the last call's runs (`_prompt_cache`)."""
        import torch

        variants = _choice_variants(json_schema)
        if variants is None:
            return None
        with self._lock:
            self._load()
            started = time.perf_counter()
            prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            prefixes = [
                self.tokenizer(f"{prompt}Criterion `{key}` verdict:", add_special_tokens=False)["input_ids"]
                for key, _ in variants
            ]
            # Tokens every criterion starts with; at least the last token of each is left to its own pass, whose
            # logits there predict the label's first token.
            shared = min(_common_prefix_length(prefixes), min(len(prefix) for prefix in prefixes) - 1)
            pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0
            verdicts, prompt_tokens = [], 0
            with torch.inference_mode():
                base = self._prompt_cache(prefixes[0][:shared]) if shared > 0 else None
                for (key, labels), prefix in zip(variants, prefixes, strict=True):
                    label_ids = [
                        self.tokenizer(f" {label}", add_special_tokens=False)["input_ids"] for label in labels
                    ]
                    tail = prefix[shared:]
                    # Row per label: the criterion's own tokens, then the label's but its last (nothing to predict).
                    rows = [tail + ids[:-1] for ids in label_ids]
                    width = max(len(r) for r in rows)
                    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
                    attention = torch.tensor(
                        [[1] * (shared + len(r)) + [0] * (width - len(r)) for r in rows], device=self.device
                    )
                    cache = None
                    if base is not None:
                        cache = copy.deepcopy(base)
                        cache.batch_repeat_interleave(len(rows))
                    logits = self.model(
                        input_ids=input_ids, attention_mask=attention, past_key_values=cache, use_cache=cache is not None
                    ).logits.float()
                    logprobs = torch.log_softmax(logits, dim=-1)
                    totals = []
                    for row, ids in enumerate(label_ids):
                        # Token t is predicted by position t-1; sum over the label's tokens = log P(label | prompt).
                        positions = range(len(tail) - 1, len(tail) - 1 + len(ids))
                        totals.append(sum(float(logprobs[row, p, t]) for p, t in zip(positions, ids, strict=True)))
                    best = max(range(len(labels)), key=totals.__getitem__)
                    rationale = "label log-probabilities: " + ", ".join(
                        f"{label}={total:.2f}" for label, total in zip(labels, totals, strict=True)
                    )
                    verdicts.append({"key": key, "rationale": rationale, "verdict": labels[best]})
                    prompt_tokens += len(prefix)
            return JudgeCompletion(
                text=json.dumps({"verdicts": verdicts}),
                prompt_tokens=prompt_tokens,
                completion_tokens=0,
                latency_ms=(time.perf_counter() - started) * 1000,
                structured=True,
            )

    def _prompt_cache(self, ids: list[int]) -> Any:
        """The model's keys and values for `ids`, reusing those of the last call for the tokens both start with (the
        system prompt and, between the criteria of one rollout, the rollout itself). Called under the lock, inside
        inference mode; the result is kept, so callers extend copies of it."""
        import torch

        reused, cache = 0, None
        if self._kept is not None:
            kept_ids, kept = self._kept
            reused = min(_common_prefix_length([kept_ids, ids]), len(ids))
            if reused < len(kept_ids) and not _croppable(kept):
                reused = 0
            if reused:
                cache = copy.deepcopy(kept)
                if len(kept_ids) > reused:
                    cache.crop(reused - len(kept_ids))  # a negative count: drop that many tokens from the end
        if reused < len(ids):
            rest = torch.tensor([ids[reused:]], device=self.device)
            cache = self.model(input_ids=rest, past_key_values=cache, use_cache=True).past_key_values
        self._kept = (list(ids), cache)
        return cache

    def _run(self, messages: list[dict[str, Any]], json_schema: dict[str, Any] | None) -> JudgeCompletion:
        if self.verdict_mode == "choices" and json_schema is not None:
            chosen = self._choose(messages, json_schema)
            if chosen is not None:
                return chosen
        return self._generate(messages)

    async def complete(
        self, messages: list[dict[str, Any]], *, json_schema: dict[str, Any] | None = None
    ) -> JudgeCompletion:
        try:
            return await asyncio.to_thread(self._run, messages, json_schema)
        except (RuntimeError, ValueError, OSError) as exc:
            raise JudgeCallError(f"local judge failed: {type(exc).__name__}: {exc}") from exc
