"""Supervised tasks (agentd.lifecycle.supervisor): restarts with backoff, problems while failing, quiet ends, stop()."""
from __future__ import annotations

import asyncio
from typing import Any, Callable

from structlog.testing import capture_logs

from agentd.lifecycle.supervisor import (
    FIRST_BACKOFF_S,
    HEALTHY_AFTER_S,
    MAX_BACKOFF_S,
    Supervisor,
)

WAIT_S = 5.0  # a safety net for awaiting a positive signal, never a pause


class FakeTime:
    """The supervisor's clock and sleep: a sleep advances the clock at once (or waits for `gate`)."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.delays: list[float] = []
        self.gate: asyncio.Event | None = None
        self.sleeping = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.sleeping.set()
        if self.gate is not None:
            await self.gate.wait()
        self.now += seconds
        await asyncio.sleep(0)


class Script:
    """A task body: each start runs the next action; when the script is used up it runs until cancelled."""

    def __init__(self, *actions: Callable[[], Any]):
        self.actions = list(actions)
        self.starts = 0
        self.running = asyncio.Event()
        self.cancelled = False

    async def __call__(self) -> None:
        self.starts += 1
        if self.actions:
            self.actions.pop(0)()
            return
        self.running.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


def boom(n: int) -> Callable[[], None]:
    def act() -> None:
        raise RuntimeError(f"boom {n}")
    return act


def returns() -> None:
    return None


async def until(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), WAIT_S)


async def test_a_failing_task_is_logged_and_restarted_with_doubling_backoff() -> None:
    time = FakeTime()
    sup = Supervisor(sleep=time.sleep, clock=time.clock)
    body = Script(*(boom(n) for n in range(1, 9)))
    with capture_logs() as logs:
        sup.spawn("watcher", body)
        await until(body.running)
    # Then it was started 9 times, waiting 0.5, 1, 2, ... up to the cap between starts
    assert body.starts == 9
    assert time.delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, MAX_BACKOFF_S, MAX_BACKOFF_S]
    failed = [entry for entry in logs if entry["event"] == "task_failed"]
    assert [(e["task"], e["failures"], e["log_level"], e.get("exc_info")) for e in failed] == [
        ("watcher", n, "error", True) for n in range(1, 9)]
    assert [e["restart_in_s"] for e in failed] == time.delays
    assert sum(entry["event"] == "task_restarted" for entry in logs) == 8
    await sup.stop()


async def test_a_failing_task_shows_in_problems_until_it_has_run_healthy_for_a_while() -> None:
    time = FakeTime()
    time.gate = asyncio.Event()
    sup = Supervisor(sleep=time.sleep, clock=time.clock)
    body = Script(boom(1), boom(2))
    sup.spawn("watcher", body)
    # While it waits to restart, it is failing
    await until(time.sleeping)
    assert sup.problems() == ["task watcher failing (1 failures): RuntimeError: boom 1"]
    assert sup.view()["watcher"] == {"failures": 1, "last_error": "RuntimeError: boom 1", "failing": True}
    time.gate.set()
    await until(body.running)
    # Running again but not yet long: still failing
    assert sup.problems() == ["task watcher failing (2 failures): RuntimeError: boom 2"]
    time.now += HEALTHY_AFTER_S - 0.1
    assert sup.problems() != []
    # After HEALTHY_AFTER_S of running, it is healthy again
    time.now += 0.2
    assert sup.problems() == []
    assert sup.view()["watcher"]["failing"] is False
    await sup.stop()


async def test_the_backoff_starts_again_after_a_long_healthy_run() -> None:
    time = FakeTime()
    sup = Supervisor(sleep=time.sleep, clock=time.clock)

    def healthy_then_boom() -> None:
        time.now += HEALTHY_AFTER_S + 1
        raise RuntimeError("late boom")

    body = Script(boom(1), boom(2), boom(3), healthy_then_boom, boom(5))
    sup.spawn("watcher", body)
    await until(body.running)
    assert time.delays == [0.5, 1.0, 2.0, FIRST_BACKOFF_S, 1.0]
    await sup.stop()


async def test_a_forever_task_that_returns_is_restarted() -> None:
    time = FakeTime()
    sup = Supervisor(sleep=time.sleep, clock=time.clock)
    body = Script(returns, returns)
    item = sup.spawn("ticker", body)
    await until(body.running)
    assert body.starts == 3 and time.delays == [0.5, 1.0]
    assert item.failures == 2 and item.last_error == "RuntimeError: task ticker stopped by itself"
    await sup.stop()


async def test_a_one_shot_task_that_returns_ends_quietly() -> None:
    time = FakeTime()
    sup = Supervisor(sleep=time.sleep, clock=time.clock)
    body = Script(returns)
    with capture_logs() as logs:
        item = sup.spawn("recover", body, forever=False)
        assert item.task is not None
        await asyncio.wait_for(item.task, WAIT_S)
    assert item.done and item.failures == 0 and body.starts == 1
    assert time.delays == [] and logs == [] and sup.problems() == []


async def test_a_one_shot_task_that_raises_is_restarted_until_it_succeeds() -> None:
    time = FakeTime()
    sup = Supervisor(sleep=time.sleep, clock=time.clock)
    body = Script(boom(1), returns)
    item = sup.spawn("recover", body, forever=False)
    assert item.task is not None
    await asyncio.wait_for(item.task, WAIT_S)
    assert item.done and item.failures == 1 and body.starts == 2 and time.delays == [0.5]


async def test_stop_cancels_running_tasks_and_tasks_in_backoff() -> None:
    time = FakeTime()
    time.gate = asyncio.Event()  # a task in backoff waits until cancelled
    sup = Supervisor(sleep=time.sleep, clock=time.clock)
    running, failing = Script(), Script(boom(1))
    a = sup.spawn("running", running)
    b = sup.spawn("failing", failing)
    await until(running.running)
    await until(time.sleeping)
    assert b.in_backoff
    await sup.stop()
    assert a.task is not None and a.task.cancelled() and running.cancelled
    assert b.task is not None and b.task.cancelled() and not b.in_backoff
    assert failing.starts == 1


async def test_stop_by_name_leaves_the_others_running() -> None:
    time = FakeTime()
    sup = Supervisor(sleep=time.sleep, clock=time.clock)
    first, second = Script(), Script()
    a, b = sup.spawn("first", first), sup.spawn("second", second)
    await until(first.running)
    await until(second.running)
    await sup.stop("first")
    assert a.task is not None and a.task.cancelled()
    assert b.task is not None and not b.task.done()
    await sup.stop()
    assert b.task.cancelled()
