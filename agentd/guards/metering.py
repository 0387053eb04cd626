"""Metering: every model call's tokens, cost and latency into the run's memo (journal), the audit log and /metrics."""
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
        if not call.sent:  # refused after its intent was written: nothing left, nothing to meter
            if call.intent:
                run.memo.void(call.intent)
            return
        fields = dict(provider=call.provider, model=call.model, tokens_in=call.tokens_in, tokens_out=call.tokens_out,
                      cost_usd=call.cost_usd, run_cost_usd=self.run_spent(run.cid),
                      latency_ms=round(call.latency_s * 1000, 1), attempt=call.attempt, status=call.status)
        # the audit line first (the day's record), then the run's meter that resolves the intent: a crash
        # between them leaves an intent the audit log already charged (agentd.guards.budget reads both)
        line = dict(correlation_id=run.cid, workflow=run.workflow, step=run.step, started_at=call.started_at or None,
                    cost_known=None if call.cost_known else False, intent=call.intent or None, **fields, **call.detail)
        try:
            self.audit.append("llm_call", **line)
        except OSError as exc:  # a full disk: the line waits in memory for the next append; the answer goes on
            self.audit.stage("llm_call", **line)  # to be kept by the run (its memo raises the disk error then)
            log.error("llm_call_not_audited_yet", error=f"{exc.__class__.__name__}: {exc}")
        # a call that answered or may have cost money must never be repeated; a refused one may be
        precious = call.provider != "offline" and (call.status == "ok" or call.cost_usd > 0)
        meter = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in fields.items()}
        run.memo.note_call(precious=precious, **meter, **({"intent": call.intent} if call.intent else {}))
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
