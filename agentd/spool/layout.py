"""The folder layout under AGENTD_HOME: folder names, outcome -> folder, names and ids.

Every other module asks here which folder an outcome lands in, which names the
watcher leaves alone and what a claimed file is called.
"""
from __future__ import annotations

import enum
import os
import secrets
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote_to_bytes

INCOMING, PROCESSING, ARCHIVE, FAILED, REVIEW = "incoming", "processing", "archive", "failed", "review"
STATE, LOGS, DATA = "state", "logs", "data"
ALL_FOLDERS = (INCOMING, PROCESSING, ARCHIVE, FAILED, REVIEW, STATE, LOGS, DATA)
QUEUE_FOLDERS = (INCOMING, PROCESSING, ARCHIVE, FAILED, REVIEW)
DEFAULT_WORKFLOW = "triage"
TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", "~")
SIDECAR = ".meta.json"
NAME_MAX = 255
CID_LEN = 32
JOURNAL_SUFFIX = ".journal.jsonl"  # .<cid>.journal.jsonl: a dot name is never a dropped file


class Outcome(str, enum.Enum):
    """Where a run ends: three terminal places, or deferred (it waits and runs again)."""

    ARCHIVED = "archived"
    FAILED = "failed"
    REVIEW = "review"
    DEFERRED = "deferred"

    @property
    def folder(self) -> str:
        """The terminal folder of this outcome (deferred files wait in incoming/)."""
        return FOLDER_OF[self]


FOLDER_OF = {Outcome.ARCHIVED: ARCHIVE, Outcome.FAILED: FAILED, Outcome.REVIEW: REVIEW,
             Outcome.DEFERRED: INCOMING}
TERMINAL = {o.value: FOLDER_OF[o] for o in (Outcome.ARCHIVED, Outcome.FAILED, Outcome.REVIEW)}


def terminal_dir(home: Path, outcome: str | Outcome) -> Path:
    return home / FOLDER_OF[Outcome(outcome)]


def ignored_name(name: str) -> bool:
    """Names SPEC section 4 leaves alone until they are renamed."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def workflow_of(rel_parts: list[str]) -> str:
    """The workflow a file under incoming/ runs: its folder, or the default one."""
    return DEFAULT_WORKFLOW if len(rel_parts) == 1 else "/".join(rel_parts[:-1])


def incoming_dir(home: Path, workflow: str) -> Path:
    """Where a file of `workflow` waits: incoming/ itself for the default workflow."""
    base = home / INCOMING
    return base if workflow == DEFAULT_WORKFLOW else base / workflow


def new_correlation_id(now: float | None = None) -> str:
    """32 hex digits: 80 random bits (any 6+ leading digits pick one run), then 48 bits of ms."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{secrets.token_hex(10)}{ms:012x}"


def cid_time(cid: str) -> float | None:
    """The claim time (epoch seconds) a correlation id carries, or None."""
    try:
        return int(cid[-12:], 16) / 1000
    except ValueError:
        return None


def iso_utc(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cid_time_iso(cid: str) -> str:
    at = cid_time(cid)
    return iso_utc(time.time() if at is None else at)


def file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISDIR(mode):
        return "directory"
    return "unknown"


def display_name(name: str) -> str:
    """A file name as valid UTF-8 text (undecodable bytes shown as \\xNN)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def claim_name(cid: str, workflow: str) -> str:
    """processing/<cid>.<workflow> is the claimed file itself: a claim is one rename."""
    encoded = quote(os.fsencode(workflow), safe="-_")
    return f"{cid}.{encoded[:NAME_MAX - CID_LEN - 1]}"


def parse_claim_name(name: str) -> tuple[str, str] | None:
    cid, dot, encoded = name.partition(".")
    if len(cid) != CID_LEN or not dot or not encoded:
        return None
    try:
        int(cid, 16)
    except ValueError:
        return None
    return cid, os.fsdecode(unquote_to_bytes(encoded))


def sidecar_of(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR)


def data_of(sidecar: Path) -> Path:
    return sidecar.with_name(sidecar.name[: -len(SIDECAR)])


def free_name(directory: Path, name: str, cid: str, reserved: set[Path] | frozenset[Path] = frozenset(),
              ours: Callable[[Path], bool] = lambda sidecar: False) -> Path:
    """`name` if it and its sidecar are free in `directory`, else name-<cid8>[-n]; always short enough.

    A name whose file is free and whose sidecar `ours` owns (the run's earlier try, cut by a crash or
    a disk error) counts as free: the run goes on where it stopped, leaving no sidecar behind."""
    def taken(candidate: str) -> bool:
        path, sidecar = directory / candidate, directory / (candidate + SIDECAR)
        if path in reserved or os.path.lexists(path):
            return True
        return os.path.lexists(sidecar) and not ours(sidecar)

    if len(os.fsencode(name + SIDECAR)) <= NAME_MAX and not name.endswith(SIDECAR) and not taken(name):
        return directory / name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix) > 16:
        stem, suffix = name, ""
    suffix = f".{suffix}" if suffix else ""
    if suffix == ".json" and stem.endswith(".meta"):
        stem = stem[: -len(".meta")]
    for n in range(1000):
        tag = f"-{cid[:8]}" + (f"-{n}" if n else "")
        room = NAME_MAX - len(os.fsencode(tag + suffix + SIDECAR))
        candidate = os.fsdecode(os.fsencode(stem)[:room]) + tag + suffix
        if not taken(candidate):
            return directory / candidate
    raise OSError(f"no free name in {directory} for {display_name(name)}")
