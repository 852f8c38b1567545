"""GRPO step time: Rubricon's runner vs a plain TRL script with the identical config. Target: ratio ≤ 1.05.

    .venv/bin/python bench/grpo_step_time.py [--model tiny|bundled|PATH] [--steps 4] [--rounds 2]
                                             [--generations 4] [--completion-tokens 16] [--vllm]

Both variants get the same `GRPOConfig` (from `to_trl_config`), the same dataset, the same seed and the same
reward functions (the rubric engine's, for a programmatic rubric), so they generate the same completions. The
plain variant is `GRPOTrainer(...).train()` and nothing else; ours adds the sink callback, reward wrappers and the
timing subclass, writing JSON lines as a real run does. A step is timed as the wall interval between consecutive
optimizer steps (so logging and sink writes count); the first step of every run is warm-up and dropped. Rounds
alternate plain/ours to spread machine noise over both. Our runner's generation/reward/update split is printed too.
`--model tiny` builds a 2-layer model from SmolLM2's config (seconds per step on CPU); `bundled` is the real
135M model; `--vllm` runs colocated vLLM on a GPU node.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transformers import AutoTokenizer, TrainerCallback  # noqa: E402
from trl import GRPOTrainer  # noqa: E402

from training.grpo.config import GRPORunConfig, config_from_preset, to_trl_config  # noqa: E402
from training.grpo.rewards import rewards_from_config  # noqa: E402
from training.grpo.runner import build_dataset, run_grpo  # noqa: E402
from training.grpo.sinks import JsonlSink, read_jsonl  # noqa: E402
from training.models import ensure_bundled_model, resolve_model  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
RUBRIC = {
    "criteria": [
        {
            "key": "correct",
            "title": "Correct final answer",
            "kind": "match",
            "weight": 1.0,
            "extract": "last_number",
            "mode": "numeric",
            "tolerance": 0.0,
        },
        {"key": "short", "title": "At most 60 characters", "kind": "length", "weight": 0.25, "max": 60},
    ]
}


class StepClock(TrainerCallback):
    """Wall-clock time of each optimizer step, measured identically in both variants."""

    def __init__(self) -> None:
        self.marks: list[tuple[float, float]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.marks = [(time.perf_counter(), time.process_time())]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))

    def step_seconds(self) -> list[tuple[float, float]]:
        """(wall, CPU) seconds per step. CPU time is the work done, which machine load does not inflate much."""
        return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(self.marks, self.marks[1:], strict=False)]


def tiny_model(target: Path) -> Path:
    import torch
    from transformers import AutoConfig, LlamaForCausalLM

    bundled = ensure_bundled_model(REPO / "var" / "models")
    config = AutoConfig.from_pretrained(bundled)
    config.update(
        {
            "num_hidden_layers": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
        }
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(bundled).save_pretrained(target)
    return target


def plain_trl(
    config: GRPORunConfig, model: str, funcs: list[Any], weights: list[float], out: Path
) -> list[tuple[float, float]]:
    tokenizer = AutoTokenizer.from_pretrained(model)
    args = to_trl_config(config, output_dir=out)
    args.reward_weights = weights
    clock = StepClock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=build_dataset(config, tokenizer),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    return clock.step_seconds()


def ours(
    config: GRPORunConfig, model: str, funcs: list[Any], weights: list[float], out: Path
) -> tuple[list[tuple[float, float]], dict[str, float]]:
    clock = StepClock()
    sink = JsonlSink(out / "sink")
    run_grpo(
        config,
        funcs,
        weights,
        sink,
        output_dir=out / "run",
        models_dir=REPO / "var" / "models",
        callbacks=[clock],
    )
    rows = [r["metrics"] for r in read_jsonl(out / "sink" / "metrics.jsonl")][1:]
    split = {
        key: statistics.mean(r[key] for r in rows if r.get(key) is not None)
        for key in ("timing/step_s", "timing/generation_s", "timing/reward_s", "timing/update_s")
        if any(r.get(key) is not None for r in rows)
    }
    return clock.step_seconds(), split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="tiny | bundled | a model directory")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--completion-tokens", type=int, default=16)
    parser.add_argument("--vllm", action="store_true", help="colocated vLLM (GPU nodes)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = (
            str(tiny_model(tmp / "tiny"))
            if args.model == "tiny"
            else resolve_model(args.model, models_dir=REPO / "var" / "models")
        )
        examples = [
            {"prompt": f"What is {a} + {b}? Answer with the number.", "answer": str(a + b)}
            for a, b in [(2, 3), (7, 5), (12, 9), (4, 4), (31, 11), (6, 8), (15, 27), (9, 9)]
        ]
        overrides: dict[str, Any] = {
            "model": model,
            "examples": examples,
            "rubric": RUBRIC,
            "max_steps": args.steps,
            "num_generations": args.generations,
            "per_device_train_batch_size": args.generations,
            "max_completion_length": args.completion_tokens,
            "save_final": False,
            "save_steps": None,
        }
        if args.vllm:
            config = config_from_preset(
                "single-gpu", **overrides, gradient_accumulation_steps=1, vllm_gpu_memory_utilization=0.3
            )
        else:
            config = config_from_preset("cpu-smoke", **overrides)
        funcs, weights = rewards_from_config(config)

        plain_steps: list[tuple[float, float]] = []
        our_steps: list[tuple[float, float]] = []
        splits: list[dict[str, float]] = []
        for round_index in range(args.rounds):
            plain_steps += plain_trl(config, model, funcs, weights, tmp / f"plain-{round_index}")[1:]
            steps, split = ours(config, model, funcs, weights, tmp / f"ours-{round_index}")
            our_steps += steps[1:]
            splits.append(split)

    print(
        f"model={args.model} steps={args.steps} rounds={args.rounds} generations={args.generations} "
        f"completion_tokens={args.completion_tokens} vllm={args.vllm} threads={args.threads or 'default'}"
    )
    for index, label in ((0, "wall"), (1, "cpu")):
        plain = [s[index] for s in plain_steps]
        mine = [s[index] for s in our_steps]
        print(
            f"{label}: plain TRL median {statistics.median(plain):.3f}s [{', '.join(f'{s:.2f}' for s in plain)}]"
        )
        print(
            f"{label}: our runner median {statistics.median(mine):.3f}s [{', '.join(f'{s:.2f}' for s in mine)}]"
        )
        print(
            f"{label}: ratio ours/plain = {statistics.median(mine) / statistics.median(plain):.3f} (target <= 1.05)"
        )
    from bench._results import emit

    cpu_ratio = statistics.median(s[1] for s in our_steps) / statistics.median(s[1] for s in plain_steps)
    emit(f"GRPO step ({args.model})", "ours / plain TRL CPU s per step", cpu_ratio, 1.05, higher_is_better=False,
         unit="×")
    print("our runner's split (mean per step, warm-up dropped):")
    for key in splits[0]:
        print(f"  {key:22s} {statistics.mean(s[key] for s in splits):.3f}s")


if __name__ == "__main__":
    main()
