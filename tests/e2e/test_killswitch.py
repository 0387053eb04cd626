"""The kill switch and the admin endpoints: one command stops every model and tool call."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, audit_events, cli, sidecars, terminal_files, wait_until


@pytest.mark.timeout(120)
def test_the_kill_switch_stops_new_calls_within_a_second_and_work_resumes_after(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a slowish model and 50 files waiting
    server = llm_server(delay_s=0.2)
    agent = daemon(**server.env())
    for i in range(50):
        (home / "incoming" / f"k{i:02d}.txt").write_text(f"letter {i}")
    wait_until(lambda: server.count() >= 3, message="calls under way")
    # When the kill switch goes on from the CLI
    result = cli(None, "kill-switch", "on", "--reason", "runaway costs", env=agent.env)
    assert result.returncode == 0, result.stderr
    engaged_at = time.monotonic()
    time.sleep(1.0)
    after_one_second = server.count()
    time.sleep(2.0)
    # Then no new request reaches the model from 1 s on, files wait, health and audit say why
    assert server.count() == after_one_second
    health = agent.health()
    assert health["status"] == "degraded" and "kill switch engaged" in health["reasons"]
    assert health["kill_switch"]["engaged"] is True
    waiting = len([p for p in (home / "incoming").iterdir()])
    assert waiting > 0 and sidecars(home, "failed") == []
    event = audit_events(home, "kill_switch")[-1]
    assert event["engaged"] is True and event["reason"] == "runaway costs"
    status = cli(None, "kill-switch", "status", env=agent.env)
    assert "ON" in status.stdout and "runaway costs" in status.stdout
    # And it survives a restart
    agent.stop()
    agent = daemon(**server.env())
    time.sleep(1.0)
    assert server.count() == after_one_second and agent.health()["kill_switch"]["engaged"]
    # When it is released, every file is processed
    assert cli(None, "kill-switch", "off", env=agent.env).returncode == 0
    wait_until(lambda: len(terminal_files(home)["archive"]) == 50, timeout=60, message="all 50 archived")
    assert time.monotonic() - engaged_at > 1


def test_admin_endpoints_need_the_token(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon(ADMIN_TOKEN="s3cret-admin-token")
    assert agent.request("POST", "/admin/kill-switch")[0] == 401
    assert agent.request("POST", "/admin/kill-switch", headers={"Authorization": "Bearer wrong"})[0] == 401
    assert agent.request("DELETE", "/admin/kill-switch", headers={"Authorization": "s3cret-admin-token"})[0] == 401
    assert agent.health()["kill_switch"]["engaged"] is False
    good = {"Authorization": "Bearer s3cret-admin-token", "Content-Type": "application/json"}
    status, _ = agent.request("POST", "/admin/kill-switch", headers=good, body=b'{"reason": "maintenance"}')
    assert status == 200
    wait_until(lambda: agent.health()["kill_switch"]["engaged"], message="engaged over HTTP")
    assert audit_events(home, "kill_switch")[-1]["reason"] == "maintenance"
    assert agent.request("DELETE", "/admin/kill-switch", headers=good)[0] == 200
    wait_until(lambda: not agent.health()["kill_switch"]["engaged"], message="released over HTTP")


def test_no_admin_routes_without_a_token(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    assert agent.request("POST", "/admin/kill-switch", headers={"Authorization": "Bearer "})[0] == 404
    assert agent.request("DELETE", "/admin/kill-switch")[0] == 404


def test_an_idle_daemon_sees_the_kill_switch_at_once_in_health_and_before_the_next_claim(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given an idle daemon (its tick is slower then)
    agent = daemon()
    time.sleep(1.5)
    # When the switch goes on from the CLI and a file arrives right after
    assert cli(None, "kill-switch", "on", "--reason", "audit", env=agent.env).returncode == 0
    health = agent.health()
    (home / "incoming" / "late.txt").write_text("Invoice 7 total 12 EUR\n")
    # Then /health says so without waiting for a tick, and the file is never claimed
    assert health["status"] == "degraded" and health["kill_switch"]["engaged"] is True
    time.sleep(2.0)
    assert (home / "incoming" / "late.txt").exists() and not any(terminal_files(home).values())
    events = [json.loads(line) for line in agent.output().splitlines() if line.startswith("{")]
    assert [e["engaged"] for e in events if e["event"] == "kill_switch"] == [True]  # logged once, by the first read
    assert cli(None, "kill-switch", "off", env=agent.env).returncode == 0
    wait_until(lambda: terminal_files(home)["archive"], timeout=20, message="late.txt archived after the release")


@pytest.mark.timeout(60)
def test_a_kill_switch_file_that_is_not_an_object_engages_it_and_never_crash_loops_the_daemon(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a kill switch file holding valid JSON that is not an object
    (home / "state").mkdir(parents=True, exist_ok=True)
    (home / "state" / "kill_switch.json").write_text("[]")
    # When the daemon starts and a file arrives
    agent = daemon()
    (home / "incoming" / "held.txt").write_text("Invoice 8 total 13 EUR\n")
    # Then it is up and degraded, the switch engaged with a reason that says why, in /health and the CLI
    health = agent.health()
    assert health["status"] == "degraded" and health["kill_switch"]["engaged"] is True
    assert "not an object" in health["kill_switch"]["reason"]
    shown = cli(None, "kill-switch", "status", env=agent.env)
    assert shown.returncode == 0 and "ON" in shown.stdout and "not an object" in shown.stdout
    as_json = json.loads(cli(None, "kill-switch", "status", "--json", env=agent.env).stdout)  # stdout: only JSON
    assert as_json["engaged"] is True and as_json["failing_safe"] is True
    # and the file waits (a probe of the gate: the switch released by the CLI lets it through)
    assert (home / "incoming" / "held.txt").exists() and not any(terminal_files(home).values())
    assert cli(None, "kill-switch", "off", env=agent.env).returncode == 0
    wait_until(lambda: terminal_files(home)["archive"], timeout=20, message="held.txt archived after the release")
    assert agent.proc is not None and agent.proc.poll() is None and agent.starts == 1
    events = [json.loads(line) for line in agent.output().splitlines() if line.startswith("{")]
    assert any(e["event"] == "kill_switch_file_malformed" and "not an object" in e["reason"] for e in events)
