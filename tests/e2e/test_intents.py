"""Intent before effect, for model calls: a request out when agentd is SIGKILLed is counted at its worst
case after the restart (to the day and to the run), so the caps hold across any number of crashes; a
paid answer is never bought twice, also when the disk fills right after it arrived. The faults are real
(SIGKILL while the fake model server holds the request, a full tmpfs) and proven by the server's count."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Callable

import pytest

from tests.e2e.model_calls import drop, reservation, usd
from tests.fakellm import FakeLLM
from tests.fullfs import fill, small_disk  # noqa: F401  (small_disk: the fixture)
from tests.helpers import AgentdProcess, audit_events, base_env, cli, sidecar_for, sidecars, wait_until

BIG_OUTPUT = "100000"  # max output tokens: a reservation is then about $0.20 at $2/MTok


def _intents_on_disk(home: Path) -> list[dict]:
    found = []
    for path in (home / "processing").glob(".*.journal.jsonl"):
        found += [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [e for e in found if e.get("type") == "intent"]


def _costs_total(home: Path) -> Decimal:
    result = cli(home, "costs", "--json")
    assert result.returncode == 0, result.stderr
    return usd(json.loads(result.stdout)["total"]["cost_usd"])


def _status_spend(home: Path) -> Decimal:
    result = cli(home, "status", "--json")
    assert result.returncode == 0, result.stderr
    return usd(json.loads(result.stdout)["spend_today_usd"])


@pytest.mark.timeout(90)
def test_a_call_out_at_kill_9_is_charged_at_its_worst_case_and_the_run_cap_refuses_the_next(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a model server that holds the first request, reservations of about $0.20, and a run cap
    # with room for one reservation, not two
    server = llm_server(script=["hang"], hang_s=60)
    env = dict(server.env(), LLM_MAX_OUTPUT_TOKENS=BIG_OUTPUT, MAX_COST_PER_RUN="0.30")
    agent = daemon(**env)
    (name,) = drop(home, 1)
    wait_until(lambda: server.count() == 1, timeout=20, message="the request held by the server")
    # Then the call's intent (its reservation) was on disk before the server got the request
    reserved = reservation(server.requests[0])
    assert Decimal("0.15") < reserved <= Decimal("0.30") < 2 * reserved
    (intent,) = _intents_on_disk(home)
    assert usd(intent["worst_usd"]) == reserved and intent["model"] == "fake-model"
    # When agentd is SIGKILLed with the request out, and started again
    agent.kill()
    assert audit_events(home, "llm_call") == []  # nothing metered it before the kill
    daemon(**env)
    meta = wait_until(lambda: sidecar_for(home, name), timeout=30, message="the resumed run's outcome")
    # Then the unanswered call counts at its worst case for the run: the next ask would cross the cap
    assert server.count() == 1
    assert (meta["outcome"], meta["reason"], meta["error_class"]) == ("failed", "run_budget_exceeded", "budget")
    assert usd(meta["cost_usd"]) == reserved and meta["llm_calls"] == 1
    (line,) = audit_events(home, "llm_call")
    assert (line["status"], line["cost_known"], usd(line["cost_usd"])) == ("unanswered", False, reserved)
    assert line["correlation_id"] == meta["correlation_id"] and line["intent"] == intent["id"]
    # and for the day: `agentd costs` and `agentd status` show it
    assert _costs_total(home) == reserved
    wait_until(lambda: abs(_status_spend(home) - reserved) < Decimal("1e-9"), timeout=10, message="status spend")


@pytest.mark.timeout(150)
def test_the_daily_budget_holds_across_kill_9s_with_calls_in_flight(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a model server that holds every request, reservations of about $0.20, DAILY_BUDGET_USD=$0.75
    # (room for 3 reservations, not 4) and 2 runs in flight at once
    server = llm_server(faults={"hang": 1.0}, hang_s=120)
    env = dict(server.env(), LLM_MAX_OUTPUT_TOKENS=BIG_OUTPUT, DAILY_BUDGET_USD="0.75", AGENTD_CONCURRENCY="2",
               LLM_TIMEOUT_S="120", MAX_COST_PER_RUN="5")
    names = drop(home, 4)
    # When agentd is SIGKILLed while 2 requests are out, then again once it sent what the budget allows
    agent = daemon(**env)
    wait_until(lambda: server.count() == 2, timeout=20, message="two requests held")
    agent.kill()
    agent = daemon(**env)
    wait_until(lambda: server.count() == 3, timeout=20, message="the third request held")
    wait_until(lambda: "daily budget spent" in agent.health()["reasons"], timeout=20, message="the budget spent")
    agent.kill()
    agent = daemon(**env)
    # Then after each restart the requests out at the crash count at their worst case: the third start
    # (a positive signal first: it says the budget is spent) sends nothing more
    wait_until(lambda: "daily budget spent" in agent.health()["reasons"], timeout=20, message="the budget spent")
    assert server.count() == 3
    reserved = [reservation(seen) for seen in server.requests]
    assert sum(reserved) <= Decimal("0.75") < sum(reserved) + max(reserved)
    unanswered = [c for c in audit_events(home, "llm_call") if c["status"] == "unanswered"]
    assert len(unanswered) == 3 and len({(c["correlation_id"], c["intent"]) for c in unanswered}) == 3
    assert abs(_costs_total(home) - sum(reserved)) < Decimal("1e-9")
    assert abs(agent.health()["spend_today_usd"] - float(sum(reserved))) < 1e-9
    # and nothing failed for it: the files wait
    assert sidecars(home, "failed") == [] and all(sidecar_for(home, n) is None for n in names)


@pytest.mark.timeout(120)
def test_a_full_disk_right_after_a_paid_answer_holds_the_file_and_never_pays_again(
        small_disk: Path, tmp_path: Path, llm_server: Callable[..., FakeLLM]) -> None:
    # Given AGENTD_HOME on a 3 MiB tmpfs and a model server that answers each request after 3 s
    home = small_disk / "var"
    home.mkdir()
    server = llm_server(delay_s=3.0)
    agent = AgentdProcess(home, base_env(home, AGENTD_DEDUPE="0", **server.env()))
    agent.log_path = tmp_path / "agentd.log"  # its stdout off the full disk
    try:
        agent.start()
        (name,) = drop(home, 1)
        wait_until(lambda: server.count() == 1, timeout=20, message="the request out")
        (journal,) = (home / "processing").glob(".*.journal.jsonl")
        # When the disk is full before the answer arrives
        fill(home / "filler.bin", journal)
        wait_until(lambda: "run_held_io_error" in agent.output(), timeout=20, message="the run held on the error")
        # Then the file is held in processing/, not failed
        assert sidecars(home, "failed") == [] and sidecar_for(home, name) is None
        assert [p for p in (home / "processing").iterdir() if not p.name.startswith(".")]
        # When the disk has room again
        (home / "filler.bin").unlink()
        meta = wait_until(lambda: sidecar_for(home, name), timeout=40, message="the held run's outcome")
        # Then it finishes with the answer it paid for: no second request
        assert meta["outcome"] == "archived", meta
        assert server.count() == 1 and meta["llm_calls"] == 1
        assert [c["status"] for c in audit_events(home, "llm_call")] == ["ok"]
    finally:
        agent.kill()
