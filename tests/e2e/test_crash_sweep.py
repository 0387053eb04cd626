"""The crash-point sweep: a SIGKILL at every point of agentd/durable/crash.py, then a restart with another
configuration (and the kill switch on, then off), and every promise checked (tests/e2e/sweep/).

The cases are parametrized over POINTS: a point registered there is swept without a line here, and a
point its scenario's driver never reaches fails its case (the kill is proven by exit status and by the
point's own last words on stderr). The summary line at the end of the run says what was covered.
"""
from __future__ import annotations

import json
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
PAID_RESTARTS = ("budget_spent",)  # only where a run pays: a day cap below what today has already cost
SPENT_BUDGET_USD = "0.0001"  # below one answer's $0.0002 (tests/fakellm.py's usage at its prices)
CASES = [(point, restart) for point, p in POINTS.items()
         for restart in RESTARTS + (PAID_RESTARTS if SCENARIOS[p.scenario].calls_per_run else ())]
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


def _held(case: Case, scenario: Scenario, env: dict[str, str], checks: Checks) -> AgentdProcess:
    """Restart held (the kill switch on, or a day cap below what today has cost): runs decided before
    the crash finish, nothing else moves, no model or tool call is made; then the hold is lifted."""
    home, hold = case.home, case.restart.replace("_", " ")
    visible, calls, recoverable, claims = _visible(home), scenario.calls(case), _recoverable(home), _claims(home)
    starts = len(audit_events(home, "startup"))
    if case.restart == "kill_switch":
        assert cli(home, "kill-switch", "on", "--reason", "crash sweep").returncode == 0
        agent = case.daemon(**env)
        wait_until(lambda: agent.health()["status"] == "degraded", message="the daemon degraded by the kill switch")
    else:  # this life's cap is not one the others' spend must fit: it may only add nothing
        agent = case.daemon(**{**env, "DAILY_BUDGET_USD": SPENT_BUDGET_USD})
    # the positive signals first: this life has started, ended what was decided, and holds the rest
    wait_until(lambda: len(audit_events(home, "startup")) > starts, message="the restarted daemon's startup line")
    wait_until(lambda: _visible(home) >= recoverable, timeout=SETTLE_S, message="runs decided before the crash ended")
    wait_until(lambda: _looked_at(home, claims, starts), timeout=SETTLE_S,
               message=f"every recovered run resumed, and the undecided ones held by the {hold}")
    # a reviewer's decision is no run's work: a hold does not stop its recovery
    decisions = {(folder, name) for sub, name in visible if sub == "review" for folder in ("archive", "failed")}
    moved = _visible(home) - visible - recoverable - decisions
    if case.restart == "kill_switch":
        checks.that(not moved, "nothing undecided reached a terminal folder under the kill switch", moved)
    else:  # a run that needs no new paid call may finish; one whose own cap is spent fails; none fails for the day
        failed = {name: _reason(home, "failed", name) for folder, name in moved if folder == "failed"}
        checks.that(set(failed.values()) <= {"run_budget_exceeded"}, "no file failed for the day's budget "
                    "(they wait in incoming/)", failed)
    checks.that(scenario.calls(case) == calls, f"no model or tool call under the {hold}", (scenario.calls(case), calls))
    if case.restart == "kill_switch":
        assert cli(home, "kill-switch", "off").returncode == 0
        return agent
    agent.stop()
    return case.daemon(**env)


def _reason(home: Path, folder: str, name: str) -> str:
    return str(json.loads((home / folder / f"{name}.meta.json").read_text()).get("reason"))


def _settled(case: Case) -> bool:
    home = case.home
    done = {p.name for paths in terminal_files(home).values() for p in paths}
    return len(done) >= len(case.dropped) and not any((home / "processing").iterdir()) and \
        not any(p.is_file() for p in (home / "incoming").rglob("*"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("point", "restart"), CASES, ids=[f"{p}-{r}" for p, r in CASES])
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
    # When agentd restarts with another configuration (or held by the kill switch or the day's budget first)
    env = scenario.restart_env(case)
    case.lives.append(env)
    agent = daemon(**env) if restart == "other_config" else _held(case, scenario, env, checks)
    scenario.after_restart(case, agent)
    wait_until(lambda: _settled(case), timeout=SETTLE_S, message="every dropped file in a terminal folder")
    agent.stop()
    # Then each file is in one place with its own sidecar, decided once, paid once, within the caps
    found = check_places(checks, home, case.dropped)
    check_audit(checks, home, found, before)
    check_caps(checks, home, found, case.lives, before)
    scenario.check(checks, case, found, before)
    TALLY.failed.remove(f"{point}/{restart}")


@pytest.mark.timeout(60)
def test_a_point_its_scenario_never_reaches_fails_its_case(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM], hook: Webhook) -> None:
    # Given a registered point the offline driver never reaches (a review decision's)
    case = Case("review_after_record", "other_config", home, daemon, llm_server(), hook)
    # When the offline scenario runs with it: every file is finished and the daemon lives on
    returncode, output = SCENARIOS["offline"].provoke(case)
    # Then the sweep's proof of the kill fails, naming the point, and no kill is counted
    kills, invariants = TALLY.kills, TALLY.invariants
    with pytest.raises(AssertionError, match="the process was SIGKILLed"):
        proves_kill(Checks("review_after_record [offline]"), returncode, output, "review_after_record")
    assert returncode is None and TALLY.kills == kills
    assert len([p for paths in terminal_files(home).values() for p in paths]) == 2
    TALLY.invariants = invariants  # this check was about the sweep, not about agentd
