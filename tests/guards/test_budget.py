"""Budget caps (agentd.guards.budget): reserve before, settle after, across UTC midnight; the guard's alerts."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from agentd.errors import BudgetError, Paused
from agentd.guards.base import Guards, ToolCall
from agentd.audit import utcnow_iso
from agentd.durable.journal import unanswered_in
from agentd.guards.budget import SPEND_FILE, Budget, BudgetGuard
from agentd.guards.metering import MeteringGuard
from tests.guards.parts import CID, Parts, make_parts, model_call
from tests.tools.support import config as make_config

D = Decimal
BEFORE_MIDNIGHT = datetime(2026, 3, 14, 23, 59, 50, tzinfo=timezone.utc).timestamp()
AFTER_MIDNIGHT = datetime(2026, 3, 15, 0, 0, 10, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return make_parts(tmp_path / "home")


def budget(parts: Parts, clock: Clock, per_run: str = "100", daily: str = "10") -> Budget:
    return Budget(max_cost_per_run=D(per_run), daily_budget_usd=D(daily), state_dir=parts.config.state_dir,
                  clock=clock)


def test_a_settle_after_midnight_releases_its_own_day_and_spends_there(parts: Parts) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    b = budget(parts, clock)
    # Given a call reserved at 23:59:50 and a second one still open on that day
    first = b.reserve("run-a", D("2"))
    b.reserve("run-c", D("1"))
    assert first.day == "2026-03-14"
    # When the clock passes midnight and a new call reserves on the new day
    clock.now = AFTER_MIDNIGHT
    second = b.reserve("run-b", D("3"))
    assert second.day == "2026-03-15"
    # And the first call settles after midnight
    b.settle(first, D("1.5"))
    # Then exactly its reservation left its own day, its cost went to that day, and the new day is untouched
    assert b.reserved["2026-03-14"] == D("1")
    assert b.spent["2026-03-14"] == D("1.5")
    assert b.reserved_today == D("3")
    assert b.spent_today == D("0")
    assert b.run_spent("run-a") == D("1.5")


def test_the_new_day_has_its_whole_budget_while_old_reservations_are_in_flight(parts: Parts) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    b = budget(parts, clock)
    old = b.reserve("run-a", D("9"))
    with pytest.raises(Paused):  # the old day is nearly used up
        b.reserve("run-b", D("2"))
    clock.now = AFTER_MIDNIGHT
    # the old day's 9 in flight does not count against the new day's 10
    whole = b.reserve("run-b", D("10"))
    with pytest.raises(Paused) as paused:
        b.reserve("run-c", D("0.01"))
    assert paused.value.reason == "daily_budget_exhausted"
    b.settle(old, D("9"))
    b.settle(whole, D("4"))
    assert b.spent_today == D("4")
    # once nothing of the old day is held, it is forgotten
    assert "2026-03-14" not in b.spent and "2026-03-14" not in b.reserved


def test_a_settle_after_midnight_does_not_alert_the_new_day(parts: Parts) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    b = budget(parts, clock)
    late = b.reserve("run-a", D("9.9"))
    clock.now = AFTER_MIDNIGHT
    assert b.settle(late, D("9.9")) == []
    assert b.spent_today == D("0")
    assert b.used_ratio() == 0.0


def test_saved_spend_is_the_current_day_only(parts: Parts) -> None:
    clock = Clock(BEFORE_MIDNIGHT)
    b = budget(parts, clock)
    b.settle(b.reserve("run-a", D("3")), D("3"))
    late = b.reserve("run-a", D("2"))
    clock.now = AFTER_MIDNIGHT
    b.settle(late, D("2"))
    b.settle(b.reserve("run-b", D("1")), D("0.25"))
    b.save()
    saved = json.loads((parts.config.state_dir / SPEND_FILE).read_text())
    assert saved["day"] == "2026-03-15" and D(saved["spent_usd"]) == D("0.25")
    # a restart the same day starts from what was saved
    again = budget(parts, clock).load()
    assert again.spent_today == D("0.25")


def test_the_run_cap_refuses_before_any_request(parts: Parts) -> None:
    b = budget(parts, Clock(AFTER_MIDNIGHT), per_run="0.50", daily="0")
    held = b.reserve("run-a", D("0.30"))
    with pytest.raises(BudgetError) as refused:
        b.reserve("run-a", D("0.30"))  # 0.30 held + 0.30 > 0.50
    assert refused.value.reason == "run_budget_exceeded" and refused.value.error_class == "budget"
    b.reserve("run-b", D("0.30"))  # another run has its own cap
    b.settle(held, D("0.10"))
    b.reserve("run-a", D("0.40"))  # 0.10 spent + 0.40 fits exactly


def test_a_call_with_unknown_cost_is_settled_at_its_reservation(parts: Parts) -> None:
    clock = Clock(AFTER_MIDNIGHT)
    b = budget(parts, clock)
    guards = Guards([MeteringGuard(parts.audit, parts.metrics, b.run_spent), BudgetGuard(b, parts.audit)])
    run = parts.run()
    guards.before("run", run)
    call = model_call(run, worst_usd="0.20")
    # Given a call that timed out: the provider may bill it, but no usage came back
    guards.before("model_call", call)
    call.status, call.cost_known, call.cost_usd = "timeout", False, D("0")
    guards.after("model_call", call)
    # Then the day and the run are charged the most it could have cost, and the llm_call line says so
    assert b.spent_today == D("0.20") and b.reserved_today == D("0")
    assert b.run_spent(run.cid) == D("0.20")
    [line] = parts.events("llm_call")
    assert line["cost_usd"] == 0.2 and line["run_cost_usd"] == 0.2 and line["cost_known"] is False


def test_a_call_with_known_cost_is_settled_at_its_real_cost(parts: Parts) -> None:
    b = budget(parts, Clock(AFTER_MIDNIGHT))
    guard = BudgetGuard(b, parts.audit)
    call = model_call(parts.run(), worst_usd="0.20")
    guard.before_model_call(call)
    assert b.reserved_today == D("0.20")
    call.cost_usd = D("0.013")
    guard.after_model_call(call)
    assert b.spent_today == D("0.013") and b.reserved_today == D("0")


def test_alerts_at_50_80_95_once_per_day(parts: Parts) -> None:
    clock = Clock(BEFORE_MIDNIGHT - 3600)
    b = budget(parts, clock)
    guard = BudgetGuard(b, parts.audit)
    run = parts.run()

    def spend(usd: str) -> None:
        call = model_call(run, worst_usd=usd)
        guard.before_model_call(call)
        call.cost_usd = D(usd)
        guard.after_model_call(call)

    for usd in ("4.9", "0.1", "0.5", "3", "0.9", "0.5"):  # 4.9, 5.0, 5.5, 8.5, 9.4, 9.9
        spend(usd)
    assert [l["percent"] for l in parts.events("budget_alert")] == [50, 80, 95]
    # the next day alerts again, and one big call crosses several marks in order
    clock.now = AFTER_MIDNIGHT
    b.max_cost_per_run = D("100")
    spend("9.6")
    lines = parts.events("budget_alert")
    assert [(l["percent"], l["day"]) for l in lines] == [
        (50, "2026-03-14"), (80, "2026-03-14"), (95, "2026-03-14"),
        (50, "2026-03-15"), (80, "2026-03-15"), (95, "2026-03-15")]
    assert lines[3]["budget_usd"] == 10.0 and lines[3]["spent_usd"] == 9.6


def test_the_guard_blocks_claims_model_and_tool_calls_but_not_steps_once_exhausted(parts: Parts) -> None:
    b = budget(parts, Clock(AFTER_MIDNIGHT), daily="1")
    guard = BudgetGuard(b, parts.audit)
    run = parts.run()
    assert guard.blocks("claim") is None
    b.settle(b.reserve("run-a", D("0.95")), D("0.95"))
    with pytest.raises(Paused):
        guard.before_model_call(model_call(run, worst_usd="0.10"))  # refused: 0.05 left
    assert {kind: guard.blocks(kind) for kind in ("claim", "step", "model", "tool")} == {
        "claim": "daily_budget_exhausted", "step": None, "model": "daily_budget_exhausted",
        "tool": "daily_budget_exhausted"}
    with pytest.raises(Paused) as paused:
        guard.before_tool_call(ToolCall(run=run, name="echo", params={}))
    assert paused.value.reason == "daily_budget_exhausted"
    # a call that still fits goes; once the day is spent the gate stays shut
    b.settle(b.reserve("run-a", D("0.05")), D("0.05"))
    assert b.daily_exhausted()


def test_a_zero_daily_budget_means_no_daily_cap(parts: Parts) -> None:
    b = budget(parts, Clock(AFTER_MIDNIGHT), daily="0")
    b.settle(b.reserve("run-a", D("50")), D("50"))
    assert not b.daily_exhausted() and b.used_ratio() == 0.0
    assert BudgetGuard(b, parts.audit).blocks("claim") is None
    assert parts.events("budget_alert") == []


def test_configure_applies_new_caps(parts: Parts) -> None:
    b = budget(parts, Clock(AFTER_MIDNIGHT), per_run="0.10", daily="0")
    guard = BudgetGuard(b, parts.audit)
    with pytest.raises(BudgetError):
        b.reserve("run-a", D("0.20"))
    guard.configure(make_config(parts.config.home, max_cost_per_run=D("1"), daily_budget_usd=D("0")))
    b.reserve("run-a", D("0.20"))


def test_a_resumed_run_starts_with_what_it_already_cost(parts: Parts) -> None:
    b = budget(parts, Clock(AFTER_MIDNIGHT), per_run="0.50", daily="0")
    guard = BudgetGuard(b, parts.audit)
    run = parts.run()
    run.journal.note_call(precious=True, cost_usd="0.45", tokens_in=1, tokens_out=1)
    guard.before_run(run)
    with pytest.raises(BudgetError):
        b.reserve(run.cid, D("0.10"))
    guard.after_run(run, None)
    assert b.run_spent(run.cid) == D("0")


async def _crashed_with_a_request_out(parts: Parts) -> str:
    """A run's journal on disk with a model intent and no meter: the process died with the request out."""
    run = parts.run()
    intent = await run.journal.intend(kind="model", provider="scripted", model="m-1", step="work", attempt=1,
                                      worst_usd="0.30", tokens_in=1000, tokens_out=100_000)
    run.journal.close()
    return intent


