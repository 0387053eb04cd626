"""Periodic counts: in a thread until they are known to be cheap, then on the loop; back to a
thread as soon as one costs; never two of the same at once, never more often than asked."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from agentd.lifecycle.periodic import INLINE_BELOW_S, Periodic


async def test_a_cheap_count_moves_onto_the_loop_and_a_costly_one_back_to_a_thread() -> None:
    clock = [0.0]
    periodic = Periodic(clock=lambda: clock[0])
    seen: list[tuple[Any, bool]] = []
    cost = [0.0]

    def count(value: int) -> tuple[int, bool]:
        spin_until = time.thread_time() + cost[0]  # CPU it costs (a wait would cost none)
        while time.thread_time() < spin_until:
            pass
        return value, threading.current_thread() is threading.main_thread()

    async def tick(value: int) -> None:
        periodic.every("n", 1.0, seen.append, count, value)
        while "n" in periodic._counting:
            await asyncio.sleep(0.001)
        clock[0] += 1.0

    await tick(1)  # unknown cost: a thread
    await tick(2)  # it was cheap: on the loop
    cost[0] = INLINE_BELOW_S * 5
    await tick(3)  # still on the loop (cheap last time), and now known to cost
    await tick(4)  # a thread again
    assert seen == [(1, False), (2, True), (3, True), (4, False)]


async def test_not_more_often_than_asked_and_one_at_a_time() -> None:
    clock = [0.0]
    periodic = Periodic(clock=lambda: clock[0])
    release = threading.Event()
    calls: list[int] = []

    def slow() -> int:
        calls.append(1)
        release.wait(5)
        return len(calls)

    periodic.every("s", 1.0, lambda _: None, slow)
    while not calls:
        await asyncio.sleep(0.005)
    clock[0] += 5.0
    periodic.every("s", 1.0, lambda _: None, slow)  # the first is still counting: not a second
    await asyncio.sleep(0.05)
    assert len(calls) == 1
    release.set()
    await asyncio.gather(*periodic._counting.values())
    periodic.every("s", 1.0, lambda _: None, slow)  # 5 s after the first began: it runs
    await asyncio.gather(*periodic._counting.values())
    clock[0] += 0.5
    periodic.every("s", 1.0, lambda _: None, slow)  # half a second after that one: too soon
    assert len(calls) == 2
