"""A run waiting for an earlier run of the same content, itself paused (kill switch), is paused too:
the watchdog goes on pinging past the stall threshold and /health does not call the pipeline stalled."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import pytest

from tests.e2e.model_calls import WORKFLOWS
from tests.e2e.outage_workflows import SECOND_SYSTEM
from tests.e2e.test_notify import NotifySocket
from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, audit_events, cli, sidecar_for, wait_until

STEP_TIMEOUT_S = 4.0  # over the workflow's pause between its two calls (TEST_PAUSE_S)
TOKEN = "watchdog-admin-0123456789"
STALL_AFTER_S = STEP_TIMEOUT_S + 60  # agentd.server.health: no progress for this long with busy runs


@pytest.mark.timeout(150)
def test_a_copy_waiting_on_a_paused_first_run_counts_as_paused_for_the_watchdog(
        home: Path, tmp_path: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    notify = NotifySocket(tmp_path / "notify.sock")
    try:
        # Given a two-call run whose first answer is paid, and a copy of its content claimed meanwhile
        server = llm_server(usage=(200, 30))
        agent = daemon(AGENTD_WORKFLOWS=WORKFLOWS, TEST_PAUSE_S="3", AGENTD_STEP_TIMEOUT_S=str(STEP_TIMEOUT_S),
                       ADMIN_TOKEN=TOKEN, NOTIFY_SOCKET=str(notify.path), **server.env())
        folder = home / "incoming" / "two_calls"
        folder.mkdir(parents=True, exist_ok=True)
        text = "Dear team, please pay the attached invoice of 120 EUR. Regards, Ann"
        (folder / "first.txt").write_text(text)
        wait_until(lambda: audit_events(home, "llm_call"), timeout=20, message="the first answer paid")
        (folder / "copy.txt").write_text(text)
        wait_until(lambda: agent.health()["in_flight"] == 2, timeout=20, message="both runs in flight")
        # When the kill switch goes on (by /admin: at once) before the first run's second call
        assert agent.request("POST", "/admin/kill-switch", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        # Then both runs count as paused (the copy waits on the paused first one)
        health = wait_until(lambda: (h := agent.health())["paused"] == 2 and h, timeout=20, message="both paused")
        assert health["in_flight"] == 2 and health["status"] == "degraded", health
        paused_at = time.monotonic()
        # and past the stall threshold the daemon still pings the watchdog and is not unhealthy
        wait_until(lambda: [t for t, _ in notify.lines("WATCHDOG=1") if t > paused_at + STALL_AFTER_S + 2],
                   timeout=STALL_AFTER_S + 30, interval=0.5, message="watchdog pings past the stall threshold")
        health = agent.health()
        assert health["status"] == "degraded" and not [r for r in health["reasons"] if "stalled" in r], health
        assert server.count(contains=SECOND_SYSTEM) == 0  # really held by the switch all along
        # and once the switch is off both finish: the copy with the first run's result
        assert cli(home, "kill-switch", "off").returncode == 0
        first = wait_until(lambda: sidecar_for(home, "first.txt"), timeout=20, message="the first run")
        copy = wait_until(lambda: sidecar_for(home, "copy.txt"), timeout=20, message="the copy")
        assert copy["duplicate_of"] == first["correlation_id"] and copy["llm_calls"] == 0
    finally:
        notify.close()
