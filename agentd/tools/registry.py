"""The ToolBox: default-deny allowlists, schema checks, rate limits, idempotent replay and the audit.

A call runs only when the tool is in both the workflow's own allowlist and
ALLOWED_SERVICES and its parameters pass the tool's JSON schema. Every call is audited
(`tool_call`, allowed true or false). Its result is journaled under the run's
idempotency key (correlation id, step, call index) before it is returned, so a resumed
run replays it instead of acting twice.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any, Callable, Iterable

import jsonschema

from agentd import logs
from agentd.audit import AuditLog
from agentd.config import Config
from agentd.errors import AgentdError, InternalError, NeedsReview, Paused, PolicyError, ToolError
from agentd.spool.journal import MISSING
from agentd.metrics import Metrics
from agentd.tools import dbquery, directory, notification, ocr
from agentd.tools.base import Invocation, TokenBucket, Tool

log = logs.get("agentd.tools")
JOURNAL_PREFIX = "tool:"
INDEX_STATE = "tool_call_index"
SHOWN_NAME_CHARS = 100


def builtin_tools() -> tuple[Tool, ...]:
    return (ocr.TOOL, notification.TOOL, dbquery.TOOL)


def params_digest(params: Any) -> str:
    text = json.dumps(params, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class ToolBox:
    def __init__(self, config: Config, audit: AuditLog, metrics: Metrics,
                 stop_reason: Callable[[], str | None] = lambda: None, tools: Iterable[Tool] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.audit = audit
        self.metrics = metrics
        self.stop_reason = stop_reason
        self.tools = {tool.name: tool for tool in (builtin_tools() if tools is None else tools)}
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._directory: directory.Directory | None = None

    # -- what steps and the pipeline use ---------------------------------------------------
    @property
    def directory(self) -> directory.Directory | None:
        """The party directory, or None while AGENTD_HOME/data/directory.csv does not exist."""
        path = self.config.data_dir / directory.FILE
        if not path.is_file():
            return None
        if self._directory is None or self._directory.path != path:
            self._directory = directory.Directory(path)
        return self._directory

    def prepare_document(self, ctx: Any, text: str) -> tuple[str, Callable[[Any], Any]]:
        """The document as the model may see it, and how to put redacted values back in its answer."""
        if not self.config.redact_pii:
            return text, _identity
        from agentd.guards import pii

        redaction = pii.redact(text)
        for kind, count in redaction.counts.items():
            self.metrics.pii_redacted.labels(kind).inc(count)
        if redaction.counts:
            self.audit.append("pii_redacted", correlation_id=ctx.cid, workflow=ctx.workflow, step=ctx.step,
                              counts=redaction.counts)
        return redaction.text, redaction.restore

    def specs(self, names: Iterable[str]) -> tuple[dict[str, Any], ...]:
        """How the named tools are offered to a model; unknown names are left out."""
        return tuple(self.tools[n].spec(self.config) for n in names if n in self.tools)

    def permitted(self, ctx: Any, names: Iterable[str]) -> tuple[str, ...]:
        """Those of `names` this run may call (registered, in both allowlists), in order."""
        return tuple(n for n in names if self._denied(ctx, n) is None)

    def refusal(self, ctx: Any, name: str, params: Any) -> str | None:
        """Why a call may not run (allowlists, then the schema), or None when it may."""
        why = self._denied(ctx, name)
        if why is not None:
            return why
        if not isinstance(params, dict):
            return "the parameters are not a JSON object"
        validator = jsonschema.Draft202012Validator(self.tools[name].schema(self.config))
        error = jsonschema.exceptions.best_match(validator.iter_errors(params))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"invalid parameters at {where}: {error.message[:200]}"
        return None

    def calls_recorded(self, ctx: Any, exclude_step: str | None = None) -> int:
        """Tool calls this run completed so far (journaled, so across restarts)."""
        skip = f"{JOURNAL_PREFIX}{exclude_step}:" if exclude_step is not None else None
        return sum(1 for key in ctx.journal.values
                   if key.startswith(JOURNAL_PREFIX) and not (skip and key.startswith(skip)))

    async def call(self, ctx: Any, name: str, params: Any, *, proposed_by: str = "workflow") -> Any:
        """Run one tool call for `ctx` (or replay its journaled result); refused calls raise PolicyError."""
        index = self._next_index(ctx)
        key = f"{ctx.cid}:{ctx.step}:{index}"
        journal_key = f"{JOURNAL_PREFIX}{ctx.step}:{index}"
        why = self.refusal(ctx, name, params)
        if why is not None:
            self.refuse(ctx, name, why, proposed_by=proposed_by)
            await self.audit.flush()
            raise PolicyError("tool_denied", f"{_shown(name)}: {why}", tool=_shown(name))
        done = ctx.journal.get(journal_key)
        if done is not MISSING:
            return self._replay(ctx, name, key, done)
        reason = self.stop_reason()
        if reason:
            raise Paused(reason)
        tool = self.tools[name]
        if tool.needs_approval:
            self.refuse(ctx, name, "needs human approval", proposed_by=proposed_by)
            await self.audit.flush()
            raise NeedsReview("approval_required", pending_tool_call={"tool": name, "params": params,
                                                                       "idempotency_key": key})
        timeout_s = tool.timeout_s or self.config.tool_timeout_s
        await self._take_token(ctx, tool, timeout_s, proposed_by)
        if tool.side_effect:
            ctx.journal.mark_precious()  # from here on the journal is on disk: a resume replays, never repeats
        result = await self._run(ctx, tool, params, key, timeout_s, proposed_by)
        await ctx.journal.put(journal_key, {"tool": name, "key": key, "result": result})
        return result

    # -- the parts of a call ----------------------------------------------------------------
    def refuse(self, ctx: Any, name: str, why: str, proposed_by: str = "workflow") -> None:
        """Audit a call that does not run (the caller decides what happens to the run)."""
        self.audit.append("tool_call", correlation_id=ctx.cid, workflow=ctx.workflow, step=ctx.step,
                          tool=_shown(name), allowed=False, why=why, proposed_by=proposed_by)
        self.metrics.tool_calls.labels(_label(self, name), "denied").inc()
        log.warning("tool_call_refused", tool=_shown(name), why=why, proposed_by=proposed_by)

    def _denied(self, ctx: Any, name: str) -> str | None:
        if not isinstance(name, str) or name not in self.tools:
            return "no such tool"
        if name not in ctx.allowed_tools:
            return f"not in workflow {ctx.workflow}'s tool allowlist"
        if name not in self.config.allowed_services:
            return "not in ALLOWED_SERVICES"
        return None

    def begin_step(self, ctx: Any) -> None:
        """Number the step's calls from 1 again: a step that runs again (after a pause) replays them."""
        ctx.state.setdefault(INDEX_STATE, {})[ctx.step] = 0

    def _next_index(self, ctx: Any) -> int:
        counts = ctx.state.setdefault(INDEX_STATE, {})
        counts[ctx.step] = counts.get(ctx.step, 0) + 1
        return counts[ctx.step]

    def _replay(self, ctx: Any, name: str, key: str, done: Any) -> Any:
        if not isinstance(done, dict) or done.get("tool") != name:
            raise InternalError("tool_replay_mismatch", f"step {ctx.step} called {_shown(name)} where the journal "
                                                        f"recorded {done.get('tool') if isinstance(done, dict) else '?'}")
        self.audit.append("tool_call", correlation_id=ctx.cid, workflow=ctx.workflow, step=ctx.step, tool=name,
                          allowed=True, status="replayed", latency_ms=0.0, idempotency_key=key)
        self.metrics.tool_calls.labels(name, "replayed").inc()
        return done.get("result")

    async def _take_token(self, ctx: Any, tool: Tool, timeout_s: float, proposed_by: str) -> None:
        if tool.rate_per_min is None:
            return
        bucket = self._buckets.get(tool.name)
        if bucket is None:
            bucket = self._buckets[tool.name] = TokenBucket(tool.rate_per_min, self.clock)
        waited_s = 0.0
        while (wait_s := bucket.reserve()) > 0:
            if waited_s + wait_s > timeout_s:
                self._audit_ran(ctx, tool.name, "rate_limited", 0.0, "", proposed_by)
                raise ToolError("rate_limited", f"{tool.name}: over {tool.rate_per_min:g} calls a minute")
            await asyncio.sleep(wait_s)
            waited_s += wait_s

    async def _run(self, ctx: Any, tool: Tool, params: dict[str, Any], key: str, timeout_s: float,
                   proposed_by: str) -> Any:
        invocation = Invocation(ctx=ctx, config=self.config, params=params, key=key, timeout_s=timeout_s)
        started_s = time.monotonic()
        status = "error"
        try:
            async with asyncio.timeout(timeout_s):
                result = await tool.run(invocation)
            status = "ok"
        except TimeoutError:
            status = "timeout"
            raise ToolError("tool_timeout", f"{tool.name} took over {timeout_s:g}s (TOOL_TIMEOUT_S)") from None
        except AgentdError as error:
            status = error.reason
            raise
        except asyncio.CancelledError:
            status = "cancelled"
            raise
        finally:
            latency_ms = round((time.monotonic() - started_s) * 1000, 1)
            self._audit_ran(ctx, tool.name, status, latency_ms, key, proposed_by, params)
        return result

    def _audit_ran(self, ctx: Any, name: str, status: str, latency_ms: float, key: str, proposed_by: str,
                   params: Any = None) -> None:
        self.audit.append("tool_call", correlation_id=ctx.cid, workflow=ctx.workflow, step=ctx.step, tool=name,
                          allowed=True, status=status, latency_ms=latency_ms, idempotency_key=key or None,
                          params_sha256=params_digest(params) if params is not None else None,
                          proposed_by=proposed_by)
        self.metrics.tool_calls.labels(name, status).inc()
        log.info("tool_call", tool=name, status=status, latency_ms=latency_ms, proposed_by=proposed_by)


def _identity(value: Any) -> Any:
    return value


def _shown(name: Any) -> str:
    return str(name)[:SHOWN_NAME_CHARS]


def _label(box: ToolBox, name: Any) -> str:
    """A metrics label that a model cannot blow up: unknown names count as one."""
    return name if isinstance(name, str) and name in box.tools else "unknown"
