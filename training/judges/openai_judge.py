"""LM judge on any OpenAI-compatible endpoint (vLLM `serve`, OpenAI, ...), through `training.llm_client`.

    judge = OpenAIJudge(client, temperature=0.0, max_tokens=1024, structured_output=None, extra_params=None)
    judge = CachedJudge(judge, cache)            # content-addressed cache, see training.judges.base
    engine = RubricEngine(spec, judge=judge)

`structured_output=None` follows `client.supports_structured_output`. If the endpoint rejects `response_format`
with a 400, the judge retries that request as plain text and stops sending it; the prompt always asks for JSON too,
so parsing falls back gracefully either way.
"""

from __future__ import annotations

from typing import Any

from training.judges.base import JudgeCallError, JudgeCompletion, sampling_fingerprint
from training.llm_client import LLMCallError, OpenAICompatibleClient


class OpenAIJudge:
    def __init__(
        self,
        client: OpenAICompatibleClient,
        *,
        temperature: float = 0.0,
        max_tokens: int = 1024,
        structured_output: bool | None = None,
        extra_params: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.params: dict[str, Any] = {
            "temperature": temperature,
            "max_tokens": max_tokens,
            **(extra_params or {}),
        }
        self.supports_structured_output = (
            client.supports_structured_output if structured_output is None else structured_output
        )
        # The fingerprint must not change when structured output is switched off at runtime: the prompt is the same.
        self.fingerprint = sampling_fingerprint(client.model, self.params)
        self.cache_identity = f"{client.base_url.rstrip('/')}|{self.fingerprint}"

    async def complete(
        self, messages: list[dict[str, Any]], *, json_schema: dict[str, Any] | None = None
    ) -> JudgeCompletion:
        params = dict(self.params)
        structured = json_schema is not None and self.supports_structured_output
        if structured:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "verdicts", "schema": json_schema, "strict": True},
            }
        try:
            result = await self.client.chat(messages, **params)
        except LLMCallError as exc:
            if structured and exc.status in (400, 422):
                self.supports_structured_output = False
                return await self.complete(messages, json_schema=None)
            raise JudgeCallError(exc.reason, status=exc.status, attempts=exc.attempts) from exc
        if result.content is None:
            raise JudgeCallError(f"judge returned no content (finish_reason={result.finish_reason})")
        return JudgeCompletion(
            text=result.content,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            latency_ms=result.latency_ms,
            cost_usd=result.cost_usd,
            structured=structured,
            extra={"attempts": result.attempts, "finish_reason": result.finish_reason},
        )
