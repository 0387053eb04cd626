"""The anchor: a small signed checkpoint of where the chain starts and how far it reached.

`logs/audit.anchor.json` holds the first seq and the hash before it (GENESIS, or the last
line retention removed), the head seq and hash (advanced after each group commit, only
to lines already on disk), and the rotated files seen so far. Removing lines at the start,
at the tail, or a whole rotated file leaves the chain consistent in itself but not with
the anchor. With AUDIT_HMAC_KEY the anchor carries an HMAC-SHA256 over its canonical JSON,
so it cannot be rewritten to match a shortened log without the key.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentd.audit.chain import CURRENT, GENESIS, Entry, canonical, utcnow_iso
from agentd.audit.files import first_record, last_record, rotated_files

ANCHOR = "audit.anchor.json"
LOCK = ".audit.anchor.lock"


class AnchorError(Exception):
    """The anchor file exists but cannot be read as an anchor."""


@dataclass
class Anchor:
    first_seq: int = 1
    first_prev: str = GENESIS
    head_seq: int = 0
    head_hash: str = GENESIS
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # rotated name -> its range
    retired_through: int = 0  # the last seq removed by retention (0: none)
    created_at_seq: int = 0  # the head when this anchor was first written
    updated_at: str = ""

    def body(self) -> dict[str, Any]:
        return {"version": 1, **asdict(self)}


def signature(body: dict[str, Any], key: str) -> str:
    unsigned = {k: v for k, v in body.items() if k != "hmac"}
    return hmac.new(key.encode("utf-8"), canonical(unsigned), hashlib.sha256).hexdigest()


def read_raw(logs_dir: Path) -> dict[str, Any] | None:
    """The anchor's JSON, None when there is none; AnchorError when it is not an anchor."""
    try:
        data = (logs_dir / ANCHOR).read_bytes()
    except FileNotFoundError:
        return None
    try:
        raw = json.loads(data)
    except ValueError:
        raise AnchorError(f"{ANCHOR} is not valid JSON") from None
    if not isinstance(raw, dict) or raw.get("version") != 1:
        raise AnchorError(f"{ANCHOR} is not an audit anchor")
    return raw


def from_raw(raw: dict[str, Any]) -> Anchor:
    names = {f.name for f in Anchor.__dataclass_fields__.values()}  # type: ignore[attr-defined]
    try:
        return Anchor(**{k: v for k, v in raw.items() if k in names})
    except TypeError as exc:
        raise AnchorError(f"{ANCHOR}: {exc}") from None


def signature_problem(raw: dict[str, Any], key: str) -> str | None:
    """Why the anchor's signature does not hold for `key` (None: it holds, or no key)."""
    if not key:
        return None
    if "hmac" not in raw:
        return "the anchor is not signed but AUDIT_HMAC_KEY is set (replaced by an unsigned one?)"
    if not hmac.compare_digest(str(raw["hmac"]), signature(raw, key)):
        return "the anchor's signature does not match AUDIT_HMAC_KEY (edited, or another key)"
    return None


class AnchorStore:
    """Reads and replaces the anchor; writers (daemon thread, CLI) take one lock file."""

    def __init__(self, logs_dir: Path, hmac_key: str = "", fsync: bool = True):
        self.dir = logs_dir
        self.key = hmac_key
        self.fsync = fsync
        self.path = logs_dir / ANCHOR

    def load(self) -> tuple[Anchor | None, dict[str, Any] | None]:
        raw = read_raw(self.dir)
        return (from_raw(raw), raw) if raw is not None else (None, None)

    def _lock(self) -> int:
        fd = os.open(self.dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _may_write(self, raw: dict[str, Any] | None) -> bool:
        """A process without the key never replaces a signed anchor by an unsigned one."""
        return bool(self.key) or raw is None or "hmac" not in raw

    def save(self, anchor: Anchor, durable_dir: bool = False) -> None:
        anchor.updated_at = utcnow_iso()
        body = anchor.body()
        if self.key:
            body["hmac"] = signature(body, self.key)
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        tmp = self.dir / f".{ANCHOR}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(28, "short write to the audit anchor")
            if self.fsync:
                os.fsync(fd)  # a new anchor is never seen without its content
        finally:
            os.close(fd)
        os.rename(tmp, self.path)
        if durable_dir and self.fsync:
            _fsync_dir(self.dir)

    def create(self, head: Entry) -> Anchor:
        """The first anchor, over whatever the log holds now (its start read from the oldest file)."""
        fd = self._lock()
        try:
            anchor, raw = self.load()
            if anchor is not None:
                return anchor
            anchor = Anchor(head_seq=head.seq, head_hash=head.hash, created_at_seq=head.seq)
            files = [*rotated_files(self.dir), self.dir / CURRENT]
            first = next((r for r in map(first_record, files) if r is not None), None)
            if first is not None:
                anchor.first_seq, anchor.first_prev = int(first["seq"]), str(first["prev"])
            _note_files(self.dir, anchor)
            self.save(anchor, durable_dir=True)
            return anchor
        finally:
            os.close(fd)

    def advance(self, head: Entry) -> None:
        """Move the head forward to `head` (already on disk); never backwards."""
        fd = self._lock()
        try:
            anchor, raw = self.load()
            if anchor is None or head.seq <= anchor.head_seq or not self._may_write(raw):
                return
            anchor.head_seq, anchor.head_hash = head.seq, head.hash
            _note_files(self.dir, anchor)
            self.save(anchor)
        finally:
            os.close(fd)

    def retire(self, cutoff_ts: str) -> list[str]:
        """Remove rotated files whose newest line is older than `cutoff_ts`; the anchor moves first."""
        fd = self._lock()
        try:
            anchor, raw = self.load()
            if anchor is None or not self._may_write(raw):
                return []
            removable, last = _retirable(self.dir, anchor, cutoff_ts)
            if not removable or last is None:
                return []
            anchor.first_seq, anchor.first_prev = int(last["seq"]) + 1, str(last["hash"])
            anchor.retired_through = int(last["seq"])
            for path in removable:
                anchor.files.pop(path.name, None)
            self.save(anchor, durable_dir=True)  # durable before any file goes
            for path in removable:
                path.unlink(missing_ok=True)
            if self.fsync:
                _fsync_dir(self.dir)
            return [p.name for p in removable]
        finally:
            os.close(fd)


def _retirable(logs_dir: Path, anchor: Anchor, cutoff_ts: str) -> tuple[list[Path], dict | None]:
    """The oldest rotated files, in order, all of whose lines are older than the cutoff."""
    removable: list[Path] = []
    last = None
    for path in rotated_files(logs_dir):
        record = last_record(path)
        if record is None:
            break
        leftover = int(record["seq"]) <= anchor.retired_through  # an interrupted earlier retention
        if not leftover and str(record.get("ts", "")) >= cutoff_ts:
            break
        removable.append(path)
        last = record
    return removable, last


def _note_files(logs_dir: Path, anchor: Anchor) -> None:
    """Record each rotated file the first time it is seen; a file that went stays listed."""
    for path in rotated_files(logs_dir):
        if path.name in anchor.files:
            continue
        first, last = first_record(path), last_record(path)
        if first is None or last is None:
            continue
        anchor.files[path.name] = {"first_seq": int(first["seq"]), "last_seq": int(last["seq"]),
                                   "last_hash": last["hash"], "last_ts": last.get("ts", "")}


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
