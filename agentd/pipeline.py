"""Runs one claimed file through its workflow's steps, with the guards, to one terminal place."""
from __future__ import annotations

import asyncio
import hashlib
import os
import stat
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Awaitable, Callable

import structlog

from agentd import logs
from agentd.audit import AuditLog, utcnow_iso
from agentd.config import Config
from agentd.errors import AgentdError, DataError, InternalError, NeedsReview, Paused
from agentd.extract import Document
from agentd.index import DedupeIndex
from agentd.journal import MISSING, Journal
from agentd.llm.base import LLMRequest
from agentd.llm.gateway import Gateway
from agentd.metrics import Metrics
from agentd.sandbox import extract_isolated
from agentd.spool import Claim, Spool, display_name
from agentd.workflows import Workflow, step_name

log = logs.get("agentd.pipeline")
HASH_IN_THREAD_BYTES = 1 << 20


@dataclass
class RunContext:
    """What a step sees: the run's identity, its file, the model, the tools, what it cost so far."""

    cid: str
    workflow: str
    config: Config
    claim: Claim
    journal: Journal
    gateway: Gateway
    audit: AuditLog | None = None
    tools: Any = None
    allowed_tools: frozenset[str] = frozenset()
    outputs: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    step: str = ""
    data: bytes = b""
    sha256: str | None = None
    document: Document | None = None
    models_used: list[dict[str, str]] = field(default_factory=list)
    _asks: int = 0

    @property
    def path(self) -> Path:
        return self.claim.data

    @property
    def original_name(self) -> str:
        return self.claim.original_name

    @property
    def cost_usd(self) -> Decimal:
        return self.journal.cost_usd

    @property
    def log(self) -> Any:
        return log.bind(step=self.step)

    async def text(self) -> str:
        """The extracted text of the file (DataError when it has none), parsed off the event loop."""
        if self.document is None:
            self.document = await extract_isolated(self.original_name, self.data, self.config.extract_timeout_s,
                                                   self.config.extract_memory_mb)
        return self.document.text

    async def ask(self, *, task: str, system: str, document: str, schema: dict[str, Any],
                  instructions: str = "", max_tokens: int | None = None,
                  tools: tuple[dict[str, Any], ...] = ()) -> Any:
        """A schema-checked model answer; paid once, replayed from the journal after a crash."""
        self._asks += 1
        key = f"{self.step}:ask:{self._asks}"
        restore: Callable[[Any], Any] = lambda value: value
        if self.tools is not None:
            document, restore = self.tools.prepare_document(self, document)
        request = LLMRequest(task=task, system=system, document=document, schema=schema,
                             schema_name=task, instructions=instructions, tools=tools,
                             max_tokens=max_tokens or self.config.llm_max_output_tokens)
        if self.journal.get(key) is MISSING:  # a call will go out: earlier answers are on disk
            await self.journal.flush()
        answer = await self.gateway.structured(self, request, key)
        if is_tool_call_answer(answer) and not tools:
            await self.refuse_tool_calls(answer["tool_calls"], "no tools were offered to this step")
        return restore(answer)

    async def refuse_tool_calls(self, calls: list[dict[str, Any]], why: str) -> None:
        """The model asked for tools it may not use: audit each refusal, let a human decide."""
        assert self.audit is not None
        names = []
        for call in calls:
            name = str(call.get("name", "?"))[:100]
            names.append(name)
            self.audit.append("tool_call", correlation_id=self.cid, workflow=self.workflow, step=self.step,
                              tool=name, allowed=False, why=why)
        await self.audit.flush()
        raise NeedsReview("tool_call_refused", refused_tools=names, why=why)

    def note_model(self, provider: str, model: str) -> None:
        entry = {"provider": provider, "model": model}
        if entry not in self.models_used:
            self.models_used.append(entry)

    async def tool(self, name: str, /, **params: Any) -> Any:
        """Call an allowed tool (see agentd.tools); refused calls raise PolicyError."""
        if self.tools is None:
            from agentd.errors import PolicyError
            raise PolicyError("tool_denied", f"no tools are available to call {name!r}")
        await self.claim.durable()
        await self.journal.flush()
        return await self.tools.call(self, name, params)


def is_tool_call_answer(answer: Any) -> bool:
    return isinstance(answer, dict) and "tool_calls" in answer and set(answer) <= {"tool_calls", "content"}


class Guard:
    """Cross-cutting checks around every step. Before-hooks run in order, after-hooks reversed."""

    async def before_step(self, ctx: RunContext, name: str) -> None:
        """Runs before a step; raise to stop the run."""

    async def after_step(self, ctx: RunContext, name: str, output: Any) -> None:
        """Runs after a step succeeded and its output is journaled."""


class StopGuard(Guard):
    """The kill switch: a run stops at its next step and stays resumable."""

    def __init__(self, stop_reason: Callable[[], str | None]):
        self.stop_reason = stop_reason

    async def before_step(self, ctx: RunContext, name: str) -> None:
        reason = self.stop_reason()
        if reason:
            raise Paused(reason)


