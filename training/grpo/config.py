"""Typed GRPO run configuration, presets, and the mapping onto TRL's `GRPOConfig`.

The config is what the launch form validates, what `TrainingRun.config` stores as JSON, and what
`python -m training.grpo.run --config config.json` reads on a GPU node, so it is plain pydantic with a help text per
field and validation messages that say how to fix the value. TRL is imported only inside `to_trl_config`: the web
process validates configs without torch installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from trl import GRPOConfig

PresetName = Literal["cpu-smoke", "single-gpu", "multi-gpu"]
LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"]


class _Strict(BaseModel):
    # A typo in a stored JSON config must fail loudly, not silently fall back to a default.
    model_config = ConfigDict(extra="forbid")


class ExampleRow(_Strict):
    """One training example: a prompt and, when the task has one, its reference answer."""

    prompt: str | list[dict[str, Any]] = Field(
        description="The user prompt as text, or a full chat message list ([{'role': 'user', 'content': ...}])."
    )
    answer: str | None = Field(
        default=None, description="Reference answer; reward functions receive it as the `answer` keyword."
    )
    example_id: str | None = Field(
        default=None,
        description="Id of the Example row this came from, echoed in sample completions so they can be stored as "
        "rollouts of that example.",
    )


class RewardRef(_Strict):
    """A reward function named by import path, for runs launched from a JSON file without a rubric engine."""

    function: str = Field(
        description="Import path 'package.module:function' of a TRL reward function "
        "(prompts, completions, **kwargs) -> list[float | None]."
    )
    weight: float = Field(default=1.0, description="Weight of this reward in the total reward.")
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments: when given, the import path must name a factory returning the reward function.",
    )


class JudgeEndpoint(_Strict):
    """The OpenAI-compatible server the rubric's LM-judge criteria call during training."""

    base_url: str = Field(description="Base URL of the OpenAI-compatible API, e.g. http://judge:8000/v1.")
    model: str = Field(description="Model name the judge server expects.")
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable holding the API key (never the key itself).",
    )
    max_concurrency: int = Field(default=16, ge=1, description="Judge requests in flight at once.")
    timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one judge request, in seconds.")


class LocalJudge(_Strict):
    """A judge model loaded by the training process itself (the project's local transformers or vLLM endpoint, such as
    the bundled model): no server to run. `engine="transformers"` scores in-process; `engine="vllm"` starts vLLM's
    OpenAI-compatible server on a loopback port as a child of the training process, and stops it when the run ends."""

    model: str = Field(description="Model directory (resolved and checked by the launcher), or 'bundled'.")
    engine: Literal["transformers", "vllm"] = Field(default="transformers", description="How the judge is run.")
    max_new_tokens: int = Field(default=512, ge=1, description="Most tokens of one judge answer.")
    temperature: float = Field(default=0.0, ge=0.0, description="Judge sampling temperature (0 = greedy).")
    enforce_eager: bool = Field(default=True, description="vLLM: skip CUDA graph capture (starts much faster).")
    start_timeout_s: float = Field(default=600.0, gt=0, description="vLLM: how long the server may take to start.")


class LoraOptions(_Strict):
    """LoRA adapters (peft) instead of a full fine-tune: less memory, smaller checkpoints."""

    r: int = Field(default=16, ge=1, description="Rank of the LoRA update matrices.")
    alpha: int = Field(default=32, ge=1, description="LoRA scaling factor (lora_alpha).")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA layers.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default="all-linear", description="Module names to adapt, or 'all-linear' for every linear layer."
    )


