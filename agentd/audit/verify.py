"""`agentd audit verify`: the chain, its anchor and the sidecars, read as one consistent snapshot.

A running daemon keeps appending, rotating and (with retention) removing files while this
reads. The snapshot is taken so that it cannot look broken for that: sidecars are read
first (their lines were appended before them), then the anchor, then every file is opened
before any is read (an open file survives its removal), and the current file is read only
up to its size at that moment. When retention moved the anchor meanwhile, it is read again.

The one seq jump the chain allows is an `audit_gap` line's (agentd found lines missing and wrote
that down); it is still a problem, as is every `audit_tamper_suspected` line: verify never
passes a log that was cut, however well agentd carried on after it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from agentd.audit.anchor import Anchor, AnchorError, from_raw, read_raw, signature_problem
from agentd.audit.chain import CURRENT, GENESIS, intact, parse_line
from agentd.audit.files import rotated_files

ATTEMPTS = 3


@dataclass
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class Report:
    count: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    """What one pass over the chain learned."""

    count: int = 0
    first: dict | None = None
    last_seq: int = 0
    wanted: dict[int, str] = field(default_factory=dict)  # seq -> its hash, for the seqs asked about
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    broken: bool = False  # the chain itself broke (the scan stopped there)
    keyed: bool = False  # AUDIT_HMAC_KEY is set: an anchor recreated over lines is a problem


def verify(logs_dir: Path, sidecars: Iterable[tuple[Path, dict]] = (), hmac_key: str = "") -> tuple[int, list[Problem]]:
    report = verify_report(logs_dir, sidecars, hmac_key)
    return report.count, report.problems


def verify_report(logs_dir: Path, sidecars: Iterable[tuple[Path, dict]] = (), hmac_key: str = "") -> Report:
    refs = [(path, meta.get("audit_seq"), meta.get("audit_hash")) for path, meta in sidecars
            if meta.get("audit_seq") is not None]
    for _ in range(ATTEMPTS):
        report, anchor_raw = _verify_once(logs_dir, refs, hmac_key)
        if not report.problems or _safe_raw(logs_dir) == anchor_raw:
            return report
    return report  # the anchor kept moving: report what the last snapshot showed


def _safe_raw(logs_dir: Path) -> dict | None:
    try:
        return read_raw(logs_dir)
    except AnchorError:
        return None


def _verify_once(logs_dir: Path, refs: list, key: str) -> tuple[Report, dict | None]:
    report = Report()
    try:
        raw = read_raw(logs_dir)
    except AnchorError as exc:
        raw = None
        report.problems.append(Problem("audit.anchor.json", str(exc)))
    anchor = from_raw(raw) if raw is not None else None
    files = _open_snapshot(logs_dir)
    try:
        wanted = {int(seq) for _, seq, _ in refs} | ({anchor.head_seq} if anchor else set())
        scan = _scan(files, anchor, wanted, keyed=bool(key))
    finally:
        for _, fh, _ in files:
            fh.close()
    report.count, report.notes = scan.count, scan.notes
    report.problems = scan.problems + report.problems
    if raw is not None:
        problem = signature_problem(raw, key)
        if problem:
            report.problems.append(Problem("audit.anchor.json", problem))
        elif not key and "hmac" in raw:
            report.notes.append("the anchor is signed: set AUDIT_HMAC_KEY to check its signature")
    report.problems += _anchor_problems(anchor, scan, {name for name, _, _ in files})
    report.problems += _sidecar_problems(refs, scan, anchor)
    return report, raw


def _open_snapshot(logs_dir: Path) -> list[tuple[str, BinaryIO, int]]:
    """(name, open file, bytes to read; -1 for all) in chain order, opened before any is read."""
    opened: list[tuple[str, BinaryIO, int]] = []
    current: BinaryIO | None = None
    try:
        current = open(logs_dir / CURRENT, "rb")
    except FileNotFoundError:
        current = None
    current_size = os.fstat(current.fileno()).st_size if current else 0
    current_ino = os.fstat(current.fileno()).st_ino if current else None
    for path in rotated_files(logs_dir):
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            continue  # removed by retention since the listing: the anchor says so
        if os.fstat(fh.fileno()).st_ino == current_ino and current is not None:
            current.close()  # rotated since we opened it: read it where it is now, whole
            current = None
        opened.append((path.name, fh, -1))
    if current is not None:
        opened.append((CURRENT, current, current_size))
    return opened


def _lines(fh: BinaryIO, limit: int) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, line without newline, terminated) up to `limit` bytes (-1: the whole file)."""
    read = 0
    for lineno, raw in enumerate(fh, 1):
        if limit >= 0 and read + len(raw) > limit:
            raw = raw[: limit - read]
            if raw:
                yield lineno, raw, False
            return
        read += len(raw)
        yield lineno, raw.rstrip(b"\n"), raw.endswith(b"\n")


