"""Guards (agentd.guards.base): hook order, the why_not gate, the step timeout across guards."""
from __future__ import annotations

from typing import Any

import pytest

from agentd.guards.base import Guard, Guards, Kind


class Recorder(Guard):
    """A guard that writes every hook it sees into a shared list."""

    def __init__(self, name: str, seen: list[str], blocking: dict[str, str] | None = None,
                 timeout_s: float | None = None):
        self.name, self.seen, self.blocking, self.timeout_s = name, seen, blocking or {}, timeout_s

    def blocks(self, kind: Kind) -> str | None:
        self.seen.append(f"{self.name}.blocks({kind})")
        return self.blocking.get(kind)

    def step_timeout_s(self, run: Any, step: Any) -> float | None:
        return self.timeout_s

    def before_step(self, run: Any, step: str) -> None:
        self.seen.append(f"{self.name}.before_step({step})")

    def after_step(self, run: Any, step: str, status: str, started_at: str, duration_ms: float,
                   error: BaseException | None = None) -> None:
        self.seen.append(f"{self.name}.after_step({step},{status},{type(error).__name__})")


class Stopper(Guard):
    def before_step(self, run: Any, step: str) -> None:
        raise RuntimeError("stop here")


def test_before_hooks_run_in_order_and_after_hooks_reversed() -> None:
    seen: list[str] = []
    guards = Guards([Recorder("outer", seen), Recorder("middle", seen), Recorder("inner", seen)])
    # When a step starts and ends
    guards.before("step", None, "extract")
    guards.after("step", None, "extract", "failed", "t0", 1.5, error=ValueError("x"))
    # Then the outermost guard is first in and last out, and keyword arguments reach every after-hook
    assert seen == ["outer.before_step(extract)", "middle.before_step(extract)", "inner.before_step(extract)",
                    "inner.after_step(extract,failed,ValueError)", "middle.after_step(extract,failed,ValueError)",
                    "outer.after_step(extract,failed,ValueError)"]


def test_a_raising_before_hook_stops_the_guards_inside_it() -> None:
    seen: list[str] = []
    guards = Guards([Recorder("outer", seen), Stopper(), Recorder("inner", seen)])
    with pytest.raises(RuntimeError, match="stop here"):
        guards.before("step", None, "extract")
    assert seen == ["outer.before_step(extract)"]


def test_why_not_is_none_when_nothing_blocks() -> None:
    seen: list[str] = []
    guards = Guards([Recorder("a", seen), Recorder("b", seen)], extra_gates=[lambda kind, busy: None])
    assert guards.why_not("claim") is None
    assert seen == ["a.blocks(claim)", "b.blocks(claim)"]


def test_why_not_gives_the_first_blocking_guard_and_asks_no_further() -> None:
    seen: list[str] = []
    gate_calls: list[tuple[str, bool]] = []

    def gate(kind: Kind, busy: bool) -> str | None:
        gate_calls.append((kind, busy))
        return "gate_closed"

    guards = Guards([Recorder("a", seen, {"model": "first"}), Recorder("b", seen, {"model": "second"})],
                    extra_gates=[gate])
    assert guards.why_not("model") == "first"
    assert seen == ["a.blocks(model)"]
    assert gate_calls == []
    # a kind no guard blocks falls through to the extra gates
    assert guards.why_not("tool") == "gate_closed"


@pytest.mark.parametrize(("busy", "expected"), [(False, None), (True, "model_on_trial")])
def test_extra_gates_see_busy(busy: bool, expected: str | None) -> None:
    # a model on trial takes one file at a time: the gate refuses a claim only while runs are in flight
    def one_at_a_time(kind: Kind, busy: bool) -> str | None:
        return "model_on_trial" if kind == "claim" and busy else None

    guards = Guards([], extra_gates=[lambda kind, busy: None, one_at_a_time])
    assert guards.why_not("claim", busy=busy) == expected
    assert guards.why_not("step", busy=busy) is None


def test_extra_gates_can_be_added_after_construction() -> None:
    guards = Guards([Recorder("a", [])])
    guards.extra_gates.append(lambda kind, busy: "outage")
    assert guards.why_not("claim") == "outage"


def test_step_timeout_is_the_smallest_opinion() -> None:
    seen: list[str] = []
    guards = Guards([Recorder("none", seen), Recorder("long", seen, timeout_s=60.0),
                     Recorder("short", seen, timeout_s=5.0)])
    assert guards.step_timeout_s(None, None) == 5.0
    assert Guards([Recorder("none", seen)]).step_timeout_s(None, None) is None


def test_of_finds_a_guard_by_class() -> None:
    recorder = Recorder("a", [])
    guards = Guards([Stopper(), recorder])
    assert guards.of(Recorder) is recorder
    assert Guards([Stopper()]).of(Recorder) is None


def test_configure_reaches_every_guard() -> None:
    got: list[Any] = []

    class Takes(Guard):
        def configure(self, config: Any) -> None:
            got.append(config)

    marker = object()
    Guards([Takes(), Guard(), Takes()]).configure(marker)
    assert got == [marker, marker]