def _restarted(parts: Parts, daily: str = "1") -> Budget:
    """The daemon's start-up: spend.json, the audit log, and the processing journals' unanswered intents."""
    b = Budget(max_cost_per_run=D("100"), daily_budget_usd=D(daily), state_dir=parts.config.state_dir,
               clock=time.time, audit_seq=lambda: parts.audit.last.seq)  # as lifecycle/services.py wires it
    return b.load(parts.config.logs_dir, unanswered=unanswered_in(parts.config.processing))


async def test_an_unanswered_intent_is_held_at_start_and_charged_once_when_its_run_resumes(parts: Parts) -> None:
    intent = await _crashed_with_a_request_out(parts)
    # When the daemon starts again
    b = _restarted(parts)
    # Then the call is held against the day at its worst case (a reservation: never saved as spent)
    assert (b.reserved_today, b.spent_today) == (D("0.30"), D("0"))
    with pytest.raises(Paused):
        b.reserve("another-run", D("0.75"))  # 0.30 + 0.75 > 1
    b.save()
    assert json.loads((parts.config.state_dir / SPEND_FILE).read_text())["spent_usd"] == "0"
    # When its run resumes, it is charged to the day and to the run, with one llm_call line
    run = parts.run(resumed=True)
    guard = BudgetGuard(b, parts.audit)
    guard.before_run(run)
    assert (b.reserved_today, b.spent_today, b.run_spent(run.cid)) == (D("0"), D("0.30"), D("0.30"))
    [line] = parts.events("llm_call")
    assert (line["status"], line["intent"], line["cost_usd"], line["cost_known"]) == ("unanswered", intent, 0.3, False)
    assert run.cost_usd == D("0.30") and len(run.journal.calls) == 1
    run.journal.close()
    # and a further restart counts it once, from the audit log: the journal has its meter now
    b.save()
    again = _restarted(parts)
    assert (again.reserved_today, again.spent_today) == (D("0"), D("0.30"))
    guard = BudgetGuard(again, parts.audit)
    resumed = parts.run(resumed=True)
    guard.before_run(resumed)
    assert len(parts.events("llm_call")) == 1 and again.spent_today == D("0.30")


