"""Checkpoints of LoRA runs as loadable models.

A GRPO run with LoRA saves adapters only (adapter_config.json + adapter weights, no config.json). vLLM and the
transformers backend load a full model directory, so the adapter is merged into its base once, into `<dir>/merged`,
and that copy is what they load. Full fine-tune checkpoints are model directories already and pass through.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from pathlib import Path

from training.generation.types import GenerationError
from training.models import MODEL_LOAD_LOCK

MERGED_DIR = "merged"


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def merged_adapter_dir(adapter_dir: Path) -> Path:
    """`<adapter_dir>/merged`: the base model with the adapter merged in, written once (under a file lock, since
    several workers may ask at once) and reused after."""
    target = adapter_dir / MERGED_DIR
    if (target / "config.json").is_file():
        return target
    with open(adapter_dir / ".merge.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():
            return target
        try:
            with MODEL_LOAD_LOCK:
                import torch
                from peft import AutoPeftModelForCausalLM
                from transformers import AutoTokenizer
        except ImportError as exc:
            raise GenerationError("Loading a LoRA checkpoint needs torch, transformers and peft installed.") from exc
        try:
            with MODEL_LOAD_LOCK:  # not beside another load in this process (training/models.py)
                model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir, dtype=torch.float32)
            merged = model.merge_and_unload()
            staging = Path(tempfile.mkdtemp(prefix=".merging-", dir=adapter_dir))
            merged.save_pretrained(staging, safe_serialization=True)
            AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(staging)
        except Exception as exc:
            raise GenerationError(f"Could not merge the LoRA checkpoint {adapter_dir} into its base: {exc}") from exc
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # a reader sees the whole merged model or none of it
    return target
