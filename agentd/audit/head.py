"""The log's head as the files hold it, and what to write when they no longer hold what was known.

What was known is the anchor's head at start-up, or a writer's own last line while it runs. Lines
cut off (the head found below it) are never passed over: the line to write is an `audit_gap`,
chained to the line the file now ends with but numbered after the lost ones, so no seq is used twice
and verify names the range. The line at the known seq changed: `audit_tamper_suspected`.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Iterator

from agentd.audit.chain import CURRENT, GENESIS, Entry, intact, parse_line
from agentd.audit.files import find_line, last_record, lines_backwards, rotated_files


@dataclass
class Tail:
    """The current file's end: where its complete lines end, a torn piece after them, the head."""

    keep: int  # bytes of complete lines (the file's size when nothing is torn)
    torn: bytes
    last: Entry
    problem: str | None  # the last complete line was edited after it was written


def read_tail(fd: int, size: int, logs_dir: Path) -> Tail:
    """Read backwards only as far as the last parseable line, however long it is.

    A complete last line that does not parse or match its hash was written whole and changed
    since: it stays the head candidate (the evidence is kept) and is reported."""
    lines = lines_backwards(fd, size)
    first = next(lines, None)
    torn = first[1] if first is not None and not first[2] else b""
    keep = first[0] if torn else size
    complete = (raw for _, raw, _ in (lines if torn or first is None else chain([first], lines)))
    last, problem = _last_entry(complete, logs_dir)
    return Tail(keep, torn, last, problem)


def _last_entry(lines: Iterator[bytes], logs_dir: Path) -> tuple[Entry, str | None]:
    last = next(lines, None)
    if last is None:
        return last_of_rotated(logs_dir), None
    record, problem = parse_line(last), None
    if not intact(record):
        problem = f"the last complete line of {CURRENT} does not match its hash (edited after it was written); kept"
    if record is None:
        record = next((r for r in map(parse_line, lines) if r is not None), None)
    return (Entry(int(record["seq"]), str(record["hash"])) if record else last_of_rotated(logs_dir)), problem


def last_of_rotated(logs_dir: Path) -> Entry:
    rotated = rotated_files(logs_dir)
    last = last_record(rotated[-1]) if rotated else None
    return Entry(int(last["seq"]), last["hash"]) if last else Entry(0, GENESIS)


def lost_lines(found: Entry, expected: Entry, knower: str, logs_dir: Path) -> tuple[str, dict[str, Any]] | None:
    """(event, fields) of the line to write first when the files no longer hold `expected`; None: they do.

    `found` is the head the files hold now; `knower` says who knew `expected` ("the anchor")."""
    if found.seq < expected.seq:
        problem = (f"the log ended at seq {found.seq} but {knower} had seen it reach seq {expected.seq}: lines "
                   f"{found.seq + 1} to {expected.seq} were removed (the tail cut, or the file replaced)")
        return "audit_gap", {"after_seq": found.seq, "lost_from_seq": found.seq + 1,
                             "lost_through_seq": expected.seq, "expected_hash": expected.hash, "problem": problem}
    if found.seq == expected.seq:
        changed = found.hash != expected.hash
    else:
        line = find_line(logs_dir, expected.seq) if expected.seq else None
        declared = line is not None and line.get("event") == "audit_gap" and line["seq"] != expected.seq
        changed = expected.seq > 0 and not declared and (line is None or line["hash"] != expected.hash)
    if not changed:
        return None
    return "audit_tamper_suspected", {"problem": f"seq {expected.seq} is not the line {knower} had seen as seq "
                                                f"{expected.seq} (rewritten, or the file replaced)"}
