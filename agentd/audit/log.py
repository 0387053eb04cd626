"""The tamper-evident audit log: append-only JSON lines in a sha256 hash chain, anchored."""
from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import time
from pathlib import Path
from typing import Any, Callable

import structlog

from agentd.audit.anchor import ANCHOR, AnchorError, AnchorStore, signature_problem
from agentd.audit.chain import CURRENT, GENESIS, Entry, canonical, iso_of
from agentd.audit.files import first_record, last_record_of
from agentd.audit.head import last_of_rotated, lost_lines, read_tail
from agentd.audit.redact import Redactor
from agentd.durable.crash import crash_point
from agentd.durable.group import GroupSync

DAY_S = 86400.0
ANCHOR_INTERVAL_S = 0.5  # the anchor is rewritten (and fsynced) at most this often by group commits
PATH_CHECK_S = 1.0  # a current file renamed by hand (no append) is noticed within this


class AuditLog:
    """One writer per process; appends are serialized across processes by flock."""

    def __init__(self, logs_dir: Path, redactor: Redactor | None = None,
                 sync: GroupSync | None = None, max_bytes: int = 64 * 1024 * 1024,
                 keep_days: int = 0, hmac_key: str = "", clock: Any = time.time,
                 crash: Callable[[str], None] = lambda point: None):
        self.dir = logs_dir
        self.path = logs_dir / CURRENT
        self.redact = redactor or Redactor()
        self.sync = sync or GroupSync()
        self.max_bytes = max_bytes
        self.keep_days = keep_days
        self.clock = clock
        self.crash = crash  # agentd.durable.crash_point with the process's config (tests only)
        self.anchor = AnchorStore(logs_dir, hmac_key, fsync=self.sync.enabled)
        self.anchor_error: OSError | None = None
        self._fd: int | None = None
        self._size = -1
        self.last = Entry(0, GENESIS)
        self.writable = True
        self.repaired: dict | None = None
        self.suspect: list[str] = []  # what start-up found that only tampering explains
        self.warnings: list[str] = []  # what start-up found that must be said, not a proof of tampering
        self._expected: Entry | None = None  # the anchor's head, until the first write checked the files
        self._knower = "the anchor"
        self.signing = ""  # the anchor was unsigned and a key is set: why it is signed from this start on
        self._anchored_at = -ANCHOR_INTERVAL_S
        self._catch_up: asyncio.TimerHandle | None = None
        self._staged: list[dict[str, Any]] = []
        self._path_checked_at = float("-inf")
        self.sync.after_sync(self.path, self._anchor_head, self._advance_anchor)

    # -- opening and repair ---------------------------------------------------------
    def open(self) -> "AuditLog":
        """Open the current file, repair a torn last line, and compare what it holds with the anchor.

        Lines the anchor had reached but the file no longer holds are never passed over in
        silence: the next line written is an `audit_gap` naming them (see `_gap_lines`)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._open_fd()
        with self._locked():
            self._hold_current()
            self.repaired = self._repair_tail()
            created = self._check_anchor()
        unaudited = list(self.suspect)
        self._write([])  # with the anchor ahead of the file: the gap line, before anything else
        if self.repaired:
            self.append("audit_repaired", **self.repaired)
        if created is not None:
            self.append("audit_anchor_created", covers_from_seq=created, note=(
                "no anchor was found while the log held lines: lines before this one are anchored "
                "only from here on"))
        if self.signing:
            self.append("audit_anchor_signed", note=self.signing)
        for problem in unaudited:
            self.append("audit_tamper_suspected", problem=problem)
        for warning in self.warnings:  # said here: a warning is not a problem the caller reports
            structlog.get_logger("agentd.audit").warning("audit_warning", problem=warning)
        if self.repaired or created is not None or self.suspect or self.signing:
            self.flush_now()
        self.apply_retention()
        return self

    def _open_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = -1  # read again before the next write

    def close(self) -> None:
        if self._staged and self._fd is not None:
            self.write_staged()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _locked(self) -> "_Flock":
        assert self._fd is not None
        return _Flock(self)

    def _repair_tail(self) -> dict | None:
        """Drop a torn (unterminated) last line, a crash mid-write, and nothing else (see head.read_tail)."""
        size = os.fstat(self._fd).st_size  # type: ignore[arg-type]
        tail = read_tail(self._fd, size, self.dir)  # type: ignore[arg-type]
        self._size, self.last = tail.keep, tail.last
        if tail.problem:
            self.suspect.append(tail.problem)
        if not tail.torn:
            return None
        os.ftruncate(self._fd, tail.keep)  # type: ignore[arg-type]
        os.fsync(self._fd)  # type: ignore[arg-type]
        preview = tail.torn[:120].decode("utf-8", "backslashreplace")
        return {"dropped_bytes": size - tail.keep, "dropped_preview": preview}

    def _check_anchor(self) -> int | None:
        """Create a missing anchor (returns the seq it starts covering) or take its head as expected."""
        try:
            anchor, raw = self.anchor.load()
        except AnchorError as exc:
            self.suspect.append(str(exc))
            return None
        if anchor is None:
            return self._create_anchor()
        problem = signature_problem(raw or {}, self.anchor.key)
        if problem and "hmac" not in (raw or {}):  # signed from now on: said, and verify with the key fails
            self.signing = (f"{ANCHOR} was not signed: it is signed with AUDIT_HMAC_KEY from here on "
                            "(the key newly set, or a signed anchor replaced by an unsigned one)")
            self.warnings.append(self.signing)
        elif problem:
            self.suspect.append(f"{ANCHOR}: {problem}")
        if anchor.head_seq > 0:
            self._expected, self._knower = Entry(anchor.head_seq, anchor.head_hash), "the anchor"  # see _write
        return None

    def _create_anchor(self) -> int | None:
        """A first anchor; over a log that already has lines it is said loudly (with a key: tampering)."""
        fresh = self.anchor.create(self.last)
        if self.last.seq == 0:
            return None
        missing = (f"{ANCHOR} was missing while the log held lines up to seq {self.last.seq} "
                   "(removed?): a new anchor covers them only from here on")
        if self.anchor.key:
            self.suspect.append(missing + "; with AUDIT_HMAC_KEY set an anchor existed, so it was removed")
        else:
            self.warnings.append(missing)
        if fresh.first_seq != 1 or fresh.first_prev != GENESIS:
            self.suspect.append(f"the log starts at seq {fresh.first_seq}, not at the chain's start, and no "
                                "anchor says why: lines were removed at the start")
        return fresh.first_seq

    # -- appending --------------------------------------------------------------------
    def append(self, event: str, redacted: dict[str, Any] | None = None, **fields: Any) -> Entry:
        """Append one event (after the lines staged before it); durable only after `await flush()`.

        `redacted`: fields already scrubbed by the caller's redactor (a sidecar), kept as they are."""
        record = self._record(event, fields, redacted)
        self._write([*self._staged, record])
        self._staged = []
        return self.last

    def stage(self, event: str, **fields: Any) -> None:
        """An event written with the next append or flush, whichever comes first, in one write.

        For lines that need not be on disk at once (a step's end): a crash may lose them
        unless `write_staged()` is called before anything that can take long."""
        self._staged.append(self._record(event, fields, None))

    def write_staged(self) -> None:
        if self._staged:
            self._write(self._staged)
            self._staged = []

    def _record(self, event: str, fields: dict[str, Any], redacted: dict[str, Any] | None) -> dict[str, Any]:
        record = self.redact({k: v for k, v in fields.items() if v is not None})
        if redacted:
            record.update(redacted)
        record.update(ts=iso_of(self.clock()), event=event)
        return record

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._fd is None:
            self.open()
        try:
            with self._locked():
                records = self._follow_other_writers() + records
                if not records:
                    return
                chunks, last = [], self.last
                for record in records:
                    record.update(seq=_next_seq(record, last), prev=last.hash)
                    body = canonical(record)
                    digest = hashlib.sha256(body).hexdigest()
                    chunks.append(body[:-1] + b',"hash":"' + digest.encode() + b'"}\n')
                    last = Entry(record["seq"], digest)
                data = b"".join(chunks)
                try:
                    written = os.write(self._fd, data)  # type: ignore[arg-type]
                    if written != len(data):
                        raise OSError(28, "short write to the audit log")
                except OSError:
                    os.ftruncate(self._fd, self._size)  # type: ignore[arg-type]  # no torn line
                    raise
                self._size += len(data)
                self.last, self._expected = last, None  # what was expected is written down now
                if self._size >= self.max_bytes:
                    self._rotate()
            self.writable = True
        except OSError:
            self.writable = False
            raise

    def _hold_current(self) -> os.stat_result:
        """With our lock held: make sure our descriptor is the current file, not one rotated away.

        Another process may rotate while we wait for the lock of the file we opened: then
        we hold the lock of a rotated file, so we open the current one and wait again.
        """
        while True:
            try:
                on_disk = os.stat(self.path)
            except FileNotFoundError:
                on_disk = None
            ours = os.fstat(self._fd)  # type: ignore[arg-type]
            if on_disk is not None and on_disk.st_ino == ours.st_ino:
                return ours
            self._open_fd()
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # type: ignore[arg-type]

    def _follow_other_writers(self) -> list[dict[str, Any]]:
        """Another process (the CLI) may have appended or rotated since our last write.

        A writer that rotates appends first, so a file still of the size we left it, still
        linked, was not rotated by anyone: the path is looked at again only once a second.
        Returns the lines that must go first when the file no longer holds what we (or, at
        start-up, the anchor) last knew: an `audit_gap` or an `audit_tamper_suspected`.
        """
        expected, knower = (self._expected, self._knower) if self._expected else (self.last, "this writer")
        ours = os.fstat(self._fd)  # type: ignore[arg-type]
        now = time.monotonic()
        if (expected == self.last and ours.st_size == self._size and ours.st_nlink
                and now - self._path_checked_at < PATH_CHECK_S):
            return []
        self._path_checked_at = now
        size = self._hold_current().st_size  # a file opened anew has _size -1: read again
        if size != self._size:
            record = last_record_of(self._fd, size)  # type: ignore[arg-type]
            self.last = Entry(int(record["seq"]), record["hash"]) if record else last_of_rotated(self.dir)
            self._size = size
        return self._gap_lines(expected, knower)

    def _gap_lines(self, expected: Entry, knower: str) -> list[dict[str, Any]]:
        """The line to write first when the files no longer hold `expected` (see head.lost_lines)."""
        lost = lost_lines(self.last, expected, knower, self.dir)
        if lost is None:
            self._expected = None  # the files hold it
            return []
        event, fields = lost
        self.suspect.append(fields["problem"])  # at start-up the daemon logs these; later they are logged here
        if knower == "this writer":
            structlog.get_logger("agentd.audit").error("audit_tamper_suspected", problem=fields["problem"])
        self._expected, self._knower = expected, knower  # found again by the next write if this one fails
        return [self._record(event, fields, None)]

    def _rotate(self) -> None:
        first = first_record(self.path)
        if first is None:
            return  # nothing (or no valid line) to start a rotated file with
        target = self.dir / f"audit-{int(first['seq']):012d}.jsonl"
        os.fsync(self._fd)  # type: ignore[arg-type]
        os.rename(self.path, target)
        self.crash("after_audit_rotate")  # no live file until the next open: start opens one
        old = self._fd
        self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._size = 0
        os.close(old)  # type: ignore[arg-type]
        self.apply_retention()

    # -- durability and the anchor ------------------------------------------------------
    async def flush(self) -> None:
        """Wait until everything appended so far is on disk (group commit; the anchor follows)."""
        self.write_staged()
        try:
            await self.sync.sync([self.path])
        except OSError:
            self.writable = False
            raise
        if not self.sync.enabled:
            self._advance_anchor(self.last)  # no fsync rounds to follow: move it here

    def flush_now(self) -> None:
        self.write_staged()
        if self._fd is not None:
            if self.sync.enabled:
                os.fsync(self._fd)
            self._advance_anchor(self.last)

    def _anchor_head(self) -> Entry | None:
        """On the loop, before a group commit's fsyncs: the head to anchor after them, if it is time.

        Between two anchor writes, the lines appended are caught up by one more round
        ANCHOR_INTERVAL_S later, so the anchor never lags the log by much more than that.
        """
        now = time.monotonic()
        if now - self._anchored_at < ANCHOR_INTERVAL_S:
            if self._catch_up is None:
                self._catch_up = asyncio.get_running_loop().call_later(ANCHOR_INTERVAL_S, self._catch_up_round)
            return None
        self._anchored_at = now
        return self.last

    def _catch_up_round(self) -> None:
        self._catch_up = None
        task = asyncio.ensure_future(self.sync.sync([self.path]))
        task.add_done_callback(_consume)  # a failed fsync is reported by the next real flush

    def _advance_anchor(self, head: Entry | None) -> None:
        """After `head` is on disk (called in the group commit's thread); never raises."""
        if head is None:
            return
        try:
            self.anchor.advance(head)
            self.anchor_error = None
        except (OSError, AnchorError, ValueError) as exc:  # the next round tries again
            self.anchor_error = exc if isinstance(exc, OSError) else OSError(str(exc))

    def apply_retention(self, now: float | None = None) -> list[str]:
        """Remove rotated files older than keep_days (0: keep all); the anchor moves first."""
        if self.keep_days <= 0:
            return []
        cutoff = iso_of((self.clock() if now is None else now) - self.keep_days * DAY_S)
        try:
            return self.anchor.retire(cutoff)
        except AnchorError as exc:
            self.suspect.append(str(exc))
            return []


