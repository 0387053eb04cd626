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
        self.loop_lag = Gauge("agentd_event_loop_lag_seconds",
                              "Worst event-loop lag (a wake-up that ran late) over the last minute", registry=r)
        self.probe_ok = Gauge("agentd_probe_ok", "1 if the last synthetic probe succeeded", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
