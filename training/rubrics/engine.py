"""The scoring engine: a validated RubricSpec + rollouts → per-criterion scores and a weighted total.

    engine = RubricEngine(spec, judge=None, python_allowlist=(), count_tokens=None)
    engine.score(rollout) -> RolloutScore                        # programmatic-only rubrics, synchronous
    await engine.ascore(rollout) -> RolloutScore                 # any rubric; judge criteria go to `judge`
    await engine.ascore_many(rollouts) -> list[RolloutScore]     # concurrent; group-relative judging by group_id
    engine.score_criterion(key, rollout) / await engine.ascore_criterion(key, rollout) -> CriterionResult
    engine.judge_fingerprint -> str | None                       # store with judge scores (model+sampling+prompt)
    aggregate(spec, results: dict[key, CriterionResult]) -> RolloutScore
    score_programmatic(criterion, rollout, *, count_tokens=None, python_allowlist=()) -> CriterionResult

`judge` is any `training.judges.base.JudgeBackend` (wrap it in `CachedJudge` for the content-addressed cache).
Nothing here raises on a bad rollout or a failing judge: an answer that cannot be extracted scores 0 with a reason,
a criterion that cannot be scored at all (judge down, output unparseable, no reference) gets score None and `error`.
A rollout's total is None when a weighted criterion is unscored, 0 when a gate trips, else the weighted mean.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jsonschema

from training.judges.base import CachedJudge, JudgeBackend, JudgeCompletion
from training.rubrics.extract import check_format, extract_answer, find_json, normalize_answer, parse_number
from training.rubrics.parsing import ParsedVerdict, parse_group_verdicts, parse_verdicts
from training.rubrics.prompts import JudgePrompt, build_group_prompt, build_judge_prompt, judge_fingerprint
from training.rubrics.spec import (
    FormatCriterion,
    JsonCriterion,
    JudgeCriterion,
    LengthCriterion,
    MatchCriterion,
    PythonCriterion,
    ReasoningGymCriterion,
    RubricSpec,
    compile_regex,
    is_allowlisted,
    resolve_function,
)
from training.rubrics.types import CriterionResult, Rollout, RolloutScore

TokenCounter = Callable[[str], int]


class RubricError(RuntimeError):
    """Misuse of the engine (not a bad rollout): e.g. synchronous scoring of a rubric that needs a judge."""


# --- programmatic criteria -------------------------------------------------------------------------------------


def _expected(criterion: MatchCriterion, rollout: Rollout) -> str | None:
    if criterion.value is not None:
        return str(criterion.value)
    return rollout.reference


def _math_equal(expected: str, answer: str) -> bool:
    from math_verify import parse, verify

    # math-verify's timeouts use SIGALRM, which only works on the main thread (TRL runs async rewards elsewhere).
    timeout = 5 if threading.current_thread() is threading.main_thread() else None

    def parsed(text: str) -> list[Any]:
        wrapped = text if "$" in text or "\\boxed" in text else f"${text}$"
        return list(parse(wrapped, parsing_timeout=timeout) or parse(text, parsing_timeout=timeout))

    gold, target = parsed(expected), parsed(answer)
    if not gold or not target:
        return normalize_answer(expected) == normalize_answer(answer)
    return bool(verify(gold, target, timeout_seconds=timeout))


def _score_match(c: MatchCriterion, rollout: Rollout) -> CriterionResult:
    extraction = extract_answer(rollout.completion, c.extract)
    if not extraction.ok:
        return CriterionResult(c.key, 0.0, f"extraction failed: {extraction.reason}")
    answer = extraction.value or ""
    shown = answer if len(answer) <= 60 else answer[:57] + "..."
    if c.mode == "regex":
        assert c.pattern is not None
        hit = compile_regex(c.pattern).search(answer) is not None
        return CriterionResult(
            c.key, float(hit), f"{shown!r} {'matches' if hit else 'does not match'} /{c.pattern}/"
        )
    expected = _expected(c, rollout)
    if expected is None:
        return CriterionResult(
            c.key, None, "no reference answer to compare with", error="missing reference answer"
        )
    if c.mode == "exact":
        ok = answer.strip() == expected.strip()
    elif c.mode == "normalized":
        ok = normalize_answer(answer) == normalize_answer(expected)
    elif c.mode == "contains":
        ok = normalize_answer(expected) in normalize_answer(answer)
    elif c.mode == "numeric":
        got, want = parse_number(answer), parse_number(expected)
        if want is None:
            return CriterionResult(
                c.key, None, f"reference {expected!r} is not a number", error="bad reference"
            )
        if got is None:
            return CriterionResult(c.key, 0.0, f"answer {shown!r} is not a number")
        ok = math.isclose(got, want, rel_tol=0.0, abs_tol=c.tolerance + 1e-9 * max(1.0, abs(want)))
        return CriterionResult(
            c.key, float(ok), f"{got:g} {'=' if ok else '≠'} {want:g} (tolerance {c.tolerance:g})"
        )
    elif c.mode == "math":
        ok = _math_equal(expected, answer)
    else:  # pragma: no cover - the spec's Literal forbids it
        raise ValueError(c.mode)
    verb = {"exact": "equals", "normalized": "equals", "contains": "contains", "math": "is equivalent to"}[
        c.mode
    ]
    return CriterionResult(
        c.key, float(ok), f"{shown!r} {verb if ok else 'does not ' + verb.split()[0]} {expected!r}"
    )


def _score_json(c: JsonCriterion, rollout: Rollout) -> CriterionResult:
    if c.extract == "full":
        try:
            value = json.loads(rollout.completion.strip())
        except json.JSONDecodeError as exc:
            return CriterionResult(
                c.key, 0.0, f"completion is not valid JSON: {exc.msg} at position {exc.pos}"
            )
    else:
        found = find_json(rollout.completion)
        if found is None:
            return CriterionResult(c.key, 0.0, "no parseable JSON object, array or ```json block")
        value = found[0]
    if c.schema_ is None:
        return CriterionResult(c.key, 1.0, "valid JSON")
    validator = jsonschema.validators.validator_for(c.schema_)(c.schema_)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return CriterionResult(
            c.key, 0.0, f"JSON does not match the schema at {where}: {error.message[:200]}"
        )
    return CriterionResult(c.key, 1.0, "valid JSON matching the schema")


def length_score(n: int, low: int | None, high: int | None, slack: int) -> float:
    """1 inside [low, high]; outside, linear falloff to 0 over `slack` units (slack 0 = hard bound)."""
    if low is not None and n < low:
        distance = low - n
    elif high is not None and n > high:
        distance = n - high
    else:
        return 1.0
    return 0.0 if slack == 0 else max(0.0, 1.0 - distance / slack)


def _score_length(c: LengthCriterion, rollout: Rollout, count_tokens: TokenCounter | None) -> CriterionResult:
    if c.unit == "chars":
        n = len(rollout.completion)
    elif rollout.completion_tokens is not None:
        n = rollout.completion_tokens
    elif count_tokens is not None:
        n = count_tokens(rollout.completion)
    else:
        return CriterionResult(
            c.key, None, "token length needs a tokenizer or the rollout's token count", error="no tokenizer"
        )
    score = length_score(n, c.min, c.max, c.slack)
    bounds = f"[{c.min if c.min is not None else 0}, {c.max if c.max is not None else '∞'}]"
    return CriterionResult(c.key, score, f"{n} {c.unit}, bounds {bounds}, slack {c.slack}")


def _score_reasoning_gym(c: ReasoningGymCriterion, rollout: Rollout) -> CriterionResult:
    from training.sources import reasoning_gym

    extraction = extract_answer(rollout.completion, c.extract)
    if not extraction.ok:
        return CriterionResult(c.key, 0.0, f"extraction failed: {extraction.reason}")
    answer = extraction.value or ""
    try:
        score = reasoning_gym.score_answer(answer, rollout.info, dataset=c.dataset)
    except reasoning_gym.ReasoningGymUnavailable as exc:
        return CriterionResult(c.key, None, str(exc), error="reasoning-gym not installed")
    except reasoning_gym.ReasoningGymError as exc:
        return CriterionResult(c.key, None, str(exc), error="no reasoning-gym entry")
    shown = answer if len(answer) <= 60 else answer[:57] + "..."
    name = c.dataset or (rollout.info.get(reasoning_gym.INFO_KEY) or {}).get("dataset", "?")
    return CriterionResult(c.key, min(1.0, max(0.0, score)), f"reasoning-gym {name} scored {shown!r}: {score:g}")


def _python_kwargs(func: Callable[..., Any], rollout: Rollout) -> dict[str, Any]:
    available = {
        "completion": rollout.completion,
        "prompt": rollout.prompt_text,
        "messages": rollout.messages,
        "completion_messages": rollout.completion_messages,
        "reference": rollout.reference,
        "info": rollout.info,
        "rollout": rollout,
    }
    parameters = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return available
    return {k: v for k, v in available.items() if k in parameters}


def _python_result(c: PythonCriterion, value: Any) -> CriterionResult:
    reason = f"{c.function} returned {value!r}"[:200]
    if isinstance(value, tuple) and len(value) == 2:
        value, reason = value
    elif isinstance(value, dict):
        value, reason = value.get("score"), str(value.get("reason", reason))
    if value is None:
        return CriterionResult(c.key, None, reason, error=f"{c.function} returned no score")
    if isinstance(value, bool):
        value = float(value)
    if not isinstance(value, int | float) or math.isnan(value):
        return CriterionResult(c.key, None, reason, error=f"{c.function} returned {value!r}, not a number")
    clipped = min(1.0, max(0.0, float(value)))
    if clipped != value:
        reason += f" (clipped to {clipped:g}: scores are 0..1)"
    return CriterionResult(c.key, clipped, str(reason))


def _python_function(c: PythonCriterion, allowlist: Sequence[str]) -> Callable[..., Any] | CriterionResult:
    if not is_allowlisted(c.function, allowlist):
        return CriterionResult(
            c.key,
            None,
            f"{c.function} is not in the Python reward allowlist",
            error="function not allowlisted",
        )
    try:
        return resolve_function(c.function)  # type: ignore[no-any-return]
    except (ImportError, AttributeError) as exc:
        return CriterionResult(c.key, None, f"cannot import {c.function}: {exc}", error="import failed")


def score_programmatic(
    criterion: Any,
    rollout: Rollout,
    *,
    count_tokens: TokenCounter | None = None,
    python_allowlist: Sequence[str] = (),
) -> CriterionResult:
    """Score one non-judge criterion synchronously. Never raises for a bad rollout or a failing reward function."""
    try:
        if isinstance(criterion, MatchCriterion):
            return _score_match(criterion, rollout)
        if isinstance(criterion, FormatCriterion):
            ok, reason = check_format(rollout.completion, criterion.check)
            return CriterionResult(criterion.key, float(ok), reason)
        if isinstance(criterion, JsonCriterion):
            return _score_json(criterion, rollout)
        if isinstance(criterion, LengthCriterion):
            return _score_length(criterion, rollout, count_tokens)
        if isinstance(criterion, ReasoningGymCriterion):
            return _score_reasoning_gym(criterion, rollout)
        if isinstance(criterion, PythonCriterion):
            func = _python_function(criterion, python_allowlist)
            if isinstance(func, CriterionResult):
                return func
            if inspect.iscoroutinefunction(func):
                raise RubricError(
                    f"{criterion.function} is async; score this rubric with `await engine.ascore()`"
                )
            return _python_result(criterion, func(**_python_kwargs(func, rollout)))
    except RubricError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken check is data about this rollout, not a crashed batch
        return CriterionResult(
            criterion.key, None, f"scoring failed: {exc!r}"[:300], error=type(exc).__name__
        )
    raise RubricError(f"{criterion.kind} criteria are scored by a judge, not programmatically")


# --- aggregation -----------------------------------------------------------------------------------------------


def aggregate(spec: RubricSpec, results: dict[str, CriterionResult]) -> RolloutScore:
    for gate in spec.gates:
        result = results.get(gate.criterion)
        if result is None or result.score is None:
            return RolloutScore(None, results, reason=f"gate criterion {gate.criterion!r} is unscored")
        if result.score < gate.below:
            return RolloutScore(
                0.0,
                results,
                gated_by=gate.criterion,
                reason=f"{gate.criterion} scored {result.score:g} < {gate.below:g}",
            )
    weighted = [(c.weight, results.get(c.key)) for c in spec.criteria if c.weight > 0]
    missing = [
        c.key
        for c in spec.criteria
        if c.weight > 0 and (results.get(c.key) is None or results[c.key].score is None)
    ]
    if missing:
        return RolloutScore(None, results, reason=f"unscored: {', '.join(missing)}")
    total_weight = sum(w for w, _ in weighted)
    total = sum(w * r.score for w, r in weighted if r is not None and r.score is not None) / total_weight
    return RolloutScore(total, results, reason="weighted mean")


# --- engine ----------------------------------------------------------------------------------------------------


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def judge_batches(spec: RubricSpec) -> list[list[JudgeCriterion]]:
    """Judge criteria grouped as they are asked: `max_criteria_per_call` per call, in spec order."""
    return _chunks(spec.judge_criteria, spec.judge.max_criteria_per_call)


def _share(total: int, n: int, i: int) -> int:
    """Split a call's token count over the n criteria it scored, so sums over criteria stay exact."""
    return total // n + (1 if i < total % n else 0)


