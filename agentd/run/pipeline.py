"""Runs one claimed file through its workflow's steps, inside the guards, to one Decision and its place.

process(): a claim whose outcome is already logged is finished from that record (never
decided again); otherwise the steps run (replaying what the journal holds), the outcome
ladder decides, a deferred run waits (in incoming/ when it did no paid work, in place when
it did), and the store finishes the rest, shielded from cancellation.
"""
from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import structlog

from agentd import logs
from agentd.audit import utcnow_iso
from agentd.config import Config
from agentd.errors import AgentdError, DataError, InternalError, NeedsReview, Paused
from agentd.guards.base import Guards
from agentd.run.context import Run, RunCore, step_name
from agentd.run.isolated import extract_isolated
from agentd.run.outcome import Decision, crash_loop, decide
from agentd.spool.dedupe import DedupeIndex
from agentd.durable.journal import MISSING, Journal
from agentd.spool.layout import Outcome, display_name
from agentd.spool.store import Claim, Store
from agentd.traces.ids import hex_span_id, step_span_id
from agentd.workflows import Workflow

log = logs.get("agentd.run.pipeline")
HASH_IN_THREAD_BYTES = 1 << 20
MAX_STRIKES_FREE = 1  # a run that paid nothing yet: one more go in incoming/, then failed
MAX_STRIKES_PAID = 5  # a run that already paid waits in place longer before it gives up
STEP_STATUS = ((NeedsReview, "review"), (Paused, "paused"))


