"""A rubric as TRL GRPO reward functions: `(prompts, completions, **kwargs) -> list[float | None]`.

    rewards = build_reward_functions(spec, judge=None, python_allowlist=(), count_tokens=None,
                                     reference_column="answer", mode="auto")
    GRPOTrainer(..., reward_funcs=rewards.funcs, args=GRPOConfig(..., reward_weights=rewards.weights))
    rewards.names   # criterion keys (and "rubric_total"), as TRL logs them: rewards/<name>/mean

Each function is a picklable callable object whose `__name__` is the criterion key, so TRL logs one reward column
per criterion. Programmatic criteria give synchronous functions; judge criteria (and async Python rewards) give
async ones, which TRL 1.16 runs concurrently on its own event loop. None (→ NaN in TRL) means "not scored".

Modes:
- "per_criterion": one function per criterion, weights = criterion weight / sum of weights. TRL's weighted sum then
  equals the engine's total (the weighted mean). Weight-0 criteria are logged with weight 0.
- "total": one "rubric_total" function (weight 1) that applies gates, plus every criterion at weight 0 as metrics.
- "auto" (default): "total" when the spec has gates (a weighted sum cannot express them), else "per_criterion".

The per-criterion and total functions share judge calls: the judge is wrapped in a CachedJudge (in-memory unless
the caller passes one already), whose in-flight de-duplication makes each judge prompt one call per step.

Dataset columns arrive as kwargs: `reference_column` (default "answer"; falls back to "reference", "solution")
is the reference answer, "info" (a dict per row) is passed through, and TRL's `completion_ids` give exact token
counts for token-length criteria. Rows with the same prompt form a group for group-relative judging.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from training.judges.base import CachedJudge, JudgeBackend
from training.rubrics.engine import RubricEngine, TokenCounter, judge_batches
from training.rubrics.spec import JudgeCriterion, PythonCriterion, RubricSpec, resolve_function
from training.rubrics.types import Rollout

TOTAL_NAME = "rubric_total"
_REFERENCE_FALLBACKS = ("reference", "solution", "answer")


def rollouts_from_trl(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    kwargs: dict[str, Any],
    reference_column: str = "answer",
) -> list[Rollout]:
    columns = [reference_column, *[c for c in _REFERENCE_FALLBACKS if c != reference_column]]
    references = next((kwargs[c] for c in columns if kwargs.get(c) is not None), None)
    infos = kwargs.get("info")
    completion_ids = kwargs.get("completion_ids")
    rollouts = []
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        reference = references[i] if references is not None else None
        info = infos[i] if isinstance(infos, list | tuple) and isinstance(infos[i], dict) else {}
        rollouts.append(
            Rollout.from_chat(
                prompt,
                completion,
                reference=None if reference is None else str(reference),
                info=info,
                completion_tokens=len(completion_ids[i]) if completion_ids is not None else None,
                group_id=json.dumps(prompt, sort_keys=True, default=str),
            )
        )
    return rollouts


class CriterionReward:
    """Synchronous reward for one programmatic criterion."""

    def __init__(self, engine: RubricEngine, key: str, reference_column: str) -> None:
        self.engine = engine
        self.key = key
        self.reference_column = reference_column
        self.__name__ = key

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        rollouts = rollouts_from_trl(prompts, completions, kwargs, self.reference_column)
        return [self.engine.score_criterion(self.key, r).score for r in rollouts]


class AsyncCriterionReward(CriterionReward):
    """Async reward for one judge criterion (or async Python reward)."""

    async def __call__(  # type: ignore[override]
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        rollouts = rollouts_from_trl(prompts, completions, kwargs, self.reference_column)
        criterion = self.engine.spec.criterion(self.key)
        if not isinstance(criterion, JudgeCriterion):
            scores = [await self.engine.ascore_criterion(self.key, r) for r in rollouts]
            return [s.score for s in scores]
        # Ask the same batch of criteria the engine would, so sibling rewards share each call through the cache.
        batch = next(b for b in judge_batches(self.engine.spec) if criterion in b)
        if self.engine.spec.judge.group_relative:
            groups: dict[str | None, list[int]] = {}
            for i, r in enumerate(rollouts):
                groups.setdefault(r.group_id, []).append(i)
            results: list[float | None] = [None] * len(rollouts)
            judged = await asyncio.gather(
                *[
                    self.engine.ajudge_group(batch, [rollouts[i] for i in members])
                    for members in groups.values()
                ]
            )
            for members, per_rollout in zip(groups.values(), judged, strict=True):
                for i, by_key in zip(members, per_rollout, strict=True):
                    results[i] = by_key[self.key].score
            return results
        judged_one = await asyncio.gather(*[self.engine.ajudge(batch, r) for r in rollouts])
        return [by_key[self.key].score for by_key in judged_one]


class TotalReward:
    """The rubric total (weighted mean with gates), synchronous for programmatic rubrics."""

    __name__ = TOTAL_NAME

    def __init__(self, engine: RubricEngine, reference_column: str) -> None:
        self.engine = engine
        self.reference_column = reference_column

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        rollouts = rollouts_from_trl(prompts, completions, kwargs, self.reference_column)
        return [self.engine.score(r).total for r in rollouts]


class AsyncTotalReward(TotalReward):
    async def __call__(  # type: ignore[override]
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        rollouts = rollouts_from_trl(prompts, completions, kwargs, self.reference_column)
        return [s.total for s in await self.engine.ascore_many(rollouts)]


@dataclass
class RewardFunctions:
    funcs: list[Callable[..., Any]]
    weights: list[float]
    engine: RubricEngine

    @property
    def names(self) -> list[str]:
        return [f.__name__ for f in self.funcs]


def _is_async(criterion: Any) -> bool:
    if isinstance(criterion, JudgeCriterion):
        return True
    if isinstance(criterion, PythonCriterion):
        try:
            return inspect.iscoroutinefunction(resolve_function(criterion.function))
        except (ImportError, AttributeError):
            return False
    return False


def build_reward_functions(
    spec: RubricSpec,
    *,
    judge: JudgeBackend | None = None,
    python_allowlist: Iterable[str] = (),
    count_tokens: TokenCounter | None = None,
    reference_column: str = "answer",
    mode: str = "auto",
) -> RewardFunctions:
    if mode not in ("auto", "per_criterion", "total"):
        raise ValueError(f"mode must be 'auto', 'per_criterion' or 'total', got {mode!r}")
    if spec.judge_criteria and judge is None:
        raise ValueError(
            "this rubric has judge criteria: pass judge=... (e.g. OpenAIJudge or TransformersJudge)"
        )
    if judge is not None and not isinstance(judge, CachedJudge):
        judge = CachedJudge(judge)
    engine = RubricEngine(spec, judge=judge, python_allowlist=python_allowlist, count_tokens=count_tokens)
    per_criterion: list[Callable[..., Any]] = [
        (AsyncCriterionReward if _is_async(c) else CriterionReward)(engine, c.key, reference_column)
        for c in spec.criteria
    ]
    if mode == "auto":
        mode = "total" if spec.gates else "per_criterion"
    if mode == "per_criterion":
        total_weight = sum(c.weight for c in spec.criteria)
        return RewardFunctions(per_criterion, [c.weight / total_weight for c in spec.criteria], engine)
    needs_async = any(_is_async(c) for c in spec.criteria)
    total = (AsyncTotalReward if needs_async else TotalReward)(engine, reference_column)
    return RewardFunctions([total, *per_criterion], [1.0] + [0.0] * len(per_criterion), engine)
