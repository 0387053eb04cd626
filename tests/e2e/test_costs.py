"""Metering, caps that cannot be overshot, redaction of secrets and /metrics, through the daemon."""
from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentd.guards.budget import Budget
from agentd.errors import BudgetError, Paused
from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, audit_events, cli, sidecar_for, sidecars, wait_until

PRICE_IN, PRICE_OUT = Decimal("1.00"), Decimal("2.00")  # FakeLLM.env()'s prices, USD per MTok


def _drop(home: Path, count: int, prefix: str = "doc") -> list[str]:
    names = []
    for i in range(count):
        name = f"{prefix}-{i:03d}.txt"
        (home / "incoming" / name).write_text(f"{prefix} {i}: please pay the attached invoice.")
        names.append(name)
    return names


def test_audited_tokens_and_cost_match_the_server_and_every_view_agrees(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server(usage=(1234, 321))
    agent = daemon(**server.env())
    names = _drop(home, 3)
    metas = [wait_until(lambda n=n: sidecar_for(home, n)) for n in names]
    calls = audit_events(home, "llm_call")
    assert len(calls) == 3
    expected = (1234 * PRICE_IN + 321 * PRICE_OUT) / Decimal(1_000_000)
    for call in calls:
        assert (call["tokens_in"], call["tokens_out"]) == (1234, 321)
        assert abs(Decimal(str(call["cost_usd"])) - expected) < Decimal("1e-6")
        assert call["provider"] == "openai" and call["status"] == "ok" and call["attempt"] == 1
        assert call["run_cost_usd"] == call["cost_usd"] and call["latency_ms"] >= 0
    for meta in metas:
        assert abs(Decimal(str(meta["cost_usd"])) - expected) < Decimal("1e-6")
        assert meta["tokens"] == {"input": 1234, "output": 321}
    report = json.loads(cli(None, "costs", "--by", "run", "--json", env=agent.env).stdout)
    by_run = {row["run"]: row for row in report["rows"]}
    for meta in metas:
        assert abs(by_run[meta["correlation_id"]]["cost_usd"] - meta["cost_usd"]) < 1e-9
    assert abs(report["total"]["cost_usd"] - sum(c["cost_usd"] for c in calls)) < 1e-9
    assert report["total"]["tokens_in"] == 3 * 1234
    table = cli(None, "costs", "--by", "model", env=agent.env).stdout
    assert "openai:fake-model" in table and "total" in table


def test_a_run_cap_below_one_call_sends_nothing(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    daemon(MAX_COST_PER_RUN="0.0001", **server.env())
    _drop(home, 2)
    wait_until(lambda: len(sidecars(home)) == 2)
    for meta in sidecars(home):
        assert meta["outcome"] == "failed" and meta["error_class"] == "budget"
        assert meta["reason"] == "run_budget_exceeded"
    assert server.count() == 0


@pytest.mark.timeout(90)
def test_a_daily_budget_is_never_overshot_by_concurrent_runs(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given calls of a known cost and a daily budget worth about 4.5 of them, 8 runs in flight
    server = llm_server(usage=(1500, 100))
    call_usd = (1500 * PRICE_IN + 100 * PRICE_OUT) / Decimal(1_000_000)
    budget = call_usd * Decimal("4.5")
    agent = daemon(DAILY_BUDGET_USD=str(budget), AGENTD_CONCURRENCY="8", LLM_MAX_OUTPUT_TOKENS="100",
                   **server.env())
    # When 20 files arrive
    names = _drop(home, 20)
    wait_until(lambda: agent.health()["status"] == "degraded", timeout=30, message="budget spent")
    time.sleep(1.5)
    # Then spend stays within the budget, the rest wait in incoming/, health says why
    spent = sum(Decimal(str(c["cost_usd"])) for c in audit_events(home, "llm_call"))
    assert spent <= budget
    assert server.count() >= 2
    health = agent.health()
    assert "daily budget spent" in health["reasons"]
    assert health["spend_today_usd"] <= float(budget)
    waiting = {p.name for p in (home / "incoming").iterdir()}
    archived = {m["original_name"] for m in sidecars(home, "archive")}
    assert sidecars(home, "failed") == []
    assert waiting | archived == set(names) and len(waiting) >= 10
    alerts = sorted(e["percent"] for e in audit_events(home, "budget_alert"))
    assert alerts[:1] == [50] and len(alerts) == len(set(alerts))
    assert any('"budget_alert"' in line for line in agent.output().splitlines())


def test_the_budget_refuses_before_it_can_be_overshot(tmp_path: Path) -> None:
    budget = Budget(Decimal("1"), Decimal("0.010"), tmp_path).load()
    held = [budget.reserve(f"r{i}", Decimal("0.003")) for i in range(3)]
    with pytest.raises(Paused):
        budget.reserve("r3", Decimal("0.003"))
    assert budget.daily_exhausted()
    for reservation in held:
        budget.settle(reservation, Decimal("0.001"))
    assert not budget.daily_exhausted()
    assert budget.spent_today == Decimal("0.003")
    with pytest.raises(BudgetError):
        budget.reserve("r0", Decimal("0.9999"))
    budget.save()
    reloaded = Budget(Decimal("1"), Decimal("0.010"), tmp_path).load()
    assert reloaded.spent_today == Decimal("0.003")


def test_spend_not_yet_saved_is_recovered_from_the_audit_log(tmp_path: Path) -> None:
    from agentd.audit import AuditLog
    audit = AuditLog(tmp_path / "logs").open()
    budget = Budget(Decimal("1"), Decimal("1"), tmp_path, audit_seq=lambda: audit.last.seq).load()
    for cost in ("0.010", "0.020"):
        settled = budget.settle(budget.reserve("r", Decimal("0.1")), Decimal(cost))
        audit.append("llm_call", correlation_id="r", cost_usd=Decimal(cost))
        assert settled == []
    budget.save()
    audit.append("llm_call", correlation_id="r", cost_usd=Decimal("0.004"))  # then a SIGKILL
    audit.flush_now()
    recovered = Budget(Decimal("1"), Decimal("1"), tmp_path).load(tmp_path / "logs")
    assert recovered.spent_today == Decimal("0.034")
    assert Budget(Decimal("1"), Decimal("1"), tmp_path / "nowhere").load(tmp_path / "logs").spent_today \
        == Decimal("0.034")


def test_secrets_never_appear_in_files_or_output(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    api_canary, admin_canary = "sk-canary-LLMKEY-0123456789abcdef", "admin-canary-TOKEN-abcdef0123456789"
    server = llm_server(api_key="the-right-key-which-we-do-not-send")  # 401s that echo the key sent
    env = {**server.env(), "LLM_API_KEY": api_canary, "ADMIN_TOKEN": admin_canary}
    agent = daemon(**env)
    _drop(home, 3)
    # a rejected key pauses claiming: the files wait in incoming/, none fails for it
    wait_until(lambda: "model credentials rejected" in agent.health()["reasons"], timeout=30)
    status, _ = agent.request("POST", "/admin/kill-switch", headers={"Authorization": f"Bearer {admin_canary}"})
    assert status == 200
    agent.request("DELETE", "/admin/kill-switch", headers={"Authorization": "Bearer wrong-" + admin_canary})
    agent.stop()
    assert server.count() >= 1  # the server did answer 401 to our canary key
    assert sidecars(home) == [] and len(list((home / "incoming").iterdir())) == 3
    texts = [agent.output()]
    texts += [p.read_bytes().decode(errors="replace") for p in home.rglob("*") if p.is_file()]
    for text in texts:
        assert api_canary not in text and admin_canary not in text
        assert "LLMKEY-0123" not in text and "TOKEN-abcdef" not in text


def test_metrics_parse_with_prometheus_own_parser(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    agent = daemon(**server.env())
    _drop(home, 2)
    wait_until(lambda: len(sidecars(home)) == 2)
    status, body = agent.request("GET", "/metrics")
    assert status == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    for name in ("agentd_files", "agentd_run_duration_seconds", "agentd_llm_calls", "agentd_llm_tokens",
                 "agentd_llm_cost_usd", "agentd_queue_depth", "agentd_breaker_state",
                 "agentd_daily_budget_used_ratio", "agentd_kill_switch"):
        assert name in families, f"{name} missing from /metrics"
    files = [s for s in families["agentd_files"].samples if s.name == "agentd_files_total"]
    assert sum(s.value for s in files if s.labels == {"workflow": "triage", "outcome": "archived"}) == 2
    calls = [s for s in families["agentd_llm_calls"].samples if s.name == "agentd_llm_calls_total"]
    assert sum(s.value for s in calls if s.labels["status"] == "ok") == 2
