"""The tamper-evident audit log: append-only JSON lines in a sha256 hash chain."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from agentd.durable import GroupSync
from agentd.redact import Redactor

GENESIS = "0" * 64
CURRENT = "audit.jsonl"


def utcnow_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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


def audit_files(logs_dir: Path) -> list[Path]:
    """Rotated files in chain order, then the current one."""
    rotated = sorted(logs_dir.glob("audit-*.jsonl"))
    current = logs_dir / CURRENT
    return rotated + ([current] if current.exists() else [])


def iter_records(logs_dir: Path) -> Iterator[dict]:
    """Every parseable record across rotated and current files, oldest first."""
    for path in audit_files(logs_dir):
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    yield json.loads(raw)
                except ValueError:
                    continue


def iter_records_after(logs_dir: Path, seq: int) -> Iterator[dict]:
    """Records with a seq above `seq`, reading only the files that can hold them."""
    files = audit_files(logs_dir)
    firsts = [_first_seq(path) for path in files]
    start = 0
    for index, first in enumerate(firsts):
        if first and first <= seq + 1:
            start = index
    for path in files[start:]:
        with open(path, "rb") as fh:
            for raw in fh:
                record = _parse(raw)
                if record is not None and record["seq"] > seq:
                    yield record


class AuditLog:
    """One writer per process; appends are serialized across processes by flock."""

    def __init__(self, logs_dir: Path, redactor: Redactor | None = None,
                 sync: GroupSync | None = None, max_bytes: int = 64 * 1024 * 1024):
        self.dir = logs_dir
        self.path = logs_dir / CURRENT
        self.redact = redactor or Redactor()
        self.sync = sync or GroupSync()
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._size = -1
        self.last = Entry(0, GENESIS)
        self.writable = True
        self.repaired: dict | None = None

    # -- opening and repair ---------------------------------------------------------
    def open(self) -> "AuditLog":
        self.dir.mkdir(parents=True, exist_ok=True)
        self._open_fd()
        with self._locked():
            self.repaired = self._repair_tail()
        if self.repaired:
            self.append("audit_repaired", **self.repaired)
        return self

    def _open_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = -1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _locked(self) -> "_Flock":
        assert self._fd is not None
        return _Flock(self)

    def _read_tail(self) -> tuple[bytes, int]:
        """The last complete-or-torn stretch of the file (up to 1 MiB) and its offset."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        start = max(0, size - (1 << 20))
        return os.pread(self._fd, size - start, start), start

    def _repair_tail(self) -> dict | None:
        """Drop a torn or unparseable last line (a crash mid-write); learn seq and hash."""
        tail, start = self._read_tail()
        lines = tail.split(b"\n")
        dropped = b""
        # lines[-1] is what follows the last newline: empty on a clean file
        keep_end = len(tail)
        if lines and lines[-1]:
            dropped = lines[-1]
            keep_end -= len(lines[-1])
        lines = lines[:-1]
        while lines:
            record = _parse(lines[-1])
            if record is not None and record.get("hash") == line_hash(record):
                self.last = Entry(int(record["seq"]), record["hash"])
                break
            dropped = lines[-1] + b"\n" + dropped
            keep_end -= len(lines[-1]) + 1
            lines.pop()
        else:
            self.last = self._last_of_rotated()
        if not dropped:
            self._size = start + keep_end
            return None
        os.ftruncate(self._fd, start + keep_end)  # type: ignore[arg-type]
        os.fsync(self._fd)  # type: ignore[arg-type]
        self._size = start + keep_end
        preview = dropped[:120].decode("utf-8", "backslashreplace")
        return {"dropped_bytes": len(dropped), "dropped_preview": preview}

    def _last_of_rotated(self) -> Entry:
        rotated = sorted(self.dir.glob("audit-*.jsonl"))
        if not rotated:
            return Entry(0, GENESIS)
        with open(rotated[-1], "rb") as fh:
            last = None
            for raw in fh:
                last = _parse(raw) or last
        if not last:
            return Entry(0, GENESIS)
        return Entry(int(last["seq"]), last["hash"])

    # -- appending --------------------------------------------------------------------
    def append(self, event: str, **fields: Any) -> Entry:
        """Append one event; durable only after `await flush()`."""
        if self._fd is None:
            self.open()
        record = self.redact({k: v for k, v in fields.items() if v is not None})
        try:
            with self._locked():
                self._follow_other_writers()
                record.update(ts=utcnow_iso(), event=event, seq=self.last.seq + 1, prev=self.last.hash)
                body = canonical(record)
                digest = hashlib.sha256(body).hexdigest()
                data = body[:-1] + b',"hash":"' + digest.encode() + b'"}\n'
                try:
                    written = os.write(self._fd, data)  # type: ignore[arg-type]
                    if written != len(data):
                        raise OSError(28, "short write to the audit log")
                except OSError:
                    os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]  # no torn line
                    raise
                self._size += len(data)
                self.last = Entry(record["seq"], digest)
                if self._size >= self.max_bytes:
                    self._rotate()
            self.writable = True
        except OSError:
            self.writable = False
            raise
        return self.last

    def _follow_other_writers(self) -> None:
        """Another process (the CLI) may have appended or rotated since our last write."""
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            on_disk = None
        ours = os.fstat(self._fd)  # type: ignore[arg-type]
        if on_disk is None or on_disk.st_ino != ours.st_ino:
            self._open_fd()
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # type: ignore[arg-type]
            ours = os.fstat(self._fd)  # type: ignore[arg-type]
        size = ours.st_size
        if size != self._size:
            tail, _ = self._read_tail()
            lines = [ln for ln in tail.split(b"\n") if ln.strip()]
            record = _parse(lines[-1]) if lines else None
            self.last = Entry(int(record["seq"]), record["hash"]) if record else self._last_of_rotated()
            self._size = size

    def _rotate(self) -> None:
        first = _first_seq(self.path)
        target = self.dir / f"audit-{first:012d}.jsonl"
        os.fsync(self._fd)  # type: ignore[arg-type]
        os.rename(self.path, target)
        old = self._fd
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._size = 0
        os.close(old)  # type: ignore[arg-type]

    async def flush(self) -> None:
        """Wait until everything appended so far is on disk (group commit)."""
        try:
            await self.sync.sync([self.path])
        except OSError:
            self.writable = False
            raise

    def flush_now(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)


