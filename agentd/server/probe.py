"""The synthetic probe: a canary document through extraction, the offline model, schema
validation and a durable write, every few minutes, so /health sees a silent failure."""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from agentd.durable.group import GroupSync, write_json
from agentd.errors import AgentdError
from agentd.llm.base import LLMRequest
from agentd.llm.offline import OfflineProvider
from agentd.run.isolated import POOL, UNRESOLVABLE, extract_isolated
from agentd.schemas import check as schema_problem
from agentd.workflows.triage import SYSTEM, TRIAGE, TRIAGE_SCHEMA

CANARY = (b"From: Probe Sender <probe@example.invalid>\nSubject: Invoice 0000\n\n"
          b"Dear operator, this invoice of $1.00 is due 2030-01-01. Please pay.\nKind regards,\nAgentd Probe\n")
PROBE_TIMEOUT_S = 30.0


@dataclass
class ProbeResult:
    ok: bool
    at: float
    latency_ms: float
    error: str | None = None

    def view(self) -> dict[str, Any]:
        return {"ok": self.ok, "at": self.at, "latency_ms": self.latency_ms, "error": self.error}


class Probe:
    def __init__(self, state_dir: Path, sync: GroupSync):
        self.dir = state_dir / "probe"
        self.sync = sync
        self.provider = OfflineProvider(TRIAGE.offline_rules, isolate=POOL.rule, unresolvable=UNRESOLVABLE)
        self.last: ProbeResult | None = None

    async def run(self) -> ProbeResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await self._once()
            result = ProbeResult(True, time.time(), round((time.monotonic() - started) * 1000, 1))
        except (OSError, ValueError, TimeoutError, AgentdError) as exc:
            result = ProbeResult(False, time.time(), round((time.monotonic() - started) * 1000, 1),
                                 f"{exc.__class__.__name__}: {exc}"[:300])
        self.last = result
        return result

    async def _once(self) -> None:
        document = await extract_isolated("canary.eml", CANARY, PROBE_TIMEOUT_S)  # the parser processes too
        request = LLMRequest(task="triage", system=SYSTEM, document=document.text, schema=TRIAGE_SCHEMA)
        answer = await self.provider.complete(request, "offline-rules", PROBE_TIMEOUT_S)
        problem = schema_problem(TRIAGE_SCHEMA, answer.parsed)
        if problem:
            raise ValueError(f"the canary's answer fails the triage schema: {problem}")
        if answer.parsed["document_type"] != "invoice":
            raise ValueError(f"canary classified as {answer.parsed['document_type']!r}, not invoice")
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "last.json"
        write_json(path, {"answer": answer.parsed, "pid": os.getpid()})
        await self.sync.sync([path, self.dir])
