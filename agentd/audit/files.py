"""Reading the audit files: the chain's order, and only the files that can hold what is asked."""
from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

from agentd.audit.chain import CURRENT, ROTATED_GLOB, iso_of, parse_line

TAIL_BYTES = 64 * 1024
MAX_STEP_BYTES = 16 * 1024 * 1024
BISECT_STOP_BYTES = 64 * 1024


def rotated_files(logs_dir: Path) -> list[Path]:
    """audit-<first seq>.jsonl, oldest first (the zero-padded seq sorts as text)."""
    return sorted(logs_dir.glob(ROTATED_GLOB))


def audit_files(logs_dir: Path) -> list[Path]:
    """Rotated files in chain order, then the current one."""
    current = logs_dir / CURRENT
    return rotated_files(logs_dir) + ([current] if current.exists() else [])


def first_record(path: Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            return parse_line(fh.readline())
    except FileNotFoundError:
        return None


def last_record(path: Path) -> dict | None:
    """The last parseable line, read from the end of the file (not the whole file), of any length."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        return last_record_of(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def last_record_of(fd: int, end: int) -> dict | None:
    for _, raw, _ in lines_backwards(fd, end):
        record = parse_line(raw) if raw.strip() else None
        if record is not None:
            return record
    return None


def lines_backwards(fd: int, end: int) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, line without its newline, terminated) from byte `end` back to the file's start.

    Reads backwards in doubling steps with no bound on a line's length (a line of 5 MiB is
    read whole), and only as far back as the caller keeps iterating. Empty lines are skipped.
    """
    pos, buf, hi, step = end, b"", 0, TAIL_BYTES
    terminated = False  # the piece after the file's last newline has none
    while True:
        cut = buf.rfind(b"\n", 0, hi)
        if cut >= 0:
            if cut + 1 < hi:
                yield pos + cut + 1, buf[cut + 1:hi], terminated
            hi, terminated = cut, True
            continue
        if pos == 0:
            if hi:
                yield 0, buf[:hi], terminated
            return
        start = max(0, pos - step)
        chunk = os.pread(fd, pos - start, start)
        if len(chunk) != pos - start:
            return  # the file shrank under us: what follows would be misplaced
        buf, hi = chunk + buf[:hi], len(chunk) + hi
        pos, step = start, min(step * 2, MAX_STEP_BYTES)


def find_line(logs_dir: Path, seq: int) -> dict | None:
    """The record with this seq, looked for from the end of the newest file back (None: not there).

    An `audit_gap` line whose lost range holds `seq` is returned for it: the loss was written
    down already. Stops at the first record below `seq`: the cost is the lines written after it."""
    for path in reversed(audit_files(logs_dir)):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            for _, raw, _ in lines_backwards(fd, os.fstat(fd).st_size):
                record = parse_line(raw)
                if record is None:
                    continue
                if int(record["seq"]) == seq or _declares_lost(record, seq):
                    return record
                if int(record["seq"]) < seq:
                    return None
        finally:
            os.close(fd)
    return None


def _declares_lost(record: dict, seq: int) -> bool:
    return record.get("event") == "audit_gap" and record.get("lost_from_seq", 0) <= seq <= record.get(
        "lost_through_seq", -1)


def _records(path: Path, seq: int = 0, cutoff: str = "") -> Iterator[dict]:
    """The file's records; with seq or cutoff, from about the first wanted line on (a bisection)."""
    with open(path, "rb") as fh:
        if seq or cutoff:
            fh.seek(_start_offset(fh, seq, cutoff))
        for raw in fh:
            record = parse_line(raw)
            if record is not None:
                yield record


def _start_offset(fh: BinaryIO, seq: int, cutoff: str) -> int:
    """A line start at or before the first line with seq above `seq` and ts at or after `cutoff`.

    Lines are in seq order and (up to a stepped clock, which the cutoff's margin covers) in
    ts order, so the unwanted lines are a prefix and a bisection over byte offsets finds its end.
    """
    lo, hi = 0, os.fstat(fh.fileno()).st_size
    while hi - lo > BISECT_STOP_BYTES:
        mid = (lo + hi) // 2
        fh.seek(mid)
        fh.readline()  # the rest of the line mid fell into
        record = parse_line(fh.readline())
        if record is None:
            break
        if int(record["seq"]) <= seq or str(record.get("ts", "")) < cutoff:
            lo = mid
        else:
            hi = mid
    if lo:
        fh.seek(lo)
        fh.readline()
        return fh.tell()
    return 0


def iter_records(logs_dir: Path) -> Iterator[dict]:
    """Every parseable record across rotated and current files, oldest first."""
    for path in audit_files(logs_dir):
        yield from _records(path)


def iter_records_after(logs_dir: Path, seq: int) -> Iterator[dict]:
    """Records with a seq above `seq`, reading only the files that can hold them."""
    return iter_records_since(logs_dir, seq=seq)


def iter_records_since(logs_dir: Path, ts: str = "", seq: int = 0, margin_s: float = 3600.0) -> Iterator[dict]:
    """Records with seq above `seq` and ts at or after `ts` less `margin_s`, oldest first.

    A rotated file is opened only if it can hold such a record: its first line is read
    to learn its seq range, its last line (read from the end) to learn its time range.
    `margin_s` allows for a wall clock that stepped back while the log was written.
    """
    cutoff = _minus(ts, margin_s) if ts else ""
    files = audit_files(logs_dir)
    wanted: list[Path] = []
    for index, path in enumerate(files):
        following = files[index + 1] if index + 1 < len(files) else None
        if following is not None and seq:
            nxt = first_record(following)
            if nxt is not None and int(nxt["seq"]) <= seq + 1:
                continue  # every line of this file is at or below seq
        if following is not None and cutoff:
            last = last_record(path)
            if last is not None and str(last.get("ts", "")) < cutoff:
                continue  # every line of this file is older than ts
        wanted.append(path)
    for path in wanted:
        for record in _records(path, seq, cutoff):
            if int(record["seq"]) > seq and (not cutoff or str(record.get("ts", "")) >= cutoff):
                yield record


def _minus(ts: str, seconds: float) -> str:
    try:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ""
    return iso_of(moment.timestamp() - seconds)
