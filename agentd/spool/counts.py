"""How many files each state folder holds: counted once at start-up, then kept current by the store.

The store is the only mover of state files, so it reports every move (from folder, to
folder); the watcher reports what its scans of incoming/ found. Nothing scans the
terminal folders again while the daemon runs.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

from agentd import logs
from agentd.spool.layout import INCOMING, QUEUE_FOLDERS, SIDECAR, ignored_name

log = logs.get("agentd.spool")


class Counts:
    """Files per folder; moves may be reported from worker threads."""

    def __init__(self) -> None:
        self.by_folder: dict[str, int] = {f: 0 for f in QUEUE_FOLDERS}
        self._lock = threading.Lock()

    def load(self, home: Path) -> "Counts":
        """One full count (at start-up, off the event loop)."""
        counted = {folder: count_entries(home / folder, folder) for folder in QUEUE_FOLDERS}
        with self._lock:
            self.by_folder = counted
        return self

    def moved(self, src: str, dst: str) -> None:
        with self._lock:
            if src in self.by_folder:
                self.by_folder[src] = max(0, self.by_folder[src] - 1)
            if dst in self.by_folder:
                self.by_folder[dst] += 1

    def set_incoming(self, n: int) -> None:
        """A full scan of incoming/ found `n` waiting files."""
        with self._lock:
            self.by_folder[INCOMING] = n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.by_folder)


def count_entries(directory: Path, sub: str) -> int:
    """Files waiting or finished in one state folder (sidecars, temp names and unreadable entries not counted)."""
    total = 0
    try:
        with os.scandir(directory) as it:
            for entry in it:
                try:
                    if entry.name.endswith(SIDECAR) or ignored_name(entry.name):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if sub == INCOMING:
                            total += count_entries(Path(entry.path), "incoming-sub")
                        continue
                    total += 1
                except OSError:
                    continue  # an entry we may not stat: not counted
    except OSError as exc:
        if not isinstance(exc, FileNotFoundError):
            log.warning("count_failed", folder=os.fspath(directory), error=f"{exc.__class__.__name__}: {exc}")
        return 0
    return total


def oldest_waiting_age_s(incoming: Path, now: float) -> float | None:
    """How long the oldest file in incoming/ (and its workflow folders) has waited."""
    oldest = None
    stack = [incoming]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if ignored_name(entry.name):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                        is_dir = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        continue
                    if is_dir:
                        if directory == incoming:
                            stack.append(Path(entry.path))
                        continue
                    oldest = st.st_mtime if oldest is None else min(oldest, st.st_mtime)
        except OSError:
            continue
    return None if oldest is None else max(0.0, now - oldest)



