"""The exporter's Assembler: groups the interleaved audit log into finished runs, holding in memory
only runs in progress, within fixed bounds, so its size never grows with uptime.

A run's `outcome` (or `waiting`) line finishes it, `review` included: the run's root ends where the
run did, and the reviewer's `review_decision`, however much later, adds one span to the same trace
at once. Nothing waits for a decision, so a run in review/ never holds back the export (or the
cursor) of the runs behind it.

Bounds: at most `max_runs` runs in progress and `max_lines` of their audit lines are held. Past
either, the oldest run (by its first line) is evicted: its lines so far are dropped (counted, and
reported through `on_evict`), the cursor no longer waits for it, and if its outcome comes later its
trace is exported from the lines after the eviction, the root marked `agentd.trace.truncated`
(so is the root of a run whose lines do not build: it goes alone, reported as "malformed").
The time each run entered review is kept for the decision's wait time, for the newest
`max_in_review` runs (an int each); older decisions fall back to the decided sidecar's
`finished_at` or go without a wait time.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from agentd.traces.runs import CID_RE, build_run, review_span
from agentd.traces.spans import SpanData, iso_ns

FINAL_EVENTS = ("outcome", "waiting")
DECISION = "review_decision"
# about a run already finished (or one that never began): no part of a run in progress
AFTER_RUN = ("requeued", "review_notified", "replay", "claim_lost")
MAX_OPEN_RUNS = 1_000
MAX_OPEN_LINES = 20_000
MAX_IN_REVIEW = 10_000


@dataclass
class Finished:
    """The spans one audit line completed, and where a restart must read again from after it."""

    seq: int
    reread_from: int
    spans: list[SpanData]
    queued_at: float = 0.0  # monotonic time the exporter queued it


class Assembler:
    def __init__(self, max_runs: int = MAX_OPEN_RUNS, max_lines: int = MAX_OPEN_LINES,
                 max_in_review: int = MAX_IN_REVIEW, on_drop: Callable[[str, int, str], None] | None = None):
        self.max_runs, self.max_lines, self.max_in_review = max_runs, max_lines, max_in_review
        self.on_drop = on_drop  # (cid, lines dropped, why: "evicted" | "malformed")
        self.open: dict[str, list[dict[str, Any]]] = {}  # in order of each run's first line held
        self.lines = 0  # audit lines held in `open`
        self.in_review: OrderedDict[str, int] = OrderedDict()  # cid -> when its run entered review (ns)
        self.truncated: OrderedDict[str, None] = OrderedDict()  # evicted runs whose outcome is still to come
        self.evicted_runs = self.evicted_lines = self.malformed_runs = 0

    def size(self) -> dict[str, int]:
        """What it holds now (the bound's proof, and /health)."""
        return {"open_runs": len(self.open), "lines": self.lines, "in_review": len(self.in_review),
                "truncated": len(self.truncated)}

    def reread_from(self, next_seq: int) -> int:
        """The lowest seq a restart must read again to rebuild the runs now open."""
        for lines in self.open.values():  # the first run held has the lowest first seq
            return max(1, int(lines[0].get("seq", 1)))
        return next_seq

    def feed(self, record: dict[str, Any]) -> Finished | None:
        cid, event = record.get("correlation_id"), record.get("event")
        if not isinstance(cid, str) or not CID_RE.match(cid) or event in AFTER_RUN:
            return None
        seq = int(record.get("seq", 0))
        if event == DECISION:
            return self._decided(cid, record, seq)
        if event in FINAL_EVENTS:
            if record.get("via") == "review":  # an older agentd's second outcome: its decision line made the span
                return None
            return self._finished(cid, record, seq)
        self.open.setdefault(cid, []).append(record)
        self.lines += 1
        while len(self.open) > self.max_runs or self.lines > self.max_lines:
            self._evict_oldest()
        return None

    def _finished(self, cid: str, final: dict[str, Any], seq: int) -> Finished:
        records = self.open.pop(cid, [])
        self.lines -= len(records)
        if final.get("outcome") == "review":
            self._remember(self.in_review, cid, iso_ns(final.get("ts")) or 0, self.max_in_review)
        try:
            root = build_run(cid, records, final)
        except (ValueError, TypeError, KeyError, AttributeError):  # a malformed line among them
            self.malformed_runs += 1
            self._dropped(cid, len(records), "malformed")
            root = build_run(cid, [], final)  # the root alone (a malformed outcome line raises on)
            self.truncated[cid] = None
        if cid in self.truncated:
            del self.truncated[cid]
            root.attributes["agentd.trace.truncated"] = True
        return Finished(seq, self.reread_from(seq + 1), list(root.walk()))

    def _decided(self, cid: str, record: dict[str, Any], seq: int) -> Finished:
        entered_ns = self.in_review.pop(cid, None)
        if entered_ns is None:  # entered review before this exporter's reading began
            sidecar = record.get("sidecar")
            entered_ns = iso_ns(sidecar.get("finished_at")) if isinstance(sidecar, dict) else None
        return Finished(seq, self.reread_from(seq + 1), [review_span(cid, record, entered_ns)])

    def _evict_oldest(self) -> None:
        cid, records = next(iter(self.open.items()))
        del self.open[cid]
        self.lines -= len(records)
        self.evicted_runs += 1
        self.evicted_lines += len(records)
        self._remember(self.truncated, cid, None, self.max_runs)
        self._dropped(cid, len(records), "evicted")

    def _dropped(self, cid: str, lines: int, why: str) -> None:
        if self.on_drop is not None:
            self.on_drop(cid, lines, why)

    @staticmethod
    def _remember(table: OrderedDict[str, Any], cid: str, value: Any, cap: int) -> None:
        table[cid] = value
        table.move_to_end(cid)
        while len(table) > cap:
            table.popitem(last=False)
