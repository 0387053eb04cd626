"""The ToolBox: default deny, schema checks, replay on resume, pause, approval, rate limit, timeout."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentd.errors import NeedsReview, Paused, PolicyError, ToolError
from agentd.tools import TokenBucket, Tool, builtin_tools
from tests.tools.support import Echo, Harness, config


async def test_a_tool_in_both_allowlists_runs_and_is_audited_with_status_and_latency(tmp_path: Path) -> None:
    echo = Echo()
    harness = Harness(config(tmp_path), tools=[echo.tool()])
    ctx = harness.context()

    result = await ctx.tool("echo", text="hi")

    assert result == {"echo": "hi", "key": f"{ctx.cid}:work:1"}
    [event] = harness.events("tool_call")
    assert event["allowed"] is True and event["tool"] == "echo" and event["status"] == "ok"
    assert event["latency_ms"] >= 0 and event["idempotency_key"] == f"{ctx.cid}:work:1"
    assert harness.metric("agentd_tool_calls_total", tool="echo", status="ok") == 1


@pytest.mark.parametrize(("services", "allowed", "why"), [
    ({"echo"}, set(), "not in workflow test's tool allowlist"),
    (set(), {"echo"}, "not in ALLOWED_SERVICES"),
])
async def test_a_tool_missing_from_either_allowlist_is_denied_and_never_runs(
        tmp_path: Path, services: set[str], allowed: set[str], why: str) -> None:
    echo = Echo()
    harness = Harness(config(tmp_path, allowed_services=frozenset(services)), tools=[echo.tool()])
    ctx = harness.context(allowed=allowed)

    with pytest.raises(PolicyError) as refused:
        await ctx.tool("echo", text="hi")

    assert refused.value.reason == "tool_denied" and refused.value.error_class == "policy"
    assert echo.runs == []
    [event] = harness.events("tool_call")
    assert event["allowed"] is False and event["tool"] == "echo" and event["why"] == why


async def test_an_unknown_tool_is_denied(tmp_path: Path) -> None:
    harness = Harness(config(tmp_path), tools=[Echo().tool()])
    with pytest.raises(PolicyError):
        await harness.context().tool("delete_database")
    [event] = harness.events("tool_call")
    assert event["tool"] == "delete_database" and event["allowed"] is False and event["why"] == "no such tool"
    assert harness.metric("agentd_tool_calls_total", tool="unknown", status="denied") == 1


@pytest.mark.parametrize("params", [{}, {"text": 5}, {"text": "x" * 101}, {"text": "ok", "url": "http://x"}])
async def test_parameters_that_fail_the_schema_are_refused_before_the_tool_runs(tmp_path: Path, params: dict) -> None:
    echo = Echo()
    harness = Harness(config(tmp_path), tools=[echo.tool()])
    with pytest.raises(PolicyError):
        await harness.box.call(harness.context()._core, "echo", params)
    assert echo.runs == []
    [event] = harness.events("tool_call")
    assert event["allowed"] is False and event["why"].startswith("invalid parameters")


async def test_a_resumed_run_replays_a_side_effect_instead_of_calling_again(tmp_path: Path) -> None:
    echo = Echo()
    harness = Harness(config(tmp_path), tools=[echo.tool(side_effect=True)])
    first = await harness.context().tool("echo", text="once")

    # the process died after the step's tool call; a new context on the same journal resumes
    again = await harness.context().tool("echo", text="once")

    assert again == first and len(echo.runs) == 1
    statuses = [e["status"] for e in harness.events("tool_call")]
    assert statuses == ["ok", "replayed"]


async def test_each_call_of_a_step_has_its_own_idempotency_key(tmp_path: Path) -> None:
    harness = Harness(config(tmp_path), tools=[Echo().tool()])
    ctx = harness.context()
    keys = [(await ctx.tool("echo", text=str(n)))["key"] for n in range(3)]
    assert keys == [f"{ctx.cid}:work:{n}" for n in (1, 2, 3)]


async def test_the_kill_switch_pauses_a_call_before_it_starts(tmp_path: Path) -> None:
    echo = Echo()
    harness = Harness(config(tmp_path), tools=[echo.tool()])
    harness.kill.set(True, harness.audit, reason="test", by="test")
    with pytest.raises(Paused) as paused:
        await harness.context().tool("echo", text="hi")
    assert paused.value.reason == "kill_switch" and echo.runs == []


async def test_a_tool_that_needs_approval_goes_to_review_without_running(tmp_path: Path) -> None:
    echo = Echo()
    harness = Harness(config(tmp_path), tools=[echo.tool(needs_approval=True)])
    with pytest.raises(NeedsReview) as review:
        await harness.context().tool("echo", text="hi")
    assert review.value.reason == "approval_required" and echo.runs == []
    assert review.value.details["pending_tool_call"]["tool"] == "echo"
    [event] = harness.events("tool_call")
    assert event["allowed"] is False and event["why"] == "needs human approval"


def test_the_token_bucket_allows_a_burst_then_one_call_per_interval() -> None:
    now = [0.0]
    bucket = TokenBucket(2, clock=lambda: now[0])
    assert bucket.reserve() == 0 and bucket.reserve() == 0
    assert bucket.reserve() == pytest.approx(30.0)
    now[0] = 30.0
    assert bucket.reserve() == 0


async def test_a_call_over_the_rate_limit_fails_when_it_cannot_wait_for_a_token(tmp_path: Path) -> None:
    echo = Echo()
    harness = Harness(config(tmp_path, tool_timeout_s=1.0), tools=[echo.tool(rate_per_min=2)], clock=lambda: 0.0)
    ctx = harness.context()
    await ctx.tool("echo", text="1")
    await ctx.tool("echo", text="2")
    with pytest.raises(ToolError) as limited:
        await ctx.tool("echo", text="3")
    assert limited.value.reason == "rate_limited" and len(echo.runs) == 2
    assert harness.events("tool_call")[-1]["status"] == "rate_limited"


async def test_a_tool_that_overruns_its_timeout_fails_with_a_tool_error(tmp_path: Path) -> None:
    async def slow(_inv: object) -> None:
        await asyncio.sleep(5)

    tool = Tool(name="echo", description="slow", parameters={"type": "object"}, run=slow, timeout_s=0.05)
    harness = Harness(config(tmp_path), tools=[tool])
    with pytest.raises(ToolError) as timeout:
        await harness.context().tool("echo")
    assert timeout.value.reason == "tool_timeout" and timeout.value.error_class == "tool"
    assert harness.events("tool_call")[-1]["status"] == "timeout"


def test_specs_offer_name_description_and_schema_of_known_tools_only(tmp_path: Path) -> None:
    harness = Harness(config(tmp_path))
    specs = harness.box.specs(["ocr", "nope", "notification", "db-query"])
    assert [s["name"] for s in specs] == ["ocr", "notification", "db-query"]
    assert all(set(s) == {"name", "description", "parameters"} for s in specs)
    assert {t.name for t in builtin_tools().values()} == {"ocr", "notification", "db-query"}


def test_the_notification_schema_lets_the_model_choose_the_message_never_the_url(tmp_path: Path) -> None:
    harness = Harness(config(tmp_path, allowed_services=frozenset({"notification"})))
    ctx = harness.context(allowed={"notification"})
    assert harness.box.refusal(ctx._core, "notification", {"message": "hi"}) is None
    why = harness.box.refusal(ctx._core, "notification", {"message": "hi", "url": "http://evil.example/"})
    assert why is not None and "url" in why
