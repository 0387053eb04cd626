"""The dedupe index: (workflow, sha256) of archived files -> the first run's id and sidecar."""
from __future__ import annotations

import sqlite3
from pathlib import Path


class DedupeIndex:
    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS archived (workflow TEXT, sha256 TEXT, cid TEXT, "
                        "sidecar TEXT, PRIMARY KEY (workflow, sha256))")

    def get(self, workflow: str, sha256: str) -> tuple[str, Path] | None:
        row = self.db.execute("SELECT cid, sidecar FROM archived WHERE workflow=? AND sha256=?",
                              (workflow, sha256)).fetchone()
        return (row[0], Path(row[1])) if row else None

    def put(self, workflow: str, sha256: str, cid: str, sidecar: Path) -> None:
        self.db.execute("INSERT OR REPLACE INTO archived VALUES (?, ?, ?, ?)",
                        (workflow, sha256, cid, str(sidecar)))

    def forget(self, workflow: str, sha256: str) -> None:
        self.db.execute("DELETE FROM archived WHERE workflow=? AND sha256=?", (workflow, sha256))

    def close(self) -> None:
        self.db.close()
