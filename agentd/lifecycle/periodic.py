"""Periodic housekeeping: counts (incoming/, the review gauges), off the event loop when they cost, on
it when cheap; and the C heap trimmed when a busy spell ends."""
from __future__ import annotations

import asyncio
import ctypes
import time
from typing import Any, Callable

from agentd import logs

log = logs.get("agentd.lifecycle.periodic")
INLINE_BELOW_S = 0.002  # a count that took less CPU last time runs on the loop: a thread round trip costs as much


class Periodic:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._counted_at: dict[str, float] = {}
        self._counting: dict[str, asyncio.Future[Any]] = {}
        self.cost_s: dict[str, float] = {}  # what each took last time (unknown: a thread first)

    def every(self, name: str, every_s: float, use: Callable[[Any], None], fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` at most every `every_s`, one at a time, and hand its result to `use`: in a
        thread, or on the loop when it took under INLINE_BELOW_S last time (an empty folder, say)."""
        now = self.clock()
        if now - self._counted_at.get(name, float("-inf")) < every_s or name in self._counting:
            return
        self._counted_at[name] = now
        if self.cost_s.get(name, INLINE_BELOW_S) < INLINE_BELOW_S:
            try:
                use(self._timed(name, fn, *args))
            except OSError as exc:
                log.warning("count_failed", what=name, error=f"{exc.__class__.__name__}: {exc}")
            return

        def done(task: "asyncio.Future[Any]") -> None:
            self._counting.pop(name, None)
            if not task.cancelled() and task.exception() is None:
                use(task.result())

        task = self._counting[name] = asyncio.ensure_future(asyncio.to_thread(self._timed, name, fn, *args))
        task.add_done_callback(done)

    def _timed(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        began = time.thread_time()  # CPU, not wall: in a thread the wait for the GIL is no cost of fn
        try:
            return fn(*args)
        finally:
            self.cost_s[name] = time.thread_time() - began


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's malloc_trim; elsewhere nothing)."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return  # not glibc: its allocator has no malloc_trim
