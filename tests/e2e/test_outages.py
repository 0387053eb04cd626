"""While the model API is down, files wait, for every kind of down: a run that already paid waits
in place through 503s, timeouts and refused connections; a rejected key (401) or a removed model
(404) pauses claiming, says why in /health, tries again with backoff and resumes by itself (a new
key loaded by SIGHUP is tried at once). Nothing fails for it; no paid answer is bought twice."""
from __future__ import annotations

import signal
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.e2e.model_calls import WORKFLOWS, drop
from tests.e2e.outage_workflows import FIRST_SYSTEM, SECOND_SYSTEM
from tests.fakellm import FakeLLM, Fault, Seen, status
from tests.fakewire import default_answer
from tests.helpers import AgentdProcess, audit_events, base_env, sidecar_for, sidecars, terminal_files, wait_until


class SecondCallDown:
    """A responder: the second ask of a run gets `fault` while `down` is set; everything else is answered."""

    def __init__(self, fault: Fault):
        self.fault = fault
        self.down = threading.Event()
        self.down.set()

    def __call__(self, seen: Seen) -> Any:
        if SECOND_SYSTEM in seen.prompt and self.down.is_set():
            return self.fault
        return default_answer(seen)


def _failed_seconds(server: FakeLLM) -> int:
    return sum(1 for s in list(server.requests) if SECOND_SYSTEM in s.prompt and s.fault != "ok")


def _wait_in_place(home: Path, name: str) -> None:
    """The paid run is still in processing/ (with its journal), not back in incoming/, not failed."""
    assert sidecars(home, "failed") == []
    assert [p.name for p in (home / "incoming" / "two_calls").iterdir()] == []
    held = [p.name for p in (home / "processing").iterdir()]
    assert any(n.endswith(".journal.jsonl") for n in held) and any(not n.startswith(".") for n in held), held
    assert sidecar_for(home, name) is None


@pytest.mark.timeout(90)
@pytest.mark.parametrize("fault, rounds", [(status(503), 4), (Fault("hang"), 4), (status(401), 2), (status(404), 2)],
                         ids=["503", "timeout", "401", "404"])
