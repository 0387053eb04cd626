"""Spend caps that cannot be overshot: reserve the worst case before a call, settle after; its guard.

The day is explicit: a reservation belongs to the UTC day its call started, its settle
releases exactly what it reserved from that day, and the call's cost is spent on that
day. A call whose real cost is unknown (timeout, cancelled, dropped, no usage) is
settled at its reservation: a provider may bill it.

Across a crash: a paid call's intent is in its run's journal before the request leaves. An
intent with no meter (the process died with the request out) is held against its day at
start-up (`load(unanswered=...)`, a reservation: spend.json never includes it) and charged at
its worst case when its run resumes (`charge_unanswered`: an llm_call line with status
`unanswered`, then the run's meter). An intent whose llm_call line the audit log already has
is not held again, so a call is counted once: at its real cost if it was metered, else at
its worst case.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from agentd import logs
from agentd.audit import iter_records_since
from agentd.durable.group import write_json
from agentd.errors import BudgetError, Paused
from agentd.guards.base import Guard, Kind, ModelCall, ToolCall

log = logs.get("agentd.budget")
ALERT_PERCENTS = (50, 80, 95)
SPEND_FILE = "spend.json"
ZERO = Decimal(0)


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Reservation:
    cid: str
    amount: Decimal
    day: str


@dataclass
class _Run:
    spent: Decimal = ZERO
    reserved: Decimal = ZERO


@dataclass
class Budget:
    """Per-run and per-UTC-day caps. All arithmetic in Decimal USD; single event loop."""

    max_cost_per_run: Decimal
    daily_budget_usd: Decimal
    state_dir: Path
    clock: Callable[[], float] = time.time
    audit_seq: Callable[[], int] = lambda: 0  # the audit line the saved spend includes
    spent: dict[str, Decimal] = field(default_factory=dict)  # day -> USD spent by calls started that day
    reserved: dict[str, Decimal] = field(default_factory=dict)  # day -> USD held by calls in flight
    alerted: dict[str, list[int]] = field(default_factory=dict)
    dirty: bool = False
    _runs: dict[str, _Run] = field(default_factory=dict)
    _min_refused: dict[str, Decimal] = field(default_factory=dict)
    _recovered: dict[tuple[str, str], Reservation] = field(default_factory=dict)  # (cid, intent) held at load
    _audited: set[tuple[str, str]] = field(default_factory=set)  # unanswered intents the audit log has charged

    @property
    def path(self) -> Path:
        return self.state_dir / SPEND_FILE

    @property
    def day(self) -> str:
        return utc_day(self.clock())

    @property
    def spent_today(self) -> Decimal:
        return self.spent.get(self.day, ZERO)

    @property
    def reserved_today(self) -> Decimal:
        return self.reserved.get(self.day, ZERO)

    def load(self, logs_dir: Path | None = None,
             unanswered: Iterable[tuple[str, Mapping[str, Any]]] = ()) -> "Budget":
        """Today's spend: the saved file, plus paid calls audited after it was saved; and held at their
        worst case, the `unanswered` model intents ((cid, intent) of runs a crash interrupted)."""
        audited = self._load_spend(logs_dir)
        for cid, intent in unanswered:
            key = (cid, str(intent.get("id")))
            if key in audited:
                self._audited.add(key)  # metered before the crash, or charged by a resume that died after
                continue
            held = Reservation(cid, Decimal(str(intent.get("worst_usd", "0"))), str(intent.get("day") or self.day))
            self._recovered[key] = held
            self.reserved[held.day] = self.reserved.get(held.day, ZERO) + held.amount
        return self

    def _load_spend(self, logs_dir: Path | None) -> set[tuple[str, str]]:
        """spend.json and the llm_call lines after it; the (cid, intent) of those lines."""
        audited: set[tuple[str, str]] = set()
        today = self.day
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            saved = {}
        saved_seq = 0
        if saved.get("day") == today:
            self.spent[today] = Decimal(str(saved.get("spent_usd", "0")))
            self.alerted[today] = list(saved.get("alerts", []))
            saved_seq = int(saved.get("audit_seq", 0))
        if logs_dir is not None:
            for record in iter_records_since(logs_dir, ts=f"{today}T00:00:00.000Z", seq=saved_seq):
                if record.get("event") != "llm_call":
                    continue
                if record.get("intent"):
                    audited.add((str(record.get("correlation_id")), str(record["intent"])))
                started = str(record.get("started_at") or record.get("ts", ""))
                if started[:10] == today:
                    self.spent[today] = self.spent.get(today, ZERO) + Decimal(str(record.get("cost_usd", 0)))
                    self.dirty = True
        return audited

    def charge_unanswered(self, cid: str, intent: str, worst_usd: Decimal, day: str) -> tuple[bool, list[int]]:
        """A model intent its run found unanswered: spent at its worst case, on its day and by its run, once.

        (True when the audit log already has its llm_call line: no second line is written; the alert
        percents newly crossed)."""
        key = (cid, intent)
        run = self._runs.get(cid)
        if run is not None:
            run.spent += worst_usd
        if key in self._audited:
            self._audited.discard(key)
            return True, []
        held = self._recovered.pop(key, None)
        if held is not None:
            self.reserved[held.day] = self.reserved.get(held.day, ZERO) - held.amount
        self.spent[day] = self.spent.get(day, ZERO) + worst_usd
        self.dirty = True
        return False, self._crossed(day)

    def start_run(self, cid: str, spent: Decimal = ZERO) -> None:
        """Begin tracking a run; `spent` is what it already cost before a restart."""
        self._runs.setdefault(cid, _Run(spent=spent))

    def end_run(self, cid: str) -> None:
        self._runs.pop(cid, None)

    def run_spent(self, cid: str) -> Decimal:
        return self._runs.get(cid, _Run()).spent

    def reserve(self, cid: str, worst_usd: Decimal) -> Reservation:
        """Hold `worst_usd` against both caps or refuse before any request is sent."""
        day = self.day
        run = self._runs.setdefault(cid, _Run())
        if run.spent + run.reserved + worst_usd > self.max_cost_per_run:
            raise BudgetError("run_budget_exceeded",
                              f"a call could cost up to ${worst_usd:.6f}; the run has spent ${run.spent:.6f} "
                              f"of MAX_COST_PER_RUN=${self.max_cost_per_run}")
        held = self.reserved.get(day, ZERO)
        if self.daily_budget_usd > 0 and self.spent.get(day, ZERO) + held + worst_usd > self.daily_budget_usd:
            least = self._min_refused.get(day)
            self._min_refused[day] = worst_usd if least is None else min(least, worst_usd)
            raise Paused("daily_budget_exhausted")
        run.reserved += worst_usd
        self.reserved[day] = held + worst_usd
        return Reservation(cid, worst_usd, day)

    def settle(self, reservation: Reservation, actual_usd: Decimal) -> list[int]:
        """Release exactly the reservation and spend the real cost on its day; alert percents newly crossed."""
        run = self._runs.setdefault(reservation.cid, _Run())
        run.reserved -= reservation.amount
        run.spent += actual_usd
        day = reservation.day
        self.reserved[day] = self.reserved.get(day, ZERO) - reservation.amount
        self.spent[day] = self.spent.get(day, ZERO) + actual_usd
        crossed = self._crossed(day)
        if actual_usd or crossed:
            self.dirty = True  # saved by the daemon's tick; the audit log has every call meanwhile
        self._forget_old_days()
        return crossed

    def _crossed(self, day: str) -> list[int]:
        """The alert percents of today's budget newly crossed by what `day` spent (none for another day)."""
        if self.daily_budget_usd <= 0 or day != self.day:
            return []
        used = self.spent.get(day, ZERO) / self.daily_budget_usd * 100
        alerted = self.alerted.setdefault(day, [])
        crossed = [p for p in ALERT_PERCENTS if used >= p and p not in alerted]
        alerted += crossed
        return crossed

    def _forget_old_days(self) -> None:
        keep = {self.day} | {d for d, held in self.reserved.items() if held}
        for table in (self.spent, self.reserved, self.alerted, self._min_refused):
            for day in [d for d in table if d not in keep]:
                del table[day]

    def save(self) -> None:
        day = self.day
        write_json(self.path, {"day": day, "spent_usd": str(self.spent.get(day, ZERO)),
                               "alerts": self.alerted.get(day, []), "audit_seq": self.audit_seq()})
        self.dirty = False

    def daily_exhausted(self) -> bool:
        """True while the smallest call refused today still would not fit."""
        if self.daily_budget_usd <= 0:
            return False
        day = self.day
        spent, held = self.spent.get(day, ZERO), self.reserved.get(day, ZERO)
        if spent >= self.daily_budget_usd:
            return True
        need = self._min_refused.get(day, ZERO)
        return need > 0 and spent + held + need > self.daily_budget_usd

    def used_ratio(self) -> float:
        if self.daily_budget_usd <= 0:
            return 0.0
        return float(self.spent_today / self.daily_budget_usd)

    def update_caps(self, max_cost_per_run: Decimal, daily_budget_usd: Decimal) -> None:
        if daily_budget_usd != self.daily_budget_usd:
            self._min_refused.clear()
        self.max_cost_per_run, self.daily_budget_usd = max_cost_per_run, daily_budget_usd


