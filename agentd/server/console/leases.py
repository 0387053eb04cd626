"""Review leases: opening an item holds it for one reviewer a while. One small interface, one
local implementation (SQLite in AGENTD_HOME/state/); a shared store can replace it later."""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Lease:
    item: str
    holder: str
    until: float


class Leases(Protocol):
    def acquire(self, item: str, holder: str, now: float, ttl_s: float) -> Lease:
        """Hold `item` for `holder` until now + ttl_s, unless another holds it: then that lease."""

    def current(self, item: str, now: float) -> Lease | None:
        """The unexpired lease on `item`, if any."""

    def release(self, item: str, holder: str | None = None) -> bool:
        """Drop the lease (only `holder`'s, unless None: an admin breaking it); True if one went."""

    def held(self, now: float) -> dict[str, Lease]:
        """Every unexpired lease by item."""


class SqliteLeases:
    """Leases in one SQLite table; an expired row counts as free and is overwritten."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS leases (item TEXT PRIMARY KEY, holder TEXT NOT NULL, "
                         "until REAL NOT NULL)")
        self._lock = threading.Lock()

    def acquire(self, item: str, holder: str, now: float, ttl_s: float) -> Lease:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT holder, until FROM leases WHERE item = ?", (item,)).fetchone()
                if row and row[0] != holder and row[1] > now:
                    return Lease(item, row[0], row[1])
                self._db.execute("INSERT OR REPLACE INTO leases (item, holder, until) VALUES (?, ?, ?)",
                                 (item, holder, now + ttl_s))
                return Lease(item, holder, now + ttl_s)
            finally:
                self._db.execute("COMMIT")

    def current(self, item: str, now: float) -> Lease | None:
        with self._lock:
            row = self._db.execute("SELECT holder, until FROM leases WHERE item = ? AND until > ?",
                                   (item, now)).fetchone()
        return Lease(item, row[0], row[1]) if row else None

    def release(self, item: str, holder: str | None = None) -> bool:
        with self._lock:
            if holder is None:
                cursor = self._db.execute("DELETE FROM leases WHERE item = ?", (item,))
            else:
                cursor = self._db.execute("DELETE FROM leases WHERE item = ? AND holder = ?", (item, holder))
        return cursor.rowcount > 0

    def held(self, now: float) -> dict[str, Lease]:
        with self._lock:
            rows = self._db.execute("SELECT item, holder, until FROM leases WHERE until > ?", (now,)).fetchall()
        return {item: Lease(item, holder, until) for item, holder, until in rows}

    def close(self) -> None:
        self._db.close()
