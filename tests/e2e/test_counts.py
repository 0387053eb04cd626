"""Queue counts as a user sees them: /health, `agentd status` and /metrics agree on processing/ while
runs are in flight, and the terminal counts follow each move without a rescan."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import AgentdProcess, cli, terminal_files, wait_until

FIXTURE = str(Path(__file__).resolve().parent.parent / "workflows_fixture.py")
IN_FLIGHT = 3


def _metric_depths(agent: AgentdProcess) -> dict[str, float]:
    status, body = agent.request("GET", "/metrics")
    assert status == 200
    return {s.labels["folder"]: s.value for family in text_string_to_metric_families(body.decode())
            if family.name == "agentd_queue_depth" for s in family.samples}


def _status_counts(agent: AgentdProcess) -> dict[str, int]:
    shown = cli(None, "status", "--json", env=agent.env)
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)["counts"]


def test_processing_is_counted_everywhere_while_runs_are_in_flight_and_moves_follow(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given slow runs (each step waits) and room for all of them at once
    agent = daemon(AGENTD_WORKFLOWS=FIXTURE, TEST_SLOW_STEP_S="4", AGENTD_CONCURRENCY=str(IN_FLIGHT + 1))
    (home / "incoming" / "slow").mkdir()
    for i in range(IN_FLIGHT):
        (home / "incoming" / "slow" / f"s{i}.txt").write_text(f"slow {i}")
    # When they are all claimed and running
    wait_until(lambda: agent.health()["queue"]["processing"] == IN_FLIGHT, timeout=15,
               message="three runs in flight on /health")
    # Then /health, `agentd status` and /metrics say so, and nothing is finished yet
    health = agent.health()
    assert health["in_flight"] == IN_FLIGHT and health["queue"]["archive"] == 0
    assert _status_counts(agent)["processing"] == IN_FLIGHT
    depths = _metric_depths(agent)
    assert depths["processing"] == IN_FLIGHT and depths["archive"] == 0
    # When they finish
    wait_until(lambda: len(terminal_files(home)["archive"]) == IN_FLIGHT, timeout=30, message="all archived")
    # Then the counts moved with the files: processing empty, archive full, on every view
    wait_until(lambda: agent.health()["queue"]["processing"] == 0, timeout=5, message="processing back to 0")
    assert agent.health()["queue"]["archive"] == IN_FLIGHT
    depths = _metric_depths(agent)
    assert (depths["processing"], depths["archive"]) == (0, IN_FLIGHT)
    status = _status_counts(agent)
    assert (status["processing"], status["archive"]) == (0, IN_FLIGHT)

