"""The audit trail (agentd.guards.trail): resumed, step and tool_call lines, the lines traces are built from."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from agentd.errors import DataError, Paused
from agentd.guards.base import Guards, ToolCall
from agentd.guards.trail import AuditTrailGuard, params_digest
from tests.guards.parts import CID, Parts, make_parts


@pytest.fixture
def parts(tmp_path: Path) -> Parts:
    return make_parts(tmp_path / "home")


def trail(parts: Parts) -> AuditTrailGuard:
    return AuditTrailGuard(parts.audit, parts.metrics, frozenset({"echo"}))


def test_a_resumed_run_writes_one_resumed_line(parts: Parts) -> None:
    name = os.fsdecode(b"scan-\xff.pdf")  # a dropped name that is not valid UTF-8
    run = parts.run(resumed=True, crash_resumes=2, name=name, workflow="invoices")
    Guards([trail(parts)]).before("run", run)
    [line] = parts.events("resumed")
    assert line["correlation_id"] == CID and line["workflow"] == "invoices"
    assert line["original_name"] == "scan-\\xff.pdf"
    assert line["crash_resumes"] == 2


def test_a_fresh_run_writes_no_resumed_line(parts: Parts) -> None:
    trail(parts).before_run(parts.run())
    assert parts.events("resumed") == []


@pytest.mark.parametrize(("status", "error", "error_class"), [
    ("ok", None, None),
    ("failed", DataError("no_text"), "data"),
    ("failed", KeyError("x"), "internal"),  # a bug in a step: the run fails with internal
    ("review", None, None),
    ("paused", Paused("kill_switch"), None),
])
def test_each_step_end_is_one_step_line(parts: Parts, status: str, error: BaseException | None,
                                        error_class: str | None) -> None:
    run = parts.run(workflow="invoices")
    Guards([trail(parts)]).after("step", run, "extract", status, "2026-03-14T10:00:00.000Z", 12.5, error=error)
    [line] = parts.events("step")
    assert {k: line.get(k) for k in ("correlation_id", "workflow", "step", "status", "started_at", "duration_ms",
                                 "error_class")} == {
        "correlation_id": CID, "workflow": "invoices", "step": "extract", "status": status,
        "started_at": "2026-03-14T10:00:00.000Z", "duration_ms": 12.5, "error_class": error_class}


def test_a_tool_call_is_one_allowed_line_with_a_params_digest(parts: Parts) -> None:
    run = parts.run(step="notify")
    params = {"text": "hi", "to": ["a", "b"]}
    call = ToolCall(run=run, name="echo", params=params, key="k-1", proposed_by="model", status="ok",
                    latency_ms=3.25)
    Guards([trail(parts)]).after("tool_call", call)
    [line] = parts.events("tool_call")
    expected_digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()
    assert {k: line.get(k) for k in ("tool", "allowed", "status", "latency_ms", "idempotency_key", "params_sha256",
                                 "proposed_by", "step")} == {
        "tool": "echo", "allowed": True, "status": "ok", "latency_ms": 3.25, "idempotency_key": "k-1",
        "params_sha256": expected_digest, "proposed_by": "model", "step": "notify"}
    assert "hi" not in json.dumps(line)  # the parameters themselves are not in the audit log
    assert parts.metric("agentd_tool_calls_total", tool="echo", status="ok") == 1


def test_the_params_digest_does_not_depend_on_key_order() -> None:
    assert params_digest({"a": 1, "b": "é"}) == params_digest({"b": "é", "a": 1})
    assert params_digest({"a": 1}) != params_digest({"a": 2})


def test_a_tool_call_without_params_or_key_has_none_for_both(parts: Parts) -> None:
    trail(parts).after_tool_call(ToolCall(run=parts.run(), name="echo", params=None, status="error"))
    [line] = parts.events("tool_call")
    assert line.get("params_sha256") is None and line.get("idempotency_key") is None and line["status"] == "error"
    assert parts.metric("agentd_tool_calls_total", tool="echo", status="error") == 1
