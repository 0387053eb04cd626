"""The assembler holds only runs in progress, within its caps: thousands of runs (finished, sent to
review and decided, abandoned, with lines about runs long done) leave it no bigger than its caps,
the cursor's re-read point moves on past runs that will never finish, and a run in review holds
nothing back."""
from __future__ import annotations

from typing import Any

from agentd.traces import ids
from agentd.traces.assembler import MAX_OPEN_LINES, MAX_OPEN_RUNS, Assembler, Finished


def _cid(n: int) -> str:
    return f"{n:020x}" + f"{1_767_000_000_000 + n:012x}"


class Feed:
    """Synthetic audit lines with increasing seqs, as the exporter's tail hands them over."""

    def __init__(self, assembler: Assembler):
        self.assembler, self.seq, self.finished = assembler, 0, []

    def line(self, event: str, cid: str | None, **fields: Any) -> Finished | None:
        self.seq += 1
        record = {"seq": self.seq, "ts": "2026-01-01T00:00:00.000Z", "event": event, **fields}
        if cid is not None:
            record["correlation_id"] = cid
        finished = self.assembler.feed(record)
        if finished is not None:
            self.finished.append(finished)
        return finished

    def run(self, cid: str, outcome: str | None) -> None:
        self.line("claimed", cid, workflow="triage", original_name="a.txt")
        self.line("step", cid, step="extract_text", status="ok", started_at="2026-01-01T00:00:00.000Z",
                  duration_ms=1.0)
        if outcome is not None:
            self.line("outcome", cid, workflow="triage", outcome=outcome)


def test_five_thousand_runs_of_every_kind_leave_the_assembler_within_its_caps() -> None:
    dropped: list[tuple[str, int, str]] = []
    assembler = Assembler(max_runs=100, max_lines=250, max_in_review=50,
                          on_drop=lambda cid, lines, why: dropped.append((cid, lines, why)))
    feed, largest = Feed(assembler), {"open_runs": 0, "lines": 0, "in_review": 0, "truncated": 0}
    for n in range(5_000):
        cid, kind = _cid(n), n % 5
        if kind == 0:
            feed.run(cid, "archived")
            feed.line("requeued", cid)  # the CLI, about a run long finished
        elif kind == 1:  # sent to review, notified, decided
            feed.run(cid, "review")
            feed.line("review_notified", cid, workflow="triage")
            feed.line("review_decision", cid, reviewer="ana", decision="approve", edits={})
        elif kind == 2:  # sent to review, never decided
            feed.run(cid, "review")
        elif kind == 3:  # abandoned: its file removed from processing/ by hand, no outcome ever
            feed.run(cid, None)
        else:
            feed.line("claim_lost", cid, why="the file left incoming/ first")
            feed.line("replay", _cid(n - 4), workflow="triage")
        for key, value in assembler.size().items():
            largest[key] = max(largest[key], value)
    assert largest["open_runs"] <= 100 and largest["lines"] <= 250 and largest["in_review"] <= 50
    assert largest["truncated"] <= 100
    assert len(dropped) == 1_000 - 100 and {why for _, _, why in dropped} == {"evicted"}
    assert assembler.evicted_runs == 900 and assembler.evicted_lines == 1_800
    # every run with an outcome was finished whole, every decision became its span
    roots = [f for f in feed.finished if f.spans[0].name == "agentd.run triage"]
    decisions = [f for f in feed.finished if f.spans[0].name == "agentd.review approve"]
    assert len(roots) == 3_000 and all(len(f.spans) == 2 for f in roots)
    assert len(decisions) == 1_000 and all(f.spans[0].parent_id == ids.root_span_id(f.spans[0].cid) for f in decisions)
    # the re-read point follows the oldest run still held, not the first run that never finished
    oldest_held = min(int(lines[0]["seq"]) for lines in assembler.open.values())
    assert assembler.reread_from(feed.seq + 1) == oldest_held > feed.seq - 5 * 100 * 5


def test_the_default_caps_hold_against_runs_that_never_finish() -> None:
    assembler = Assembler()
    feed = Feed(assembler)
    for n in range(5_000):
        feed.run(_cid(n), None)
        assert len(assembler.open) <= MAX_OPEN_RUNS and assembler.lines <= MAX_OPEN_LINES
    assert len(assembler.open) == MAX_OPEN_RUNS and assembler.evicted_runs == 5_000 - MAX_OPEN_RUNS
    assert assembler.reread_from(feed.seq + 1) == feed.seq - 2 * MAX_OPEN_RUNS + 1


def test_an_evicted_run_that_finishes_later_is_exported_marked_truncated() -> None:
    assembler = Assembler(max_runs=2)
    feed = Feed(assembler)
    slow, others = _cid(1), [_cid(2), _cid(3)]
    feed.run(slow, None)  # paused for long
    for cid in others:
        feed.run(cid, None)  # the third run open evicts the slow one's claim and first step
    assert slow not in assembler.open
    for cid in others:
        done = feed.line("outcome", cid, workflow="triage", outcome="archived")
        assert done is not None and "agentd.trace.truncated" not in done.spans[0].attributes
    feed.line("step", slow, step="classify", status="ok", started_at="2026-01-01T00:00:01.000Z", duration_ms=2.0)
    finished = feed.line("outcome", slow, workflow="triage", outcome="archived")
    assert finished is not None
    root, step = finished.spans
    assert root.attributes["agentd.trace.truncated"] is True and root.attributes["agentd.outcome"] == "archived"
    assert step.name == "agentd.step classify" and assembler.size()["truncated"] == 0


def test_a_run_whose_lines_do_not_build_still_gets_its_root_and_the_next_runs_are_untouched() -> None:
    dropped: list[tuple[str, int, str]] = []
    assembler = Assembler(on_drop=lambda cid, lines, why: dropped.append((cid, lines, why)))
    feed = Feed(assembler)
    bad, good = _cid(1), _cid(2)
    feed.line("claimed", bad, workflow="triage")
    feed.line("llm_call", bad, step="classify", model="m", attempt="second")  # no number: the builder raises
    feed.line("step", bad, step="classify", status="ok", started_at="2026-01-01T00:00:00.000Z")
    finished = feed.line("outcome", bad, workflow="triage", outcome="archived")
    assert finished is not None and [s.name for s in finished.spans] == ["agentd.run triage"]
    assert finished.spans[0].attributes["agentd.trace.truncated"] is True
    assert dropped == [(bad, 3, "malformed")] and assembler.malformed_runs == 1
    feed.run(good, "archived")
    assert len(feed.finished[-1].spans) == 2 and "agentd.trace.truncated" not in feed.finished[-1].spans[0].attributes