async def test_an_intent_the_audit_log_already_charged_is_not_held_or_charged_again(parts: Parts) -> None:
    # Given a crash after the llm_call line of a call and before its meter reached the journal
    intent = await _crashed_with_a_request_out(parts)
    parts.audit.append("llm_call", correlation_id=CID, intent=intent, cost_usd=D("0.02"), status="ok",
                       started_at=utcnow_iso())
    parts.audit.flush_now()
    # When the daemon starts and the run resumes
    b = _restarted(parts)
    assert (b.reserved_today, b.spent_today) == (D("0"), D("0.02"))
    run = parts.run(resumed=True)
    BudgetGuard(b, parts.audit).before_run(run)
    # Then the day keeps the one charge the audit log has; the run counts the call (at its worst case)
    assert b.spent_today == D("0.02") and len(parts.events("llm_call")) == 1
    assert run.journal.unanswered() == [] and b.run_spent(run.cid) == D("0.30")


async def test_a_charged_unanswered_intent_alerts_like_any_call_and_the_day_stops_tool_calls(parts: Parts) -> None:
    await _crashed_with_a_request_out(parts)
    b = _restarted(parts, daily="0.35")  # 0.30 of 0.35: past 80 %
    guard = BudgetGuard(b, parts.audit)
    guard.before_run(parts.run(resumed=True))
    assert [e["percent"] for e in parts.events("budget_alert")] == [50, 80]
    # and a tool call that waited while a refused call showed the day spent stops right before it acts
    with pytest.raises(Paused):
        b.reserve("another-run", D("0.10"))
    with pytest.raises(Paused) as paused:
        guard.before_tool_effect(ToolCall(run=parts.run(cid="b" * 32), name="echo", params={}))
    assert paused.value.reason == "daily_budget_exhausted"
