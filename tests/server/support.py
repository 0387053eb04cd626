"""Shared parts of the console tests: users, review items written the way the pipeline writes
them, and a second workflow (`memo`) whose every file waits for a sign-off."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.tools.scans import pdf_of

REVIEWERS = "alice:alice-secret-1,bob:bob-secret-22"
VIEWERS = "vic:viewer-secret-3"
ADMIN = "admin-secret-0"
TOKENS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "vic": "viewer-secret-3", "admin": ADMIN}
CONSOLE_ENV = {"REVIEWER_TOKENS": REVIEWERS, "VIEWER_TOKENS": VIEWERS, "ADMIN_TOKEN": ADMIN}

MEMO_WORKFLOW = '''
from agentd.errors import NeedsReview
from agentd.workflows import Workflow

async def sign_off(run):
    text = await run.text()
    raise NeedsReview("needs_sign_off", result={"text": text[:200]})

MEMO = Workflow("memo", steps=(sign_off,), description="every memo waits for a person")
'''


def triage_result(**changes: Any) -> dict[str, Any]:
    result = {"document_type": "invoice", "summary": "Invoice 2291 from Acme for $120.",
              "entities": {"people": [], "organizations": ["Acme Widgets Ltd"], "emails": ["billing@acme.example"],
                           "amounts": ["$120.00"], "dates": ["2026-07-01"]},
              "requested_action": "pay", "party": "Acme Widgets Ltd", "confidence": 0.41,
              "provider": "offline", "model": "offline-rules", "source_kind": "text"}
    result.update(changes)
    return result


def review_item(home: Path, name: str, cid: str, content: bytes = b"INVOICE 2291\nAcme Widgets Ltd\n",
                finished_at: str = "2026-06-01T10:00:00.000Z", **meta: Any) -> Path:
    """A file in review/ with the sidecar the pipeline writes for a low-confidence triage."""
    review = home / "review"
    review.mkdir(parents=True, exist_ok=True)
    (review / name).write_bytes(content)
    sidecar = {"correlation_id": cid, "workflow": "triage", "original_name": name, "sha256": "0" * 64,
               "size": len(content), "outcome": "review", "reason": "low_confidence", "confidence": 0.41,
               "threshold": 0.5, "cost_usd": 0.0012, "tokens": {"input": 10, "output": 5}, "llm_calls": 1,
               "started_at": finished_at, "finished_at": finished_at, "result": triage_result()}
    sidecar.update(meta)
    path = review / f"{name}.meta.json"
    path.write_text(json.dumps(sidecar))
    return path


def snapshot(home: Path) -> dict[str, list[str]]:
    """What a user would see change: the files in each state folder."""
    return {sub: sorted(p.name for p in (home / sub).iterdir()) if (home / sub).exists() else []
            for sub in ("incoming", "processing", "archive", "failed", "review")}


def text_pdf(text: str) -> bytes:
    """A one-page PDF with `text` in its text layer (Helvetica), xref offsets exact."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    return pdf_of(objects)
