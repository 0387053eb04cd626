"""A run resumed after a SIGKILL right after its paid answer names the provider and model that really
answered, in the sidecar's `models` and in the result, and the answer is not bought twice."""
from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable

import pytest

from tests.fakellm import FakeLLM
from tests.helpers import AgentdProcess, audit_events, sidecar_for, wait_until


@pytest.mark.timeout(60)
@pytest.mark.parametrize("answered_by", ["fake-model", "fake-fallback"])
def test_a_run_resumed_after_its_paid_answer_keeps_the_provider_and_model_that_answered(
        answered_by: str, home: Path, daemon: Callable[..., AgentdProcess],
        llm_server: Callable[..., FakeLLM]) -> None:
    # Given a daemon that SIGKILLs itself right after a paid answer is journaled; with "fake-fallback",
    # the primary is down, so the answer comes from the fallback (not the configured LLM_MODEL)
    server = llm_server()
    if answered_by == "fake-fallback":
        server.down("fake-model")
    env = dict(server.env(fallbacks="fake-fallback"), LLM_MAX_ATTEMPTS="1")
    agent = daemon(AGENTD_CRASH_AT="after_paid_answer", **env)
    (home / "incoming" / "letter.txt").write_text("Dear team, the invoice of 120 EUR is attached. Regards, Ann")
    assert agent.proc is not None
    agent.proc.wait(timeout=20)
    assert agent.proc.returncode == -signal.SIGKILL, agent.output()[-2000:]
    assert server.count(model=answered_by, fault="ok") == 1  # the fault happened after the one paid answer
    assert sidecar_for(home, "letter.txt") is None
    # When the daemon starts again without the crash point
    daemon(**env)
    meta = wait_until(lambda: sidecar_for(home, "letter.txt"), timeout=20, message="the resumed run finished")
    # Then the sidecar and the result name the provider and model that answered, and nothing was re-bought
    assert meta["outcome"] == "archived"
    assert meta["models"] == [{"provider": "openai", "model": answered_by}]
    assert (meta["result"]["provider"], meta["result"]["model"]) == ("openai", answered_by)
    assert server.count(model=answered_by, fault="ok") == 1
    assert meta["llm_calls"] == server.count() == (1 if answered_by == "fake-model" else 2)  # + the 503 first
    resumed = [e for e in audit_events(home, "resumed") if e.get("correlation_id") == meta["correlation_id"]]
    assert resumed, "the run was resumed, not started afresh"
