"""Shared set-up for the audit tests: a log with lines in it, its files as lines of text."""
from __future__ import annotations

import json
from pathlib import Path

from agentd.audit import AuditLog


def make_log(tmp_path: Path, lines: int = 10, max_bytes: int = 1 << 30, **kwargs: object) -> AuditLog:
    log = AuditLog(tmp_path / "logs", max_bytes=max_bytes, **kwargs).open()  # type: ignore[arg-type]
    for i in range(lines):
        log.append("llm_call", correlation_id=f"run{i}", cost_usd=0.001 * i, tokens_in=i)
    log.flush_now()
    return log


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines))


def anchor_of(logs_dir: Path) -> dict:
    return json.loads((logs_dir / "audit.anchor.json").read_text())