class RubricEngine:
    def __init__(
        self,
        spec: RubricSpec,
        *,
        judge: JudgeBackend | None = None,
        python_allowlist: Iterable[str] = (),
        count_tokens: TokenCounter | None = None,
    ) -> None:
        self.spec = spec
        self.judge = judge
        self.python_allowlist = tuple(python_allowlist)
        self.count_tokens = count_tokens

    @property
    def judge_fingerprint(self) -> str | None:
        return judge_fingerprint(self.judge.fingerprint) if self.judge is not None else None

    @property
    def needs_judge(self) -> bool:
        return bool(self.spec.judge_criteria)

    # synchronous path: programmatic rubrics
    def score_criterion(self, key: str, rollout: Rollout) -> CriterionResult:
        return score_programmatic(
            self.spec.criterion(key),
            rollout,
            count_tokens=self.count_tokens,
            python_allowlist=self.python_allowlist,
        )

    def score(self, rollout: Rollout) -> RolloutScore:
        if self.needs_judge:
            raise RubricError("this rubric has judge criteria; use `await engine.ascore(rollout)`")
        return aggregate(self.spec, {c.key: self.score_criterion(c.key, rollout) for c in self.spec.criteria})

    # asynchronous path: any rubric
    async def _ascore_programmatic(self, criterion: Any, rollout: Rollout) -> CriterionResult:
        if isinstance(criterion, PythonCriterion):
            func = _python_function(criterion, self.python_allowlist)
            if not isinstance(func, CriterionResult) and inspect.iscoroutinefunction(func):
                try:
                    return _python_result(criterion, await func(**_python_kwargs(func, rollout)))
                except Exception as exc:  # noqa: BLE001
                    return CriterionResult(
                        criterion.key, None, f"scoring failed: {exc!r}"[:300], error=type(exc).__name__
                    )
        return self.score_criterion(criterion.key, rollout)

    async def ascore_criterion(self, key: str, rollout: Rollout) -> CriterionResult:
        criterion = self.spec.criterion(key)
        if isinstance(criterion, JudgeCriterion):
            return (await self.ajudge([criterion], rollout))[key]
        return await self._ascore_programmatic(criterion, rollout)

    async def ascore(self, rollout: Rollout) -> RolloutScore:
        return (await self.ascore_many([rollout], group_relative=False))[0]

    async def ascore_many(
        self, rollouts: Sequence[Rollout], *, group_relative: bool | None = None,
        on_scored: Callable[[RolloutScore], None] | None = None,
    ) -> list[RolloutScore]:
        """Score rollouts concurrently (the judge backend bounds concurrency). Group-relative judging, when the spec
        asks for it, applies to rollouts sharing a group_id; a rollout without one is judged alone.
        `on_scored(score)` is called as each rollout's last criterion comes in (for progress; keep it cheap)."""
        group_mode = self.spec.judge.group_relative if group_relative is None else group_relative
        results: list[dict[str, CriterionResult]] = [{} for _ in rollouts]
        jobs: list[Any] = []
        reported: set[int] = set()

        def tracked(indices: Sequence[int], job: Any) -> Any:
            if on_scored is None:
                return job

            async def run() -> None:
                await job
                for i in indices:
                    if i not in reported and all(c.key in results[i] for c in self.spec.criteria):
                        reported.add(i)
                        on_scored(aggregate(self.spec, {c.key: results[i][c.key] for c in self.spec.criteria}))

            return run()

        for i, rollout in enumerate(rollouts):
            for c in self.spec.criteria:
                if not isinstance(c, JudgeCriterion):
                    jobs.append(tracked([i], self._fill(results[i], self._ascore_programmatic(c, rollout))))
        batches = judge_batches(self.spec)
        groups: dict[str, list[int]] = {}
        singles: list[int] = []
        for i, rollout in enumerate(rollouts):
            if group_mode and rollout.group_id is not None:
                groups.setdefault(rollout.group_id, []).append(i)
            else:
                singles.append(i)
        # Rollout by rollout (all of a rollout's calls, then the next's): the judge gets the calls that share a prompt
        # one after another (a local judge reuses the prompt's keys and values, a server its prefix cache), and each
        # rollout is done as early as it can be (`on_scored`).
        for i in singles:
            for batch in batches:
                jobs.append(tracked([i], self._fill_many(results[i], self.ajudge(batch, rollouts[i]))))
        for members in groups.values():
            for batch in batches:
                jobs.append(tracked(members,
                    self._fill_group(
                        results, members, self.ajudge_group(batch, [rollouts[i] for i in members])
                    )
                ))
        await asyncio.gather(*jobs)
        return [aggregate(self.spec, {c.key: r[c.key] for c in self.spec.criteria}) for r in results]

    @staticmethod
    async def _fill(target: dict[str, CriterionResult], job: Any) -> None:
        result = await job
        target[result.key] = result

    @staticmethod
    async def _fill_many(target: dict[str, CriterionResult], job: Any) -> None:
        target.update(await job)

    @staticmethod
    async def _fill_group(results: list[dict[str, CriterionResult]], members: list[int], job: Any) -> None:
        for position, by_key in enumerate(await job):
            results[members[position]].update(by_key)

    # judging
    async def _call(
        self, prompt: JudgePrompt, parses: Callable[[JudgeCompletion], bool]
    ) -> tuple[JudgeCompletion | None, str | None]:
        if self.judge is None:
            return None, "no judge configured for this rubric's judge criteria"
        schema = prompt.json_schema if self.judge.supports_structured_output else None
        # A cache keeps only answers that parse into verdicts: an unparseable reply is a failure, not a verdict.
        options = {"accept": parses} if isinstance(self.judge, CachedJudge) else {}
        try:
            return await self.judge.complete(prompt.messages, json_schema=schema, **options), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - every item ends scored or failed-with-reason
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            return None, f"judge call failed: {reason}"[:500]

    def _results(
        self, criteria: list[JudgeCriterion], parsed: dict[str, ParsedVerdict], completion: JudgeCompletion
    ) -> dict[str, CriterionResult]:
        out = {}
        for i, c in enumerate(criteria):
            p = parsed[c.key]
            out[c.key] = CriterionResult(
                key=c.key,
                score=p.score,
                reason=p.error or f"judge answered {p.choice!r}",
                choice=p.choice,
                rationale=p.rationale,
                raw_response=completion.text,
                error=f"unparseable judge output: {p.error}" if p.score is None else None,
                judge_fingerprint=self.judge_fingerprint,
                prompt_tokens=_share(completion.prompt_tokens, len(criteria), i),
                completion_tokens=_share(completion.completion_tokens, len(criteria), i),
                latency_ms=completion.latency_ms,
                cached=completion.cached,
            )
        return out

    def _failed(self, criteria: list[JudgeCriterion], error: str) -> dict[str, CriterionResult]:
        return {
            c.key: CriterionResult(c.key, None, error, error=error, judge_fingerprint=self.judge_fingerprint)
            for c in criteria
        }

    async def ajudge(self, criteria: list[JudgeCriterion], rollout: Rollout) -> dict[str, CriterionResult]:
        """One judge call for these criteria on one rollout."""
        try:
            prompt = build_judge_prompt(criteria, rollout)
        except Exception as exc:  # noqa: BLE001 - e.g. a question reading a missing `info` field
            return self._failed(criteria, f"cannot render judge prompt: {exc}")
        started = time.perf_counter()
        parsed: dict[str, dict[str, ParsedVerdict]] = {}  # by answer text: the cache's check parses it once for all

        def parse(text: str) -> dict[str, ParsedVerdict]:
            if text not in parsed:
                parsed[text] = parse_verdicts(text, criteria)
            return parsed[text]

        completion, error = await self._call(prompt, lambda c: all(p.score is not None for p in parse(c.text).values()))
        if completion is None:
            failed = self._failed(criteria, error or "judge call failed")
            for r in failed.values():
                r.latency_ms = (time.perf_counter() - started) * 1000
            return failed
        return self._results(criteria, parse(completion.text), completion)

    async def ajudge_group(
        self, criteria: list[JudgeCriterion], rollouts: list[Rollout]
    ) -> list[dict[str, CriterionResult]]:
        """One judge call for these criteria on every rollout of a group, scored relative to each other."""
        if len(rollouts) == 1:
            return [await self.ajudge(criteria, rollouts[0])]
        try:
            prompt = build_group_prompt(criteria, rollouts)
        except Exception as exc:  # noqa: BLE001
            return [self._failed(criteria, f"cannot render judge prompt: {exc}") for _ in rollouts]
        memo: dict[str, dict[tuple[int, str], ParsedVerdict]] = {}

        def parse(text: str) -> dict[tuple[int, str], ParsedVerdict]:
            if text not in memo:
                memo[text] = parse_group_verdicts(text, criteria, len(rollouts))
            return memo[text]

        completion, error = await self._call(prompt, lambda c: all(p.score is not None for p in parse(c.text).values()))
        if completion is None:
            return [self._failed(criteria, error or "judge call failed") for _ in rollouts]
        parsed = parse(completion.text)
        out = []
        for index in range(len(rollouts)):
            per_rollout = {c.key: parsed[(index, c.key)] for c in criteria}
            results = self._results(criteria, per_rollout, completion)
            # The call's tokens are shared by the whole group; count them once, on its first rollout.
            if index > 0:
                for r in results.values():
                    r.prompt_tokens = r.completion_tokens = 0
            out.append(results)
        return out
