"""A run's trace for the item page: its audit events in order, with the figures a reviewer needs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentd.audit import iter_records

SHOWN = {
    "claimed": ("file", "size"),
    "llm_call": ("step", "provider", "model", "tokens_in", "tokens_out", "cost_usd", "latency_ms", "attempt", "status"),
    "tool_call": ("step", "tool", "status", "allowed", "latency_ms", "error"),
    "outcome": ("outcome", "reason", "error_class", "file"),
    "review_decision": ("reviewer", "decision", "note"),
    "step": ("step", "status", "duration_ms", "error_class"),
}


@dataclass(frozen=True)
class Event:
    ts: str
    event: str
    details: tuple[tuple[str, str], ...]


def run_events(logs_dir: Path, cid: str) -> list[Event]:
    """Every audit line of one correlation id, oldest first."""
    found = []
    for record in iter_records(logs_dir):
        if record.get("correlation_id") != cid:
            continue
        event = str(record.get("event"))
        keys = SHOWN.get(event) or tuple(k for k in record if k not in (
            "ts", "event", "seq", "prev", "hash", "correlation_id", "workflow"))[:6]
        details = tuple((k, _text(record[k])) for k in keys if record.get(k) not in (None, ""))
        found.append(Event(str(record.get("ts", ""))[:23].replace("T", " "), event, details))
    return found


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6f}".rstrip("0").rstrip(".") if value < 1 else f"{value:g}"
    return str(value)[:200]
