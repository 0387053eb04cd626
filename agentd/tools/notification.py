"""The notification tool: POSTs a JSON message to the configured NOTIFY_WEBHOOK_URL, at most once per key.

The URL comes only from the configuration; a model supplies the message fields and
nothing else. Each call carries an `Idempotency-Key` header (correlation id, step, call
index) so a receiver can drop a repeat; redirects are not followed.
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from agentd import __version__
from agentd.audit import utcnow_iso
from agentd.errors import NetworkError, ToolError
from agentd.spool.layout import display_name
from agentd.tools.base import Invocation, Tool

ATTEMPTS = 3
BACKOFF_S = 0.5

PARAMETERS = {
    "type": "object",
    "additionalProperties": False,
    "required": ["message"],
    "properties": {
        "subject": {"type": "string", "maxLength": 200},
        "message": {"type": "string", "minLength": 1, "maxLength": 4000},
        "severity": {"type": "string", "enum": ["info", "warning", "critical"]},
    },
}


def payload(inv: Invocation) -> dict[str, Any]:
    ctx, params = inv.ctx, inv.params
    return {"source": "agentd", "correlation_id": ctx.cid, "workflow": ctx.workflow,
            "file": display_name(ctx.original_name), "severity": params.get("severity", "info"),
            "subject": params.get("subject", ""), "message": params["message"],
            "idempotency_key": inv.key, "sent_at": utcnow_iso()}


async def _post(url: str, body: dict[str, Any], key: str, timeout_s: float) -> int:
    headers = {"Idempotency-Key": key, "User-Agent": f"agentd/{__version__}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        async with session.post(url, json=body, headers=headers, allow_redirects=False) as response:
            await response.read()
            return response.status


async def run(inv: Invocation) -> dict[str, Any]:
    url = inv.config.webhook_url
    if not url:
        raise ToolError("notification_unconfigured", "NOTIFY_WEBHOOK_URL is not set: the notification tool "
                                                     "has nowhere to send")
    body = payload(inv)
    per_attempt_s = max(0.1, (inv.timeout_s - BACKOFF_S * ATTEMPTS) / ATTEMPTS)
    problem = ""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            status = await _post(url, body, inv.key, per_attempt_s)
        except (aiohttp.ClientError, TimeoutError) as exc:
            problem = f"{exc.__class__.__name__}"
        else:
            if 200 <= status < 300:
                return {"delivered": True, "status": status, "attempts": attempt, "idempotency_key": inv.key}
            if status < 500 and status not in (408, 429):
                raise ToolError("webhook_rejected", f"NOTIFY_WEBHOOK_URL answered HTTP {status}")
            problem = f"HTTP {status}"
        if attempt < ATTEMPTS:
            await asyncio.sleep(BACKOFF_S * attempt)
    raise NetworkError("webhook_unreachable", f"NOTIFY_WEBHOOK_URL failed {ATTEMPTS} times (last: {problem}); "
                                              "a retry sends the same Idempotency-Key")


TOOL = Tool(name="notification", description="Send a short notification message (subject, message, severity) "
                                             "to the operators' configured webhook.",
            parameters=PARAMETERS, run=run, rate_per_min=30.0, side_effect=True, idempotent=True)