def _scan(files: list[tuple[str, BinaryIO, int]], anchor: Anchor | None, wanted: set[int],
          keyed: bool = False) -> _Scan:
    scan = _Scan(keyed=keyed)
    prev_hash, prev_seq = None, None
    skip_through = anchor.retired_through if anchor else 0
    for name, fh, limit in files:
        for lineno, raw, terminated in _lines(fh, limit):
            where = f"{name}:{lineno}"
            record = parse_line(raw)
            if not terminated and name == CURRENT:
                scan.notes.append(f"{where}: an unterminated last line (being written, or torn by a "
                                  "crash: start-up drops it)")
                break
            if record is None:
                scan.problems.append(Problem(where, "not a valid audit line"))
                scan.broken = True
                return scan
            seq = int(record["seq"])
            if prev_seq is None and seq <= skip_through:
                continue  # left by a retention that was interrupted before it removed the file
            problem = _link_problem(record, prev_seq, prev_hash)
            if problem:
                scan.problems.append(Problem(where, problem))
                scan.broken = True
                return scan
            if scan.first is None:
                scan.first = record
            _note_event(scan, record, where)
            if seq in wanted:
                scan.wanted[seq] = record["hash"]
            prev_hash, prev_seq = record["hash"], seq
            scan.count += 1
    scan.last_seq = prev_seq or 0
    return scan


def _link_problem(record: dict, prev_seq: int | None, prev_hash: str | None) -> str | None:
    seq = record["seq"]
    if not intact(record):
        return f"seq {seq}: content does not match its hash (edited)"
    if prev_seq is not None and seq != prev_seq + 1 and not _declared_gap(record, prev_seq):
        return f"seq {seq} follows seq {prev_seq} (a line was removed or reordered)"
    if prev_hash is not None and record["prev"] != prev_hash:
        return f"seq {seq}: prev does not match the line before"
    return None


def _declared_gap(record: dict, prev_seq: int) -> bool:
    """An `audit_gap` line numbers itself after the lines it says were lost: its seq may jump."""
    return (record.get("event") == "audit_gap" and record.get("after_seq") == prev_seq
            and int(record["seq"]) > prev_seq)


def _note_event(scan: _Scan, record: dict, where: str) -> None:
    event = record.get("event")
    if event == "audit_tamper_suspected":
        scan.problems.append(Problem(where, f"agentd found the log tampered with: {record.get('problem')}"))
    elif event == "audit_gap":
        scan.problems.append(Problem(where, f"a gap in the chain: {record.get('problem')}"))
    elif event == "audit_anchor_created" and record["seq"] > 1:
        _keyed_warning(scan, where, f"the anchor was missing and created anew at seq {record['seq']} over an "
                                    "existing log: removed, or the first start of a version without one")
    elif event == "audit_anchor_signed":
        _keyed_warning(scan, where, f"the anchor was unsigned until seq {record['seq']}: AUDIT_HMAC_KEY newly "
                                    "set, or a signed anchor replaced by an unsigned one")


def _keyed_warning(scan: _Scan, where: str, what: str) -> None:
    """What a key would have prevented: a problem when verifying with AUDIT_HMAC_KEY, else a warning."""
    if scan.keyed:
        scan.problems.append(Problem(where, what))
    else:
        scan.notes.append(f"WARNING: {where}: {what} (verified with AUDIT_HMAC_KEY this is a problem)")


def _anchor_problems(anchor: Anchor | None, scan: _Scan, present: set[str]) -> list[Problem]:
    if scan.broken and "removed or reordered" not in scan.problems[-1].what:
        return []  # the chain broke early: what follows would only repeat it
    if anchor is None:
        if scan.first is None:
            return []
        problems = [Problem("audit.anchor.json", "missing (removed?): the log's start and tail cannot be checked")]
        if scan.first["seq"] != 1 or scan.first["prev"] != GENESIS:
            problems.append(Problem("audit log", f"it starts at seq {scan.first['seq']}, not at the chain's start"))
        return problems
    problems = [Problem(name, f"seq {info['first_seq']} to {info['last_seq']}: the file is missing (removed)")
                for name, info in sorted(anchor.files.items())
                if name not in present and int(info["last_seq"]) > anchor.retired_through]
    first = scan.first
    if first is None or first["seq"] != anchor.first_seq or first["prev"] != anchor.first_prev:
        starts = f"seq {first['seq']}" if first else "nothing"
        problems.append(Problem("audit log", f"it starts at {starts} but the anchor says seq {anchor.first_seq}: "
                                             "lines were removed at the start"))
    if scan.last_seq < anchor.head_seq and not scan.broken:
        problems.append(Problem("audit log", f"it ends at seq {scan.last_seq} but the anchor says it reached "
                                             f"seq {anchor.head_seq}: lines were removed at the tail"))
    elif anchor.head_seq in scan.wanted and scan.wanted[anchor.head_seq] != anchor.head_hash:
        problems.append(Problem("audit log", f"seq {anchor.head_seq} is not the line the anchor recorded (rewritten)"))
    return problems


def _sidecar_problems(refs: list, scan: _Scan, anchor: Anchor | None) -> list[Problem]:
    problems = []
    retired = anchor.retired_through if anchor else 0
    for path, seq, digest in refs:
        seq = int(seq)
        if seq <= retired:
            continue  # its line went with a rotated file that retention removed
        if seq not in scan.wanted:
            problems.append(Problem(str(path), f"its outcome line seq {seq} is missing from the audit log "
                                               f"(the log ends at seq {scan.last_seq}: truncated?)"))
        elif scan.wanted[seq] != digest:
            problems.append(Problem(str(path), f"its outcome line seq {seq} was rewritten"))
    return problems
