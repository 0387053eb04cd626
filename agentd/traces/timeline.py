"""`agentd trace CID`: one run's timeline as a tree in the terminal (or JSON), from the audit log
alone, built by the same code that builds the exported spans."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from agentd.audit import iter_records
from agentd.traces import ids
from agentd.traces.assembler import Assembler
from agentd.traces.runs import build_run
from agentd.traces.spans import SpanData

MIN_ID_CHARS = 6


class TraceNotFound(Exception):
    pass


def records_of(logs_dir: Path, ident: str) -> tuple[str, list[dict[str, Any]]]:
    """The full correlation id that `ident` starts, and its audit lines in order."""
    found: dict[str, list[dict[str, Any]]] = {}
    for record in iter_records(logs_dir):
        cid = record.get("correlation_id")
        if isinstance(cid, str) and cid.startswith(ident):
            found.setdefault(cid, []).append(record)
    if not found:
        raise TraceNotFound(f"no run with id {ident} in the audit log")
    if len(found) > 1:
        raise TraceNotFound(f"id {ident} is ambiguous ({len(found)} runs: {', '.join(sorted(found)[:5])})")
    [(cid, records)] = found.items()
    return cid, records


def build_tree(cid: str, records: Iterable[dict[str, Any]]) -> SpanData:
    """The run's root span with every child under it (a run still in progress too, and a reviewer's
    decision under the root of a run that went to review)."""
    assembler, spans = Assembler(max_lines=sys.maxsize), []
    for record in records:
        finished = assembler.feed(record)
        if finished is not None:
            spans += finished.spans
    if cid in assembler.open:
        spans += list(build_run(cid, assembler.open[cid], None).walk())
    by_id = {span.span_id: span for span in spans}
    root = by_id.get(ids.root_span_id(cid)) or build_run(cid, [], None)
    for span in spans:
        span.children = []
    for span in spans:
        parent = by_id.get(span.parent_id) if span.parent_id is not None else None
        if parent is not None:
            parent.children.append(span)
    for span in spans:
        span.children.sort(key=lambda child: (child.start_ns, child.end_ns))
    return root


# -- rendering ------------------------------------------------------------------------------

def _status(span: SpanData) -> str:
    a = span.attributes
    decided = [c.attributes for c in span.children if "agentd.decision" in c.attributes]
    if a.get("agentd.outcome") == "review" and decided:  # the run went to review, and a reviewer decided it
        return f"review, {decided[-1]['agentd.decision']} by {decided[-1].get('agentd.reviewer', '?')}"
    for key in ("agentd.decision", "agentd.outcome", "agentd.step.status", "agentd.tool.status"):
        if key in a:
            return str(a[key])
    return str(a.get("error.type") or "ok")


def _details(span: SpanData) -> str:
    a = span.attributes
    parts = []
    if "gen_ai.usage.input_tokens" in a:
        parts.append(f"{a['gen_ai.usage.input_tokens']} in / {a.get('gen_ai.usage.output_tokens', 0)} out tokens")
    if int(a.get("agentd.attempt", 1) or 1) > 1:
        parts.append(f"attempt {a['agentd.attempt']}")
    if a.get("agentd.cost_usd") is not None:
        parts.append(f"${float(a['agentd.cost_usd']):.6f}")
    if a.get("agentd.reason"):
        parts.append(f"reason {a['agentd.reason']}")
    if a.get("agentd.resumes"):
        parts.append(f"resumed {a['agentd.resumes']}x")
    if a.get("agentd.tool.why"):
        parts.append(str(a["agentd.tool.why"]))
    if a.get("agentd.review.wait_s") is not None:
        parts.append(f"waited {float(a['agentd.review.wait_s']):.1f} s in review")
    parts += [event.name.removeprefix("agentd.") for event in span.events if event.name != "agentd.resumed"]
    return "  ".join(parts)


def render_text(root: SpanData) -> str:
    lines = [f"trace {root.cid}  {root.name}  {_status(root)}  {root.duration_ms:.1f} ms",
             f"{'start':>10} {'duration':>11}  span"]

    def emit(span: SpanData, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└─ " if last else "├─ ")
        offset = (span.start_ns - root.start_ns) / 1e6
        lines.append(f"{offset:>+9.1f}ms {span.duration_ms:>9.1f}ms  {prefix}{branch}{span.name}  "
                     f"[{_status(span)}]  {_details(span)}".rstrip())
        below = prefix if top else prefix + ("   " if last else "│  ")
        for index, child in enumerate(span.children):
            emit(child, below, index == len(span.children) - 1, False)

    emit(root, "", True, True)
    return "\n".join(lines)


def _iso(ns: int) -> str:
    moment = datetime.fromtimestamp(ns / 1e9, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_json(span: SpanData, origin_ns: int | None = None) -> dict[str, Any]:
    origin_ns = span.start_ns if origin_ns is None else origin_ns
    return {"name": span.name, "span_id": ids.hex_span_id(span.span_id),
            "parent_span_id": ids.hex_span_id(span.parent_id) if span.parent_id is not None else None,
            "kind": span.kind, "start": _iso(span.start_ns), "offset_ms": round((span.start_ns - origin_ns) / 1e6, 1),
            "duration_ms": span.duration_ms, "status": _status(span), "error": span.error,
            "attributes": span.attributes,
            "events": [{"name": e.name, "time": _iso(e.time_ns), "attributes": e.attributes} for e in span.events],
            "children": [as_json(child, origin_ns) for child in span.children]}