class GRPORunConfig(_Strict):
    """Everything one GRPO run needs, independent of Django and of where it runs."""

    preset: PresetName | None = Field(
        default=None, description="Preset this config started from, for the record."
    )

    # Model and data
    model: str = Field(
        default="bundled",
        description="Base model: 'bundled' (SmolLM2-135M-Instruct shipped with Rubricon), a local directory, a "
        "checkpoint directory of an earlier run, or a Hugging Face hub id (needs network access).",
    )
    examples: list[ExampleRow] = Field(
        min_length=1, description="Training examples (the task's train split), passed in by the launcher."
    )
    system_prompt: str | None = Field(
        default=None, description="System message put before each text prompt (the task's system prompt)."
    )
    rubric: dict[str, Any] | None = Field(
        default=None,
        description="Rubric version spec the rewards come from; kept with the run so its rewards can be explained.",
    )
    rubric_version_id: int | None = Field(default=None, description="RubricVersion the spec belongs to.")
    python_allowlist: list[str] = Field(
        default_factory=list,
        description="Dotted paths of Python reward functions the rubric may call (the app passes its "
        "RUBRICON_PYTHON_REWARD_ALLOWLIST setting); anything else in a `python` criterion is refused.",
    )
    rewards: list[RewardRef] = Field(
        default_factory=list,
        description="Reward functions by import path, used by the command-line entry point when the caller does "
        "not pass reward functions itself.",
    )
    judge: JudgeEndpoint | None = Field(default=None, description="Judge endpoint for LM-judge criteria.")
    local_judge: LocalJudge | None = Field(
        default=None, description="A local judge model for LM-judge criteria, instead of `judge` (an HTTP endpoint)."
    )

    # GRPO
    num_generations: int = Field(
        default=8,
        ge=2,
        description="Completions sampled per prompt (the group size G). GRPO needs at least 2.",
    )
    per_device_train_batch_size: int = Field(
        default=8, ge=1, description="Completions per device per forward/backward pass."
    )
    gradient_accumulation_steps: int = Field(default=1, ge=1, description="Micro-batches per optimizer step.")
    generation_batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Completions generated at once; defaults to per_device_train_batch_size × num_processes × "
        "gradient_accumulation_steps. Must hold whole groups.",
    )
    num_processes: int = Field(
        default=1,
        ge=1,
        description="Training processes (GPUs) under `accelerate launch`; 1 on a single device.",
    )
    max_prompt_length: int | None = Field(
        default=512,
        ge=1,
        description="Longest prompt in tokens (after the chat template). Longer prompts are refused before the run "
        "starts, so no example is silently cut.",
    )
    max_completion_length: int = Field(default=256, ge=1, description="Most tokens generated per completion.")
    temperature: float = Field(default=1.0, gt=0.0, description="Sampling temperature for the rollouts.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling for the rollouts.")
    learning_rate: float = Field(default=1e-6, gt=0.0, description="Peak learning rate of AdamW.")
    beta: float = Field(
        default=0.0,
        ge=0.0,
        description="KL penalty towards the base model. 0 skips loading a reference model (faster, less memory); "
        "0.001–0.04 keeps the policy close to the base.",
    )
    loss_type: LossType = Field(
        default="dapo",
        description="Loss aggregation: 'dapo' (token-level, no length bias; TRL default), 'dr_grpo', 'grpo' "
        "(per-sequence mean, length-biased), 'bnpo', 'cispo', 'sapo'.",
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        default="group",
        description="Divide advantages by the reward std of the group, of the batch, or not at all ('none', as "
        "Dr. GRPO recommends).",
    )
    epsilon: float = Field(default=0.2, gt=0.0, description="Lower clipping range of the importance ratio.")
    epsilon_high: float | None = Field(
        default=None, gt=0.0, description="Upper clipping range (DAPO's clip-higher); defaults to epsilon."
    )
    num_iterations: int = Field(
        default=1, ge=1, description="Optimizer passes over each generated batch (μ)."
    )
    mask_truncated_completions: bool = Field(
        default=False, description="Leave completions cut at max_completion_length out of the loss."
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="Optimizer steps to run; when empty, num_train_epochs decides."
    )
    num_train_epochs: float = Field(
        default=1.0, gt=0.0, description="Passes over the examples when max_steps is empty."
    )
    lora: LoraOptions | None = Field(default=None, description="Train LoRA adapters instead of all weights.")

    # Rollout engine
    use_vllm: bool = Field(default=False, description="Generate rollouts with vLLM (GPU nodes).")
    vllm_mode: Literal["colocate", "server"] = Field(
        default="colocate",
        description="'colocate': vLLM shares the training GPUs in this process; 'server': a separate "
        "`trl vllm-serve` process answers generation requests.",
    )
    vllm_server_base_url: str | None = Field(
        default=None, description="URL of the `trl vllm-serve` server in server mode, e.g. http://gpu2:8000."
    )
    vllm_gpu_memory_utilization: float = Field(
        default=0.3, gt=0.0, le=1.0, description="Share of GPU memory vLLM may take in colocate mode."
    )

    # Precision and hardware
    bf16: bool = Field(default=False, description="Train in bfloat16 mixed precision (Ampere or newer GPUs).")
    gradient_checkpointing: bool = Field(
        default=False, description="Recompute activations in the backward pass: less memory, ~30 % slower."
    )
    use_cpu: bool = Field(default=False, description="Train on CPU even when a GPU is present.")

    # Bookkeeping
    seed: int = Field(default=42, description="Seed for sampling, shuffling and initialisation.")
    save_steps: int | None = Field(
        default=None, ge=1, description="Save a checkpoint every N steps; empty saves only at the end."
    )
    save_total_limit: int | None = Field(default=3, ge=1, description="Keep at most this many checkpoints.")
    save_final: bool = Field(
        default=True,
        description="Save the final model when the run ends; a stopped run also saves a resumable checkpoint.",
    )
    resume_from_checkpoint: str | None = Field(
        default=None,
        description="A checkpoint-N directory of an earlier run (with its optimizer and trainer state) to continue "
        "from: training restarts at step N with the weights, optimizer, scheduler and data order of that moment. "
        "`model` stays the run's base model (the reference model when beta > 0).",
    )
    logging_steps: int = Field(default=1, ge=1, description="Report metrics every N steps.")
    sample_every: int = Field(
        default=1,
        ge=1,
        description="Report the sampled completions with their per-criterion rewards every N steps.",
    )

    @model_validator(mode="after")
    def _check_batch_shape(self) -> GRPORunConfig:
        global_batch = self.per_device_train_batch_size * self.num_processes
        if self.generation_batch_size is None:
            generation_batch = global_batch * self.gradient_accumulation_steps
            source = (
                f"per_device_train_batch_size ({self.per_device_train_batch_size}) × num_processes "
                f"({self.num_processes}) × gradient_accumulation_steps ({self.gradient_accumulation_steps})"
            )
        else:
            generation_batch = self.generation_batch_size
            source = f"generation_batch_size ({generation_batch})"
            if generation_batch % global_batch:
                raise ValueError(
                    f"generation_batch_size ({generation_batch}) must be divisible by per_device_train_batch_size × "
                    f"num_processes ({global_batch}): use {max(global_batch, generation_batch // global_batch * global_batch)}."
                )
        if generation_batch % self.num_generations:
            raise ValueError(
                f"generation_batch_size ({generation_batch}) must be divisible by num_generations "
                f"({self.num_generations}); it comes from {source}. Make it a multiple of {self.num_generations}, "
                f"or set num_generations to a divisor of {generation_batch}."
            )
        return self

    @model_validator(mode="after")
    def _check_judge(self) -> GRPORunConfig:
        if self.judge is not None and self.local_judge is not None:
            raise ValueError("Give either judge (an HTTP endpoint) or local_judge (a local model), not both.")
        return self

    @model_validator(mode="after")
    def _check_vllm(self) -> GRPORunConfig:
        if self.use_vllm and self.use_cpu:
            raise ValueError("use_vllm needs a GPU node but use_cpu is set: turn one of them off.")
        if self.vllm_mode == "server" and self.use_vllm and not self.vllm_server_base_url:
            raise ValueError(
                "vllm_mode 'server' needs vllm_server_base_url (the `trl vllm-serve` address, e.g. http://gpu2:8000)."
            )
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ValueError(
                f"epsilon_high ({self.epsilon_high}) must be at least epsilon ({self.epsilon}); leave it empty to use "
                "epsilon on both sides."
            )
        return self

    @property
    def effective_generation_batch_size(self) -> int:
        return self.generation_batch_size or (
            self.per_device_train_batch_size * self.num_processes * self.gradient_accumulation_steps
        )