class Pipeline:
    def __init__(self, config: Config, store: Store, audit: Any, gateway: Any, workflows: dict[str, Workflow],
                 index: DedupeIndex, metrics: Any, guards: Guards,
                 wait_open: Callable[[str, float | None], Awaitable[None]], tools: Any = None,
                 extract_text: Callable[..., Any] | None = None,
                 on_finish: Callable[[str, str], None] = lambda w, o: None,
                 on_progress: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.time):
        self.config = config
        self.store = store
        self.audit = audit
        self.gateway = gateway
        self.workflows = workflows
        self.index = index
        self.metrics = metrics
        self.guards = guards
        self.wait_open = wait_open
        self.tools = tools
        self.extract_text = extract_text
        self.on_finish = on_finish
        self.on_progress = on_progress
        self.clock = clock
        self._same_content: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.waiting_on_earlier = 0  # runs waiting for an earlier run of the same content

    async def process(self, claim: Claim) -> Outcome:
        """Run a claim to its terminal place; DEFERRED when it went back to incoming/ to wait."""
        structlog.contextvars.bind_contextvars(correlation_id=claim.cid, workflow=claim.workflow, trace_id=claim.cid)
        started = time.monotonic()
        try:
            if claim.logged_outcome is not None:  # decided before a crash: end it exactly so
                final = await asyncio.shield(self.store.finish_recorded(claim))
                outcome = Outcome(claim.logged_outcome["outcome"])
                self._count(claim.workflow, outcome, started)
                log.info("run_finished", outcome=outcome.value, file=final.name, recovered=True)
                return outcome
            return await self._process(claim, started)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id", "workflow", "trace_id")

    async def _process(self, claim: Claim, started: float) -> Outcome:
        # a claim retried after a disk error keeps its journal object: answers not yet on disk are in it
        journal = claim.journal if claim.journal is not None else Journal(claim.journal_path, self.store.sync)
        claim.journal = journal
        core = RunCore(cid=claim.cid, workflow=claim.workflow, config=self.config, claim=claim, journal=journal,
                       ask_model=self.gateway.structured, tools=self.tools, audit=self.audit,
                       extract_text=self.extract_text or self._extract)
        core.models_used = _models_in(journal)
        decision: Decision | None = None
        keep_journal = False
        self.guards.before("run", core)
        try:
            if claim.crash_resumes > self.config.max_resumes:
                decision = crash_loop(claim.crash_resumes, self.config.max_resumes)
            else:
                decision = await self._decide(core)
            if decision.outcome is Outcome.DEFERRED:
                await self._defer(core, decision)
                return Outcome.DEFERRED
            final = await asyncio.shield(self._finish(core, decision, started))
        except OSError:
            keep_journal = True  # a full or failing disk: the claim, with its journal in memory, is retried
            raise
        finally:
            if not keep_journal:
                journal.close()
                claim.journal = None
            self._release_same_content(core)
            self.guards.after("run", core, decision)
        self._count(claim.workflow, decision.outcome, started)
        fields = {"reason": decision.reason, "error_class": decision.error_class}
        log.info("run_finished", outcome=decision.outcome.value, file=final.name, cost_usd=float(core.cost_usd),
                 llm_calls=len(journal.calls), duration_ms=round((time.monotonic() - started) * 1000, 1),
                 **{k: v for k, v in fields.items() if v is not None})
        return decision.outcome

    async def _decide(self, core: RunCore) -> Decision:
        """Run the steps until the ladder gives a final Decision; a paid run waits in place meanwhile."""
        while True:
            paid = core.journal.paid
            try:
                decision = decide(await self._steps(core))
            except OSError as exc:  # a disk error is no outcome: the claim (its journal in memory) is retried
                log.warning("run_held_io_error", step=core.step, error=f"{exc.__class__.__name__}: {exc}")
                raise
            except Exception as exc:
                if not isinstance(exc, (AgentdError, NeedsReview, Paused)):
                    log.exception("step_crashed", step=core.step)
                decision = decide(error=exc, strikes=core.claim.strikes, now=self.clock(),
                                  max_strikes=MAX_STRIKES_PAID if core.journal.paid else MAX_STRIKES_FREE,
                                  redact=self.audit.redact)
            if decision.outcome is not Outcome.DEFERRED or not (paid or core.journal.paid):
                return decision
            if decision.strike:
                core.claim.strikes += 1
            log.info("run_paused", reason=decision.reason)
            await self.wait_open(decision.reason or "paused", decision.not_before)

    async def _defer(self, core: RunCore, decision: Decision) -> None:
        """Back to incoming/ (it did no paid work): it waits there, with its not-before time on disk."""
        claim = core.claim
        strikes = claim.strikes + (1 if decision.strike else 0)
        if decision.reason == "rate_limited" and decision.not_before:  # the server's word holds every file
            self.store.deferrals.hold_all(decision.not_before, "rate_limited")
        await self.store.unclaim(claim, decision.reason or "paused", decision.not_before, strikes=strikes)
        log.info("run_waiting", reason=decision.reason, file=display_name(claim.original_name))

    async def _extract(self, name: Path, data: bytes) -> Any:
        """The file's text, parsed in a parser process with AGENTD_EXTRACT_TIMEOUT_S and a memory limit."""
        return await extract_isolated(str(name), data, self.config.extract_timeout_s, self.config.extract_memory_mb)

    def _count(self, workflow: str, outcome: Outcome, started: float) -> None:
        self.on_progress()
        label = workflow if workflow in self.workflows else "unknown"
        self.metrics.files.labels(label, outcome.value).inc()
        self.metrics.run_seconds.labels(label).observe(time.monotonic() - started)
        self.on_finish(workflow, outcome.value)

    # -- the steps --------------------------------------------------------------------------
    async def _steps(self, core: RunCore) -> Any:
        claim = core.claim
        if claim.kind != "file":
            raise DataError(claim.kind, f"a {claim.kind} is never opened or followed")
        workflow = self.workflows.get(claim.workflow)
        if workflow is None:
            raise DataError("unknown_workflow", f"no workflow named {display_name(claim.workflow)!r}")
        core.allowed_tools = workflow.tools
        await self._read(core)
        duplicate = await self._duplicate(core)
        if duplicate is not None:
            return duplicate
        result: Any = None
        run = Run(core)
        for step in workflow.steps:
            core.step = name = step_name(step)
            done = core.journal.get(f"step:{name}")
            if done is not MISSING:
                core.outputs[name] = result = done
                continue
            result = await self._step(core, run, step, name)
        return result

    async def _step(self, core: RunCore, run: Run, step: Any, name: str) -> Any:
        core.asks = 0  # a re-run step asks under the same journal keys
        if core.tools is not None:
            core.tools.begin_step(core)
        started, started_at = time.monotonic(), utcnow_iso()
        status, error = "failed", None
        # log lines of the step join its trace span (the exporter derives the same id from the step line)
        structlog.contextvars.bind_contextvars(step=name, span_id=hex_span_id(step_span_id(core.cid, name, started_at)))
        try:
            self.guards.before("step", core, name)
            limit = self.guards.step_timeout_s(core, step)
            try:
                async with asyncio.timeout(limit) as deadline:
                    result = await step(run)
            except TimeoutError:
                if not deadline.expired():
                    raise
                raise InternalError("step_timeout", f"step {name} took over {limit:g}s") from None
            status = "ok"
        except asyncio.CancelledError:
            status = "cancelled"  # a drain deadline: no step line, the run resumes at the next start
            raise
        except Exception as exc:
            error = exc
            status = next((label for kind, label in STEP_STATUS if isinstance(exc, kind)), "failed")
            raise
        finally:
            structlog.contextvars.unbind_contextvars("step", "span_id")
            if status != "cancelled":
                duration_ms = round((time.monotonic() - started) * 1000, 1)
                self.guards.after("step", core, name, status, started_at, duration_ms, error=error)
        await core.journal.put(f"step:{name}", result, durable=False)
        core.outputs[name] = result
        self.on_progress()
        return result

    async def _read(self, core: RunCore) -> None:
        """Read the claimed file without following links or blocking on special files."""
        try:
            fd = os.open(core.claim.data, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # swapped for a link or a socket since the claim: the file's fault, not the disk's
            if exc.errno in (errno.ELOOP, errno.ENXIO):
                raise DataError("not_a_regular_file", "only regular files are processed") from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise DataError("not_a_regular_file", "only regular files are processed")
            core.claim.size = st.st_size
            if st.st_size > self.config.max_file_bytes:
                raise DataError("too_large", f"{st.st_size} bytes is over AGENTD_MAX_FILE_BYTES="
                                             f"{self.config.max_file_bytes}; the file was not read")
            if st.st_size > HASH_IN_THREAD_BYTES:
                core.data = await asyncio.to_thread(_read_all, fd, st.st_size)
            else:
                core.data = _read_all(fd, st.st_size)
        finally:
            os.close(fd)
        core.sha256 = hashlib.sha256(core.data).hexdigest()

    async def _duplicate(self, core: RunCore) -> Decision | None:
        """Same content as an archived run of this workflow: reuse its result, no model call."""
        if not self.config.dedupe or core.sha256 is None:
            return None
        key = (core.workflow, core.sha256)
        earlier = self._same_content.get(key)
        if core.state.get("dedupe_key") != key:  # not our own marker, from before this run paused
            if earlier is not None and not earlier.done():
                self.waiting_on_earlier += 1  # paused, for the watchdog: the earlier run is the one that moves
                try:
                    await asyncio.shield(earlier)
                finally:
                    self.waiting_on_earlier -= 1
            elif earlier is None:
                self._same_content[key] = asyncio.get_running_loop().create_future()
                core.state["dedupe_key"] = key
        found = self.index.reusable(*key)  # only while the first run's sidecar is still its own
        if found is None:
            return None
        first_cid, first = found
        return Decision(Outcome.ARCHIVED, reason=f"duplicate_of:{first_cid}", result=first.get("result"),
                        extra={"duplicate_of": first_cid})

    # -- the finish ---------------------------------------------------------------------------
    async def _finish(self, core: RunCore, decision: Decision, started: float) -> Path:
        claim = core.claim
        tokens = core.journal.tokens
        sidecar: dict[str, Any] = {
            "correlation_id": claim.cid, "workflow": claim.workflow,
            "original_name": display_name(claim.original_name), "sha256": core.sha256, "size": claim.size,
            "kind": claim.kind, "outcome": decision.outcome.value, "reason": decision.reason,
            "error_class": decision.error_class, "detail": decision.detail, "cost_usd": float(core.cost_usd),
            "tokens": tokens, "llm_calls": len(core.journal.calls), "models": core.models_used,
            "resumes": claim.crash_resumes or None, "started_at": claim.started_at, "finished_at": utcnow_iso(),
            "duration_ms": round((time.monotonic() - started) * 1000, 1), "result": decision.result,
            **decision.extra,
        }
        sidecar = self.audit.redact({k: v for k, v in sidecar.items() if v is not None or k in ("result", "sha256")})
        sidecar["original_name"] = display_name(claim.original_name)  # a state field: never rewritten
        audit_fields = {"reason": decision.reason, "error_class": decision.error_class, "cost_usd": core.cost_usd,
                        "tokens_in": tokens["input"], "tokens_out": tokens["output"],
                        "llm_calls": len(core.journal.calls), "sha256": core.sha256}
        final = await self.store.finish(claim, decision.outcome, sidecar, audit_fields)
        if decision.outcome is Outcome.ARCHIVED and core.sha256 and "duplicate_of" not in decision.extra:
            self.index.put(claim.workflow, core.sha256, claim.cid, final.with_name(final.name + ".meta.json"))
        return final

    def _release_same_content(self, core: RunCore) -> None:
        key = core.state.get("dedupe_key")
        waiter = self._same_content.pop(key, None) if key else None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _models_in(journal: Journal) -> list[dict[str, str]]:
    """The provider and model of every answer a resumed run's journal holds."""
    found: list[dict[str, str]] = []
    for key, value in journal.values.items():
        if ":ask:" in key and isinstance(value, dict) and value.get("provider"):
            entry = {"provider": value["provider"], "model": value.get("model", "")}
            if entry not in found:
                found.append(entry)
    return found


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
