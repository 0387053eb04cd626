"""The log's head (agentd/audit/head.py): found however long its last line, and lines cut off or
changed under a writer written down (`audit_gap`, `audit_tamper_suspected`), never carried over."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentd.audit import AuditLog, iter_records, verify
from tests.audit.support import lines_of, make_log
from tests.fullfs import fill, small_disk  # noqa: F401  (small_disk: the fixture)

_log, _lines = make_log, lines_of


def test_a_last_line_over_a_mebibyte_is_the_head_at_the_next_open(tmp_path: Path) -> None:
    # Given a log whose last line is 3 MiB long (longer than any fixed tail read)
    log = _log(tmp_path, lines=3)
    big = log.append("outcome", result={"text": "y" * (3 << 20)})
    log.flush_now()
    log.close()
    # When it is opened again and written to
    reopened = AuditLog(tmp_path / "logs").open()
    entry = reopened.append("startup")
    reopened.flush_now()
    # Then the chain goes on from the long line: no repair, no alarm, the next seq, verify clean
    assert reopened.repaired is None and reopened.suspect == [] and reopened.warnings == []
    assert entry.seq == big.seq + 1 == 5
    assert verify(reopened.dir) == (5, [])


def test_a_torn_line_after_a_long_line_is_dropped_and_the_long_line_kept(tmp_path: Path) -> None:
    log = _log(tmp_path, lines=2)
    big = log.append("note", text="z" * (2 << 20))
    log.flush_now()
    log.close()
    with open(log.path, "ab") as fh:
        fh.write(b'{"event":"llm_call","seq":4,' + b"q" * 100_000)  # torn, with no newline in 100 kB
    reopened = AuditLog(tmp_path / "logs").open()
    assert reopened.repaired is not None and reopened.repaired["dropped_bytes"] == 100_028
    assert reopened.suspect == []
    assert [r["seq"] for r in iter_records(reopened.dir)] == [1, 2, big.seq, 4] and big.seq == 3
    assert verify(reopened.dir)[1] == []


def test_a_tail_cut_under_an_open_writer_is_written_down_as_a_gap(tmp_path: Path) -> None:
    # Given an open log with 6 lines
    log = _log(tmp_path, lines=6)
    # When its last 2 lines are cut off the live file and the writer appends
    log.path.write_text("".join(_lines(log.path)[:-2]))
    entry = log.append("llm_call", n=7)
    log.flush_now()
    # Then the first line written names the gap; seqs 5 and 6 are never used again
    records = list(iter_records(log.dir))
    assert [(r["seq"], r["event"]) for r in records[-2:]] == [(7, "audit_gap"), (8, "llm_call")]
    assert records[-2]["prev"] == records[-3]["hash"] and entry.seq == 8
    _, problems = verify(log.dir)
    assert problems[0].where == "audit.jsonl:5" and "lines 5 to 6 were removed" in problems[0].what


def test_a_live_file_replaced_by_a_longer_forged_one_is_suspected(tmp_path: Path) -> None:
    # Given an open log, and a forged file with more lines (a new chain, seq 1..12) put in its place
    log = _log(tmp_path, lines=6)
    forged_dir = tmp_path / "forged"
    _log(forged_dir, lines=12).close()
    (forged_dir / "logs" / "audit.jsonl").replace(log.path)
    # When the writer appends
    log.append("llm_call", n=7)
    # Then it does not take the forged file for its own chain without saying so
    events = [r["event"] for r in iter_records(log.dir)]
    assert events[-2:] == ["audit_tamper_suspected", "llm_call"]
    assert "seq 6 is not the line this writer had seen" in list(iter_records(log.dir))[-2]["problem"]
    assert verify(log.dir)[1]


def test_a_rewritten_anchored_line_below_newer_lines_is_suspected_at_start_up(tmp_path: Path) -> None:
    # Given a log anchored at seq 6 and two lines appended after (a crash before the anchor moved)
    from agentd.audit import line_hash
    log = _log(tmp_path, lines=6)
    log.close()
    lines = _lines(log.path)
    record = json.loads(lines[5])
    record["cost_usd"] = 0.0
    record["hash"] = line_hash(record)  # rehashed: only the anchor can tell
    forged = [json.dumps(record) + "\n"]
    prev = record["hash"]
    for seq in (7, 8):
        extra = {"event": "llm_call", "seq": seq, "prev": prev, "ts": record["ts"]}
        extra["hash"] = line_hash(extra)
        prev = extra["hash"]
        forged.append(json.dumps(extra) + "\n")
    log.path.write_text("".join(lines[:5] + forged))
    # When it is opened again
    reopened = AuditLog(tmp_path / "logs").open()
    # Then start-up finds the anchored line is not the one it anchored, and audits it
    assert any("seq 6 is not the line the anchor had seen" in p for p in reopened.suspect)
    assert [r["event"] for r in iter_records(reopened.dir)][-1] == "audit_tamper_suspected"


def test_a_gap_written_before_a_crash_is_not_reported_again_at_the_next_start(tmp_path: Path) -> None:
    # Given a cut tail, found and written down by one start, whose anchor never moved past it (a kill)
    log = _log(tmp_path, lines=6)
    log.close()
    log.path.write_text("".join(_lines(log.path)[:-2]))
    anchor = log.dir / "audit.anchor.json"
    stale = anchor.read_bytes()
    first = AuditLog(log.dir).open()
    first.close()
    anchor.write_bytes(stale)
    # When agentd starts again
    again = AuditLog(log.dir).open()
    # Then the gap stays the one line that says so, and nothing new is suspected
    assert again.suspect == []
    assert [r["event"] for r in iter_records(log.dir)].count("audit_gap") == 1
    assert [r["event"] for r in iter_records(log.dir)].count("audit_tamper_suspected") == 0


def test_a_gap_line_that_hits_a_full_disk_is_written_by_the_next_append(small_disk: Path) -> None:
    # Given an open log on a small disk, whose last two lines are cut off the live file
    log = _log(small_disk, lines=6)
    log.path.write_text("".join(_lines(log.path)[:-2]))
    # When the disk is full at the next append, and has room again at the one after
    filler = small_disk / "filler"
    fill(filler, log.path)
    with pytest.raises(OSError):
        log.append("llm_call", n=7)
    filler.unlink()
    entry = log.append("llm_call", n=8)
    # Then the gap line went first then, with its seq after the lost lines
    records = list(iter_records(log.dir))
    assert [(r["seq"], r["event"]) for r in records[-2:]] == [(7, "audit_gap"), (8, "llm_call")]
    assert records[-1]["n"] == 8 and entry.seq == 8 and records[-2]["prev"] == records[-3]["hash"]
