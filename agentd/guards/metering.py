"""Metering: every model call's tokens, cost and latency into the run's journal, the audit log and /metrics."""
from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any, Callable

from agentd import logs
from agentd.guards.base import Guard, ModelCall

log = logs.get("agentd.llm")
LATENCY_WINDOW = 200


class MeteringGuard(Guard):
    """After each model call: the journal's call meter (for the sidecar), the llm_call audit line, metrics."""

    def __init__(self, audit: Any, metrics: Any, run_spent: Callable[[str], Decimal], slow_call_s: float = 20.0):
        self.audit = audit
        self.metrics = metrics
        self.run_spent = run_spent
        self.slow_call_s = slow_call_s
        self.latencies: dict[str, deque[float]] = {}

    def configure(self, config: Any) -> None:
        self.slow_call_s = config.llm_slow_call_s

    def after_model_call(self, call: ModelCall) -> None:
        run = call.run
        fields = dict(provider=call.provider, model=call.model, tokens_in=call.tokens_in, tokens_out=call.tokens_out,
                      cost_usd=call.cost_usd, run_cost_usd=self.run_spent(run.cid),
                      latency_ms=round(call.latency_s * 1000, 1), attempt=call.attempt, status=call.status)
        # a call that answered or may have cost money must never be repeated; a refused one may be
        precious = call.provider != "offline" and (call.status == "ok" or call.cost_usd > 0)
        run.journal.note_call(precious=precious,
                              **{k: (str(v) if isinstance(v, Decimal) else v) for k, v in fields.items()})
        self.audit.append("llm_call", correlation_id=run.cid, workflow=run.workflow, step=run.step,
                          started_at=call.started_at or None, cost_known=None if call.cost_known else False,
                          **fields, **call.detail)
        self._count(call)
        log.info("llm_call", model=call.model, status=call.status, attempt=call.attempt, tokens_in=call.tokens_in,
                 tokens_out=call.tokens_out, cost_usd=float(call.cost_usd), latency_ms=fields["latency_ms"])

    def _count(self, call: ModelCall) -> None:
        m, model = self.metrics, call.model
        m.llm_calls.labels(call.provider, model, call.status).inc()
        m.llm_tokens.labels(model, "input").inc(call.tokens_in)
        m.llm_tokens.labels(model, "output").inc(call.tokens_out)
        m.llm_cost.labels(model).inc(float(call.cost_usd))
        m.llm_latency.labels(model).observe(call.latency_s)
        self.latencies.setdefault(model, deque(maxlen=LATENCY_WINDOW)).append(call.latency_s)
        if call.latency_s > self.slow_call_s:
            m.llm_slow.labels(model).inc()
            log.warning("llm_slow_call", model=model, latency_ms=round(call.latency_s * 1000))

    def update_latency_quantiles(self) -> None:
        """p50 and p95 of each model's last calls (computed when /metrics is read)."""
        for model, window in self.latencies.items():
            ordered = sorted(window)
            for q in (0.5, 0.95):
                self.metrics.llm_latency_p.labels(model, str(q)).set(
                    ordered[min(len(ordered) - 1, int(q * len(ordered)))])
