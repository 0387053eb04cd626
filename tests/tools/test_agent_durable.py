"""The agent workflow's tool calls take the durable path: the intent is journaled before the webhook is
called, and a SIGKILL while the webhook holds the POST leads to a resend with the SAME Idempotency-Key.

What the code guarantees (agentd/tools/registry.py ToolBox.call): a side effect whose result is
journaled is replayed, never repeated; one whose result is not yet journaled (the daemon died
while the receiver had the request) is sent again after the restart with the same key
`<correlation id>:<step>:<call index>`, so a receiver that honours Idempotency-Key acts once.
"""
from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from aiohttp import web

from tests.fakellm import Fault, Seen, answer, tool_call
from tests.helpers import AgentdProcess, audit_events, sidecar_for, wait_until
from tests.tools.webhook import Webhook

RESULTS_MARKER = "=== TOOL RESULTS "  # followed by the step's nonce

SUMMARY = {"summary": "notified the operators", "actions": ["notification"]}


@dataclass
class KillingWebhook(Webhook):
    """On the first delivery: note what the run's journal on disk holds, then SIGKILL the daemon before
    answering (the side effect happened; the daemon never learns its result)."""

    home: Path | None = None
    pid: int = 0
    journal_at_delivery: list[dict[str, Any]] | None = None

    async def _receive(self, request: web.Request) -> web.Response:
        if len(self.deliveries) == 0 and self.pid:
            assert self.home is not None
            self.journal_at_delivery = _journal_entries(self.home)
            os.kill(self.pid, signal.SIGKILL)
            self.pid = 0
        return await super()._receive(request)


def _journal_entries(home: Path) -> list[dict[str, Any]]:
    entries = []
    for path in (home / "processing").glob(".*"):
        for line in path.read_bytes().splitlines():
            if line.strip():
                entries.append(json.loads(line))
    return entries


def _responder(seen: Seen) -> Fault:
    if RESULTS_MARKER not in (seen.document or ""):
        return tool_call("notification", {"message": "the boiler is leaking", "severity": "critical"})
    return answer(SUMMARY)


def test_a_kill_9_while_the_webhook_holds_the_post_resends_it_with_the_same_idempotency_key(
        home: Path, daemon: Callable[..., AgentdProcess], llm_server: Callable[..., Any]) -> None:
    server = llm_server(responder=_responder)
    with KillingWebhook(home=home) as hook:
        env = dict(**server.env(model="test-model"), AGENTD_WORKFLOWS="agentd.workflows.agent",
                   ALLOWED_SERVICES="notification", NOTIFY_WEBHOOK_URL=hook.url)
        first = daemon(**env)
        assert first.proc is not None
        hook.pid = first.proc.pid
        # When the model proposes a notification and the daemon dies while the receiver has the POST
        (home / "incoming" / "agent").mkdir(parents=True, exist_ok=True)
        (home / "incoming" / "agent" / "boiler.txt").write_text("The boiler in room 4 is leaking.\n")
        first.proc.wait(timeout=20)
        assert first.proc.returncode == -signal.SIGKILL and len(hook.deliveries) == 1
        key = hook.deliveries[0].headers["Idempotency-Key"]
        # Then the intent with that key was in the run's journal on disk before the webhook got the call
        intents = [e for e in hook.journal_at_delivery or [] if str(e.get("key", "")).startswith("intent:")]
        assert [i["value"] for i in intents] == [{"tool": "notification", "key": key}]
        # When the daemon starts again
        daemon(**env)
        meta = wait_until(lambda: sidecar_for(home, "boiler.txt"), timeout=30, message="the outcome")
    # Then the run finished, the notification was sent again with the same key, the paid turn not re-bought
    assert meta["outcome"] == "archived" and meta["result"] == SUMMARY, meta
    cid = meta["correlation_id"]
    assert key == f"{cid}:act:1"  # the agent workflow's step is `act`, its first call
    assert [d.headers["Idempotency-Key"] for d in hook.deliveries] == [key, key]
    assert server.count() == 2  # the turn that proposed the call once (journaled), then the answer
    calls = [e for e in audit_events(home, "tool_call") if e["correlation_id"] == cid]
    assert [(e["tool"], e["status"]) for e in calls] == [("notification", "ok")]  # the kill cut the first line
