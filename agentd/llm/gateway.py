"""The LLM gateway: budget reservation, retries, breakers, fallbacks, output contracts, metering.

Every attempt is reserved against the caps before it is sent, settled and audited
after; every valid answer is journaled under the run before it is returned.
"""
from __future__ import annotations

import json
import time
from collections import deque
from decimal import Decimal
from typing import Any, Callable, Protocol

import jsonschema
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from agentd import logs
from agentd.audit import AuditLog, utcnow_iso
from agentd.config import Config
from agentd.costs import Budget
from agentd.errors import ModelError, NetworkError, Paused
from agentd.journal import MISSING, Journal
from agentd.llm.base import LLMRequest, LLMResponse, Provider, ProviderError, token_bound
from agentd.llm.breaker import CLOSED, OPEN, STATE_LEVEL, Breakers
from agentd.metrics import Metrics

MAX_REASKS = 2
log = logs.get("agentd.llm")


class Run(Protocol):
    cid: str
    workflow: str
    journal: Journal

    def note_model(self, provider: str, model: str) -> None: ...


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class Gateway:
    def __init__(self, config: Config, provider: Provider, budget: Budget, audit: AuditLog,
                 breakers: Breakers, metrics: Metrics, stop_reason: Callable[[], str | None] = lambda: None,
                 sleep: Callable[[float], Any] | None = None):
        self.config = config
        self.provider = provider
        self.budget = budget
        self.audit = audit
        self.breakers = breakers
        self.metrics = metrics
        self.stop_reason = stop_reason
        self._sleep = sleep
        self._latencies: dict[str, deque[float]] = {}
        self._validators: dict[int, tuple[dict[str, Any], jsonschema.Draft202012Validator]] = {}
        self._schema_texts: dict[int, tuple[dict[str, Any], str]] = {}
        self.rate_limited_until = 0.0  # monotonic time before which no call goes out

    # -- the face workflows see ------------------------------------------------------------
    async def structured(self, run: Run, request: LLMRequest, key: str) -> Any:
        """A schema-valid answer for `request`; replayed from the journal when already paid."""
        done = run.journal.get(key)
        if done is not MISSING:
            run.note_model(done["provider"], done["model"])
            return done["value"]
        validator = self._validator(request.schema)
        history: list[dict[str, Any]] = list(request.history)
        for ask in range(MAX_REASKS + 1):
            response = await self._routed(run, LLMRequest(**{**request.__dict__, "history": tuple(history)}))
            if response.tool_calls:  # offered or not: the caller checks them against its allowlist
                answer: Any = {"tool_calls": response.tool_calls, "content": response.content}
                return await self._journaled(run, key, response, answer)
            problem = self._contract_problem(response, validator)
            if problem is None:
                return await self._journaled(run, key, response, response.parsed)
            log.warning("llm_invalid_output", model=response.model, problem=problem, ask=ask + 1)
            history += [{"role": "assistant", "content": response.content or "(empty answer)"},
                        {"role": "user", "content": f"Your answer was not valid: {problem}. "
                                                    "Answer again with JSON that matches the schema."}]
        raise ModelError("invalid_output", f"the model's answer failed the schema {MAX_REASKS + 1} times: {problem}")

    def _validator(self, schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:  # schemas are module constants: by identity
            return cached[1]
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        self._validators[id(schema)] = (schema, validator)
        return validator

    def _schema_text(self, schema: dict[str, Any]) -> str:
        cached = self._schema_texts.get(id(schema))
        if cached is None or cached[0] is not schema:
            cached = self._schema_texts[id(schema)] = (schema, json.dumps(schema))
        return cached[1]

    async def _journaled(self, run: Run, key: str, response: LLMResponse, value: Any) -> Any:
        run.note_model(response.provider, response.model)
        await run.journal.put(key, {"value": value, "provider": response.provider, "model": response.model},
                              wait=False)
        return value

    def _contract_problem(self, response: LLMResponse, validator: jsonschema.Draft202012Validator) -> str | None:
        if response.finish_reason in ("length", "max_tokens"):
            raise ModelError("output_truncated", "the model stopped at the output token limit")
        if response.finish_reason in ("content_filter", "refusal"):
            raise ModelError("refused", f"the model refused ({response.finish_reason})")
        if response.parsed is None:
            try:
                response.parsed = json.loads(response.content or "")
            except ValueError as exc:
                return f"not JSON ({exc.msg} at {exc.pos})"
        error = jsonschema.exceptions.best_match(validator.iter_errors(response.parsed))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"{where}: {error.message[:300]}"
        return None

    # -- routing over the primary and the fallbacks ------------------------------------------
    async def _routed(self, run: Run, request: LLMRequest) -> LLMResponse:
        last: ProviderError | None = None
        skipped = 0
        models = self.config.models()
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
                if exc.kind == "model":
                    self.breakers.release(key)
                    raise ModelError("model_error", f"{model}: {exc}") from None
                self._breaker_changed(key, self.breakers.failure(key), run.cid)
                last = exc
                continue
            except BaseException:
                self.breakers.release(key)
                raise
            self._breaker_changed(key, self.breakers.success(key), run.cid)
            return response
        if last is None or all(not self.breakers.ready(f"{self.provider.name}:{m}") for m in models):
            raise Paused("model_unavailable")
        # the models answer others but failed this run: the caller may park it and try once more
        raise NetworkError("model_unreachable", f"all models failed; last: {last}", retryable=True)

    def _breaker_changed(self, key: str, state: str | None, cid: str | None = None) -> None:
        if state is None:
            return
        provider, _, model = key.partition(":")
        self.metrics.breaker_open.labels(provider, model).set(STATE_LEVEL[state])
        self.audit.append("breaker", provider=provider, model=model, state=state, correlation_id=cid)
        log.warning("breaker_" + state, provider=provider, model=model)

    def blocked(self) -> bool:
        """True while no model of the chain could take a call: claiming should wait."""
        if time.monotonic() < self.rate_limited_until:
            return True
        return not any(self.breakers.ready(f"{self.provider.name}:{m}") for m in self.config.models())

    def on_trial(self) -> bool:
        """True while no model's circuit is closed: only one file at a time goes out as a trial."""
        return all(self.breakers.get(f"{self.provider.name}:{m}").state != CLOSED for m in self.config.models())

    # -- retries of one model ----------------------------------------------------------------
    async def _attempts(self, run: Run, request: LLMRequest, model: str, attempts: int) -> LLMResponse:
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

    async def _one_call(self, run: Run, request: LLMRequest, model: str, attempt: int) -> LLMResponse:
        reason = self.stop_reason()
        if reason:
            raise Paused(reason)
        if time.monotonic() < self.rate_limited_until:
            raise Paused("rate_limited")
        if attempt > 1 and self.breakers.get(f"{self.provider.name}:{model}").state == OPEN:
            raise Paused("model_unavailable")  # other runs saw the outage: no more retries
        if len(run.journal.calls) >= self.config.llm_max_calls_per_run:
            raise ModelError("call_limit", f"the run reached LLM_MAX_CALLS_PER_RUN={self.config.llm_max_calls_per_run}")
        price = self.config.price(model)
        prompt = request.system + request.user_message() + self._schema_text(request.schema) + \
            json.dumps(request.tools) + "".join(str(m.get("content", "")) for m in request.history)
        worst = price.cost(token_bound(prompt, 3 + len(request.history)), request.max_tokens)
        reservation = self.budget.reserve(run.cid, worst)
        started, started_at = time.monotonic(), utcnow_iso()
        status, response, error = "ok", None, None
        tokens_in = tokens_out = cached = 0
        try:
            response = await self.provider.complete(request, model, self.config.llm_timeout_s)
            tokens_in, tokens_out, cached = response.tokens_in, response.tokens_out, response.cached_in
        except ProviderError as exc:
            status, error = exc.label, exc
            tokens_in, tokens_out = exc.tokens_in, exc.tokens_out
        finally:
            latency_s = time.monotonic() - started
            cost = price.cost(tokens_in, tokens_out, cached)
            crossed = self.budget.settle(reservation, cost)
            self._meter(run, model, attempt, status, tokens_in, tokens_out, cost, latency_s,
                        self._call_detail(request, response, started_at, cached))
            for percent in crossed:
                self._budget_alert(percent)
        if error is not None:
            if error.retry_after_s is not None and error.retry_after_s > self.config.llm_retry_after_cap_s:
                # too long to hold a worker: files wait in incoming/ until the server said to come back
                self.rate_limited_until = max(self.rate_limited_until, time.monotonic() + error.retry_after_s)
                log.warning("llm_rate_limited", model=model, retry_after_s=error.retry_after_s)
                raise Paused("rate_limited")
            raise error
        assert response is not None
        return response

    def _call_detail(self, request: LLMRequest, response: LLMResponse | None, started_at: str,
                     cached: int) -> dict[str, Any]:
        """What a trace span of the call shows beyond the metering (content only when asked)."""
        detail: dict[str, Any] = {"started_at": started_at, "max_tokens": request.max_tokens, "cached_in": cached,
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

    def _meter(self, run: Run, model: str, attempt: int, status: str, tokens_in: int, tokens_out: int,
               cost: Decimal, latency_s: float, detail: dict[str, Any] | None = None) -> None:
        run_cost = self.budget.run_spent(run.cid)
        fields = dict(provider=self.provider.name, model=model, tokens_in=tokens_in, tokens_out=tokens_out,
                      cost_usd=cost, run_cost_usd=run_cost, latency_ms=round(latency_s * 1000, 1),
                      attempt=attempt, status=status)
        # a call that answered or cost money must never be repeated; a refused one may be
        run.journal.note_call(precious=self.provider.name != "offline" and (status == "ok" or cost > 0),
                              **{k: (str(v) if isinstance(v, Decimal) else v) for k, v in fields.items()})
        self.audit.append("llm_call", correlation_id=run.cid, workflow=run.workflow, step=getattr(run, "step", None),
                          **fields, **(detail or {}))
        m = self.metrics
        m.llm_calls.labels(self.provider.name, model, status).inc()
        m.llm_tokens.labels(model, "input").inc(tokens_in)
        m.llm_tokens.labels(model, "output").inc(tokens_out)
        m.llm_cost.labels(model).inc(float(cost))
        m.llm_latency.labels(model).observe(latency_s)
        m.spend_today.set(float(self.budget.spent_today))
        m.budget_used.set(self.budget.used_ratio())
        self._latencies.setdefault(model, deque(maxlen=200)).append(latency_s)
        if latency_s > self.config.llm_slow_call_s:
            m.llm_slow.labels(model).inc()
            log.warning("llm_slow_call", model=model, latency_ms=round(latency_s * 1000))
        log.info("llm_call", model=model, status=status, attempt=attempt, tokens_in=tokens_in,
                 tokens_out=tokens_out, cost_usd=float(cost), latency_ms=round(latency_s * 1000, 1))

    def update_latency_quantiles(self) -> None:
        """p50 and p95 of each model's last 200 calls (computed when /metrics is read)."""
        for model, window in self._latencies.items():
            ordered = sorted(window)
            for q in (0.5, 0.95):
                self.metrics.llm_latency_p.labels(model, str(q)).set(
                    ordered[min(len(ordered) - 1, int(q * len(ordered)))])

    def _budget_alert(self, percent: int) -> None:
        spent, cap = self.budget.spent_today, self.budget.daily_budget_usd
        self.audit.append("budget_alert", percent=percent, spent_usd=spent, budget_usd=cap, day=self.budget.day)
        log.warning("budget_alert", percent=percent, spent_usd=float(spent), budget_usd=float(cap))

    async def close(self) -> None:
        await self.provider.close()


def make_provider(config: Config) -> Provider:
    """The configured provider (imported lazily so offline runs need no HTTP client)."""
    if config.llm_provider == "openai":
        from agentd.llm.openai import OpenAIProvider
        return OpenAIProvider(config)
    if config.llm_provider == "anthropic":
        from agentd.llm.anthropic import AnthropicProvider
        return AnthropicProvider(config)
    from agentd.llm.offline import OfflineProvider
    return OfflineProvider()
