"""The ToolBox: default-deny allowlists, schema checks, rate limits, idempotent replay and the audit.

A call runs only when the tool is in both the workflow's own allowlist and
ALLOWED_SERVICES and its parameters pass the tool's JSON schema. Every call is audited
(`tool_call`, allowed true or false). Its result is journaled under the run's
idempotency key (correlation id, step, call index) before it is returned, so a resumed
run replays it instead of acting twice.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Iterable, Mapping

from agentd import logs
from agentd.config import Config
from agentd.durable.crash import crash_point
from agentd.errors import AgentdError, InternalError, NeedsReview, ToolError
from agentd.guards.allowlist import ToolAllowlistGuard
from agentd.guards.base import Guards, ToolCall
from agentd.guards.trail import AuditTrailGuard
from agentd.durable.journal import MISSING
from agentd.tools import dbquery, directory, notification, ocr
from agentd.tools.base import Invocation, TokenBucket, Tool

log = logs.get("agentd.tools")
JOURNAL_PREFIX = "tool:"
INDEX_STATE = "tool_call_index"
SHOWN_NAME_CHARS = 100


def builtin_tools() -> dict[str, Tool]:
    return {tool.name: tool for tool in (ocr.TOOL, notification.TOOL, dbquery.TOOL)}


class ToolBox:
    """The registered tools and the one way to call them: through the guards, journaled, replayable."""

    def __init__(self, config: Config, guards: Guards, trail: AuditTrailGuard, tools: Mapping[str, Tool],
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.guards = guards
        self.trail = trail
        self.tools = dict(tools)
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._directory: directory.Directory | None = None

    @property
    def allowlist(self) -> ToolAllowlistGuard:
        return self.guards.of(ToolAllowlistGuard)

    # -- what steps use ---------------------------------------------------------------------
    @property
    def directory(self) -> directory.Directory | None:
        """The party directory, or None while AGENTD_HOME/data/directory.csv does not exist."""
        path = self.config.data_dir / directory.FILE
        if not path.is_file():
            return None
        if self._directory is None or self._directory.path != path:
            self._directory = directory.Directory(path)
        return self._directory

    def specs(self, names: Iterable[str]) -> tuple[dict[str, Any], ...]:
        """How the named tools are offered to a model; unknown names are left out."""
        return tuple(self.tools[n].spec(self.config) for n in names if n in self.tools)

    def permitted(self, run: Any, names: Iterable[str]) -> tuple[str, ...]:
        """Those of `names` this run may call (registered, in both allowlists), in order."""
        return self.allowlist.permitted(run, names)

    def refusal(self, run: Any, name: str, params: Any) -> str | None:
        """Why a call may not run (allowlists, then the schema), or None when it may."""
        return self.allowlist.refusal(run, name, params)

    def refuse(self, run: Any, name: Any, why: str, proposed_by: str = "workflow") -> None:
        """Audit a call that does not run (the caller decides what happens to the run)."""
        self.trail.refused(run, name, why, proposed_by)

    def refuse_all(self, run: Any, calls: list[Any], why: str) -> None:
        """The model asked for tools it may not use: audit each refusal, let a human decide."""
        names = [_shown(call.get("name", "?")) if isinstance(call, dict) else "?" for call in calls]
        for name in names:
            self.refuse(run, name, why, proposed_by="model")
        raise NeedsReview("tool_call_refused", refused_tools=names, why=why)

    def calls_recorded(self, run: Any, exclude_step: str | None = None) -> int:
        """Tool calls this run completed so far (journaled, so across restarts)."""
        skip = f"{JOURNAL_PREFIX}{exclude_step}:" if exclude_step is not None else None
        return sum(1 for key in run.journal.values
                   if key.startswith(JOURNAL_PREFIX) and not (skip and key.startswith(skip)))

    async def call(self, run: Any, name: str, params: Any, *, proposed_by: str = "workflow") -> Any:
        """Run one tool call (or replay its journaled result); refused calls raise PolicyError.

        Write order of a side effect: the intent (with its idempotency key) fsynced, the gate once
        more, the effect, the result fsynced. An intent found with no result (a crash in between)
        is acted on again only by a tool that takes the idempotency key, with the SAME key; any
        other goes to review with tool_outcome_unknown."""
        index = self._next_index(run)
        call = ToolCall(run=run, name=name, params=params, key=f"{run.cid}:{run.step}:{index}",
                        proposed_by=proposed_by)
        journal_key = f"{JOURNAL_PREFIX}{run.step}:{index}"
        done = run.journal.get(journal_key)
        if done is not MISSING and self.refusal(run, name, params) is None:
            return self._replay(call, done)
        self.guards.before("tool_call", call)  # kill switch, budget, allowlist and schema
        tool = self.tools[name]
        if tool.needs_approval:
            self.refuse(run, name, "needs human approval", proposed_by=proposed_by)
            raise NeedsReview("approval_required", pending_tool_call={"tool": name, "params": params,
                                                                       "idempotency_key": call.key})
        intent_key = f"intent:{run.step}:{index}"
        self._acted_before(call, tool, run.journal.get(intent_key))
        timeout_s = tool.timeout_s or self.config.tool_timeout_s
        await self._take_token(call, tool, timeout_s)
        await run.claim.durable()  # the claim and every earlier answer on disk before anything acts
        if tool.side_effect:
            run.journal.mark_precious()  # from here on the journal is on disk: a resume replays, never repeats
            await run.journal.put(intent_key, {"tool": name, "key": call.key})  # fsynced, earlier answers too
            crash_point(self.config, "after_tool_intent")
        else:
            await run.journal.flush()
        try:
            self.guards.before("tool_effect", call)  # the kill switch and the budget, after the waits
        except BaseException:
            if tool.side_effect:  # it did not act: a later try is no repeat
                await run.journal.put(intent_key, {"tool": name, "key": call.key, "void": True}, durable=False)
            raise
        result = await self._run(call, tool, timeout_s)
        if tool.side_effect:
            crash_point(self.config, "after_tool_effect")
        await run.journal.put(journal_key, {"tool": name, "key": call.key, "result": result})
        if tool.side_effect:
            crash_point(self.config, "after_tool_result")
        return result

    def _acted_before(self, call: ToolCall, tool: Tool, intent: Any) -> None:
        """A journaled intent with no result: the tool may have acted before a crash. Only a tool that
        takes the idempotency key goes again (with the intent's key); else a human decides."""
        if not isinstance(intent, dict) or intent.get("void"):
            return
        call.key = str(intent.get("key") or call.key)
        if tool.idempotent:
            log.warning("tool_call_repeated", tool=tool.name, idempotency_key=call.key,
                        note="acted on before a crash, its result unknown: sent again with the same key")
            return
        call.status = "outcome_unknown"
        self.guards.after("tool_call", call)
        raise NeedsReview("tool_outcome_unknown", tool=tool.name, idempotency_key=call.key,
                          detail=f"{tool.name} may have acted before agentd stopped, and it takes no idempotency "
                                 "key: not repeated, a human decides")

    def begin_step(self, run: Any) -> None:
        """Number the step's calls from 1 again: a step that runs again (after a pause) replays them."""
        run.state.setdefault(INDEX_STATE, {})[run.step] = 0

    def _next_index(self, run: Any) -> int:
        counts = run.state.setdefault(INDEX_STATE, {})
        counts[run.step] = counts.get(run.step, 0) + 1
        return counts[run.step]

    def _replay(self, call: ToolCall, done: Any) -> Any:
        if not isinstance(done, dict) or done.get("tool") != call.name:
            raise InternalError("tool_replay_mismatch", f"step {call.run.step} called {_shown(call.name)} where "
                                f"the journal recorded {done.get('tool') if isinstance(done, dict) else '?'}")
        call.status, call.latency_ms, call.result = "replayed", 0.0, done.get("result")
        self.trail.after_tool_call(call)
        return call.result

    async def _take_token(self, call: ToolCall, tool: Tool, timeout_s: float) -> None:
        if tool.rate_per_min is None:
            return
        bucket = self._buckets.get(tool.name)
        if bucket is None:
            bucket = self._buckets[tool.name] = TokenBucket(tool.rate_per_min, self.clock)
        waited_s = 0.0
        while (wait_s := bucket.reserve()) > 0:
            if waited_s + wait_s > timeout_s:
                call.status = "rate_limited"
                self.guards.after("tool_call", call)
                raise ToolError("rate_limited", f"{tool.name}: over {tool.rate_per_min:g} calls a minute")
            await asyncio.sleep(wait_s)
            waited_s += wait_s

    async def _run(self, call: ToolCall, tool: Tool, timeout_s: float) -> Any:
        invocation = Invocation(ctx=call.run, config=self.config, params=call.params, key=call.key,
                                timeout_s=timeout_s)
        started_s = time.monotonic()
        try:
            async with asyncio.timeout(timeout_s):
                call.result = await tool.run(invocation)
            call.status = "ok"
        except TimeoutError:
            call.status = "timeout"
            raise ToolError("tool_timeout", f"{tool.name} took over {timeout_s:g}s (TOOL_TIMEOUT_S)") from None
        except AgentdError as error:
            call.status = error.reason
            raise
        except asyncio.CancelledError:
            call.status = "cancelled"
            raise
        finally:
            call.latency_ms = round((time.monotonic() - started_s) * 1000, 1)
            self.guards.after("tool_call", call)
        return call.result


def _shown(name: Any) -> str:
    return str(name)[:SHOWN_NAME_CHARS]
