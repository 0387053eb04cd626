"""Crashes the crash sweep (tests/e2e/test_crash_sweep.py, every registered point) does not make: a kill
after the outcome line while a stranger takes the file's name, and a file that kills the daemon each time."""
from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import AgentdProcess, audit_events, sidecars, terminal_files, wait_until

FIXTURE = Path(__file__).parent.parent / "workflows_fixture.py"


def _crash(agent: AgentdProcess) -> None:
    """Wait for the daemon to kill itself at its crash point, and prove it did."""
    assert agent.proc is not None
    agent.proc.wait(timeout=20)
    assert agent.proc.returncode == -signal.SIGKILL, agent.output()[-2000:]


@pytest.mark.timeout(60)
def test_a_run_recovered_from_its_outcome_line_keeps_its_name_when_a_stranger_took_it(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a crash after the outcome line named archive/report.txt
    agent = daemon(AGENTD_CRASH_AT="after_outcome_line")
    (home / "incoming" / "report.txt").write_text("quarterly report")
    _crash(agent)
    # and someone put another file of that name into archive/ meanwhile
    (home / "archive" / "report.txt").write_text("a stranger")
    # When the daemon restarts
    agent = daemon()
    wait_until(lambda: len(terminal_files(home)["archive"]) == 2, message="both files in archive/")
    agent.stop()
    # Then both files are there: the stranger untouched, ours under a free name with its sidecar
    assert (home / "archive" / "report.txt").read_text() == "a stranger"
    ours = [p for p in terminal_files(home)["archive"] if p.name != "report.txt"]
    assert len(ours) == 1 and ours[0].read_text() == "quarterly report"
    assert sidecars(home)[0]["original_name"] == "report.txt"


@pytest.mark.timeout(90)
def test_a_file_that_crashes_the_daemon_each_time_fails_with_crash_loop(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a file whose run kills the daemon every time (a parser that segfaults on it)
    env = {"AGENTD_WORKFLOWS": str(FIXTURE), "AGENTD_MAX_RESUMES": "2"}
    (home / "incoming" / "crasher").mkdir(parents=True)
    (home / "incoming" / "crasher" / "poison.txt").write_text("a file the daemon never survives")
    # When the daemon is restarted after each crash, as systemd does
    crashes = 0
    for _ in range(3):  # the first run and two resumes
        agent = daemon(wait=False, **env)
        _crash(agent)
        crashes += 1
    agent = daemon(**env)
    wait_until(lambda: terminal_files(home)["failed"], message="the file in failed/")
    agent.stop()
    # Then after AGENTD_MAX_RESUMES resumes it is not resumed again: failed/, reason crash_loop
    resumed = audit_events(home, "resumed")
    assert crashes == 3 and [r["crash_resumes"] for r in resumed] == [1, 2, 3]
    meta = sidecars(home, "failed")[0]
    assert (meta["reason"], meta["error_class"], meta["original_name"]) == ("crash_loop", "internal", "poison.txt")
    assert Counter(e["correlation_id"] for e in audit_events(home, "outcome"))[meta["correlation_id"]] == 1
