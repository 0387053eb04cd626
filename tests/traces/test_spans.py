"""Span trees built from audit lines: one trace per run (across a crash and resume), GenAI
attributes on model calls, tool calls, review decisions, and ids that never change."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from agentd.audit import AuditLog, iter_records
from agentd.traces import ids
from agentd.traces.assembler import Assembler
from agentd.traces.runs import build_run

CID = "0123456789abcdef0123" + f"{1_767_000_000_000:012x}"


def _log(tmp_path: Path, lines: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Real audit lines (hash chain and all) for `lines`."""
    audit = AuditLog(tmp_path / "logs").open()
    for event, fields in lines:
        audit.append(event, **fields)
    audit.close()
    return list(iter_records(tmp_path / "logs"))


def _llm(step: str, attempt: int = 1, status: str = "ok", **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("llm_call", {"correlation_id": CID, "workflow": "triage", "step": step, "provider": "openai",
                         "model": "gpt-4o-mini", "tokens_in": 120, "tokens_out": 30, "cached_in": 20,
                         "cost_usd": 0.00004, "run_cost_usd": 0.00004, "latency_ms": 250.0, "attempt": attempt,
                         "status": status, "started_at": "2026-01-01T00:00:01.000Z", "max_tokens": 1024,
                         "response_model": "gpt-4o-mini-2024-07-18", "finish_reason": "stop",
                         "price_source": "table", **extra})


def _step(name: str, started_at: str, status: str = "ok", **extra: Any) -> tuple[str, dict[str, Any]]:
    return ("step", {"correlation_id": CID, "workflow": "triage", "step": name, "status": status,
                     "started_at": started_at, "duration_ms": 300.0, **extra})


CLAIMED = ("claimed", {"correlation_id": CID, "workflow": "triage", "original_name": "inv.txt"})
OUTCOME = ("outcome", {"correlation_id": CID, "workflow": "triage", "outcome": "archived", "file": "inv.txt",
                       "cost_usd": 0.00008, "tokens_in": 240, "tokens_out": 60, "llm_calls": 2})


def test_a_run_crashed_mid_step_and_resumed_is_one_trace_with_the_cut_step_and_a_resume_event(tmp_path: Path) -> None:
    records = _log(tmp_path, [
        CLAIMED, _step("extract_text", "2026-01-01T00:00:00.500Z"), _llm("classify"),
        ("startup", {"pid": 1}),  # the daemon was killed in classify and started again
        ("resumed", {"correlation_id": CID, "workflow": "triage"}),
        _llm("classify", attempt=1), _step("classify", "2026-01-01T00:00:02.000Z"),
        _step("route", "2026-01-01T00:00:03.000Z"), OUTCOME])
    assembler = Assembler()
    finished = [f for f in map(assembler.feed, records) if f is not None]

    assert len(finished) == 1 and not assembler.open
    spans = finished[0].spans
    roots = [s for s in spans if s.parent_id is None]
    assert [r.name for r in roots] == ["agentd.run triage"]
    assert roots[0].attributes["agentd.resumes"] == 1 and roots[0].attributes["agentd.file"] == "inv.txt"
    assert [e.name for e in roots[0].events] == ["agentd.resumed"]
    steps = [s for s in spans if s.parent_id == roots[0].span_id]
    assert [(s.name, s.attributes["agentd.step.status"]) for s in steps] == [
        ("agentd.step extract_text", "ok"), ("agentd.step classify", "interrupted"),
        ("agentd.step classify", "ok"), ("agentd.step route", "ok")]
    assert steps[1].error == "interrupted" and len(steps[1].children) == len(steps[2].children) == 1
    assert all(s.attributes["agentd.correlation_id"] == CID for s in spans)
    assert len({s.span_id for s in spans}) == len(spans)


def test_a_model_call_out_at_the_crash_is_in_the_cut_step_not_the_one_that_ran_again(tmp_path: Path) -> None:
    records = _log(tmp_path, [
        CLAIMED, _step("extract_text", "2026-01-01T00:00:00.500Z"),
        ("startup", {"pid": 1}),  # killed while the classify request was out: no answer, no step line
        ("resumed", {"correlation_id": CID, "workflow": "triage"}),
        _llm("classify", status="unanswered", started_at="2026-01-01T00:00:00.900Z", latency_ms=None),
        _llm("classify", started_at="2026-01-01T00:00:05.000Z"), _step("classify", "2026-01-01T00:00:04.900Z"),
        _step("route", "2026-01-01T00:00:06.000Z"), OUTCOME])
    [finished] = [f for f in map(Assembler().feed, records) if f is not None]
    root = finished.spans[0]
    assert [(s.name, s.attributes["agentd.step.status"], [c.attributes.get("error.type") for c in s.children])
            for s in root.children] == [("agentd.step extract_text", "ok", []),
                                        ("agentd.step classify", "interrupted", ["unanswered"]),
                                        ("agentd.step classify", "ok", [None]), ("agentd.step route", "ok", [])]
    cut = root.children[1]
    assert cut.start_ns == cut.children[0].start_ns < root.children[2].start_ns


def test_a_model_call_span_carries_the_genai_attributes(tmp_path: Path) -> None:
    records = _log(tmp_path, [CLAIMED, _llm("classify", status="503"), _llm("classify", attempt=2),
                              _step("classify", "2026-01-01T00:00:00.900Z"), OUTCOME])
    root = build_run(CID, records[:-1], records[-1])
    [step] = root.children
    failed, ok = step.children
    assert ok.name == "chat gpt-4o-mini" and ok.kind == "client"
    assert ok.attributes.items() >= {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.request.max_tokens": 1024, "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.finish_reasons": ["stop"], "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30, "gen_ai.usage.cache_read.input_tokens": 20,
        "agentd.cost_usd": 0.00004, "agentd.price_source": "table", "agentd.attempt": 2}.items()
    assert "error.type" not in ok.attributes
    assert failed.attributes["error.type"] == "503" and failed.error == "503"
    assert ok.end_ns - ok.start_ns == 250_000_000
    assert [e.name for e in step.events] == ["agentd.retry"]
    assert "gen_ai.input.messages" not in ok.attributes  # content only when capture is on


def test_tool_calls_fallbacks_and_a_failed_outcome(tmp_path: Path) -> None:
    records = _log(tmp_path, [
        CLAIMED,
        ("llm_route", {"correlation_id": CID, "model": "backup", "decision": "fallback", "why": "503"}),
        ("tool_call", {"correlation_id": CID, "workflow": "triage", "step": "act", "tool": "notification",
                       "allowed": True, "status": "ok", "latency_ms": 12.5, "idempotency_key": f"{CID}:act:1"}),
        ("tool_call", {"correlation_id": CID, "workflow": "triage", "step": "act", "tool": "db-query",
                       "allowed": False, "why": "not in ALLOWED_SERVICES"}),
        _step("act", "2026-01-01T00:00:00.900Z", status="failed", error_class="policy"),
        ("outcome", {"correlation_id": CID, "workflow": "triage", "outcome": "failed", "reason": "tool_denied",
                     "error_class": "policy", "file": "inv.txt"})])
    root = build_run(CID, records[:-1], records[-1])
    [step] = root.children
    sent, denied = step.children
    assert sent.name == "execute_tool notification" and sent.attributes["gen_ai.tool.name"] == "notification"
    assert sent.attributes["gen_ai.operation.name"] == "execute_tool" and sent.error is None
    assert denied.attributes["error.type"] == "denied" and denied.attributes["agentd.tool.why"] == "not in ALLOWED_SERVICES"
    assert [e.name for e in step.events] == ["agentd.llm_route"] and step.error == "policy"
    assert root.error == "tool_denied" and root.attributes["error.type"] == "policy"


def test_the_same_lines_give_the_same_ids_and_a_review_decision_joins_the_run(tmp_path: Path) -> None:
    clock = iter([1_767_000_001.0, 1_767_000_002.0, 1_767_000_003.0, 1_767_000_010.0, 1_767_000_125.5,
                  1_767_000_126.0])
    audit = AuditLog(tmp_path / "logs", clock=lambda: next(clock)).open()
    for event, fields in [CLAIMED, _step("classify", "2025-12-29T09:20:01.500Z", status="review"),
                          ("outcome", {"correlation_id": CID, "workflow": "triage", "outcome": "review",
                                       "reason": "low_confidence"}),
                          ("review_notified", {"correlation_id": CID, "workflow": "triage"}),
                          ("review_decision", {"correlation_id": CID, "workflow": "triage", "reviewer": "ana",
                                               "decision": "approve", "edits": {"result.total": {"old": 1, "new": 2}}}),
                          ("outcome", {"correlation_id": CID, "outcome": "archived", "via": "review"})]:  # older agentd
        audit.append(event, **fields)
    audit.close()
    records = list(iter_records(tmp_path / "logs"))
    assembler = Assembler()
    first = [f for f in map(assembler.feed, records) if f]
    again = [f for f in map(Assembler().feed, records) if f]
    assert [[(s.span_id, s.start_ns, s.end_ns, s.attributes) for s in f.spans] for f in first] == \
        [[(s.span_id, s.start_ns, s.end_ns, s.attributes) for s in f.spans] for f in again]
    run, review = first  # the run ends at its outcome (review); the decision is one more span, nothing after it
    assert run.seq == records[2]["seq"] and review.seq == records[4]["seq"]
    root = run.spans[0]
    assert root.attributes["agentd.outcome"] == "review" and [e.name for e in root.events] == ["agentd.review"]
    [decision] = review.spans
    assert decision.name == "agentd.review approve" and decision.parent_id == root.span_id == ids.root_span_id(CID)
    assert decision.attributes.items() >= {"agentd.reviewer": "ana", "agentd.decision": "approve",
                                           "agentd.review.wait_s": 122.5, "agentd.review.edits": ["result.total"],
                                           "agentd.correlation_id": CID}.items()
    assert decision.start_ns == root.end_ns and decision.end_ns - decision.start_ns == 122_500_000_000
    assert assembler.size() == {"open_runs": 0, "lines": 0, "in_review": 0, "truncated": 0}
    assert review.reread_from == records[4]["seq"] + 1  # nothing held open: a restart reads on from the decision
    assert ids.trace_id(CID) == int(CID, 16)

    from agentd.traces.timeline import build_tree, render_text
    lines = render_text(build_tree(CID, records)).splitlines()
    assert lines[0].startswith(f"trace {CID}  agentd.run triage  review, approve by ana")
    assert lines[-1].split("ms  ", 2)[-1].startswith("└─ agentd.review approve  [approve]  waited 122.5 s in review")


def test_the_timeline_of_a_run_still_in_progress_shows_what_it_did_so_far(tmp_path: Path) -> None:
    from agentd.traces.timeline import build_tree, render_text

    records = _log(tmp_path, [CLAIMED, _step("extract_text", "2026-01-01T00:00:00.500Z"), _llm("classify")])
    root = build_tree(CID, records)
    assert root.attributes["agentd.outcome"] == "in_progress"
    lines = render_text(root).splitlines()
    assert lines[0].startswith(f"trace {CID}  agentd.run triage  in_progress")
    assert [line.split("ms  ", 2)[-1].split("  [")[0] for line in lines[2:]] == [
        "agentd.run triage", "├─ agentd.step extract_text", "└─ chat gpt-4o-mini"]


def test_a_budget_refusal_and_a_wait_are_events_on_the_run(tmp_path: Path) -> None:
    records = _log(tmp_path, [CLAIMED, ("outcome", {"correlation_id": CID, "workflow": "triage", "outcome": "failed",
                                                    "reason": "run_budget_exceeded", "error_class": "budget"})])
    refused = build_run(CID, records[:-1], records[-1])
    assert [e.name for e in refused.events] == ["agentd.budget_refused"] and refused.error == "run_budget_exceeded"
    waited = build_run(CID, records[:-1], {"event": "waiting", "correlation_id": CID, "workflow": "triage",
                                           "reason": "daily_budget_exhausted", "ts": records[-1]["ts"]})
    assert waited.attributes["agentd.outcome"] == "waiting" and waited.error is None
    assert [e.name for e in waited.events] == ["agentd.budget_refused"]
