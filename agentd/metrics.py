"""Prometheus metrics, one registry per daemon (prometheus-client renders the text format)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.files = Counter("agentd_files_total", "Files that reached a terminal place",
                             ["workflow", "outcome"], registry=r)
        self.run_seconds = Histogram("agentd_run_duration_seconds", "Claim to terminal place",
                                     ["workflow"], buckets=RUN_BUCKETS, registry=r)
        self.llm_calls = Counter("agentd_llm_calls_total", "Model calls by model and status",
                                 ["provider", "model", "status"], registry=r)
        self.llm_tokens = Counter("agentd_llm_tokens_total", "Tokens by model and direction",
                                  ["model", "direction"], registry=r)
        self.llm_cost = Counter("agentd_llm_cost_usd_total", "USD spent on model calls", ["model"], registry=r)
        self.llm_latency = Histogram("agentd_llm_latency_seconds", "Model call latency", ["model"],
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.llm_slow = Counter("agentd_llm_slow_calls_total", "Model calls slower than LLM_SLOW_CALL_S",
                                ["model"], registry=r)
        self.llm_latency_p = Gauge("agentd_llm_latency_quantile_seconds", "Recent latency quantiles",
                                   ["model", "quantile"], registry=r)
        self.queue_depth = Gauge("agentd_queue_depth", "Files per state folder", ["folder"], registry=r)
        self.in_flight = Gauge("agentd_in_flight", "Runs in progress", registry=r)
        self.breaker_open = Gauge("agentd_breaker_state", "0 closed, 1 half-open, 2 open",
                                  ["provider", "model"], registry=r)
        self.budget_used = Gauge("agentd_daily_budget_used_ratio", "Today's spend / DAILY_BUDGET_USD",
                                 registry=r)
        self.spend_today = Gauge("agentd_spend_today_usd", "Today's spend in USD", registry=r)
        self.kill_switch = Gauge("agentd_kill_switch", "1 while the kill switch is engaged", registry=r)
        self.tool_calls = Counter("agentd_tool_calls_total", "Tool calls", ["tool", "status"], registry=r)
        self.pii_redacted = Counter("agentd_pii_redacted_total", "PII values replaced before the model",
                                    ["kind"], registry=r)
        self.otlp_exported_seq = Gauge("agentd_trace_export_seq", "Last audit seq whose spans the collector "
                                       "acknowledged", registry=r)
        self.audit_seq = Gauge("agentd_audit_seq", "Last audit seq written", registry=r)
        self.otlp_lag = Gauge("agentd_trace_export_lag", "Audit lines written but not yet exported as spans",
                              registry=r)
        self.otlp_errors = Counter("agentd_trace_export_errors_total", "Failed OTLP export attempts (retried)",
                                   registry=r)
        self.otlp_spans = Counter("agentd_trace_spans_sent_total", "Spans the collector acknowledged", registry=r)
        self.otlp_dropped = Counter("agentd_trace_spans_dropped_total", "Spans the collector refused for good "
                                    "(HTTP 400 or partial success)", registry=r)
        self.loop_lag = Gauge("agentd_event_loop_lag_seconds",
                              "Worst event-loop lag (a wake-up that ran late) over the last minute", registry=r)
        self.probe_ok = Gauge("agentd_probe_ok", "1 if the last synthetic probe succeeded", registry=r)
        self.review_depth = Gauge("agentd_review_queue_depth", "Items waiting in review/", registry=r)
        self.review_oldest = Gauge("agentd_review_oldest_age_seconds", "Age of the oldest item in review/",
                                   registry=r)
        self.review_overdue = Gauge("agentd_review_overdue", "Items in review/ past REVIEW_SLA_S", registry=r)

    def set_review(self, stats: dict[str, float]) -> None:
        self.review_depth.set(stats["depth"])
        self.review_oldest.set(stats["oldest_age_s"])
        self.review_overdue.set(stats["overdue"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
