"""The notification tool: JSON to the configured webhook only, once per idempotency key, even across kill -9."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from agentd.errors import ToolError
from tests.helpers import AgentdProcess, audit_events, sidecar_for, wait_until
from tests.tools.support import Harness, config
from tests.tools.webhook import Webhook

WORKFLOW = str(Path(__file__).with_name("notify_workflow.py"))


def _run(tmp_path: Path, url: str) -> tuple[Harness, object]:
    harness = Harness(config(tmp_path, allowed_services=frozenset({"notification"}), webhook_url=url))
    return harness, harness.context(allowed={"notification"})


async def test_a_notification_is_posted_as_json_with_an_idempotency_key(tmp_path: Path) -> None:
    async with Webhook() as hook:
        harness, ctx = _run(tmp_path, hook.url)
        result = await ctx.tool("notification", subject="Overdue", message="Invoice 42 is overdue",
                                severity="warning")

    [delivery] = hook.deliveries
    assert delivery.headers["Idempotency-Key"] == f"{ctx.cid}:work:1" == result["idempotency_key"]
    assert delivery.body["message"] == "Invoice 42 is overdue" and delivery.body["severity"] == "warning"
    assert delivery.body["correlation_id"] == ctx.cid and delivery.body["file"] == "doc.txt"
    assert result["delivered"] is True and result["status"] == 200
    assert harness.events("tool_call")[-1]["status"] == "ok"


async def test_a_redirect_is_not_followed_to_another_host(tmp_path: Path) -> None:
    async with Webhook() as elsewhere, Webhook(status=307) as hook:
        hook.location = elsewhere.url
        _, ctx = _run(tmp_path, hook.url)
        with pytest.raises(ToolError) as rejected:
            await ctx.tool("notification", message="hi")
    assert rejected.value.reason == "webhook_rejected" and "307" in rejected.value.detail
    assert elsewhere.deliveries == []


async def test_a_server_error_is_retried_with_the_same_key(tmp_path: Path) -> None:
    async with Webhook(status=503) as hook:
        _, ctx = _run(tmp_path, hook.url)
        with pytest.raises(Exception) as failed:
            await ctx.tool("notification", message="hi")
    assert getattr(failed.value, "reason", "") == "webhook_unreachable"
    assert len(hook.deliveries) == 3 and len({d.headers["Idempotency-Key"] for d in hook.deliveries}) == 1


async def test_without_a_webhook_url_the_tool_names_the_missing_variable(tmp_path: Path) -> None:
    _, ctx = _run(tmp_path, "")
    with pytest.raises(ToolError) as unset:
        await ctx.tool("notification", message="hi")
    assert "NOTIFY_WEBHOOK_URL is not set" in unset.value.detail


def _start(daemon: Callable[..., AgentdProcess], hook: Webhook) -> AgentdProcess:
    return daemon(AGENTD_WORKFLOWS=WORKFLOW, ALLOWED_SERVICES="notification", NOTIFY_WEBHOOK_URL=hook.url)


def test_a_run_resumed_after_kill_9_does_not_notify_again(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    notified, gate = home / "data" / "notified", home / "data" / "gate"
    with Webhook() as hook:
        # Given a run that notified and then stopped in the same step, waiting for a gate
        first = _start(daemon, hook)
        (home / "incoming" / "notify").mkdir(parents=True, exist_ok=True)
        (home / "incoming" / "notify" / "alert.txt").write_text("the boiler is leaking\n")
        wait_until(notified.exists, timeout=20, message="the notification step")
        assert len(hook.deliveries) == 1
        # When the daemon is SIGKILLed and started again
        first.kill()
        notified.unlink()
        _start(daemon, hook)
        wait_until(notified.exists, timeout=20, message="the resumed run to pass the notification again")
        gate.write_text("go")
        meta = wait_until(lambda: sidecar_for(home, "alert.txt"), timeout=20, message="the outcome")
        # Then the webhook saw exactly one delivery, and the run replayed its recorded result
        assert len(hook.deliveries) == 1
        assert meta["outcome"] == "archived", meta
        assert meta["result"]["sent"]["idempotency_key"] == hook.deliveries[0].headers["Idempotency-Key"]
        calls = [e for e in audit_events(home, "tool_call") if e["correlation_id"] == meta["correlation_id"]]
        assert [(e["tool"], e["status"]) for e in calls] == [("notification", "ok"), ("notification", "replayed")]


def test_a_kill_9_during_delivery_resends_with_the_same_idempotency_key(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # the one window no journal can close: the receiver got the POST, the answer never came back
    (home / "data").mkdir(exist_ok=True)
    (home / "data" / "gate").write_text("go")
    with Webhook(first_delay_s=30) as hook:
        first = _start(daemon, hook)
        (home / "incoming" / "notify").mkdir(parents=True, exist_ok=True)
        (home / "incoming" / "notify" / "alert.txt").write_text("the boiler is leaking\n")
        wait_until(lambda: hook.deliveries, timeout=20, message="the first delivery")
        first.kill()
        _start(daemon, hook)
        meta = wait_until(lambda: sidecar_for(home, "alert.txt"), timeout=20, message="the outcome")
        assert meta["outcome"] == "archived", meta
        keys = {d.headers["Idempotency-Key"] for d in hook.deliveries}
        assert len(hook.deliveries) == 2 and keys == {meta["result"]["sent"]["idempotency_key"]}
