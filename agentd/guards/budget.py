"""Spend caps that cannot be overshot: reserve the worst case before a call, settle after."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable

from agentd.audit import iter_records_after
from agentd.durable import write_json
from agentd.errors import BudgetError, Paused

ALERT_PERCENTS = (50, 80, 95)
SPEND_FILE = "spend.json"


def utc_day(now: float) -> str:
    return datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")


@dataclass
class Reservation:
    cid: str
    amount: Decimal
    day: str


@dataclass
class _Run:
    spent: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)


@dataclass
class Budget:
    """Per-run and per-UTC-day caps. All arithmetic in Decimal USD; single event loop."""

    max_cost_per_run: Decimal
    daily_budget_usd: Decimal
    state_dir: Path
    clock: Callable[[], float] = time.time
    day: str = ""
    spent_today: Decimal = Decimal(0)
    reserved_today: Decimal = Decimal(0)
    alerted: list[int] = field(default_factory=list)
    audit_seq: Callable[[], int] = lambda: 0  # the audit line the saved spend includes
    dirty: bool = False
    _runs: dict[str, _Run] = field(default_factory=dict)
    _min_refused: Decimal | None = None

    @property
    def path(self) -> Path:
        return self.state_dir / SPEND_FILE

    def load(self, logs_dir: Path | None = None) -> "Budget":
        """Today's spend: the saved file, plus paid calls audited after it was saved."""
        self.day = utc_day(self.clock())
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            saved = {}
        saved_seq = 0
        if saved.get("day") == self.day:
            self.spent_today = Decimal(str(saved.get("spent_usd", "0")))
            self.alerted = list(saved.get("alerts", []))
            saved_seq = int(saved.get("audit_seq", 0))
        if logs_dir is not None:
            for record in iter_records_after(logs_dir, saved_seq):
                if record.get("event") == "llm_call" and str(record.get("ts", ""))[:10] == self.day:
                    self.spent_today += Decimal(str(record.get("cost_usd", 0)))
                    self.dirty = True
        return self

    def _roll(self) -> None:
        today = utc_day(self.clock())
        if today != self.day:
            self.day, self.spent_today, self.alerted, self._min_refused = today, Decimal(0), [], None

    def start_run(self, cid: str, spent: Decimal = Decimal(0)) -> None:
        """Begin tracking a run; `spent` is what it already cost before a restart."""
        self._runs.setdefault(cid, _Run(spent=spent))

    def end_run(self, cid: str) -> None:
        self._runs.pop(cid, None)

    def run_spent(self, cid: str) -> Decimal:
        return self._runs.get(cid, _Run()).spent

    def reserve(self, cid: str, worst_usd: Decimal) -> Reservation:
        """Hold `worst_usd` against both caps or refuse before any request is sent."""
        self._roll()
        run = self._runs.setdefault(cid, _Run())
        if run.spent + run.reserved + worst_usd > self.max_cost_per_run:
            raise BudgetError("run_budget_exceeded",
                              f"a call could cost up to ${worst_usd:.6f}; the run has spent ${run.spent:.6f} "
                              f"of MAX_COST_PER_RUN=${self.max_cost_per_run}")
        if self.daily_budget_usd > 0 and \
                self.spent_today + self.reserved_today + worst_usd > self.daily_budget_usd:
            self._min_refused = worst_usd if self._min_refused is None else min(self._min_refused, worst_usd)
            raise Paused("daily_budget_exhausted")
        run.reserved += worst_usd
        self.reserved_today += worst_usd
        return Reservation(cid, worst_usd, self.day)

    def settle(self, reservation: Reservation, actual_usd: Decimal) -> list[int]:
        """Replace a reservation by the real cost; return alert percents newly crossed."""
        run = self._runs.setdefault(reservation.cid, _Run())
        run.reserved -= reservation.amount
        run.spent += actual_usd
        if reservation.day == self.day:
            self.reserved_today -= reservation.amount
        self._roll()
        self.spent_today += actual_usd
        crossed = []
        if self.daily_budget_usd > 0:
            used = self.spent_today / self.daily_budget_usd * 100
            crossed = [p for p in ALERT_PERCENTS if used >= p and p not in self.alerted]
            self.alerted += crossed
        if actual_usd or crossed:
            self.dirty = True  # saved by the daemon's tick; the audit log has every call meanwhile
        return crossed

    def save(self) -> None:
        write_json(self.path, {"day": self.day, "spent_usd": str(self.spent_today), "alerts": self.alerted,
                               "audit_seq": self.audit_seq()})
        self.dirty = False

    def daily_exhausted(self) -> bool:
        """True while the smallest call refused today still would not fit."""
        self._roll()
        if self.daily_budget_usd <= 0:
            return False
        if self.spent_today >= self.daily_budget_usd:
            return True
        need = self._min_refused or Decimal(0)
        return need > 0 and self.spent_today + self.reserved_today + need > self.daily_budget_usd

    def used_ratio(self) -> float:
        if self.daily_budget_usd <= 0:
            return 0.0
        return float(self.spent_today / self.daily_budget_usd)

    def update_caps(self, max_cost_per_run: Decimal, daily_budget_usd: Decimal) -> None:
        if daily_budget_usd != self.daily_budget_usd:
            self._min_refused = None
        self.max_cost_per_run, self.daily_budget_usd = max_cost_per_run, daily_budget_usd