class BudgetGuard(Guard):
    """Every model call is reserved against the caps before it goes out and settled after."""

    def __init__(self, budget: Budget, audit: Any):
        self.budget = budget
        self.audit = audit

    def on_alert(self, percent: int) -> None:
        """50, 80 and 95 % of the day's budget: one audit line and one warning each, once a day."""
        spent, cap = self.budget.spent_today, self.budget.daily_budget_usd
        self.audit.append("budget_alert", percent=percent, spent_usd=spent, budget_usd=cap, day=self.budget.day)
        log.warning("budget_alert", percent=percent, spent_usd=float(spent), budget_usd=float(cap))

    def configure(self, config: object) -> None:
        self.budget.update_caps(getattr(config, "max_cost_per_run"), getattr(config, "daily_budget_usd"))

    def blocks(self, kind: Kind) -> str | None:
        if kind != "step" and self.budget.daily_exhausted():
            return "daily_budget_exhausted"
        return None

    def before_run(self, run: Any) -> None:
        for intent in run.journal.unanswered():
            self._charge_unanswered(run, intent)
        self.budget.start_run(run.cid, run.cost_usd)

    def _charge_unanswered(self, run: Any, intent: Mapping[str, Any]) -> None:
        """A request that was out when the process died: billed or not, it counts at its worst case."""
        worst = Decimal(str(intent.get("worst_usd", "0")))
        day = str(intent.get("day") or self.budget.day)
        audited, crossed = self.budget.charge_unanswered(run.cid, str(intent["id"]), worst, day)
        fields = dict(provider=intent.get("provider"), model=intent.get("model"),
                      tokens_in=int(intent.get("tokens_in", 0)), tokens_out=int(intent.get("tokens_out", 0)),
                      attempt=intent.get("attempt"), status="unanswered")
        if not audited:  # the audit line first, then the meter that resolves the intent
            self.audit.append("llm_call", correlation_id=run.cid, workflow=run.workflow, step=intent.get("step"),
                              started_at=intent.get("at"), cost_known=False, intent=intent["id"], cost_usd=worst,
                              run_cost_usd=run.cost_usd + worst, **fields)
        run.journal.note_call(precious=True, intent=intent["id"], cost_usd=str(worst), **fields)
        for percent in crossed:
            self.on_alert(percent)
        log.warning("llm_call_unanswered", intent=intent["id"], model=intent.get("model"), cost_usd=float(worst),
                    note="the request was out when agentd stopped: counted at its reservation")

    def after_run(self, run: object, decision: object) -> None:
        self.budget.end_run(getattr(run, "cid"))

    def before_model_call(self, call: ModelCall) -> None:
        call.reservation = self.budget.reserve(call.run.cid, call.worst_usd)

    def after_model_call(self, call: ModelCall) -> None:
        if call.reservation is None:
            return
        if not call.cost_known:  # billed or not, we cannot know: count the most it could be
            call.cost_usd = call.reservation.amount
        for percent in self.budget.settle(call.reservation, call.cost_usd):
            self.on_alert(percent)

    def before_tool_call(self, call: ToolCall) -> None:
        if self.budget.daily_exhausted():
            raise Paused("daily_budget_exhausted")

    def before_tool_effect(self, call: ToolCall) -> None:
        self.before_tool_call(call)  # the day may have run out during the tool's waits
