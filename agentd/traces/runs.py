"""A run's trace from its audit lines (claimed ... outcome, across crashes and resumes), and the span
of a reviewer's later decision; agentd.traces.assembler groups the audit log into these."""
from __future__ import annotations

import re
from typing import Any

from agentd.traces import ids
from agentd.traces.spans import (STEP_EVENTS, Pending, SpanData, SpanEvent, attrs, event_of, fill,
                                 interrupted_step, iso_ns, step_span)

CID_RE = re.compile(r"^[0-9a-f]{32}$")


def cid_start_ns(cid: str) -> int | None:
    """A correlation id ends in its claim time in ms (agentd.spool.new_correlation_id)."""
    try:
        return int(cid[-12:], 16) * 1_000_000
    except ValueError:
        return None


def build_run(cid: str, records: list[dict[str, Any]], final: dict[str, Any] | None) -> SpanData:
    """The span tree of one run; `final` is its outcome (or waiting) line, None while in progress."""
    root_id = ids.root_span_id(cid)
    everything = records + ([final] if final else [])
    first_ns = iso_ns(everything[0].get("ts")) if everything else None
    start_ns = min(filter(None, (cid_start_ns(cid), first_ns)), default=0)
    end_ns = iso_ns(everything[-1].get("ts")) if everything else start_ns
    root = SpanData(name="agentd.run ?", cid=cid, span_id=root_id, parent_id=None, start_ns=start_ns,
                    end_ns=max(end_ns or start_ns, start_ns))
    pending, claimed, resumes, cut = Pending(), {}, 0, False
    for record in records:
        event = record.get("event")
        if cut and not _unanswered(record):  # the execution a crash cut ends with the calls its resume charged
            if pending:
                root.children.append(interrupted_step(cid, pending, root_id))
                pending = Pending()
            cut = False
        if event in ("llm_call", "tool_call"):
            pending.children.append(record)
        elif event in STEP_EVENTS:
            pending.events.append(record)
        elif event == "step":
            root.children.append(step_span(cid, record, pending, root_id))
            pending = Pending()
        elif event == "resumed":
            resumes, cut = resumes + 1, True
            root.events.append(SpanEvent("agentd.resumed", iso_ns(record.get("ts")) or 0))
        elif event == "claimed":
            claimed = record
        elif event is not None:
            root.events.append(event_of(record))
    if pending and cut:
        root.children.append(interrupted_step(cid, pending, root_id))
    elif pending:  # logged outside any step (a refusal after the last step, a run cut short)
        fill(cid, root, pending)
    _describe_root(root, claimed, final, resumes)
    return root


def _unanswered(record: dict[str, Any]) -> bool:
    """A model call that was out when agentd died, charged at its worst case by the resumed run."""
    return record.get("event") == "llm_call" and record.get("status") == "unanswered"


def _describe_root(root: SpanData, claimed: dict[str, Any], final: dict[str, Any] | None, resumes: int) -> None:
    final = final or {}
    workflow = str(final.get("workflow") or claimed.get("workflow") or "?")
    outcome = final.get("outcome") or ("waiting" if final.get("event") == "waiting" else None)
    error_class = final.get("error_class")
    root.name = f"agentd.run {workflow}"
    root.attributes = attrs(agentd__correlation_id=root.cid, agentd__workflow=workflow,
                            agentd__file=claimed.get("original_name"), agentd__terminal_file=final.get("file"),
                            agentd__outcome=outcome or "in_progress", agentd__reason=final.get("reason"),
                            agentd__error_class=error_class, error__type=error_class if outcome == "failed" else None,
                            agentd__cost_usd=final.get("cost_usd"), agentd__tokens__input=final.get("tokens_in"),
                            agentd__tokens__output=final.get("tokens_out"), agentd__llm_calls=final.get("llm_calls"),
                            agentd__resumes=resumes, agentd__audit_seq=final.get("seq"))
    when = iso_ns(final.get("ts")) or root.end_ns
    if outcome == "failed":
        root.error = str(final.get("reason") or error_class or "failed")
    if outcome == "review":
        root.events.append(SpanEvent("agentd.review", when, attrs(reason=final.get("reason"))))
    if error_class == "budget" or final.get("reason") == "daily_budget_exhausted":
        root.events.append(SpanEvent("agentd.budget_refused", when, attrs(reason=final.get("reason"))))
    root.events.sort(key=lambda event: event.time_ns)


def review_span(cid: str, decision: dict[str, Any], entered_ns: int | None) -> SpanData:
    """A reviewer's decision (its `review_decision` line), later than the run: one more child of the
    run's root, spanning the wait in review/ when the time the run entered it is known."""
    at_ns = iso_ns(decision.get("ts")) or 0
    start_ns = entered_ns if entered_ns and 0 < entered_ns <= at_ns else at_ns
    wait_s = round((at_ns - start_ns) / 1e9, 3) if entered_ns and start_ns == entered_ns else None
    edits = decision.get("edits")
    values = attrs(agentd__correlation_id=cid, agentd__reviewer=decision.get("reviewer"),
                   agentd__decision=decision.get("decision"),
                   agentd__review__wait_s=wait_s,
                   agentd__review__edits=sorted(edits) if isinstance(edits, dict) and edits else None,
                   agentd__outcome=decision.get("outcome"), agentd__audit_seq=decision.get("seq"))
    return SpanData(name=f"agentd.review {decision.get('decision') or '?'}", cid=cid,
                    span_id=ids.span_id(cid, "seq", decision.get("seq")), parent_id=ids.root_span_id(cid),
                    start_ns=start_ns, end_ns=at_ns, attributes=values)
