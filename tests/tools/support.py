"""In-process runs for tool tests: a real RunContext, audit log, journal and gateway on a tmp home."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from agentd.audit import utcnow_iso
from agentd.config import Config
from agentd.llm.base import LLMRequest, LLMResponse
from agentd.run.context import Run, RunCore
from agentd.lifecycle.services import build
from agentd.durable.journal import Journal
from agentd.spool.layout import claim_name
from agentd.spool.store import Claim
from agentd.tools import Invocation, Tool

ECHO_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["text"],
               "properties": {"text": {"type": "string", "maxLength": 100}}}


class ScriptedProvider:
    """A Provider (the gateway's own interface, no network) answering from a script of callables."""

    name = "scripted"
    prompt_overhead_tokens = 0

    def __init__(self, *replies: Callable[[LLMRequest], LLMResponse] | Any):
        self.replies = list(replies)
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest, model: str, timeout_s: float) -> LLMResponse:
        self.requests.append(request)
        reply = self.replies.pop(0) if self.replies else {}
        if callable(reply):
            return reply(request)
        if isinstance(reply, dict) and "tool_calls" in reply:
            return LLMResponse(provider=self.name, model=model, tool_calls=reply["tool_calls"],
                               finish_reason="tool_calls", tokens_in=10, tokens_out=5)
        return LLMResponse(provider=self.name, model=model, content=json.dumps(reply), parsed=reply,
                           tokens_in=10, tokens_out=5)

    async def close(self) -> None:
        return None


def calls(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """A model answer proposing tool calls."""
    return {"tool_calls": [{"id": f"call_{i}", "name": name, "arguments": args}
                           for i, (name, args) in enumerate(pairs, 1)]}


@dataclass
class Echo:
    """A tool that counts its runs: the proof that a refused call never ran."""

    runs: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, inv: Invocation) -> dict[str, Any]:
        self.runs.append(inv.params)
        return {"echo": inv.params["text"], "key": inv.key}

    def tool(self, **options: Any) -> Tool:
        return Tool(name="echo", description="Echo the text back.", parameters=ECHO_SCHEMA, run=self, **options)


def config(home: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {"home": home, "fsync": False, "llm_provider": "offline",
                              "allowed_services": frozenset({"echo"})}
    values.update(overrides)
    for sub in ("processing", "logs", "state", "data", "review", "archive", "failed", "incoming"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return Config(**values)


class Harness:
    """One daemon's worth of parts, in-process, built by agentd.lifecycle.services like the daemon's."""

    def __init__(self, cfg: Config, tools: list[Tool] | None = None, provider: Any = None,
                 clock: Callable[[], float] | None = None):
        self.config = cfg
        self.provider = provider or ScriptedProvider()
        registry = {t.name: t for t in (tools or [])} if tools is not None else None
        self.services = build(cfg, provider=self.provider, tools=registry)
        self.audit = self.services.audit
        self.metrics = self.services.metrics
        self.box = self.services.tools
        if clock is not None:
            self.box.clock = clock
        self.gateway = self.services.gateway
        self.gateway._sleep = _no_sleep
        self.kill = self.services.kill

    def context(self, name: str = "doc.txt", data: bytes = b"hello", workflow: str = "test",
                allowed: frozenset[str] | set[str] = frozenset({"echo"}), step: str = "work",
                cid: str = "c0ffee0000000000000000000000cafe") -> Run:
        """A run of `workflow` on a file `name` as a step sees it; the same cid resumes the same journal."""
        self.config.processing.mkdir(parents=True, exist_ok=True)
        path = self.config.processing / claim_name(cid, workflow)
        path.write_bytes(data)
        claim = Claim(cid=cid, workflow=workflow, original_name=name, data=path, size=len(data),
                      started_at=utcnow_iso())
        return Run(RunCore(cid=cid, workflow=workflow, config=self.config, claim=claim,
                           journal=Journal(claim.journal_path, self.services.sync),
                           ask_model=self.gateway.structured, audit=self.audit, tools=self.box,
                           allowed_tools=frozenset(allowed), step=step, data=data))

    def events(self, event: str) -> list[dict[str, Any]]:
        self.audit.flush_now()
        path = self.config.logs_dir / "audit.jsonl"
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in records if r["event"] == event]

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


async def _no_sleep(_seconds: float) -> None:
    return None
