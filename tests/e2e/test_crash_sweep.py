"""The crash-point sweep: a SIGKILL at every point of agentd/durable/crash.py, then a restart with another
configuration (and the kill switch on, then off), and every promise checked (tests/e2e/sweep/).

The cases are parametrized over POINTS: a point registered there is swept without a line here, and a
point its scenario's driver never reaches fails its case (the kill is proven by exit status and by the
point's own last words on stderr). The summary line at the end of the run says what was covered.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from agentd.durable.crash import POINTS
from tests.e2e.sweep.invariants import FOLDER_OF, Checks, Decided, check_audit, check_caps, check_places, proves_kill
from tests.e2e.sweep.scenarios import SCENARIOS, Case, Scenario
from tests.e2e.sweep.tally import TALLY
from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, audit_events, cli, terminal_files, wait_until
from tests.tools.webhook import Webhook

RESTARTS = ("other_config", "kill_switch")
SETTLE_S = 25.0  # how long the second life may take to finish everything


@pytest.fixture
def hook() -> Iterator[Webhook]:
    with Webhook() as receiver:
        yield receiver


def _visible(home: Path) -> set[tuple[str, str]]:
    return {(folder, p.name) for folder, paths in terminal_files(home).items() for p in paths}


def _claims(home: Path) -> set[str]:
    """The correlation ids of the claims in processing/."""
    return {entry.name.split(".", 1)[0] for entry in (home / "processing").iterdir() if not entry.name.startswith(".")}


def _recoverable(home: Path) -> set[tuple[str, str]]:
    """Where the claims in processing/ whose outcome line is logged must end: (folder, name)."""
    claims = _claims(home)
    return {(FOLDER_OF[e["outcome"]], e["file"]) for e in audit_events(home, "outcome") if e["correlation_id"] in claims}


def _looked_at(home: Path, claims: set[str], starts: int) -> bool:
    """This life resumed every undecided claim left in processing/, and one of them (if any) says it is
    held: a `paused` step or a `waiting` line since its start (a decided claim is ended, not resumed)."""
    events = audit_events(home)
    began = [i for i, e in enumerate(events) if e["event"] == "startup"][starts:]
    if not began:
        return False
    since = events[began[0]:]
    resumed = {e.get("correlation_id") for e in since if e["event"] == "resumed"}
    decided = {e["correlation_id"] for e in events if e["event"] == "outcome"}
    held = any(e["event"] == "waiting" or (e["event"] == "step" and e.get("status") == "paused") for e in since)
    return resumed >= claims - decided and (held or claims <= decided)


def _held_by_the_switch(case: Case, scenario: Scenario, env: dict[str, str], checks: Checks) -> AgentdProcess:
    """Restart with the kill switch on: runs decided before the crash finish, nothing else moves, no
    model or tool call is made; then the switch goes off."""
    home = case.home
    visible, calls, recoverable, claims = _visible(home), scenario.calls(case), _recoverable(home), _claims(home)
    assert cli(home, "kill-switch", "on", "--reason", "crash sweep").returncode == 0
    starts = len(audit_events(home, "startup"))
    agent = case.daemon(**env)
    # the positive signals first: this life has started, says it is held, and ended what was decided
    wait_until(lambda: len(audit_events(home, "startup")) > starts and agent.health()["status"] == "degraded",
               message="the restarted daemon degraded by the kill switch")
    wait_until(lambda: _visible(home) >= recoverable, timeout=SETTLE_S, message="runs decided before the crash ended")
    wait_until(lambda: _looked_at(home, claims, starts), timeout=SETTLE_S,
               message="every recovered run resumed, and the undecided ones paused by the switch")
    # a reviewer's decision is no run's work: the switch does not hold its recovery
    decisions = {(folder, name) for sub, name in visible if sub == "review" for folder in ("archive", "failed")}
    allowed = visible | recoverable | decisions
    checks.that(_visible(home) <= allowed, "nothing undecided reached a terminal folder while the kill switch is on",
                _visible(home) - allowed)
    checks.that(scenario.calls(case) == calls, "no model or tool call while the kill switch is on",
                (scenario.calls(case), calls))
    assert cli(home, "kill-switch", "off").returncode == 0
    return agent


def _settled(case: Case) -> bool:
    home = case.home
    done = {p.name for paths in terminal_files(home).values() for p in paths}
    return len(done) >= len(case.dropped) and not any((home / "processing").iterdir()) and \
        not any(p.is_file() for p in (home / "incoming").rglob("*"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("restart", RESTARTS)
@pytest.mark.parametrize("point", tuple(POINTS))
def test_a_kill_at_each_crash_point_keeps_every_promise(
        point: str, restart: str, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM], hook: Webhook) -> None:
    scenario = SCENARIOS[POINTS[point].scenario]
    case = Case(point, restart, home, daemon, llm_server(), hook)
    checks = Checks(f"{point} [{scenario.name}, restart {restart}]")
    TALLY.restarts.add(restart)
    TALLY.failed.append(f"{point}/{restart}")  # taken off again when the case passes
    # Given a process that SIGKILLs itself at `point`, and the proof that it did, there
    returncode, output = scenario.provoke(case)
    proves_kill(checks, returncode, output, point)
    before = Decided.read(home)
    # When agentd restarts with another configuration (and with the kill switch on, then off)
    env = scenario.restart_env(case)
    case.lives.append(env)
    agent = _held_by_the_switch(case, scenario, env, checks) if restart == "kill_switch" \
        else daemon(**env)
    scenario.after_restart(case, agent)
    wait_until(lambda: _settled(case), timeout=SETTLE_S, message="every dropped file in a terminal folder")
    agent.stop()
    # Then each file is in one place with its own sidecar, decided once, paid once, within the caps
    found = check_places(checks, home, case.dropped)
    check_audit(checks, home, found, before)
    check_caps(checks, home, found, case.lives, before)
    scenario.check(checks, case, found, before)
    TALLY.failed.remove(f"{point}/{restart}")