class _Flock:
    """Exclusive lock on the log's current descriptor (which may change while held)."""

    def __init__(self, log: AuditLog):
        self.log = log

    def __enter__(self) -> None:
        fcntl.flock(self.log._fd, fcntl.LOCK_EX)  # type: ignore[arg-type]

    def __exit__(self, *exc: Any) -> None:
        if self.log._fd is not None:
            fcntl.flock(self.log._fd, fcntl.LOCK_UN)


def _parse(raw: bytes) -> dict | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "seq" in value and "hash" in value else None


def _first_seq(path: Path) -> int:
    with open(path, "rb") as fh:
        record = _parse(fh.readline())
    return int(record["seq"]) if record else 0


# -- verification ---------------------------------------------------------------------

@dataclass
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def verify(logs_dir: Path, sidecars: Iterator[tuple[Path, dict]] = iter(())) -> tuple[int, list[Problem]]:
    """Check the chain line by line, then that every sidecar's outcome line is in it."""
    problems: list[Problem] = []
    seen: dict[int, str] = {}
    prev_hash, prev_seq = None, None
    count = 0
    for path in audit_files(logs_dir):
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                where = f"{path.name}:{lineno}"
                record = _parse(raw)
                if record is None:
                    problems.append(Problem(where, "not a valid audit line"))
                    return count, problems
                if record["hash"] != line_hash(record):
                    problems.append(Problem(where, f"seq {record['seq']}: content does not match its hash (edited)"))
                    return count, problems
                if prev_seq is not None and record["seq"] != prev_seq + 1:
                    problems.append(Problem(where, f"seq {record['seq']} follows seq {prev_seq} "
                                                   "(a line was removed or reordered)"))
                    return count, problems
                if prev_hash is not None and record["prev"] != prev_hash:
                    problems.append(Problem(where, f"seq {record['seq']}: prev does not match the line before"))
                    return count, problems
                if prev_hash is None and record["seq"] == 1 and record["prev"] != GENESIS:
                    problems.append(Problem(where, "the first line does not start the chain"))
                    return count, problems
                prev_hash, prev_seq = record["hash"], record["seq"]
                seen[record["seq"]] = record["hash"]
                count += 1
    for path, meta in sidecars:
        seq, digest = meta.get("audit_seq"), meta.get("audit_hash")
        if seq is None:
            continue
        if seq not in seen:
            problems.append(Problem(str(path), f"its outcome line seq {seq} is missing from the audit log "
                                               f"(the log ends at seq {prev_seq or 0}: truncated?)"))
        elif seen[seq] != digest:
            problems.append(Problem(str(path), f"its outcome line seq {seq} was rewritten"))
    return count, problems
