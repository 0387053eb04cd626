"""The review queue as rows: age, due time and overdue from REVIEW_SLA_S; filters; the gauges."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agentd.server import review


@dataclass(frozen=True)
class Row:
    cid: str
    file: str
    workflow: str
    reason: str
    confidence: float | None
    cost_usd: float
    entered_at: float
    due_at: float
    now: float

    @property
    def short(self) -> str:
        return self.cid[:8]

    @property
    def age_s(self) -> float:
        return max(0.0, self.now - self.entered_at)

    @property
    def overdue(self) -> bool:
        return self.now >= self.due_at


def epoch(iso: Any, default: float) -> float:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def row_of(meta: dict[str, Any], sla_s: float, now: float) -> Row:
    entered = epoch(meta.get("finished_at"), now)
    confidence = meta.get("confidence")
    return Row(cid=str(meta.get("correlation_id", "")), file=str(meta.get("original_name", "")),
               workflow=str(meta.get("workflow", "")), reason=str(meta.get("reason", "")),
               confidence=float(confidence) if isinstance(confidence, (int, float)) else None,
               cost_usd=float(meta.get("cost_usd") or 0), entered_at=entered, due_at=entered + sla_s, now=now)


def rows(home: Path, sla_s: float, now: float, workflow: str = "", reason: str = "") -> list[Row]:
    """Items waiting in review/, soonest due first, optionally only one workflow and reason."""
    found = [row_of(meta, sla_s, now) for _, meta in review.items(home)]
    found = [r for r in found if (not workflow or r.workflow == workflow) and (not reason or r.reason == reason)]
    return sorted(found, key=lambda r: (r.due_at, r.cid))


def stats(home: Path, sla_s: float, now: float) -> dict[str, float]:
    """queue depth, oldest age (s) and overdue count: for /metrics and `agentd status`."""
    waiting = rows(home, sla_s, now)
    return {"depth": len(waiting), "oldest_age_s": max((r.age_s for r in waiting), default=0.0),
            "overdue": sum(r.overdue for r in waiting)}
