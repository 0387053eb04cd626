"""The model as an unreliable component, through the real daemon and a fault-injecting server."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from tests.fakellm import FakeLLM, answer, status
from tests.helpers import AgentdProcess, audit_events, drop_letters, sidecar_for, sidecars, terminal_files, wait_until

FIXTURE = str(Path(__file__).resolve().parent.parent / "workflows_fixture.py")


def _drop(home: Path, count: int, prefix: str = "doc", folder: str = "") -> list[str]:
    return drop_letters(home, count, prefix, folder, text="{prefix} number {i}: a short business letter.")


@pytest.mark.timeout(180)
def test_a_fault_mix_archives_most_files_and_never_storms_the_server(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given 20 % 500s, 10 % 429 (Retry-After: 1), 5 % malformed bodies and 2 % hangs
    server = llm_server(seed=7, hang_s=10, faults={"500": 0.20, status(429, retry_after_s=1): 0.10,
                                                   "malformed": 0.05, "hang": 0.02})
    daemon(LLM_TIMEOUT_S="3", AGENTD_CONCURRENCY="8", LLM_BREAKER_FAILURES="20", **server.env())
    names = _drop(home, 100)
    # When 100 files run
    wait_until(lambda: len(sidecars(home)) == 100, timeout=150, message="100 outcomes")
    # Then at least 80 are archived, the rest failed as network or model
    metas = [sidecar_for(home, n) for n in names]
    archived = [m for m in metas if m["outcome"] == "archived"]
    failed = [m for m in metas if m["outcome"] == "failed"]
    assert len(archived) >= 80, [m.get("reason") for m in failed]
    assert {m["error_class"] for m in failed} <= {"network", "model"}
    # And no file storms the server: at most three goes of LLM_MAX_ATTEMPTS=3 (its first, one after a
    # wait while no model had answered anyone yet, as a first file can meet, and one strike), and
    # in all at most two and a half requests a file (a storm is many times that)
    per_file = server.documents()
    assert max(per_file.values()) <= 9, per_file.most_common(3)
    assert sum(per_file.values()) <= 2.5 * len(names), sum(per_file.values())
    statuses = {e["status"] for e in audit_events(home, "llm_call")}
    assert {"ok", "500", "429"} <= statuses


@pytest.mark.timeout(120)
def test_an_outage_fails_nothing_and_work_resumes_by_itself(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a server that answers 503 to everything for 20 s while 30 files wait
    server = llm_server()
    server.down()
    agent = daemon(LLM_BREAKER_FAILURES="3", LLM_BREAKER_RESET_S="5", **server.env())
    names = _drop(home, 30)
    wait_until(lambda: agent.health()["status"] == "degraded", timeout=20, message="degraded")
    health = agent.health()
    assert "model circuit open" in health["reasons"]
    time.sleep(3)  # the calls in flight when the circuit opened end
    before = server.count()
    time.sleep(15)
    trials = server.count() - before
    assert sidecars(home, "failed") == []
    assert health["queue"]["incoming"] + health["queue"]["processing"] >= 25
    # a trial call per 5 s breaker period, no more
    assert 1 <= trials <= 15 / 5 + 1, trials
    # When the server comes back, with no restart
    server.up()
    wait_until(lambda: len(terminal_files(home)["archive"]) == 30, timeout=60, message="30 archived")
    assert [sidecar_for(home, n)["outcome"] for n in names] == ["archived"] * 30
    assert wait_until(lambda: agent.health()["status"] == "ok", timeout=10)


def test_schema_invalid_answers_are_reasked_twice_then_fail_as_model(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    server.script("schema_invalid", "schema_invalid", "schema_invalid")
    daemon(**server.env())
    _drop(home, 1, "bad")
    meta = wait_until(lambda: sidecar_for(home, "bad-000.txt"))
    assert meta["outcome"] == "failed" and meta["error_class"] == "model" and meta["reason"] == "invalid_output"
    assert server.count() == 3 and meta["llm_calls"] == 3
    server.script("not_json")
    _drop(home, 1, "good")
    meta = wait_until(lambda: sidecar_for(home, "good-000.txt"))
    assert meta["outcome"] == "archived" and meta["llm_calls"] == 2
    calls = [e for e in audit_events(home, "llm_call") if e["correlation_id"] == meta["correlation_id"]]
    assert len(calls) == 2 and all(c["cost_usd"] > 0 for c in calls)
    assert abs(meta["cost_usd"] - sum(c["cost_usd"] for c in calls)) < 1e-9


def test_a_kill_after_a_paid_call_does_not_pay_again(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    agent = daemon(AGENTD_WORKFLOWS=FIXTURE, TEST_SLOW_STEP_S="30", **server.env())
    _drop(home, 1, "paid", folder="paid_then_slow")
    wait_until(lambda: server.count() == 1, message="the paid call")
    wait_until(lambda: any(e["event"] == "llm_call" for e in audit_events(home)), message="metered")
    time.sleep(0.3)
    agent.kill()
    assert sidecars(home) == []
    daemon(AGENTD_WORKFLOWS=FIXTURE, TEST_SLOW_STEP_S="0", **server.env())
    meta = wait_until(lambda: sidecar_for(home, "paid-000.txt"), message="resumed run")
    assert meta["outcome"] == "archived"
    assert server.count() == 1, "the model was paid twice"
    assert meta["llm_calls"] == 1 and meta["cost_usd"] > 0


def test_the_fallback_model_takes_over_when_the_primary_is_down(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    server.down(model="primary")
    daemon(LLM_BREAKER_FAILURES="2", **server.env(model="primary", fallbacks="backup"))
    names = _drop(home, 6)
    wait_until(lambda: len(sidecars(home)) == 6, timeout=60, message="6 outcomes")
    for name in names:
        meta = sidecar_for(home, name)
        assert meta["outcome"] == "archived", meta
        assert meta["result"]["model"] == "backup" and meta["models"] == [{"provider": "openai", "model": "backup"}]
    routes = audit_events(home, "llm_route")
    assert any(r["decision"] == "fallback" and r["model"] == "backup" for r in routes)
    assert server.count(model="backup") == 6


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_both_wire_formats_archive_with_metered_usage(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM], provider: str) -> None:
    server = llm_server(usage=(1200, 80))
    daemon(**server.env(provider=provider, model="claude-sonnet-4-5" if provider == "anthropic" else "gpt-4o-mini"))
    _drop(home, 1, provider)
    meta = wait_until(lambda: sidecar_for(home, f"{provider}-000.txt"))
    assert meta["outcome"] == "archived" and meta["result"]["provider"] == provider
    assert meta["tokens"] == {"input": 1200, "output": 80}
    assert server.requests[0].wire == provider


def test_a_length_stop_is_an_outcome_not_a_retry(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    server.script("length")
    daemon(**server.env())
    _drop(home, 1, "long")
    meta = wait_until(lambda: sidecar_for(home, "long-000.txt"))
    assert meta["outcome"] == "failed" and meta["reason"] == "output_truncated" and server.count() == 1


def test_an_answer_is_accepted_as_given(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    server = llm_server()
    server.script(answer({"document_type": "contract", "summary": "A lease.", "entities": {
        "people": [], "organizations": ["Acme Ltd"], "emails": [], "amounts": [], "dates": []},
        "requested_action": "sign", "party": "Acme Ltd", "confidence": 0.97}))
    daemon(**server.env())
    _drop(home, 1, "lease")
    meta = wait_until(lambda: sidecar_for(home, "lease-000.txt"))
    assert meta["result"]["document_type"] == "contract" and meta["result"]["party"] == "Acme Ltd"