PRESETS: dict[PresetName, dict[str, Any]] = {
    # Proves the whole path works on a laptop or CI box in about a minute; learns nothing useful.
    "cpu-smoke": {
        "num_generations": 4,
        "per_device_train_batch_size": 4,
        "max_prompt_length": 256,
        "max_completion_length": 32,
        "learning_rate": 1e-5,
        "max_steps": 2,
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "logging_steps": 1,
        "sample_every": 1,
        "save_steps": None,
    },
    # One recent GPU, the bundled model or up to ~1.5B with LoRA; vLLM shares the card.
    "single-gpu": {
        "num_generations": 8,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 4,
        "max_prompt_length": 512,
        "max_completion_length": 512,
        "learning_rate": 1e-6,
        "beta": 0.0,
        "max_steps": 500,
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.3,
        "bf16": True,
        "gradient_checkpointing": True,
        "save_steps": 100,
        "logging_steps": 1,
        "sample_every": 10,
    },
    # `accelerate launch` over 4 GPUs in one process tree, vLLM colocated on each.
    "multi-gpu": {
        "num_generations": 16,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 2,
        "num_processes": 4,
        "max_prompt_length": 1024,
        "max_completion_length": 1024,
        "learning_rate": 1e-6,
        "max_steps": 1000,
        "use_vllm": True,
        "vllm_mode": "colocate",
        "vllm_gpu_memory_utilization": 0.3,
        "bf16": True,
        "gradient_checkpointing": True,
        "save_steps": 100,
        "logging_steps": 1,
        "sample_every": 10,
    },
}


