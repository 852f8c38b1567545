"""Our exports as TRL users load them: `datasets` reads the JSONL, Parquet and Hugging Face files exactly as a user
would, TRL recognises them as conversational under two PYTHONHASHSEEDs (its check picks a column from a set), and
one real step of SFTTrainer, DPOTrainer, RewardTrainer and GRPOTrainer runs on each, with a tiny model built from
the bundled SmolLM2 config. CSV cannot hold message lists (they are JSON text there), so it is not a TRL format."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.requires import installed
from tests.training.grpo.conftest import tiny_model_dir  # noqa: F401  (the shared tiny-model fixture)
from tests.webapp.exports.test_import_kinds import export_file

pytestmark = [pytest.mark.slow, installed("trl")]
FORMATS = ("jsonl", "parquet", "hf")
SYSTEM = {"role": "system", "content": "Answer in <answer> tags."}


def load(path: Path, format: str):
    """What a user writes to load the file."""
    import datasets

    if format == "hf":
        folder = path.parent / f"unzipped-{path.stem}"
        with zipfile.ZipFile(path) as archive:
            archive.extractall(folder)
        return datasets.load_from_disk(str(folder / "dataset"))
    return datasets.load_dataset("json" if format == "jsonl" else "parquet", data_files=str(path), split="train",
                                 cache_dir=str(path.parent / "hf-cache"))


DETECT = """
import json, sys, zipfile
from pathlib import Path
import datasets
from trl.data_utils import is_conversational
out = {}
for kind, format, path in json.loads(sys.argv[1]):
    path = Path(path)
    if format == "hf":
        folder = path.parent / f"detect-{path.stem}"
        with zipfile.ZipFile(path) as archive:
            archive.extractall(folder)
        data = datasets.load_from_disk(str(folder / "dataset"))
    else:
        data = datasets.load_dataset("json" if format == "jsonl" else "parquet", data_files=str(path),
                                     split="train", cache_dir=str(path.parent / "detect-cache"))
    out[f"{kind}-{format}"] = all(is_conversational(row) for row in data)
print(json.dumps(out))
"""


@pytest.fixture
def exports(scored) -> dict[tuple[str, str], Path]:
    for rollout in scored["rollouts"]:  # sampled with a system prompt, which the exports must keep
        rollout.prompt_messages = [SYSTEM, *rollout.prompt_messages]
        rollout.messages = [SYSTEM, *rollout.messages]
        rollout.save(update_fields=["prompt_messages", "messages"])
    return {(kind, format): export_file(scored["project"], kind, format, scored["version"])[0]
            for kind in ("sft", "preferences", "reward_pairs") for format in FORMATS}


@pytest.mark.django_db
def test_trl_sees_every_export_as_conversational_whatever_the_hash_seed(exports):
    files = json.dumps([[kind, format, str(path)] for (kind, format), path in exports.items()])
    seen = []
    for seed in ("0", "1"):
        done = subprocess.run([sys.executable, "-c", DETECT, files], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONHASHSEED": seed, "HF_DATASETS_OFFLINE": "1"})
        assert done.returncode == 0, done.stderr[-3000:]
        seen.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert seen[0] == seen[1] == {f"{kind}-{format}": True for kind, format in exports}


def _common(tmp_path: Path) -> dict:
    return {"output_dir": str(tmp_path / "out"), "max_steps": 1, "per_device_train_batch_size": 2,
            "report_to": [], "save_strategy": "no", "use_cpu": True, "logging_steps": 1,
            "dataloader_num_workers": 0}


def _ran_a_step(trainer) -> None:
    result = trainer.train()
    assert trainer.state.global_step == 1
    assert result.training_loss == result.training_loss  # a number, not NaN


@pytest.mark.django_db
@pytest.mark.parametrize("format", FORMATS)
def test_one_step_of_each_trl_trainer_on_our_exports(exports, format, tiny_model_dir, tmp_path):  # noqa: F811
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import (
        DPOConfig,
        DPOTrainer,
        GRPOConfig,
        GRPOTrainer,
        RewardConfig,
        RewardTrainer,
        SFTConfig,
        SFTTrainer,
    )

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token

    sft = load(exports[("sft", format)], format)
    assert sft[0]["messages"][0]["content"] == SYSTEM["content"]
    _ran_a_step(SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), processing_class=tokenizer,
                           train_dataset=sft, args=SFTConfig(**_common(tmp_path / "sft"), max_length=96)))

    preferences = load(exports[("preferences", format)], format)
    _ran_a_step(DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), processing_class=tokenizer,
                           train_dataset=preferences, args=DPOConfig(**_common(tmp_path / "dpo"), max_length=96)))

    pairs = load(exports[("reward_pairs", format)], format)
    scorer = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    scorer.config.pad_token_id = tokenizer.pad_token_id
    _ran_a_step(RewardTrainer(model=scorer, processing_class=tokenizer, train_dataset=pairs,
                              args=RewardConfig(**_common(tmp_path / "reward"), max_length=96)))

    def tagged(completions, **_):
        return [float("<answer>" in turn[-1]["content"]) for turn in completions]

    prompts = preferences.select_columns(["prompt"])
    _ran_a_step(GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model_dir), processing_class=tokenizer,
                            reward_funcs=tagged, train_dataset=prompts,
                            args=GRPOConfig(**_common(tmp_path / "grpo"), num_generations=2,
                                            max_completion_length=8)))
