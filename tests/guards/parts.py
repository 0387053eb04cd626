"""Real parts for guard unit tests: a Config on a tmp home, a real AuditLog and Metrics, RunCores."""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentd.audit import AuditLog, utcnow_iso
from agentd.config import Config
from agentd.durable.group import GroupSync
from agentd.guards.base import ModelCall
from agentd.llm.base import LLMRequest
from agentd.metrics import Metrics
from agentd.run.context import RunCore
from agentd.durable.journal import Journal
from agentd.spool.layout import claim_name
from agentd.spool.store import Claim
from tests.tools.support import config as make_config

CID = "c0ffee0000000000000000000000cafe"
SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}


@dataclass
class Parts:
    """One daemon's worth of the parts guards talk to."""

    config: Config
    audit: AuditLog
    metrics: Metrics
    sync: GroupSync

    def events(self, event: str) -> list[dict[str, Any]]:
        """The audit lines of `event`, as written to logs/audit.jsonl."""
        self.audit.flush_now()
        path = self.config.logs_dir / "audit.jsonl"
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [r for r in records if r["event"] == event]

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def run(self, cid: str = CID, workflow: str = "test", allowed: frozenset[str] = frozenset(),
            step: str = "work", resumed: bool = False, crash_resumes: int = 0,
            name: str = "doc.txt", data: bytes = b"hello") -> RunCore:
        """A claimed run (its file in processing/) with a fresh journal."""
        path = self.config.processing / claim_name(cid, workflow)
        path.write_bytes(data)
        claim = Claim(cid=cid, workflow=workflow, original_name=name, data=path, size=len(data),
                      started_at=utcnow_iso(), resumed=resumed, crash_resumes=crash_resumes)
        return RunCore(cid=cid, workflow=workflow, config=self.config, claim=claim,
                       journal=Journal(claim.journal_path, self.sync), audit=self.audit,
                       allowed_tools=allowed, step=step, data=data)


def make_parts(home: Path, **overrides: Any) -> Parts:
    cfg = make_config(home, **overrides)
    sync = GroupSync(enabled=False)
    audit = AuditLog(cfg.logs_dir, sync=sync).open()
    return Parts(cfg, audit, Metrics(), sync)


def request(document: str = "the document") -> LLMRequest:
    return LLMRequest(task="classify", system="You classify documents.", document=document, schema=SCHEMA)


def model_call(run: RunCore, worst_usd: str = "0.10", provider: str = "scripted", model: str = "m-1",
               **fields: Any) -> ModelCall:
    fields.setdefault("sent", True)  # a request that left (the gateway sets it after the intent)
    return ModelCall(run=run, request=request(), provider=provider, model=model, attempt=1,
                     worst_usd=Decimal(worst_usd), **fields)
