"""Event-loop lag: how late a periodic wake-up runs, the worst per second kept for the last minute."""
from __future__ import annotations

import asyncio
import collections
import time
from typing import Callable

INTERVAL_S = 0.025
WINDOW_S = 60


class LoopLag:
    """A task that sleeps INTERVAL_S at a time while `busy()` says there is work; any lateness is time
    the loop could not run. Idle, it sleeps until `poke()` (new work): the daemon's tick `record`s its
    own lateness meanwhile, and an idle process that wakes less costs less CPU."""

    def __init__(self, interval_s: float = INTERVAL_S, window_s: int = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic, busy: Callable[[], bool] = lambda: True):
        self.interval_s = interval_s
        self.busy = busy
        self._work = asyncio.Event()
        self.clock = clock
        self._seconds: collections.deque[tuple[int, float]] = collections.deque(maxlen=window_s)
        self.window_s = window_s

    def record(self, lag_s: float) -> None:
        """Keep the worst lag of the current second (and drop seconds older than the window)."""
        now = int(self.clock())
        if self._seconds and self._seconds[-1][0] == now:
            if lag_s > self._seconds[-1][1]:
                self._seconds[-1] = (now, lag_s)
        else:
            self._seconds.append((now, lag_s))

    def max_s(self) -> float:
        """The worst lag seen in the last `window_s` seconds."""
        since = int(self.clock()) - self.window_s
        return max((lag for second, lag in self._seconds if second > since), default=0.0)

    def poke(self) -> None:
        """Work arrived: sample again (cheap when already sampling)."""
        self._work.set()

    async def run(self) -> None:
        while True:
            if not self.busy():
                self._work.clear()
                await self._work.wait()
            before = self.clock()
            await asyncio.sleep(self.interval_s)
            self.record(max(0.0, self.clock() - before - self.interval_s))