def _next_seq(record: dict[str, Any], last: Entry) -> int:
    """The line after `last`; an `audit_gap` is numbered after the lines it says were lost."""
    if record.get("event") == "audit_gap":
        return int(record["lost_through_seq"]) + 1
    return last.seq + 1


def _consume(task: "asyncio.Future[None]") -> None:
    if not task.cancelled():
        task.exception()


class _Flock:
    """Exclusive lock on the log's current descriptor (which may change while held)."""

    def __init__(self, log: AuditLog):
        self.log = log

    def __enter__(self) -> None:
        fcntl.flock(self.log._fd, fcntl.LOCK_EX)  # type: ignore[arg-type]

    def __exit__(self, *exc: Any) -> None:
        if self.log._fd is not None:
            fcntl.flock(self.log._fd, fcntl.LOCK_UN)


def open_for(config: Any, redactor: Redactor | None = None, sync: GroupSync | None = None) -> AuditLog:
    """The audit log of a Config (logs_dir, audit_max_bytes, audit_keep_days, audit_hmac_key), opened."""
    config.logs_dir.mkdir(parents=True, exist_ok=True)
    return AuditLog(config.logs_dir, redactor or Redactor(config.secrets), sync, config.audit_max_bytes,
                    keep_days=config.audit_keep_days, hmac_key=config.audit_hmac_key,
                    crash=lambda point: crash_point(config, point)).open()
