"""The model-outage clock, driven by hand: the backoff doubles per failed trial only, never because
several runs that were in flight when the outage began failed at about the same time."""
from __future__ import annotations

from agentd.errors import Paused
from agentd.llm.outage import FIRST_PROBE_S, MAX_PROBE_S, Outage


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_runs_failing_together_at_the_start_keep_the_first_backoff() -> None:
    # Given an outage first seen by one run, then by three more that were already in flight
    clock = Clock()
    outage = Outage(clock)
    assert isinstance(outage.credentials_rejected("401"), Paused)
    for _ in range(3):
        clock.now += 0.1
        outage.credentials_rejected("401")
    # Then the trial is still due FIRST_PROBE_S after the first refusal
    clock.now = 1000.0 + FIRST_PROBE_S - 0.01
    assert outage.blocks(busy=False) == "model_credentials_rejected"
    clock.now = 1000.0 + FIRST_PROBE_S
    assert outage.blocks(busy=False) is None
    assert outage.blocks(busy=True) == "model_credentials_rejected"  # one trial file at a time


def test_each_failed_trial_doubles_the_wait_up_to_the_cap_and_an_answer_ends_it() -> None:
    clock = Clock()
    outage = Outage(clock)
    outage.model_not_found("404")
    waits = []
    for _ in range(12):
        clock.now = outage.probe_at  # the trial goes out when due, and fails
        outage.model_not_found("404")
        waits.append(outage.probe_at - clock.now)
    assert waits[:3] == [2 * FIRST_PROBE_S, 4 * FIRST_PROBE_S, 8 * FIRST_PROBE_S]
    assert max(waits) == MAX_PROBE_S and waits[-1] == MAX_PROBE_S
    assert outage.health_reason() == "model not found"
    outage.answered()
    assert outage.blocks(busy=True) is None and outage.health_reason() is None
    outage.model_not_found("404")  # a new outage starts at the first backoff again
    assert outage.probe_at - clock.now == FIRST_PROBE_S


def test_a_new_key_is_tried_at_once() -> None:
    clock = Clock()
    outage = Outage(clock)
    outage.credentials_rejected("401")
    assert outage.blocks(busy=False) == "model_credentials_rejected"
    outage.retry_now()
    assert outage.blocks(busy=False) is None
