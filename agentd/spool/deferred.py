"""Deferred files on disk: a file put back in incoming/ with a not-before time survives a restart.

SPEC keeps waiting files in incoming/ (an operator sees them there), so the deferral is
a state record, not a folder: state/deferred.json maps a file (its path and inode) to
the time before which it is not claimed again, plus one time for all files (a
Retry-After longer than a worker may wait). It is small (bounded) and rewritten
atomically on each change; changes are rare (an outage, a rate limit).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from agentd import logs
from agentd.durable.group import fsync_path, write_json

log = logs.get("agentd.spool")
FILE = "deferred.json"
MAX_ENTRIES = 10_000


class Deferrals:
    """The one record of not-before times; the watcher asks it, the spool store writes it."""

    def __init__(self, state_dir: Path, clock: Callable[[], float] = time.time):
        self.path = state_dir / FILE
        self.clock = clock
        self.files: dict[str, dict[str, Any]] = {}
        self.all_until = 0.0
        self.all_reason = ""
        self._load()

    def _load(self) -> None:
        try:
            saved = json.loads(self.path.read_text("utf-8", "surrogateescape"))
            files = saved.get("files", {}) if isinstance(saved, dict) else {}
            self.files = {str(k): v for k, v in dict(files).items() if isinstance(v, dict)}
            self.all_until = float(saved.get("all_until") or 0.0)
            self.all_reason = str(saved.get("all_reason", ""))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            # unreadable or of the wrong shape: nothing is held back (the files are still in incoming/)
            self.files, self.all_until, self.all_reason = {}, 0.0, ""
            log.warning("deferrals_unreadable", path=os.fspath(self.path), error=f"{exc.__class__.__name__}: {exc}")

    def _save(self) -> None:
        # an entry lives until its file is claimed (its strikes go with the claim) or is gone from its path
        self.files = {k: v for k, v in self.files.items() if _same_file(k, v.get("ino"))}
        while len(self.files) > MAX_ENTRIES:
            self.files.pop(next(iter(self.files)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, {"files": self.files, "all_until": self.all_until, "all_reason": self.all_reason})
        fsync_path(self.path)

    def defer(self, path: Path, until: float, reason: str, strikes: int = 0) -> None:
        """`path` (now in incoming/) is not claimed before `until` (epoch seconds)."""
        try:
            inode = os.lstat(path).st_ino
        except FileNotFoundError:
            return
        self.files[os.fspath(path)] = {"until": until, "reason": reason, "ino": inode, "strikes": strikes}
        self._save()

    def hold_all(self, until: float, reason: str) -> None:
        """No file is claimed before `until` (a long Retry-After)."""
        if until > self.all_until:
            self.all_until, self.all_reason = until, reason
            self._save()

    def until(self, path: str, inode: int) -> float | None:
        """The not-before time of this file (the same inode), or None when it may go now."""
        entry = self.files.get(path)
        if entry is None or entry.get("ino") != inode:
            return None
        at = float(entry.get("until", 0))
        return at if at > self.clock() else None

    def held_until(self) -> float | None:
        """The time before which no file is claimed, or None."""
        return self.all_until if self.all_until > self.clock() else None

    def take(self, path: str, inode: int) -> int:
        """The file was claimed: its deferral is spent; the strikes it had come with it."""
        entry = self.files.get(path)
        if entry is None or entry.get("ino") != inode:
            return 0
        del self.files[path]
        self._save()  # spent: a restart must not bring it back
        return int(entry.get("strikes", 0))


def _same_file(path: str, inode: object) -> bool:
    try:
        return os.lstat(path).st_ino == inode
    except OSError:
        return False