def test_a_run_that_paid_waits_through_failures_of_its_second_call_and_finishes(
        fault: Fault, rounds: int, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    # Given a two-call workflow whose second call gets 503s (or hangs past LLM_TIMEOUT_S, or is refused
    # with 401, or finds its model gone: 404) until told
    responder = SecondCallDown(fault)
    server = llm_server(responder=responder, hang_s=3, usage=(200, 30))
    daemon(AGENTD_WORKFLOWS=WORKFLOWS, LLM_TIMEOUT_S="1", **server.env())
    # When a file runs, its first call is answered and paid, and its second fails round after round
    (name,) = drop(home, 1, folder="two_calls")
    wait_until(lambda: _failed_seconds(server) >= rounds, timeout=40, message="rounds of failed second calls")
    # Then it waits in place, nothing fails
    _wait_in_place(home, name)
    # and when the server answers again it finishes, the first answer not bought twice
    responder.down.clear()
    meta = wait_until(lambda: sidecar_for(home, name), timeout=40, message="an outcome")
    assert meta["outcome"] == "archived" and sidecars(home, "failed") == []
    assert server.count(contains=FIRST_SYSTEM) == 1
    assert server.count(contains=SECOND_SYSTEM, fault="ok") == 1
    calls = audit_events(home, "llm_call")
    assert len(calls) == server.count() and {c["status"] for c in calls} == {"ok", fault.label if fault.kind ==
                                                                               "status" else "timeout"}
    assert meta["llm_calls"] == len(calls)


@pytest.mark.timeout(90)
def test_a_run_that_paid_waits_while_its_second_call_is_refused_and_finishes(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a two-call workflow with a 2 s pause between the calls
    server = llm_server(usage=(200, 30))
    daemon(AGENTD_WORKFLOWS=WORKFLOWS, TEST_PAUSE_S="2", **server.env())
    (name,) = drop(home, 1, folder="two_calls")
    # When the server goes away (its port closed) after the first answer, before the second ask
    wait_until(lambda: audit_events(home, "llm_call"), timeout=20, message="the first call paid")
    server.stop_thread()
    wait_until(lambda: sum(c["status"] == "network" for c in audit_events(home, "llm_call")) >= 4, timeout=40,
               message="refused second calls")
    # Then the run waits in place; refused calls cost nothing
    _wait_in_place(home, name)
    refused = [c for c in audit_events(home, "llm_call") if c["status"] == "network"]
    assert all(float(c["cost_usd"]) == 0 for c in refused)
    # and when the server is back on its port, it finishes with the first answer not bought twice
    server.start_thread()
    meta = wait_until(lambda: sidecar_for(home, name), timeout=40, message="an outcome")
    assert meta["outcome"] == "archived" and sidecars(home, "failed") == []
    assert server.count(contains=FIRST_SYSTEM) == 1 and server.count(contains=SECOND_SYSTEM) == 1


def _start_with_env_file(request: pytest.FixtureRequest, home: Path, env_file: Path,
                         **overrides: Any) -> AgentdProcess:
    """agentd run --env-file: LLM_API_KEY only in the file, so SIGHUP can load a new one."""
    env = base_env(home, **overrides)
    env.pop("LLM_API_KEY", None)
    agent = AgentdProcess(home, env, args=("--env-file", str(env_file)))
    request.addfinalizer(agent.kill)
    return agent.start()


def _first_and_trial(home: Path, code: str) -> tuple[list[dict], list[dict]]:
    """The llm_call lines answered `code`: the first burst (within 2 s of the first) and the trials after it."""
    calls = [c for c in audit_events(home, "llm_call") if c["status"] == code]
    if not calls:
        return [], []
    first = _epoch(calls[0]["ts"])
    return [c for c in calls if _epoch(c["ts"]) - first < 2], [c for c in calls if _epoch(c["ts"]) - first >= 2]


def _epoch(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(90)
def test_a_rejected_key_pauses_the_backlog_and_a_new_key_by_sighup_resumes_it(
        request: pytest.FixtureRequest, home: Path, llm_server: Callable[..., FakeLLM]) -> None:
    # Given a server that accepts only the key sk-new, and a daemon whose env file has a revoked key
    server = llm_server(api_key="sk-new-0000000000000000")
    env_file = home.parent / "agentd.env"
    env_file.write_text("LLM_API_KEY=sk-revoked-1111111111111111\n")
    agent = _start_with_env_file(request, home, env_file, **server.env())
    # When 3 files arrive
    names = drop(home, 3)
    # Then /health is degraded with the reason, the files wait in incoming/, none fails
    wait_until(lambda: "model credentials rejected" in agent.health()["reasons"], timeout=20, message="degraded")
    assert agent.health()["status"] == "degraded"
    # and the key is tried again only after the first backoff (5 s): one trial
    wait_until(lambda: _first_and_trial(home, "401")[1], timeout=30, message="a trial after the backoff")
    burst, trials = _first_and_trial(home, "401")
    assert len(burst) <= 3 and len(trials) == 1, (len(burst), len(trials))
    assert 4 <= _epoch(trials[0]["ts"]) - _epoch(burst[0]["ts"]) <= 12  # the first backoff is 5 s (not 20)
    assert server.count() == len(burst) + len(trials) == server.count(fault="401")
    assert sidecars(home) == []
    wait_until(lambda: {p.name for p in (home / "incoming").iterdir()} == set(names), message="all back in incoming/")
    # When the operator loads another key the server rejects too (SIGHUP): it is tried at once, and kept secret
    assert agent.proc is not None
    refused = server.count(fault="401")
    env_file.write_text("LLM_API_KEY=sk-wrong-2222222222222222\n")
    agent.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: server.count(fault="401") > refused, timeout=5, message="the second key tried at once")
    assert server.requests[-1].headers["Authorization"] == "Bearer sk-wrong-2222222222222222"
    wait_until(lambda: audit_events(home, "llm_call")[-1]["status"] == "401", message="its refusal audited")
    # and then writes the right key into the env file and sends SIGHUP
    env_file.write_text("LLM_API_KEY=sk-new-0000000000000000\n")
    agent.proc.send_signal(signal.SIGHUP)
    # Then every file is archived, with no restart, and nothing failed
    wait_until(lambda: len(terminal_files(home)["archive"]) == 3, timeout=20, message="3 archived")
    assert [sidecar_for(home, n)["outcome"] for n in names] == ["archived"] * 3
    assert server.count(fault="ok") == 3 and agent.starts == 1 and agent.proc.poll() is None
    wait_until(lambda: agent.health()["status"] == "ok", timeout=10, message="health ok again")
    written = agent.output() + "".join(p.read_text() for p in (home / "logs").glob("audit*.jsonl"))
    assert "sk-revoked" not in written and "sk-wrong-2222" not in written and "sk-new-0000" not in written


@pytest.mark.timeout(90)
def test_a_removed_model_pauses_the_backlog_and_work_resumes_when_it_answers(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a server that answers 404 for the only model configured
    server = llm_server(models={"fake-model": {"faults": {"404": 1.0}}})
    agent = daemon(**server.env())
    # When 3 files arrive
    names = drop(home, 3)
    # Then /health says "model not found", the files wait in incoming/, a trial goes after the backoff
    wait_until(lambda: "model not found" in agent.health()["reasons"], timeout=20, message="degraded")
    wait_until(lambda: _first_and_trial(home, "404")[1], timeout=30, message="a trial after the backoff")
    burst, trials = _first_and_trial(home, "404")
    assert len(burst) <= 3 and len(trials) == 1 and 4 <= _epoch(trials[0]["ts"]) - _epoch(burst[0]["ts"]) <= 12
    assert sidecars(home) == [] and server.count() == server.count(fault="404")
    # When the model is back
    server.clear()
    # Then at the next trial the files are archived, with no restart, and nothing failed
    wait_until(lambda: len(terminal_files(home)["archive"]) == 3, timeout=40, message="3 archived")
    assert [sidecar_for(home, n)["outcome"] for n in names] == ["archived"] * 3
    wait_until(lambda: agent.health()["status"] == "ok", timeout=10, message="health ok again")


@pytest.mark.timeout(60)
def test_a_removed_model_is_replaced_by_its_fallback(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a primary model the server no longer has (404) and a fallback that answers
    server = llm_server(models={"fake-model": {"faults": {"404": 1.0}}})
    agent = daemon(**server.env(fallbacks="fake-backup"))
    # When 3 files arrive
    names = drop(home, 3)
    # Then they are archived through the fallback, nothing waits or fails
    wait_until(lambda: len(terminal_files(home)["archive"]) == 3, timeout=30, message="3 archived")
    for name in names:
        meta = sidecar_for(home, name)
        assert meta["outcome"] == "archived"
        assert [m["model"] for m in meta["models"]] == ["fake-backup"]
    assert server.count(model="fake-backup", fault="ok") == 3 and server.count(model="fake-model") >= 1
    assert "model not found" not in agent.health()["reasons"]
    routes = audit_events(home, "llm_route")
    assert routes and all(r["model"] == "fake-backup" and r["decision"] == "fallback" for r in routes)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("down", ["503", "refused"])
def test_a_model_down_for_everyone_fails_no_file_before_its_breaker_opens(
        down: str, home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a model that answers nobody (503 to everything, or its port closed), one file, and a
    # breaker that needs 5 failed rounds to open: fewer failures than that come from one file
    server = llm_server(usage=(200, 30))
    if down == "503":
        server.down()
    else:
        server.stop_thread()
    agent = daemon(**server.env())
    (name,) = drop(home, 1)
    failed_calls = lambda: [c for c in audit_events(home, "llm_call") if c["status"] != "ok"]  # noqa: E731
    # When its calls fail round after round (3 attempts a round)
    wait_until(lambda: len(failed_calls()) >= 7, timeout=40, message="a third round: the file still waits")
    # Then it is not failed for it: it waits, and nothing was billed for calls that were not answered
    assert sidecars(home) == [] and all(float(c["cost_usd"]) == 0 for c in failed_calls())
    assert agent.health()["failed"] == 0
    # and when the model answers again the file is archived
    if down == "503":
        server.up()
    else:
        server.start_thread()
    meta = wait_until(lambda: sidecar_for(home, name), timeout=60, message="an outcome")
    assert meta["outcome"] == "archived" and server.count(fault="ok") == 1


@pytest.mark.timeout(60)
def test_a_file_the_model_fails_while_it_answers_others_still_fails_after_one_more_go(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a server that answers 500 to one document, and answers every other one
    server = llm_server(responder=lambda seen: status(500) if "poison" in (seen.document or "")
                        else default_answer(seen))
    daemon(AGENTD_CONCURRENCY="2", **server.env())
    (target := home / "incoming" / "a-poison.txt").write_text("a poison letter the model cannot take")
    names = drop(home, 6)
    # When they run: the others are answered while its attempts fail
    meta = wait_until(lambda: sidecar_for(home, target.name), timeout=40, message="its outcome")
    # Then it fails as network after two rounds of attempts, and the others are archived
    assert meta["outcome"] == "failed" and meta["reason"] == "model_unreachable" and meta["error_class"] == "network"
    assert server.count(contains="a poison letter") == 6
    wait_until(lambda: len(sidecars(home, "archive")) == 6, timeout=20, message="the others archived")
    assert {m["original_name"] for m in sidecars(home, "archive")} == set(names)


@pytest.mark.timeout(60)
def test_a_key_loaded_by_sighup_that_the_server_rejects_and_echoes_is_never_written(
        request: pytest.FixtureRequest, home: Path, llm_server: Callable[..., FakeLLM]) -> None:
    # Given a daemon working with a good key, and a server that echoes a rejected key in its 401 body
    server = llm_server(api_key="sk-good-3333333333333333")
    env_file = home.parent / "agentd.env"
    env_file.write_text("LLM_API_KEY=sk-good-3333333333333333\n")
    agent = _start_with_env_file(request, home, env_file, **server.env())
    drop(home, 1, prefix="before")
    wait_until(lambda: len(sidecars(home, "archive")) == 1, timeout=20, message="archived with the good key")
    # When the operator loads a wrong key by SIGHUP and a file arrives
    env_file.write_text("LLM_API_KEY=sk-typo-4444444444444444\n")
    assert agent.proc is not None
    agent.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: audit_events(home, "config_reloaded"), message="the reload")
    drop(home, 1, prefix="after")
    wait_until(lambda: "model credentials rejected" in agent.health()["reasons"], timeout=20, message="degraded")
    # Then the wrong key reached the server but is written nowhere: not in the log, the audit log, /health
    assert server.count(fault="401") >= 1 and "sk-typo-4444" in str(server.requests[-1].headers)
    written = agent.output() + "".join(p.read_text() for p in (home / "logs").glob("audit*.jsonl"))
    assert "model_outage" in agent.output()
    assert "sk-typo-4444" not in written and "sk-typo-4444" not in str(agent.health())
    assert sidecars(home, "failed") == []
