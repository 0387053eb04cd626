"""The console's decisions off the event loop: one thread decides (an item, or a bulk list), with a
handle on the audit log and a spool store of its own, so the loop never waits on a decision's
fsyncs and the daemon's own audit log (the loop's alone) is never shared across threads.

A decision made here is the CLI's (agentd.server.review.decide, the same transaction and the same
lock), so a kill of the daemon at any of its crash points is finished by the next start.
"""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, TypeVar

from agentd.audit import AuditLog, open_for
from agentd.audit.redact import Redactor
from agentd.durable.group import GroupSync
from agentd.server import review
from agentd.spool import transitions
from agentd.spool.deferred import Deferrals
from agentd.spool.store import Store

T = TypeVar("T")
REMEMBERED = 256


class Desk:
    """Where the console's decisions are made: one thread, its store opened there on the first one."""

    def __init__(self, config: Callable[[], Any]):
        self.config = config
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="review-desk")
        self._store: Store | None = None
        self._log: AuditLog | None = None
        self.decided: dict[str, Path] = {}  # the last items decided here, by id: for the queue's notice

    async def run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`work(store, *args, **kwargs)` in the desk's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(self._with_store, work, *args, **kwargs))

    def _with_store(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return work(self._open(), *args, **kwargs)

    def _open(self) -> Store:
        config = self.config()
        if self._store is None or self._store.config is not config:  # first use, or a reload's new config
            self._close_log()
            sync = GroupSync(enabled=config.fsync)
            self._log = open_for(config, Redactor(config.secrets), sync)
            self._store = Store(config, self._log, sync, Deferrals(config.state_dir))
        return self._store

    async def settle(self) -> None:
        """Finish what a killed process (the CLI) left half-done, before a page shows review/."""
        if transitions.pending(self.config().state_dir):
            await self.run(transitions.recover_now)

    async def decide(self, sidecar: Path, meta: dict[str, Any], approve: bool, choice: int | None, note: str,
                     by: str, edits: dict[str, Any], schema: dict[str, Any] | None) -> Path:
        final = await self.run(_decide_one, sidecar, meta, approve, choice, note, by, edits, schema)
        self.decided[str(meta.get("correlation_id"))] = final
        while len(self.decided) > REMEMBERED:
            self.decided.pop(next(iter(self.decided)))
        return final

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
        self._log = self._store = None

    async def close(self) -> None:
        """At the HTTP app's cleanup: the audit handle closed in its thread, then the thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close_log)
        self._thread.shutdown(wait=False)


def _decide_one(store: Store, sidecar: Path, meta: dict[str, Any], approve: bool, choice: int | None, note: str,
                by: str, edits: dict[str, Any], schema: dict[str, Any] | None) -> Path:
    return review.decide(store.config, sidecar, meta, approve, choice, note.strip()[:500], by, edits, schema,
                         store=store)

