"""A tool call's intent comes before its side effect and is read back after a crash: a run killed between
the effect and its result never acts again (review, tool_outcome_unknown) unless the tool takes an
idempotency key (then the SAME key goes again); the kill switch engaged during a call's rate-limit wait
stops it before the tool's server. Counted at the tool's server (a loopback webhook)."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentd.errors import Paused
from agentd.tools.notification import TOOL as NOTIFICATION
from tests.helpers import sidecars
from tests.tools.intent_run import services
from tests.tools.support import Harness, config
from tests.tools.webhook import Webhook

ROOT = Path(__file__).resolve().parents[2]


def _first_run_killed_at(home: Path, url: str, point: str, workflow: str) -> None:
    """The run in a process of its own, SIGKILLed at `point` (a real crash: the journal as it is on disk)."""
    done = subprocess.run([sys.executable, "-m", "tests.tools.intent_run", str(home), url, point, workflow],
                          cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]


async def _resume(home: Path, url: str) -> dict:
    parts = services(home, url)
    (claim,) = parts.store.recover(clean_shutdown=False)
    await parts.pipeline.process(claim)
    (meta,) = [m for sub in ("archive", "review", "failed") for m in sidecars(home, sub)]
    return meta


def _journal(home: Path) -> list[dict]:
    (path,) = (home / "logs" / "journals").glob("*.journal.jsonl")
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@pytest.mark.timeout(60)
async def test_a_crash_after_the_side_effect_of_a_tool_without_idempotency_key_goes_to_review(
        tmp_path: Path) -> None:
    async with Webhook() as hook:
        # Given a run killed right after its ledger tool acted, before the result was journaled
        await asyncio.to_thread(_first_run_killed_at, tmp_path, hook.url, "after_tool_effect", "ledger")
        assert len(hook.deliveries) == 1
        # When the run resumes
        meta = await _resume(tmp_path, hook.url)
    # Then it does not act again: a human decides, told which tool and key
    assert len(hook.deliveries) == 1
    assert (meta["outcome"], meta["reason"]) == ("review", "tool_outcome_unknown")
    assert meta["tool"] == "ledger" and meta["idempotency_key"].endswith(":_book:1")
    intents = [e for e in _journal(tmp_path) if str(e.get("key", "")).startswith("intent:")]
    assert [i["value"]["key"] for i in intents] == [meta["idempotency_key"]]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("point", ["after_tool_intent", "after_tool_effect"])
async def test_a_crash_before_the_result_of_an_idempotent_tool_sends_it_again_with_the_same_key(
        tmp_path: Path, point: str) -> None:
    async with Webhook() as hook:
        # Given a run killed after the notification's intent (or its delivery), before its result
        await asyncio.to_thread(_first_run_killed_at, tmp_path, hook.url, point, "notification")
        sent_before = len(hook.deliveries)
        assert sent_before == (1 if point == "after_tool_effect" else 0)
        # When the run resumes
        meta = await _resume(tmp_path, hook.url)
    # Then it is sent once more, with the key the intent recorded: a receiver drops the repeat
    assert meta["outcome"] == "archived"
    assert len(hook.deliveries) == sent_before + 1
    keys = {d.headers["Idempotency-Key"] for d in hook.deliveries}
    assert keys == {meta["result"]["sent"]["idempotency_key"]} and len(keys) == 1


@pytest.mark.timeout(60)
async def test_a_crash_after_the_result_is_journaled_replays_it_without_calling_the_tool(tmp_path: Path) -> None:
    async with Webhook() as hook:
        await asyncio.to_thread(_first_run_killed_at, tmp_path, hook.url, "after_tool_result", "ledger")
        assert len(hook.deliveries) == 1
        meta = await _resume(tmp_path, hook.url)
    assert len(hook.deliveries) == 1
    assert meta["outcome"] == "archived" and meta["result"]["booked"] == {"status": 200}


@pytest.mark.timeout(60)
async def test_the_kill_switch_engaged_during_the_rate_limit_wait_stops_the_call_before_the_tool(
        tmp_path: Path) -> None:
    later_s = [0.0]  # the toolbox's clock runs with real time, and jumps when the test says so
    async with Webhook() as hook:
        # Given a run that used up the notification tool's 30 calls a minute
        harness = Harness(config(tmp_path, allowed_services=frozenset({"notification"}), webhook_url=hook.url),
                          tools=[NOTIFICATION], clock=lambda: time.monotonic() + later_s[0])
        ctx = harness.context(allowed={"notification"})
        for n in range(30):
            await ctx.tool("notification", message=f"note {n}")
        assert len(hook.deliveries) == 30
        # When the 31st call waits for its token (2 s) and the kill switch goes on meanwhile
        call = asyncio.ensure_future(ctx.tool("notification", message="note 31"))
        await asyncio.sleep(0.5)
        assert not call.done()  # it is in its wait
        harness.kill.set(True, harness.audit, reason="incident", by="ops")
        # Then the call pauses after its wait, and the webhook never got it
        with pytest.raises(Paused) as paused:
            await call
        assert paused.value.reason == "kill_switch"
        assert len(hook.deliveries) == 30
        # When the switch is off again and the step runs again a minute later
        harness.kill.set(False, harness.audit, reason="over", by="ops")
        later_s[0] = 60.0
        harness.box.begin_step(ctx._core)
        for message in [f"note {n}" for n in range(30)] + ["note 31"]:
            await ctx.tool("notification", message=message)
        # Then the 30 sent are replayed, and the one stopped is sent now, once (its intent was voided)
        assert len(hook.deliveries) == 31
        assert hook.deliveries[-1].body["message"] == "note 31"
