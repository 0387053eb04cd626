"""Metering (agentd.guards.metering): each model call's llm_call line, journal meter and metrics."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agentd.guards.base import ModelCall
from agentd.guards.metering import MeteringGuard
from agentd.run.context import RunCore
from agentd.durable.journal import Journal
from tests.guards.parts import CID, Parts, make_parts, model_call


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return make_parts(tmp_path / "home")


def metering(parts: Parts, run_cost: str = "0.0123", slow_call_s: float = 20.0) -> MeteringGuard:
    return MeteringGuard(parts.audit, parts.metrics, lambda cid: Decimal(run_cost), slow_call_s)


def answered(parts: Parts, provider: str = "openai", **fields: Any) -> tuple[RunCore, ModelCall]:
    run = parts.run(step="classify")
    values: dict[str, Any] = {"status": "ok", "tokens_in": 1200, "tokens_out": 80, "cost_usd": Decimal("0.0123"),
                              "latency_s": 1.2345, "started_at": "2026-03-14T10:00:00.000Z"}
    values.update(fields)
    return run, model_call(run, provider=provider, model="gpt-x", **values)


def test_an_answered_call_is_one_llm_call_line_with_its_meter(parts: Parts) -> None:
    _, call = answered(parts)
    metering(parts).after_model_call(call)
    [line] = parts.events("llm_call")
    assert {k: line.get(k) for k in ("correlation_id", "workflow", "step", "provider", "model", "tokens_in",
                                     "tokens_out", "cost_usd", "run_cost_usd", "latency_ms", "attempt", "status",
                                     "started_at", "cost_known")} == {
        "correlation_id": CID, "workflow": "test", "step": "classify", "provider": "openai", "model": "gpt-x",
        "tokens_in": 1200, "tokens_out": 80, "cost_usd": 0.0123, "run_cost_usd": 0.0123, "latency_ms": 1234.5,
        "attempt": 1, "status": "ok", "started_at": "2026-03-14T10:00:00.000Z", "cost_known": None}


def test_a_paid_answer_makes_the_journal_precious_and_is_on_disk(parts: Parts) -> None:
    run, call = answered(parts)
    metering(parts).after_model_call(call)
    # Then the journal is written now, so a crash after this never pays again
    assert run.journal.precious
    [entry] = [json.loads(l) for l in run.claim.journal_path.read_text().splitlines()]
    assert entry["type"] == "call" and entry["cost_usd"] == "0.0123" and entry["tokens_in"] == 1200
    # and a restart reads the meter back: the run's cost survives
    again = Journal(run.claim.journal_path, parts.sync)
    assert again.cost_usd == Decimal("0.0123") and again.tokens == {"input": 1200, "output": 80}


def test_an_offline_call_is_metered_but_does_not_make_the_journal_precious(parts: Parts) -> None:
    run, call = answered(parts, provider="offline", cost_usd=Decimal(0))
    metering(parts).after_model_call(call)
    assert not run.journal.precious
    assert not run.claim.journal_path.exists()
    assert run.journal.tokens == {"input": 1200, "output": 80}  # the sidecar still gets its meter
    assert [l["provider"] for l in parts.events("llm_call")] == ["offline"]


@pytest.mark.parametrize(("status", "cost_usd", "precious"), [
    ("error", "0", False),       # refused before any work: may be asked again
    ("timeout", "0.05", True),   # may have been billed: never repeated
    ("ok", "0", True),           # an answer, even a free one, is not asked again
])
def test_which_calls_are_precious(parts: Parts, status: str, cost_usd: str, precious: bool) -> None:
    run, call = answered(parts, status=status, cost_usd=Decimal(cost_usd))
    metering(parts).after_model_call(call)
    assert run.journal.precious is precious
    assert run.claim.journal_path.exists() is precious


def test_a_call_of_unknown_cost_says_so(parts: Parts) -> None:
    _, call = answered(parts, status="timeout", cost_known=False)
    metering(parts).after_model_call(call)
    [line] = parts.events("llm_call")
    assert line["cost_known"] is False and line["status"] == "timeout"


def test_metrics_count_calls_tokens_cost_and_slow_calls(parts: Parts) -> None:
    guard = metering(parts, slow_call_s=1.0)
    for latency_s in (0.5, 1.5, 3.0):
        _, call = answered(parts, latency_s=latency_s)
        guard.after_model_call(call)
    assert parts.metric("agentd_llm_calls_total", provider="openai", model="gpt-x", status="ok") == 3
    assert parts.metric("agentd_llm_tokens_total", model="gpt-x", direction="input") == 3600
    assert parts.metric("agentd_llm_tokens_total", model="gpt-x", direction="output") == 240
    assert parts.metric("agentd_llm_cost_usd_total", model="gpt-x") == pytest.approx(0.0369)
    assert parts.metric("agentd_llm_slow_calls_total", model="gpt-x") == 2
    guard.update_latency_quantiles()
    assert parts.metric("agentd_llm_latency_quantile_seconds", model="gpt-x", quantile="0.5") == 1.5
    assert parts.metric("agentd_llm_latency_quantile_seconds", model="gpt-x", quantile="0.95") == 3.0
