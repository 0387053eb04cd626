"""A SIGKILL at each moment that matters (AGENTD_CRASH_AT) loses nothing, repeats no paid call, and
never decides a run twice, even when the restart has another review threshold or the kill switch on."""
from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Callable

import pytest

from agentd.durable.crash import POINTS

CRASH_POINTS = tuple(POINTS)
from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, audit_events, cli, sidecars, terminal_files, wait_until

FIXTURE = Path(__file__).parent.parent / "workflows_fixture.py"
DECIDED = ("after_outcome_line", "after_sidecar", "before_final_rename", "after_final_rename")


def _crash(agent: AgentdProcess) -> None:
    """Wait for the daemon to kill itself at its crash point, and prove it did."""
    assert agent.proc is not None
    agent.proc.wait(timeout=20)
    assert agent.proc.returncode == -signal.SIGKILL, agent.output()[-2000:]


def _one_terminal_file(home: Path) -> tuple[str, Path]:
    found = [(folder, path) for folder, paths in terminal_files(home).items() for path in paths]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.timeout(90)
@pytest.mark.parametrize("restart", ["stricter_review", "kill_switch_on"])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_at_each_point_ends_the_file_once(
        point: str, restart: str, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    # Given a daemon that kills itself at `point` while it runs one file with a paid model call
    server = llm_server()
    agent = daemon(AGENTD_CRASH_AT=point, **server.env())
    (home / "incoming" / "letter.txt").write_text("Dear team, the report is attached. Regards, Ann")
    _crash(agent)
    paid_before = server.count()
    # When it restarts with a review threshold that would send the file to review/ if decided
    # again (every answer is 0.9), or with the kill switch on
    env = dict(server.env(), AGENTD_REVIEW_CONFIDENCE="0.95")
    if restart == "kill_switch_on":
        assert cli(home, "kill-switch", "on", "--reason", "crash test").returncode == 0
    agent = daemon(**env)
    if restart == "kill_switch_on" and point not in DECIDED:
        # an undecided run waits while the kill switch is on; nothing reaches a terminal folder
        wait_until(lambda: agent.health()["status"] == "degraded", message="degraded by the kill switch")
        assert sum(len(v) for v in terminal_files(home).values()) == 0
        assert cli(home, "kill-switch", "off").returncode == 0
    wait_until(lambda: sum(len(v) for v in terminal_files(home).values()) == 1, timeout=20,
               message="the file in a terminal folder")
    agent.stop()
    # Then the file is in exactly one terminal place, with its sidecar, and nothing is left behind
    folder, path = _one_terminal_file(home)
    assert os.path.exists(str(path) + ".meta.json")
    assert [p.name for p in (home / "processing").iterdir() if not p.name.startswith(".")] == []
    assert list((home / "incoming").iterdir()) == []
    # exactly one outcome line per correlation id, and one for this file
    outcomes = Counter(e["correlation_id"] for e in audit_events(home, "outcome"))
    assert set(outcomes.values()) == {1}
    meta = sidecars(home)[0]
    assert outcomes[meta["correlation_id"]] == 1 and meta["original_name"] == "letter.txt"
    if point in DECIDED:  # decided before the crash: never decided again, whatever the new config says
        assert folder == "archive" and meta["outcome"] == "archived"
        assert server.count() == paid_before  # and nothing was asked again
    if point == "after_paid_answer":  # the paid answer came from the journal, not a second request
        assert server.count() == paid_before == 1
    assert cli(home, "audit", "verify").returncode == 0


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
