"""Build the judge for a model endpoint (training.judges objects; no ORM object crosses into training/)."""

from __future__ import annotations

from django.conf import settings

from training.judges.base import CachedJudge, JudgeBackend
from training.judges.openai_judge import OpenAIJudge
from training.llm_client import OpenAICompatibleClient
from webapp.core.errors import ApplicationError
from webapp.endpoints.limits import endpoint_limiter
from webapp.endpoints.models import EndpointKind, ModelEndpoint
from webapp.endpoints.services import endpoint_model_resolve, endpoint_outbound
from webapp.judging.cache import DatabaseJudgeCache


def judge_for_endpoint(endpoint: ModelEndpoint, *, cached: bool = True) -> JudgeBackend:
    params = dict(endpoint.default_params or {})
    temperature = float(params.pop("temperature", 0.0))
    max_tokens = int(params.pop("max_tokens", 512))
    if endpoint.kind == EndpointKind.OPENAI:
        target = endpoint_outbound(endpoint)
        client = OpenAICompatibleClient(
            base_url=target.base_url,
            model=endpoint.model,
            api_key=target.api_key,
            allowed_hosts=target.allowed_hosts,
            max_concurrency=endpoint.max_concurrency,
            requests_per_minute=endpoint.requests_per_minute,
            tokens_per_minute=endpoint.tokens_per_minute,
            supports_structured_output=endpoint.supports_structured_output,
            backoff_base_s=settings.RUBRICON_ENDPOINT_RETRY_BACKOFF_S,
            # The endpoint's limits hold across every worker and thread, not per client (webapp.endpoints.limits).
            limiter=endpoint_limiter(endpoint),
        )
        judge: JudgeBackend = OpenAIJudge(client, temperature=temperature, max_tokens=max_tokens, extra_params=params)
    elif endpoint.kind == EndpointKind.TRANSFORMERS:
        from training.judges.transformers_judge import TransformersJudge

        judge = TransformersJudge(endpoint_model_resolve(endpoint=endpoint), max_new_tokens=max_tokens, temperature=temperature)
    else:
        raise ApplicationError(
            "A local vLLM engine cannot judge yet: start `vllm serve` and add it as an OpenAI-compatible endpoint."
        )
    return CachedJudge(judge, DatabaseJudgeCache()) if cached else judge
