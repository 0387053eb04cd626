"""The audit trail of a run's shape: resumes, steps and tool calls, as audit lines (traces read them)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from agentd import logs
from agentd.guards.base import Guard, ModelCall, ToolCall
from agentd.spool.layout import display_name

log = logs.get("agentd.tools")
SHOWN_NAME_CHARS = 100


def params_digest(params: Any) -> str:
    text = json.dumps(params, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class AuditTrailGuard(Guard):
    def __init__(self, audit: Any, metrics: Any, known_tools: frozenset[str] = frozenset()):
        self.audit = audit
        self.metrics = metrics
        self.known_tools = known_tools

    def before_run(self, run: Any) -> None:
        claim = run.claim
        if claim.resumed:
            self.audit.append("resumed", correlation_id=run.cid, workflow=run.workflow,
                              original_name=display_name(claim.original_name), crash_resumes=claim.crash_resumes)

    def after_step(self, run: Any, step: str, status: str, started_at: str, duration_ms: float,
                   error: BaseException | None = None) -> None:
        # written with the next line (one write, one lock): before any call that can take long
        self.audit.stage("step", correlation_id=run.cid, workflow=run.workflow, step=step, status=status,
                          started_at=started_at, duration_ms=duration_ms,
                          error_class=(getattr(error, "error_class", "internal") if status == "failed" else None))

    def before_model_call(self, call: ModelCall) -> None:
        if call.provider != "offline":  # a request can hang: the steps before it are on disk first
            self.audit.write_staged()

    def before_tool_call(self, call: ToolCall) -> None:
        self.audit.write_staged()

    def after_tool_call(self, call: ToolCall) -> None:
        run = call.run
        self.audit.append("tool_call", correlation_id=run.cid, workflow=run.workflow, step=run.step,
                          tool=call.name, allowed=True, status=call.status, latency_ms=call.latency_ms,
                          idempotency_key=call.key or None,
                          params_sha256=params_digest(call.params) if call.params is not None else None,
                          proposed_by=call.proposed_by)
        self.metrics.tool_calls.labels(call.name, call.status).inc()
        log.info("tool_call", tool=call.name, status=call.status, latency_ms=call.latency_ms,
                 proposed_by=call.proposed_by)

    def refused(self, run: Any, name: Any, why: str, proposed_by: str) -> None:
        """A tool call that does not run (the caller decides what happens to the run)."""
        shown = str(name)[:SHOWN_NAME_CHARS]
        self.audit.append("tool_call", correlation_id=run.cid, workflow=run.workflow, step=run.step,
                          tool=shown, allowed=False, why=why, proposed_by=proposed_by)
        label = name if isinstance(name, str) and name in self.known_tools else "unknown"
        self.metrics.tool_calls.labels(label, "denied").inc()
        log.warning("tool_call_refused", tool=shown, why=why, proposed_by=proposed_by)
