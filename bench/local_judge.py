"""The local transformers judge (bundled SmolLM2, verdict_mode="choices") on CPU: rollouts scored per second, against
the way it chose labels before (the whole prompt run again for every label of every criterion), in the same run.
Today a call runs its prompt once, and only the part it does not share with the previous call (the system prompt is
shared by every call; a rollout's criteria, asked one after another, share the rollout too).

    .venv/bin/python bench/local_judge.py [--rollouts 4] [--repeats 1]

Two rubrics through the real path (RubricEngine → TransformersJudge): one judge criterion with three labels, and three
judge criteria (labels of one to three tokens) asked in one call. The baseline is the previous `_choose`, kept here
verbatim as a subclass: one forward pass per criterion over a row per label, each row the whole prompt. Both must
pick the same labels. Slow: loads the bundled model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._results import emit  # noqa: E402
from training.judges.base import JudgeCompletion  # noqa: E402
from training.judges.transformers_judge import TransformersJudge, _choice_variants  # noqa: E402
from training.models import ensure_bundled_model  # noqa: E402
from training.rubrics.engine import RubricEngine  # noqa: E402
from training.rubrics.spec import validate_spec  # noqa: E402
from training.rubrics.types import Rollout  # noqa: E402

ONE = validate_spec({"criteria": [
    {"key": "helpful", "title": "Helpful", "kind": "judge", "use_reference": True,
     "question": "Does the completion answer the prompt correctly and helpfully?",
     "choices": [{"label": "no"}, {"label": "partly"}, {"label": "yes"}]},
]})
THREE = validate_spec({"criteria": [
    {"key": "correct", "title": "Correct", "kind": "judge", "use_reference": True,
     "question": "Is the final answer the same as the reference?", "choices": [{"label": "no"}, {"label": "yes"}]},
    {"key": "reasoning", "title": "Reasoning", "kind": "judge", "question": "Is the reasoning sound?",
     "choices": [{"label": "unsound"}, {"label": "partly sound"}, {"label": "sound"}]},
    {"key": "tone", "title": "Tone", "kind": "judge", "question": "Is the tone appropriate?",
     "choices": [{"label": "inappropriate"}, {"label": "fine"}]},
]})


class FullPassPerLabel(TransformersJudge):
    """The previous label choice, verbatim: per criterion one batched pass, one row (the whole prompt) per label."""

    def _choose(self, messages: list[dict[str, Any]], json_schema: dict[str, Any]) -> JudgeCompletion | None:
        import torch

        variants = _choice_variants(json_schema)
        if variants is None:
            return None
        with self._lock:
            self._load()
            started = time.perf_counter()
            prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            verdicts, prompt_tokens = [], 0
            for key, labels in variants:
                prefix = self.tokenizer(f"{prompt}Criterion `{key}` verdict:", add_special_tokens=False)["input_ids"]
                label_ids = [self.tokenizer(f" {label}", add_special_tokens=False)["input_ids"] for label in labels]
                rows = [prefix + ids for ids in label_ids]
                width = max(len(r) for r in rows)
                pad = self.tokenizer.pad_token_id or self.tokenizer.eos_token_id or 0
                input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
                attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
                with torch.inference_mode():
                    logits = self.model(input_ids=input_ids, attention_mask=attention).logits.float()
                logprobs = torch.log_softmax(logits, dim=-1)
                totals = []
                for row, ids in enumerate(label_ids):
                    positions = range(len(prefix) - 1, len(prefix) - 1 + len(ids))
                    totals.append(sum(float(logprobs[row, p, t]) for p, t in zip(positions, ids, strict=True)))
                best = max(range(len(labels)), key=totals.__getitem__)
                rationale = "label log-probabilities: " + ", ".join(
                    f"{label}={total:.2f}" for label, total in zip(labels, totals, strict=True))
                verdicts.append({"key": key, "rationale": rationale, "verdict": labels[best]})
                prompt_tokens += len(prefix)
            return JudgeCompletion(text=json.dumps({"verdicts": verdicts}), prompt_tokens=prompt_tokens,
                                   completion_tokens=0, latency_ms=(time.perf_counter() - started) * 1000,
                                   structured=True)


def rollouts(count: int) -> list[Rollout]:
    out = []
    for i in range(count):
        a, b = 17 + i, 25 + 2 * i
        steps = " ".join(f"Step {s}: I add the tens and the ones of {a} and {b} again to be sure." for s in range(6))
        out.append(Rollout(f"Let me think. {steps} So the sum is <answer>{a + b + i % 2}</answer>.",
                           prompt=f"What is {a} + {b}? Show your steps and answer inside <answer></answer>.",
                           reference=str(a + b)))
    return out


def run(judge: TransformersJudge, spec: Any, items: list[Rollout]) -> tuple[float, list[dict[str, str | None]]]:
    engine = RubricEngine(spec, judge=judge)
    started = time.perf_counter()
    results = asyncio.run(engine.ascore_many(items))
    elapsed = time.perf_counter() - started
    return elapsed, [{key: score.choice for key, score in result.criteria.items()} for result in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    model_dir = ensure_bundled_model(Path(__file__).resolve().parent.parent / "var" / "models")
    new = TransformersJudge(model_dir)
    new._load()
    old = FullPassPerLabel(model=new.model, tokenizer=new.tokenizer, name=model_dir.name)
    items = rollouts(args.rollouts)
    run(new, ONE, items[:2])  # warm up both paths (first calls allocate)
    run(old, ONE, items[:2])
    print(f"{args.rollouts} rollouts, best of {args.repeats}, torch threads {torch.get_num_threads()}")
    for name, spec in (("1 criterion, 3 labels", ONE), ("3 criteria, 7 labels", THREE)):
        timings: dict[str, float] = {}
        choices = {}
        for label, judge in (("full pass per label", old), ("prompt once", new)):
            judge._kept = None  # the other rubric's last prompt: each rubric starts cold
            best = float("inf")
            for _ in range(args.repeats):
                elapsed, picked = run(judge, spec, items)
                best = min(best, elapsed)
            timings[label], choices[label] = best, picked
        same = choices["full pass per label"] == choices["prompt once"]
        speedup = timings["full pass per label"] / timings["prompt once"]
        print(f"  {name}: full pass per label {args.rollouts / timings['full pass per label']:.2f} rollouts/s, "
              f"prompt once {args.rollouts / timings['prompt once']:.2f} rollouts/s, {speedup:.2f}x, "
              f"same labels: {same}")
        emit("local judge", f"{name}: speed-up vs full pass per label", speedup, 1.5, higher_is_better=True, unit="×")
        if not same:
            raise SystemExit(f"labels differ: {choices}")


if __name__ == "__main__":
    main()
