"""The dedupe index: (workflow, sha256) of archived files -> the first run's id and sidecar, reused only
while that sidecar still belongs to the first run.

An operator may prune archive/ and a new file may land under the old name: the stored sidecar path
then names another run's record. `reusable` checks the sidecar's correlation id and sha256 against
the entry (and that it is still an archived outcome) and forgets an entry that no longer holds, so the
repeat runs as new and its own finish puts the fresh entry in.
"""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Callable


class DedupeIndex:
    def __init__(self, path: Path, crash: Callable[[str], None] = lambda point: None):
        self.crash = crash  # agentd.durable.crash_point with the daemon's config
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS archived (workflow TEXT, sha256 TEXT, cid TEXT, "
                        "sidecar TEXT, PRIMARY KEY (workflow, sha256))")

    def get(self, workflow: str, sha256: str) -> tuple[str, Path] | None:
        row = self.db.execute("SELECT cid, sidecar FROM archived WHERE workflow=? AND sha256=?",
                              (workflow, sha256)).fetchone()
        return (row[0], Path(row[1])) if row else None

    def reusable(self, workflow: str, sha256: str) -> tuple[str, dict[str, Any]] | None:
        """The first run's id and sidecar, when that sidecar is still its own (its correlation id,
        sha256, workflow and an archived outcome); else None, and the stale entry is forgotten."""
        found = self.get(workflow, sha256)
        if found is None:
            return None
        cid, sidecar = found
        meta = _read_sidecar(sidecar)
        if meta is None or not _belongs(meta, cid, workflow, sha256):
            self.forget(workflow, sha256)
            return None
        return cid, meta

    def put(self, workflow: str, sha256: str, cid: str, sidecar: Path) -> None:
        """After the first run's final rename: a crash before it leaves no entry (a repeat runs as new)."""
        self.crash("before_dedupe_index_put")
        self.db.execute("INSERT OR REPLACE INTO archived VALUES (?, ?, ?, ?)",
                        (workflow, sha256, cid, str(sidecar)))

    def forget(self, workflow: str, sha256: str) -> None:
        self.db.execute("DELETE FROM archived WHERE workflow=? AND sha256=?", (workflow, sha256))

    def close(self) -> None:
        self.db.close()


def _read_sidecar(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text("utf-8", "surrogateescape"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _belongs(meta: dict[str, Any], cid: str, workflow: str, sha256: str) -> bool:
    return (meta.get("correlation_id") == cid and meta.get("sha256") == sha256
            and meta.get("workflow") == workflow and meta.get("outcome") == "archived")
