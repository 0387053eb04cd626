"""How many files each state folder holds: counted once at start-up, then kept current by the store.

The daemon's store reports every move it makes (from folder, to folder); the watcher reports
what its scans of incoming/ found. Moves the daemon cannot see (a CLI requeue or review
decision, an operator's clean-up of archive/) are corrected by a full count in a thread at
most every RECOUNT_EVERY_S, never on the event loop; a folder that moved during that count
keeps its running figure until the next one.
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Callable

from agentd import logs
from agentd.spool.layout import INCOMING, QUEUE_FOLDERS, SIDECAR, ignored_name

log = logs.get("agentd.spool")
RECOUNT_EVERY_S = 15.0
RECOUNTED = tuple(f for f in QUEUE_FOLDERS if f != INCOMING)  # incoming/ has its own count (the watcher's)


class Counts:
    """Files per folder; moves may be reported from worker threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, recount_every_s: float = RECOUNT_EVERY_S) -> None:
        self.by_folder: dict[str, int] = {f: 0 for f in QUEUE_FOLDERS}
        self._lock = threading.Lock()
        self._clock = clock
        self.recount_every_s = recount_every_s
        self._moves = {f: 0 for f in QUEUE_FOLDERS}  # moves reported per folder, to spot a count they raced
        self._recounted_at = clock()
        self.recounting: threading.Thread | None = None

    def load(self, home: Path) -> "Counts":
        """One full count (at start-up, off the event loop)."""
        counted = {folder: count_entries(home / folder, folder) for folder in QUEUE_FOLDERS}
        with self._lock:
            self.by_folder = counted
            self._recounted_at = self._clock()
        return self

    def moved(self, src: str, dst: str) -> None:
        with self._lock:
            if src in self.by_folder:
                self.by_folder[src] = max(0, self.by_folder[src] - 1)
                self._moves[src] += 1
            if dst in self.by_folder:
                self.by_folder[dst] += 1
                self._moves[dst] += 1

    def recount_soon(self, home: Path) -> threading.Thread | None:
        """Start a full count of processing/ and the terminal folders in a thread, if none ran lately."""
        with self._lock:
            if self.recounting is not None or self._clock() - self._recounted_at < self.recount_every_s:
                return None
            moves_before = dict(self._moves)
            thread = self.recounting = threading.Thread(target=self._recount, args=(home, moves_before),
                                                        daemon=True, name="agentd-recount")
        thread.start()
        return thread

    def _recount(self, home: Path, moves_before: dict[str, int]) -> None:
        counted: dict[str, int] = {}
        try:
            counted = {folder: count_entries(home / folder, folder) for folder in RECOUNTED}
        finally:
            with self._lock:
                for folder, n in counted.items():
                    if self._moves[folder] == moves_before[folder]:  # else the count raced a move: keep ours
                        self.by_folder[folder] = n
                self._recounted_at = self._clock()
                self.recounting = None

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



