"""The LLM gateway: output contracts and re-asks, routing over fallbacks, breakers, retries, outages.

It knows nothing of files or folders: the run hands it a memo (agentd.llm.memo). Around each
ask and each HTTP request it emits the guards' hooks (PII redaction, kill switch, budget
reservation and settle, metering). A paid request's intent (its reservation at worst case) is
durable in the memo before the request leaves, and the kill switch is looked at again after
that wait; every valid answer is kept in the memo before it is returned.
"""
from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any, Callable, Mapping, Protocol

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from agentd import logs
from agentd.config import Config
from agentd.durable.crash import crash_point
from agentd.errors import AgentdError, ModelError, NetworkError, Paused
from agentd.guards.base import Ask, Guards, ModelCall
from agentd.llm.base import ASK_KEY, LLMRequest, LLMResponse, Provider, ProviderError, token_bound
from agentd.llm.breaker import CLOSED, OPEN, STATE_LEVEL, Breakers
from agentd.llm.outage import Outage
from agentd.llm.memo import Memo
from agentd.schemas import check as schema_problem
from agentd.spool.layout import iso_utc

MAX_REASKS = 2
OUTAGE_PARK_S = 5.0  # a run that found every model down waits this long before its next round
MAX_FAILING = 1024  # questions remembered as failing (by digest); beyond, the memory starts afresh
log = logs.get("agentd.llm")


