"""A claim that keeps stalling (its run raises outside the steps, every time) is not retried forever:
after AGENTD_MAX_RESUMES retries it ends in failed/ with reason crash_loop, and the daemon goes on."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import AgentdProcess, audit_events, sidecar_for, wait_until

WORKFLOWS = str(Path(__file__).with_name("stall_workflows.py"))


@pytest.mark.timeout(90)
def test_a_claim_that_keeps_stalling_ends_in_failed_with_crash_loop(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a run whose outcome can never be written (it raises after its steps, each time)
    agent = daemon(AGENTD_WORKFLOWS=WORKFLOWS, AGENTD_MAX_RESUMES="1")
    folder = home / "incoming" / "unfinishable"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stuck.txt").write_text("a file whose run cannot be finished")
    # Then after its retries it lands in failed/ as crash_loop, once, and nothing is left in processing/
    meta = wait_until(lambda: sidecar_for(home, "stuck.txt"), timeout=60, message="the stalled run ended")
    assert meta["outcome"] == "failed" and meta["reason"] == "crash_loop", meta
    assert (home / "failed" / "stuck.txt").exists()
    assert [p.name for p in (home / "processing").iterdir() if not p.name.startswith(".")] == []
    resumed = [e for e in audit_events(home, "resumed") if e["correlation_id"] == meta["correlation_id"]]
    assert [e["crash_resumes"] for e in resumed] == [1, 2]
    assert len([e for e in audit_events(home, "outcome") if e["correlation_id"] == meta["correlation_id"]]) == 1
    # and the daemon goes on with other files
    (home / "incoming" / "next.txt").write_text("Dear team, the report is attached. Regards, Ann")
    assert wait_until(lambda: sidecar_for(home, "next.txt"), timeout=20)["outcome"] == "archived"
    assert agent.health()["status"] == "ok"
