"""Candidates already queued in the daemon are checked against the gate right before their claim:
after the kill switch goes on, no file is claimed (it waits in incoming/), and all run once it is off."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import AgentdProcess, audit_events, cli, drop_letters, sidecars, wait_until

FIXTURE = str(Path(__file__).parent.parent / "workflows_fixture.py")


def _claimed_after_switch(home: Path) -> tuple[list[dict], list[dict]]:
    events = audit_events(home)
    switch = next(i for i, e in enumerate(events) if e["event"] == "kill_switch" and e["engaged"])
    return ([e for e in events[:switch] if e["event"] == "claimed"],
            [e for e in events[switch:] if e["event"] == "claimed"])


@pytest.mark.timeout(90)
def test_no_queued_candidate_is_claimed_after_the_kill_switch_goes_on(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a burst of slow files, two at a time in flight and the work queue full behind them
    agent = daemon(AGENTD_WORKFLOWS=FIXTURE, AGENTD_CONCURRENCY="2", TEST_SLOW_STEP_S="5")
    names = drop_letters(home, 8, prefix="burst", folder="slow")
    wait_until(lambda: (h := agent.health())["in_flight"] == 2 and h["work_queue"]["size"] == 2, timeout=20,
               message="two in flight and two queued")
    # When the kill switch goes on mid-burst
    assert cli(home, "kill-switch", "on", "--reason", "mid-burst").returncode == 0
    # Then the runs claimed before it are put back to wait, the queue empties, nothing was claimed after it
    wait_until(lambda: len(audit_events(home, "waiting")) >= len(_claimed_after_switch(home)[0]) and
               (h := agent.health())["in_flight"] == 0 and h["work_queue"]["size"] == 0, timeout=30,
               message="the runs claimed before the switch waiting and the queue empty")
    before, after = _claimed_after_switch(home)
    assert after == [], [e["original_name"] for e in after]
    assert len(before) >= 2 and sidecars(home) == []
    assert sorted(p.name for p in (home / "incoming" / "slow").iterdir()) == names
    # and once it is off, every file runs, each once
    assert cli(home, "kill-switch", "off").returncode == 0
    wait_until(lambda: len(sidecars(home)) == len(names), timeout=60, message="all files done")
    assert sorted(m["original_name"] for m in sidecars(home, "archive")) == names
