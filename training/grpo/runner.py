"""Run GRPO with TRL's `GRPOTrainer` and report every step to a sink.

What this adds to plain TRL, and how:

* Metrics: a `TrainerCallback` forwards everything TRL logs (reward, reward_std, rewards/<criterion>/mean, kl,
  entropy, clip ratios, completion lengths, frac_reward_zero_std, step_time, loss, ...) plus our timing split.
* Samples: the reward functions are wrapped. TRL calls every reward function with the prompts and completions of
  the generation batch, so the wrappers see exactly what was scored and what each criterion returned — through the
  public reward-function contract, not TRL's private completion buffers.
* Timing: a thin `GRPOTrainer` subclass times `_generate` and `_calculate_rewards`; the update is the rest of the
  step. If a TRL upgrade renames those methods, training still works and the split reads as missing.
* Cancel: `sink.should_stop()` is checked after every step and before every generation; a stop before generation
  aborts the step before its update, so the model saved at the end is a consistent one.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import AutoTokenizer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from trl import GRPOTrainer
from trl.trainer.utils import is_async_callable

from training.grpo.config import GRPORunConfig, to_trl_config
from training.grpo.rewards import DEFAULT_MODELS_DIR, RewardFunction, reward_name
from training.grpo.sinks import RunSink, RunStatus, Sample, clean_number
from training.models import resolve_model

logger = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised inside a step when the sink asks to stop before the next generation."""


@dataclass
class RunResult:
    status: RunStatus
    steps: int
    output_dir: str
    final_model: str | None
    log_history: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------------------
# Reward wrappers that record what was scored (which functions: training.grpo.rewards)


@dataclass
class _RewardCall:
    """One call TRL made to one reward function: what it scored and what came back."""

    name: str
    prompts: list[Any]
    completions: list[Any]
    kwargs: dict[str, Any]
    values: list[float | None]
    seconds: float


class _RewardRecorder:
    """Collects the reward-function calls of the current step; the callback drains them at the step's end.

    With several processes each rank records its own share of the batch; only rank 0 reports samples.
    """

    def __init__(self) -> None:
        self.calls: list[_RewardCall] = []

    def record(
        self,
        name: str,
        prompts: list[Any],
        completions: list[Any],
        kwargs: dict[str, Any],
        values: Any,
        seconds: float,
    ) -> None:
        floats = [None if v is None else float(v) for v in values]
        self.calls.append(_RewardCall(name, prompts, completions, kwargs, floats, seconds))

    def drain(self) -> list[_RewardCall]:
        calls, self.calls = self.calls, []
        return calls


class _RecordedReward:
    """A reward function that reports each call to the recorder. `__name__` is what TRL names the metric after."""

    def __init__(self, func: RewardFunction, name: str, recorder: _RewardRecorder) -> None:
        self.func = func
        self.recorder = recorder
        self.__name__ = name

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:
        start = time.perf_counter()
        values = self.func(prompts=prompts, completions=completions, **kwargs)
        self.recorder.record(self.__name__, prompts, completions, kwargs, values, time.perf_counter() - start)
        return values


class _AsyncRecordedReward(_RecordedReward):
    # TRL runs async reward functions (LM judges) concurrently on its event loop; it detects them by `__call__`.
    async def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> Any:
        start = time.perf_counter()
        values = await self.func(prompts=prompts, completions=completions, **kwargs)
        self.recorder.record(self.__name__, prompts, completions, kwargs, values, time.perf_counter() - start)
        return values


def _wrap_reward(func: RewardFunction, name: str, recorder: _RewardRecorder) -> RewardFunction:
    return (_AsyncRecordedReward if is_async_callable(func) else _RecordedReward)(func, name, recorder)


def _completion_text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    # Conversational completions are message lists; the rollout text is the assistant content.
    return "".join(str(m.get("content") or "") for m in completion if isinstance(m, dict))


