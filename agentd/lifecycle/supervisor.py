"""Supervised background tasks: a task that raises is logged with its traceback, restarted with
backoff, and reported (the daemon is unhealthy while one keeps failing)."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from agentd import logs

log = logs.get("agentd.lifecycle.supervisor")
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 30.0  # a restarted task that runs this long without failing counts as healthy again


@dataclass
class Supervised:
    name: str
    factory: Callable[[], Awaitable[Any]]
    forever: bool = True
    task: "asyncio.Task[Any] | None" = None
    failures: int = 0
    last_error: str = ""
    restarted_at: float = 0.0
    in_backoff: bool = False
    done: bool = False
    history: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(self, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.sleep = sleep
        self.clock = clock
        self.items: dict[str, Supervised] = {}

    def spawn(self, name: str, factory: Callable[[], Awaitable[Any]], forever: bool = True) -> Supervised:
        """Run `factory()` as task `name`; restart it when it raises (or, if `forever`, when it returns)."""
        item = Supervised(name, factory, forever)
        item.task = asyncio.create_task(self._keep(item), name=name)
        self.items[name] = item
        return item

    async def _keep(self, item: Supervised) -> None:
        delay = FIRST_BACKOFF_S
        while True:
            started = self.clock()
            try:
                await item.factory()
                if not item.forever:
                    item.done = True
                    return
                raise RuntimeError(f"task {item.name} stopped by itself")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.clock() - started > HEALTHY_AFTER_S:
                    delay = FIRST_BACKOFF_S  # it ran well for a while: start the backoff again
                item.failures += 1
                item.last_error = f"{exc.__class__.__name__}: {exc}"[:300]
                item.history = [*item.history[-9:], self.clock()]
                log.exception("task_failed", task=item.name, failures=item.failures, restart_in_s=delay)
            item.in_backoff = True
            try:
                await self.sleep(delay)
            finally:
                item.in_backoff = False
            delay = min(MAX_BACKOFF_S, delay * 2)
            item.restarted_at = self.clock()
            log.warning("task_restarted", task=item.name, failures=item.failures)

    def failing(self) -> list[Supervised]:
        now = self.clock()
        return [i for i in self.items.values()
                if i.failures and not i.done and (i.in_backoff or now - i.restarted_at < HEALTHY_AFTER_S)]

    def problems(self) -> list[str]:
        """One line per task that keeps failing (for /health and the watchdog)."""
        return [f"task {i.name} failing ({i.failures} failures): {i.last_error}" for i in self.failing()]

    def view(self) -> dict[str, dict[str, Any]]:
        return {i.name: {"failures": i.failures, "last_error": i.last_error or None,
                         "failing": i in self.failing()} for i in self.items.values()}

    async def stop(self, *names: str) -> None:
        """Cancel the named tasks (all when none is named) and wait for them."""
        chosen = [i for n, i in self.items.items() if not names or n in names]
        for item in chosen:
            if item.task is not None:
                item.task.cancel()
        await asyncio.gather(*(i.task for i in chosen if i.task is not None), return_exceptions=True)
