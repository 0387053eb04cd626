"""Files that wait for a not-before time keep waiting across a restart: a Retry-After is honoured
by the next daemon too, and nothing is failed for it."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.fakellm import FakeLLM, status
from tests.helpers import AgentdProcess, audit_events, sidecars, wait_until


@pytest.mark.timeout(60)
def test_a_long_retry_after_holds_the_file_across_a_restart(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., FakeLLM]) -> None:
    # Given a model that answers its first request with 429 and Retry-After: 6 s (longer than a worker waits)
    server = llm_server(script=[status(429, retry_after_s=6)])
    env = dict(server.env(), LLM_RETRY_AFTER_CAP_S="1")
    agent = daemon(**env)
    (home / "incoming" / "memo.txt").write_text("Dear all, a memo.")
    wait_until(lambda: audit_events(home, "waiting"), message="the file put back to wait")
    not_before = json.loads((home / "state" / "deferred.json").read_text())["all_until"]
    agent.stop()
    assert server.count() == 1 and list((home / "incoming").iterdir())[0].name == "memo.txt"
    # When another daemon starts on the same state before that time
    agent = daemon(**env)
    wait_until(lambda: "model rate limited" in agent.health()["reasons"], message="the hold seen after restart")
    assert time.time() < not_before - 1 and server.count() == 1  # it knows to wait, and has not asked
    # Then the file is claimed only after the server's time, and archived; none failed for it
    wait_until(lambda: sidecars(home, "archive"), timeout=20, message="archived after the wait")
    agent.stop()
    claims = [e for e in audit_events(home, "claimed") if e["original_name"] == "memo.txt"]
    second = claims[-1]["ts"]
    assert len(claims) == 2 and time.mktime(time.strptime(second[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone \
        >= int(not_before) - 1
    assert sidecars(home, "failed") == [] and server.count() == 2