def config_from_preset(name: PresetName, **overrides: Any) -> GRPORunConfig:
    """A config from a preset; overrides (examples at least) win over the preset's values."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return GRPORunConfig.model_validate({**PRESETS[name], "preset": name, **overrides})


def to_trl_config(config: GRPORunConfig, *, output_dir: str | Path) -> GRPOConfig:
    """The TRL 1.16 `GRPOConfig` for this run. Reward weights are set by the runner, next to the functions."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(output_dir),
        # Generation and GRPO
        num_generations=config.num_generations,
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        generation_batch_size=config.generation_batch_size,
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_p=config.top_p,
        learning_rate=config.learning_rate,
        beta=config.beta,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
        num_iterations=config.num_iterations,
        mask_truncated_completions=config.mask_truncated_completions,
        max_steps=config.max_steps if config.max_steps is not None else -1,
        num_train_epochs=config.num_train_epochs,
        # Rollout engine
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode,
        vllm_server_base_url=config.vllm_server_base_url,
        vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        # Hardware
        bf16=config.bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        use_cpu=config.use_cpu,
        seed=config.seed,
        data_seed=config.seed,
        # Saving: our sink registers checkpoints, nothing is pushed anywhere.
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        # Logging goes to our callback and sink only: no wandb/tensorboard, no progress bar in the run log, no
        # rich-printed completion tables (the sink gets the samples).
        logging_steps=config.logging_steps,
        report_to="none",
        disable_tqdm=True,
        log_completions=False,
        remove_unused_columns=False,  # reward functions read the `answer` and `example_id` columns
        dataloader_num_workers=0,
    )