class RunLike(Protocol):
    cid: str
    workflow: str
    step: str
    memo: Memo

    def note_model(self, provider: str, model: str) -> None: ...


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class Gateway:
    def __init__(self, config: Config, provider: Provider, guards: Guards, breakers: Breakers, audit: Any,
                 metrics: Any, sleep: Callable[[float], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.provider = provider
        self.guards = guards
        self.breakers = breakers
        self.audit = audit
        self.metrics = metrics
        self._sleep = sleep
        self.clock = clock
        self.outage = Outage(clock)
        self.answered_at = float("-inf")  # when a model last answered anyone (self.clock)
        self._failing_since: dict[str, float] = {}  # request digest -> when all models first failed it
        self._schema_texts: dict[str, str] = {}

    @property
    def rate_limited_until(self) -> float:
        return self.outage.rate_limited_until

    # -- the face steps see -----------------------------------------------------------------
    async def structured(self, run: RunLike, request: LLMRequest, key: str) -> Any:
        """A schema-valid answer for `request`; replayed from the journal when already paid."""
        ask = Ask(run=run, request=request)  # type: ignore[arg-type]
        self.guards.before("ask", ask)
        done = run.memo.paid_answer(key)
        if done is not None:
            run.note_model(done["provider"], done["model"])
            ask.answer = done["value"]
        else:
            ASK_KEY.set(key)  # a recorded-answer provider (agentd replay) serves by the ask's key
            ask.answer = await self._answer(run, ask.request, key)
        self.guards.after("ask", ask)
        return ask.answer

    async def _answer(self, run: RunLike, request: LLMRequest, key: str) -> Any:
        digest = request.digest()  # of the question as the step asked it, before any re-ask
        history: list[dict[str, Any]] = list(request.history)
        problem = ""
        for ask in range(MAX_REASKS + 1):
            response = await self._routed(run, LLMRequest(**{**request.__dict__, "history": tuple(history)}))
            if response.tool_calls:  # offered or not: the caller checks them against its allowlist
                answer: Any = {"tool_calls": response.tool_calls, "content": response.content}
                return await self._journaled(run, key, digest, response, answer)
            problem = self._contract_problem(response, request.schema) or ""
            if not problem:
                return await self._journaled(run, key, digest, response, response.parsed)
            log.warning("llm_invalid_output", model=response.model, problem=problem, ask=ask + 1)
            history += [{"role": "assistant", "content": response.content or "(empty answer)"},
                        {"role": "user", "content": f"Your answer was not valid: {problem}. "
                                                    "Answer again with JSON that matches the schema."}]
        raise ModelError("invalid_output", f"the model's answer failed the schema {MAX_REASKS + 1} times: {problem}")

    async def _journaled(self, run: RunLike, key: str, digest: str, response: LLMResponse, value: Any) -> Any:
        run.note_model(response.provider, response.model)
        await run.memo.keep(key, {"value": value, "provider": response.provider, "model": response.model,
                                  "request_hash": digest, "tokens_in": response.tokens_in,
                                  "tokens_out": response.tokens_out, "cached_in": response.cached_in})
        if run.memo.precious:
            crash_point(self.config, "after_paid_answer")
        return value

    def _contract_problem(self, response: LLMResponse, schema: dict[str, Any]) -> str | None:
        if response.finish_reason in ("length", "max_tokens"):
            raise ModelError("output_truncated", "the model stopped at the output token limit")
        if response.finish_reason in ("content_filter", "refusal"):
            raise ModelError("refused", f"the model refused ({response.finish_reason})")
        if response.parsed is None:
            try:
                response.parsed = json.loads(response.content or "")
            except ValueError as exc:
                return f"not JSON ({exc.msg} at {exc.pos})"
        return schema_problem(schema, response.parsed)

    def _schema_text(self, schema: dict[str, Any]) -> str:
        text = json.dumps(schema, sort_keys=True)
        if len(self._schema_texts) > 256:
            self._schema_texts.clear()
        return self._schema_texts.setdefault(text, text)

    # -- routing over the primary and the fallbacks ------------------------------------------
    async def _routed(self, run: RunLike, request: LLMRequest) -> LLMResponse:
        last: ProviderError | None = None
        skipped = missing = 0
        models = self.config.models()
        began = self.clock()
        for index, model in enumerate(models):
            key = f"{self.provider.name}:{model}"
            if not self.breakers.acquire(key):
                skipped += 1
                self.audit.append("llm_route", correlation_id=run.cid, model=model, decision="skip",
                                  why="breaker_open")
                continue
            if index > 0 or skipped:
                self.audit.append("llm_route", correlation_id=run.cid, model=model, decision="fallback",
                                  why=f"previous model failed: {last.label if last else 'breaker_open'}")
            trial = self.breakers.get(key).state != CLOSED  # a half-open trial is one attempt
            try:
                response = await self._attempts(run, request, model, 1 if trial else self.config.llm_max_attempts)
            except ProviderError as exc:
                self.breakers.release(key)
                if exc.status in (401, 403):
                    raise self.outage.credentials_rejected(str(exc)) from None
                if exc.status == 404:
                    missing += 1
                    last = exc
                    continue  # this model is gone: the fallbacks may still answer
                if exc.kind == "model":
                    raise ModelError("model_error", f"{model}: {exc}") from None
                self._breaker_changed(key, self.breakers.failure(key), run.cid)
                last = exc
                continue
            except BaseException:
                self.breakers.release(key)
                raise
            self._breaker_changed(key, self.breakers.success(key), run.cid)
            self.outage.answered()
            self.answered_at = self.clock()
            if self._failing_since:
                self._failing_since.pop(request.digest(), None)
            return response
        if missing and missing + skipped == len(models):
            raise self.outage.model_not_found(str(last))
        if last is None or all(not self.breakers.ready(f"{self.provider.name}:{m}") for m in models):
            raise Paused("model_unavailable")
        if len(self._failing_since) >= MAX_FAILING:
            self._failing_since.clear()
        if self.answered_at < self._failing_since.setdefault(request.digest(), began):
            # no model answered anyone since this question first failed: they are down, it waits
            raise Paused("model_unavailable", not_before=time.time() + OUTAGE_PARK_S)
        # the models answered others since this question first failed: a strike, it goes once more
        raise NetworkError("model_unreachable", f"all models failed; last: {last}", retryable=True)

    def _breaker_changed(self, key: str, state: str | None, cid: str | None = None) -> None:
        if state is None:
            return
        provider, _, model = key.partition(":")
        self.metrics.breaker_open.labels(provider, model).set(STATE_LEVEL[state])
        self.audit.append("breaker", provider=provider, model=model, state=state, correlation_id=cid)
        log.warning("breaker_" + state, provider=provider, model=model)

    def blocks(self, kind: str, busy: bool = False) -> str | None:
        """Why no new claim should start now (the model side), or None; `busy`: runs are in flight."""
        if kind != "claim":
            return None
        reason = self.outage.blocks(busy)
        if reason:
            return reason
        models = self.config.models()
        if not any(self.breakers.ready(f"{self.provider.name}:{m}") for m in models):
            return "model_unavailable"
        if busy and all(self.breakers.get(f"{self.provider.name}:{m}").state != CLOSED for m in models):
            return "model_unavailable"  # one trial file at a time while no circuit is closed
        return None

    def blocked(self) -> bool:
        """True while no model call could go out: paused runs keep waiting."""
        return self.blocks("claim") is not None

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: new settings; a new API key is tried at once."""
        if config.llm_api_key != self.config.llm_api_key and hasattr(self.provider, "api_key"):
            self.provider.api_key = config.llm_api_key  # type: ignore[attr-defined]
            self.outage.retry_now()
        self.breakers.configure(config.breaker_failures, config.breaker_reset_s)
        self.config = config

    # -- retries of one model ----------------------------------------------------------------
    async def _attempts(self, run: RunLike, request: LLMRequest, model: str, attempts: int) -> LLMResponse:
        kwargs: dict[str, Any] = {}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        retrying = AsyncRetrying(stop=stop_after_attempt(attempts),
                                 wait=self._wait, retry=retry_if_exception(_retryable), reraise=True, **kwargs)
        async for attempt in retrying:
            with attempt:
                return await self._one_call(run, request, model, attempt.retry_state.attempt_number)
        raise AssertionError("unreachable")

    _backoff = wait_exponential(multiplier=0.5, max=8) + wait_random(0, 0.5)

    def _wait(self, state: Any) -> float:
        exc = state.outcome.exception() if state.outcome else None
        backoff = self._backoff(state)
        if isinstance(exc, ProviderError) and exc.retry_after_s is not None:
            return max(0.0, min(exc.retry_after_s, self.config.llm_retry_after_cap_s))
        return backoff

    def _prepare(self, run: RunLike, request: LLMRequest, model: str, attempt: int) -> ModelCall:
        if self.outage.rate_limited():
            raise Paused("rate_limited", not_before=self.outage.rate_limited_wall())
        if attempt > 1 and self.breakers.get(f"{self.provider.name}:{model}").state == OPEN:
            raise Paused("model_unavailable")  # other runs saw the outage: no more retries
        if run.memo.calls_made() >= self.config.llm_max_calls_per_run:
            raise ModelError("call_limit", f"the run reached LLM_MAX_CALLS_PER_RUN={self.config.llm_max_calls_per_run}")
        price = self.config.price(model)
        # the schema's name goes out with it (the json_schema's or the answer tool's name): up to 64 bytes
        prompt = request.system + request.user_message() + request.schema_name + self._schema_text(request.schema) + \
            json.dumps(request.tools) + "".join(str(m.get("content", "")) for m in request.history)
        tokens_bound = token_bound(prompt, 3 + len(request.history)) + getattr(self.provider, "prompt_overhead_tokens", 0)
        return ModelCall(run=run, request=request, provider=self.provider.name, model=model,  # type: ignore[arg-type]
                         attempt=attempt, worst_usd=price.cost(tokens_bound, request.max_tokens),
                         tokens_bound=tokens_bound)

    async def _one_call(self, run: RunLike, request: LLMRequest, model: str, attempt: int) -> LLMResponse:
        call = self._prepare(run, request, model, attempt)
        self.guards.before("model_call", call)  # kill switch, budget reservation
        await self._intend(run, call)
        call.started, call.started_at, call.sent = time.monotonic(), iso_utc(time.time()), True
        try:
            call.response = await self.provider.complete(request, model, self.config.llm_timeout_s)
            self._measured(call, call.response.tokens_in, call.response.tokens_out, call.response.cached_in,
                           known=call.response.usage_known, status="ok" if call.response.usage_known else "no_usage")
        except ProviderError as exc:
            call.error = exc
            self._measured(call, exc.tokens_in, exc.tokens_out, 0, known=not exc.cost_unknown, status=exc.label)
        except AgentdError as exc:  # the offline provider's rule timed out or failed on this document
            self._measured(call, 0, 0, 0, known=True, status=exc.reason)
            raise
        except BaseException:  # cancelled (a drain deadline, a step timeout): the request may be billed
            self._measured(call, 0, 0, 0, known=False, status="cancelled")
            raise
        finally:
            call.latency_s = time.monotonic() - call.started
            call.detail = self._call_detail(call)
            self.guards.after("model_call", call)  # budget settle, metering
        if call.error is not None:
            self._rate_limit(call.error, model)
            raise call.error
        assert call.response is not None
        return call.response

    async def _intend(self, run: RunLike, call: ModelCall) -> None:
        """A paid call's intent on disk before its request leaves, then the gate once more (the fsync
        was a wait); an offline call is free and writes none. Refused or failed here: nothing was
        sent, the reservation is released and the intent voided."""
        try:
            if call.provider != "offline":
                call.intent = await run.memo.intend(
                    kind="model", provider=call.provider, model=call.model, step=run.step, ask=ASK_KEY.get(),
                    attempt=call.attempt, worst_usd=str(call.worst_usd), tokens_in=call.tokens_bound,
                    tokens_out=call.request.max_tokens)
                crash_point(self.config, "after_model_intent")
            self.guards.before("model_send", call)  # the kill switch, after the intent's fsync
        except BaseException:
            call.status, call.cost_usd, call.cost_known = "not_sent", Decimal(0), True
            self.guards.after("model_call", call)  # releases the reservation; the memo voids the intent
            raise

    def _measured(self, call: ModelCall, tokens_in: int, tokens_out: int, cached: int, known: bool,
                  status: str) -> None:
        call.status, call.cost_known = status, known
        if known:
            call.tokens_in, call.tokens_out, call.cached_in = tokens_in, tokens_out, cached
            call.cost_usd = self.config.price(call.model).cost(tokens_in, tokens_out, cached)
        else:  # the most it could have been: what was reserved for it
            call.tokens_in = max(tokens_in, call.tokens_bound)
            call.tokens_out = max(tokens_out, call.request.max_tokens)
            call.cost_usd = call.worst_usd

    def _call_detail(self, call: ModelCall) -> dict[str, Any]:
        """What a trace span of the call shows beyond the metering (content only when asked)."""
        request, response = call.request, call.response
        detail: dict[str, Any] = {"max_tokens": request.max_tokens, "cached_in": call.cached_in,
                                  "price_source": "LLM_PRICE_*" if self.config.price_input_per_mtok is not None
                                  or self.config.price_output_per_mtok is not None else "table"}
        if response is not None:
            detail.update(response_model=response.model, finish_reason=response.finish_reason)
        if self.config.otel_capture_content:  # OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true
            detail.update(system_instructions=request.system, input_messages=[
                {"role": "user", "content": request.user_message()}, *request.history])
            if response is not None:
                detail["output_messages"] = [{"role": "assistant", "content": response.content,
                                              "finish_reason": response.finish_reason}]
        return detail

    def _rate_limit(self, error: ProviderError, model: str) -> None:
        if error.retry_after_s is not None and error.retry_after_s > self.config.llm_retry_after_cap_s:
            # too long to hold a worker: files wait in incoming/ until the server said to come back
            self.outage.rate_limited_for(error.retry_after_s)
            log.warning("llm_rate_limited", model=model, retry_after_s=error.retry_after_s)
            raise Paused("rate_limited", not_before=self.outage.rate_limited_wall())

    async def close(self) -> None:
        await self.provider.close()


def make_provider(config: Config, offline_rules: Mapping[str, Callable[[str], Any]] | None = None,
                  **offline: Any) -> Provider:
    """The configured provider (imported lazily so offline runs need no HTTP client); `offline`:
    the offline provider's isolate and unresolvable (agentd.run.isolated's pool)."""
    if config.llm_provider == "openai":
        from agentd.llm.openai import OpenAIProvider
        return OpenAIProvider(config)
    if config.llm_provider == "anthropic":
        from agentd.llm.anthropic import AnthropicProvider
        return AnthropicProvider(config)
    from agentd.llm.offline import OfflineProvider
    return OfflineProvider(offline_rules, **offline)