@dataclass
class Outcome:
    outcome: str
    reason: str | None = None
    error_class: str | None = None
    detail: str | None = None
    result: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class Pipeline:
    def __init__(self, config: Config, spool: Spool, audit: AuditLog, gateway: Gateway,
                 workflows: dict[str, Workflow], index: DedupeIndex, metrics: Metrics,
                 guards: list[Guard], wait_open: Callable[[str], Awaitable[None]],
                 tools: Any = None, on_finish: Callable[[str, str], None] = lambda w, o: None,
                 on_wait: Callable[[Path, str], None] = lambda p, r: None,
                 on_progress: Callable[[], None] = lambda: None):
        self.config = config
        self.spool = spool
        self.audit = audit
        self.gateway = gateway
        self.workflows = workflows
        self.index = index
        self.metrics = metrics
        self.guards = guards
        self.wait_open = wait_open
        self.tools = tools
        self.on_finish = on_finish
        self.on_wait = on_wait
        self.on_progress = on_progress
        self._strikes: dict[tuple[int, int, int], int] = {}
        self._same_content: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def process(self, claim: Claim) -> str:
        """Run a claim to its terminal place; returns the outcome, or "waiting" if put back."""
        structlog.contextvars.bind_contextvars(correlation_id=claim.cid, workflow=claim.workflow)
        started = time.monotonic()
        ctx: RunContext | None = None
        try:
            journal = Journal(claim.journal_path, self.spool.sync)
            self.gateway.budget.start_run(claim.cid, journal.cost_usd)
            if claim.resumed:
                self.audit.append("resumed", correlation_id=claim.cid, workflow=claim.workflow,
                                  original_name=display_name(claim.original_name))
            ctx = RunContext(cid=claim.cid, workflow=claim.workflow, config=self.config, claim=claim,
                             journal=journal, gateway=self.gateway, audit=self.audit, tools=self.tools)
            while True:
                try:
                    outcome = await self._decide(ctx)
                    break
                except Paused as paused:
                    if not ctx.journal.precious:
                        self.on_wait(await self.spool.unclaim(claim, paused.reason), paused.reason)
                        log.info("run_waiting", reason=paused.reason, file=display_name(claim.original_name))
                        return "waiting"
                    log.info("run_paused", reason=paused.reason)
                    await self.wait_open(paused.reason)
            final = await asyncio.shield(self._finish(ctx, outcome, started))
            self._count(claim.workflow, outcome.outcome, started)
            fields = {"reason": outcome.reason, "error_class": outcome.error_class}
            log.info("run_finished", outcome=outcome.outcome, file=final.name, cost_usd=float(ctx.cost_usd),
                     llm_calls=len(ctx.journal.calls), duration_ms=round((time.monotonic() - started) * 1000, 1),
                     **{k: v for k, v in fields.items() if v is not None})
            return outcome.outcome
        finally:
            if ctx is not None:
                ctx.journal.close()
            self._release_same_content(ctx)
            self.gateway.budget.end_run(claim.cid)
            structlog.contextvars.unbind_contextvars("correlation_id", "workflow")

    def _count(self, workflow: str, outcome: str, started: float) -> None:
        self.on_progress()
        self.metrics.files.labels(workflow, outcome).inc()
        self.metrics.run_seconds.labels(workflow).observe(time.monotonic() - started)
        self.on_finish(workflow, outcome)

    # -- the one place that decides the terminal folder ------------------------------------
    async def _decide(self, ctx: RunContext) -> Outcome:
        try:
            result = await self._run(ctx)
            if isinstance(result, Outcome):
                return result
            return Outcome("archived", result=result)
        except NeedsReview as review:
            return Outcome("review", reason=review.reason, result=review.result, extra=review.details)
        except AgentdError as error:
            if error.extra.get("retryable") and not ctx.journal.precious and self._first_strike(ctx.claim):
                raise Paused("model_unreachable") from None
            return Outcome("failed", reason=error.reason, error_class=error.error_class,
                           detail=error.detail or None, extra=error.extra)
        except (Paused, asyncio.CancelledError):
            raise
        except Exception as exc:  # a bug in a step must not take the daemon down
            log.exception("step_crashed", step=ctx.step)
            return Outcome("failed", reason="internal_error", error_class="internal",
                           detail=self.audit.redact(f"{exc.__class__.__name__}: {exc}")[:500])

    def _first_strike(self, claim: Claim) -> bool:
        """A file whose model calls all failed (while the model answers others) gets one more go."""
        try:
            st = os.lstat(claim.data)
        except FileNotFoundError:
            return False
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        strikes = self._strikes.get(key, 0)
        if strikes:
            self._strikes.pop(key, None)
            return False
        if len(self._strikes) >= 10_000:
            self._strikes.pop(next(iter(self._strikes)))
        self._strikes[key] = 1
        return True

    async def _run(self, ctx: RunContext) -> Any:
        claim = ctx.claim
        if claim.kind != "file":
            raise DataError(claim.kind, f"a {claim.kind} is never opened or followed")
        workflow = self.workflows.get(claim.workflow)
        if workflow is None:
            raise DataError("unknown_workflow", f"no workflow named {display_name(claim.workflow)!r}")
        ctx.allowed_tools = workflow.tools
        await self._read(ctx)
        duplicate = await self._duplicate(ctx)
        if duplicate is not None:
            return duplicate
        result: Any = None
        for step in workflow.steps:
            ctx.step = name = step_name(step)
            done = ctx.journal.get(f"step:{name}")
            if done is not MISSING:
                ctx.outputs[name] = result = done
                continue
            ctx._asks = 0  # a re-run step asks under the same journal keys
            if ctx.tools is not None:
                ctx.tools.begin_step(ctx)
            for guard in self.guards:
                await guard.before_step(ctx, name)
            try:
                async with asyncio.timeout(self.config.step_timeout_s):
                    result = await step(ctx)
            except TimeoutError:
                raise InternalError("step_timeout", f"step {name} took over {self.config.step_timeout_s:g}s") from None
            await ctx.journal.put(f"step:{name}", result, durable=False)
            ctx.outputs[name] = result
            self.on_progress()
            for guard in reversed(self.guards):
                await guard.after_step(ctx, name, result)
        return result

    async def _read(self, ctx: RunContext) -> None:
        """Read the claimed file without following links or blocking on special files."""
        fd = os.open(ctx.claim.data, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DataError("not_a_regular_file", "only regular files are processed")
            ctx.claim.size = st.st_size
            if st.st_size > self.config.max_file_bytes:
                raise DataError("too_large", f"{st.st_size} bytes is over AGENTD_MAX_FILE_BYTES="
                                             f"{self.config.max_file_bytes}; the file was not read")
            if st.st_size > HASH_IN_THREAD_BYTES:
                ctx.data = await asyncio.to_thread(_read_all, fd, st.st_size)
            else:
                ctx.data = _read_all(fd, st.st_size)
        finally:
            os.close(fd)
        ctx.sha256 = hashlib.sha256(ctx.data).hexdigest()

    async def _duplicate(self, ctx: RunContext) -> Outcome | None:
        """Same content as an archived run of this workflow: reuse its result, no model call."""
        if not self.config.dedupe or ctx.sha256 is None:
            return None
        key = (ctx.workflow, ctx.sha256)
        earlier = self._same_content.get(key)
        if ctx.state.get("dedupe_key") == key:
            pass  # our own marker, from before this run paused
        elif earlier is not None and not earlier.done():
            await asyncio.shield(earlier)
        elif earlier is None:
            self._same_content[key] = asyncio.get_running_loop().create_future()
            ctx.state["dedupe_key"] = key
        found = self.index.get(*key)
        if found is None:
            return None
        first_cid, sidecar_path = found
        try:
            import json
            first = json.loads(sidecar_path.read_text("utf-8", "surrogateescape"))
        except (OSError, ValueError):
            self.index.forget(*key)
            return None
        return Outcome("archived", reason=f"duplicate_of:{first_cid}", result=first.get("result"),
                       extra={"duplicate_of": first_cid})

    async def _finish(self, ctx: RunContext, outcome: Outcome, started: float) -> Path:
        claim = ctx.claim
        tokens = ctx.journal.tokens
        sidecar: dict[str, Any] = {
            "correlation_id": claim.cid,
            "workflow": claim.workflow,
            "original_name": display_name(claim.original_name),
            "sha256": ctx.sha256,
            "size": claim.size,
            "kind": claim.kind,
            "outcome": outcome.outcome,
            "reason": outcome.reason,
            "error_class": outcome.error_class,
            "detail": outcome.detail,
            "cost_usd": float(ctx.cost_usd),
            "tokens": tokens,
            "llm_calls": len(ctx.journal.calls),
            "models": ctx.models_used,
            "started_at": claim.started_at,
            "finished_at": utcnow_iso(),
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
            "result": outcome.result,
            **outcome.extra,
        }
        sidecar = self.audit.redact({k: v for k, v in sidecar.items() if v is not None or k in (
            "result", "sha256")})
        audit_fields = {"reason": outcome.reason, "error_class": outcome.error_class,
                        "cost_usd": ctx.cost_usd, "tokens_in": tokens["input"], "tokens_out": tokens["output"],
                        "llm_calls": len(ctx.journal.calls), "sha256": ctx.sha256}
        final = await self.spool.finish(claim, outcome.outcome, sidecar, audit_fields)
        if outcome.outcome == "archived" and ctx.sha256 and "duplicate_of" not in outcome.extra:
            self.index.put(claim.workflow, ctx.sha256, claim.cid, final.with_name(final.name + ".meta.json"))
        return final

    def _release_same_content(self, ctx: RunContext | None) -> None:
        key = ctx.state.get("dedupe_key") if ctx else None
        waiter = self._same_content.pop(key, None) if key else None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _read_all(fd: int, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