def _build_samples(
    calls: list[_RewardCall], names: list[str], weights: list[float], num_generations: int
) -> list[Sample]:
    # All reward functions of one generation batch get the same completions list object; group calls by it.
    batches: dict[int, dict[str, Any]] = {}
    for call in calls:
        batch = batches.setdefault(
            id(call.completions),
            {"prompts": call.prompts, "completions": call.completions, "kwargs": call.kwargs, "values": {}},
        )
        batch["values"][call.name] = call.values
    samples: list[Sample] = []
    for batch in batches.values():
        example_ids = batch["kwargs"].get("example_id") or [None] * len(batch["completions"])
        for i, (prompt, completion) in enumerate(zip(batch["prompts"], batch["completions"], strict=True)):
            per_criterion = {name: _finite(batch["values"].get(name, [None] * (i + 1))[i]) for name in names}
            present = [
                (value, w)
                for name, w in zip(names, weights, strict=True)
                if (value := per_criterion[name]) is not None
            ]
            # TRL's aggregation: weighted sum over the criteria that returned a value (None = not applicable). Where
            # no criterion applies TRL counts 0; the sample says None so a reviewer sees it was not scored.
            total = sum((v * w for v, w in present), 0.0) if present else None
            samples.append(
                Sample(
                    prompt=prompt,
                    completion=_completion_text(completion),
                    rewards_per_criterion=per_criterion,
                    total=total,
                    group=i // num_generations,
                    sample_index=i % num_generations,
                    example_id=example_ids[i],
                )
            )
    return samples


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# ------------------------------------------------------------------------------------------------------------
# Trainer subclass (timing + stop before generation) and the reporting callback


@dataclass
class _StepTimes:
    generation: float = 0.0
    reward: float = 0.0
    measured_generation: bool = False
    measured_reward: bool = False

    def reset(self) -> None:
        self.generation = self.reward = 0.0
        self.measured_generation = self.measured_reward = False


class RubriconGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` that times generation and reward computation and can stop before a generation."""

    def __init__(self, *args: Any, stop_check: Callable[[], bool] | None = None, **kwargs: Any) -> None:
        self.step_times = _StepTimes()
        self._stop_check = stop_check
        super().__init__(*args, **kwargs)

    def stop_requested(self) -> bool:
        """The main process decides; with several processes every rank gets the same answer, or collectives hang."""
        local = bool(self._stop_check and self.accelerator.is_main_process and self._stop_check())
        if self.accelerator.num_processes > 1:
            flag = torch.tensor([1.0 if local else 0.0], device=self.accelerator.device)
            torch.distributed.broadcast(flag, src=0)
            return bool(flag.item())
        return local

    def _generate_and_score_completions(self, inputs: Any) -> Any:
        if self.model is not None and self.model.training and self.stop_requested():
            raise StopRequested
        return super()._generate_and_score_completions(inputs)

    def _generate(self, prompts: list[Any]) -> Any:
        start = time.perf_counter()
        try:
            return super()._generate(prompts)
        finally:
            self.step_times.generation += time.perf_counter() - start
            self.step_times.measured_generation = True

    def _calculate_rewards(
        self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any
    ) -> Any:
        start = time.perf_counter()
        try:
            return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            self.step_times.reward += time.perf_counter() - start
            self.step_times.measured_reward = True


class SinkCallback(TrainerCallback):
    """Sends each logged step's metrics, timing split, samples and checkpoints to the sink; stops on request."""

    def __init__(
        self,
        sink: RunSink,
        recorder: _RewardRecorder,
        names: list[str],
        weights: list[float],
        num_generations: int,
        sample_every: int,
    ) -> None:
        self.sink = sink
        self.recorder = recorder
        self.names = names
        self.weights = weights
        self.num_generations = num_generations
        self.sample_every = sample_every
        self.trainer: RubriconGRPOTrainer | None = None
        self._step_start = 0.0
        self._timings: list[dict[str, float | None]] = []
        self._next_sample_step = 1
        self.summary: dict[str, float | int | None] = {}

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._step_start = time.perf_counter()
        if self.trainer is not None:
            self.trainer.step_times.reset()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        step_seconds = time.perf_counter() - self._step_start
        times = self.trainer.step_times if self.trainer is not None else _StepTimes()
        generation = times.generation if times.measured_generation else None
        reward = times.reward if times.measured_reward else None
        self._timings.append(
            {
                "timing/step_s": step_seconds,
                "timing/generation_s": generation,
                "timing/reward_s": reward,
                # The update is what remains: log-probabilities, loss, backward and optimizer step.
                "timing/update_s": max(0.0, step_seconds - (generation or 0.0) - (reward or 0.0)),
            }
        )
        calls = self.recorder.drain()
        for call in calls:
            # Per-criterion time shows which judge slows a step; async judges overlap, so these can sum past reward_s.
            key = f"timing/reward/{call.name}_s"
            self._timings[-1][key] = (self._timings[-1].get(key) or 0.0) + call.seconds
        if calls and state.is_world_process_zero and state.global_step >= self._next_sample_step:
            self.sink.samples(
                state.global_step, _build_samples(calls, self.names, self.weights, self.num_generations)
            )
            self._next_sample_step = state.global_step + self.sample_every
        if self.trainer is not None and self.trainer.stop_requested():
            control.should_training_stop = True

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if "train_runtime" in logs:
            # Trainer's end-of-run summary reuses the last step number; it belongs to the outcome, not a step row
            # (TrainingMetric is unique per run and step).
            self.summary = {k: clean_number(v) for k, v in logs.items()}
            return
        values: dict[str, float | None] = {k: clean_number(v) for k, v in logs.items()}
        if self._timings:
            # Averaged over the steps since the last log (one step with logging_steps=1).
            for key in dict.fromkeys(k for t in self._timings for k in t):
                measured = [value for t in self._timings if (value := t.get(key)) is not None]
                values[key] = sum(measured) / len(measured) if measured else None
            self._timings = []
        self.sink.metrics(state.global_step, values)
        logger.info(
            "step %s reward=%s step_s=%.2f (generation %s, reward %s, update %s)",
            state.global_step,
            values.get("reward"),
            values.get("timing/step_s") or 0.0,
            _fmt(values.get("timing/generation_s")),
            _fmt(values.get("timing/reward_s")),
            _fmt(values.get("timing/update_s")),
        )

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self.sink.checkpoint(
                state.global_step, str(Path(args.output_dir or ".") / f"checkpoint-{state.global_step}")
            )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


# ------------------------------------------------------------------------------------------------------------
# Data


def build_dataset(config: GRPORunConfig, tokenizer: Any) -> Dataset:
    """Examples as a TRL conversational prompt dataset; refuses prompts longer than max_prompt_length."""
    rows = []
    too_long: list[tuple[int, int]] = []
    for index, example in enumerate(config.examples):
        if isinstance(example.prompt, str):
            messages = [{"role": "user", "content": example.prompt}]
            if config.system_prompt:
                messages.insert(0, {"role": "system", "content": config.system_prompt})
        else:
            messages = example.prompt
        if config.max_prompt_length is not None:
            length = len(
                tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, tokenize=True, return_dict=True
                )["input_ids"]
            )
            if length > config.max_prompt_length:
                too_long.append((index, length))
        rows.append({"prompt": messages, "answer": example.answer, "example_id": example.example_id})
    if too_long:
        longest = max(length for _, length in too_long)
        raise ValueError(
            f"{len(too_long)} example(s) have prompts longer than max_prompt_length ({config.max_prompt_length} "
            f"tokens), the longest {longest} (example #{too_long[0][0]} is one): raise max_prompt_length to at least "
            f"{longest} or shorten those prompts."
        )
    return Dataset.from_list(rows)


def _peft_config(config: GRPORunConfig) -> Any:
    if config.lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        task_type="CAUSAL_LM",
    )


# ------------------------------------------------------------------------------------------------------------
# The run

TRAINER_STATE_FILE = "trainer_state.json"  # what makes a checkpoint directory resumable


def resume_step(checkpoint: str | Path) -> int:
    """The step a run resumed from `checkpoint` starts at; a directory that cannot be resumed says why."""
    state_file = Path(checkpoint) / TRAINER_STATE_FILE
    if not state_file.is_file():
        reason = "does not exist" if not Path(checkpoint).exists() else f"has no {TRAINER_STATE_FILE}"
        raise ValueError(
            f"Cannot resume from {checkpoint}: it {reason}. Resume from a checkpoint-N directory saved during "
            "training (save_steps, or a stopped run); a final model has no optimizer state, and save_total_limit "
            "deletes older checkpoints."
        )
    return int(json.loads(state_file.read_text(encoding="utf-8")).get("global_step") or 0)



def run_grpo(
    config: GRPORunConfig,
    reward_funcs: Sequence[RewardFunction],
    reward_weights: Sequence[float] | None,
    sink: RunSink,
    *,
    output_dir: str | Path,
    models_dir: str | Path = DEFAULT_MODELS_DIR,
    callbacks: Sequence[TrainerCallback] = (),
) -> RunResult:
    """Train with GRPO until max_steps/epochs or until the sink asks to stop; the sink hears the outcome.

    ``reward_funcs`` are TRL reward functions (from the rubric engine, or `load_reward_refs`); their names
    (``__name__``) become the per-criterion metric keys ``rewards/<name>/mean``.
    """
    if not reward_funcs:
        raise ValueError(
            "A GRPO run needs at least one reward function (from the rubric, or config.rewards)."
        )
    weights = [float(w) for w in reward_weights] if reward_weights is not None else [1.0] * len(reward_funcs)
    if len(weights) != len(reward_funcs):
        raise ValueError(
            f"reward_weights has {len(weights)} values for {len(reward_funcs)} reward functions: give one weight each."
        )
    names = [reward_name(f) for f in reward_funcs]
    if len(set(names)) != len(names):
        raise ValueError(f"reward function names must be unique (they name the metrics); got {names}.")

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    try:
        start_step = resume_step(config.resume_from_checkpoint) if config.resume_from_checkpoint else 0
        model_path = resolve_model(config.model, models_dir=Path(models_dir))
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        dataset = build_dataset(config, tokenizer)
        trl_config = to_trl_config(config, output_dir=output)
        trl_config.reward_weights = weights
        recorder = _RewardRecorder()
        callback = SinkCallback(sink, recorder, names, weights, config.num_generations, config.sample_every)
        trainer = RubriconGRPOTrainer(
            model=model_path,
            reward_funcs=[_wrap_reward(f, n, recorder) for f, n in zip(reward_funcs, names, strict=True)],
            args=trl_config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[callback, *callbacks],
            peft_config=_peft_config(config),
            stop_check=sink.should_stop,
        )
        callback.trainer = trainer
    except Exception as error:
        sink.finished("failed", {"error": f"{type(error).__name__}: {error}", "phase": "setup"})
        raise

    status: RunStatus = "completed"
    try:
        trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
        if trainer.control.should_training_stop and trainer.state.global_step < trainer.state.max_steps:
            status = "stopped"
    except StopRequested:
        status = "stopped"
    except Exception as error:
        sink.finished(
            "failed",
            {
                "error": f"{type(error).__name__}: {error}",
                "phase": "train",
                "step": trainer.state.global_step,
            },
        )
        raise

    final_model = None
    step = trainer.state.global_step
    if status == "stopped" and config.save_final and step > start_step:
        # A stopped run can be resumed from where it stopped: a full checkpoint (optimizer, scheduler, RNG and
        # trainer state), not only the weights. Both stop points are between updates, so the state is consistent.
        resumable = output / f"checkpoint-{step}"
        if not (resumable / TRAINER_STATE_FILE).is_file():
            trainer._save_checkpoint(trainer.model, trial=None)
        if trainer.accelerator.is_main_process:
            sink.checkpoint(step, str(resumable))
    if config.save_final and step > start_step:
        final_model = str(output / "final")
        trainer.save_model(final_model)
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(final_model)
            sink.checkpoint(trainer.state.global_step, final_model)
    result = RunResult(
        status, trainer.state.global_step, str(output), final_model, list(trainer.state.log_history)
    )
    sink.finished(status, {"steps": result.steps, "final_model": final_model, "summary": callback.summary})
    return result
