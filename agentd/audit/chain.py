"""The audit line format: canonical JSON, its sha256, the chain's first link."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
CURRENT = "audit.jsonl"
ROTATED_GLOB = "audit-*.jsonl"


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_of(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def canonical(record: dict) -> bytes:
    """The bytes that are hashed: sorted keys, no spaces, UTF-8."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default)
    return text.encode("utf-8", "backslashreplace")


def line_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


@dataclass(frozen=True)
class Entry:
    seq: int
    hash: str


def parse_line(raw: bytes) -> dict | None:
    """A record with seq and hash, or None for anything else (torn, garbage)."""
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "seq" in value and "hash" in value else None


def intact(record: dict | None) -> bool:
    return record is not None and record.get("hash") == line_hash(record)
