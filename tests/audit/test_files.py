"""Reading the audit files: start-up opens only the files that can hold what it asks for."""
from __future__ import annotations

import json
import os
import time
from decimal import Decimal
from pathlib import Path

from agentd.audit import AuditLog, iter_records_since
from agentd.audit.chain import iso_of
from agentd.guards.budget import Budget
from tests.audit.support import lines_of

DAY_S = 86400.0


def _days_of_log(tmp_path: Path, days: int = 4, per_day: int = 40, max_bytes: int = 4096) -> tuple[AuditLog, float]:
    """A log written over `days` days (driven clock), rotating every few lines, ending at yesterday's noon UTC
    (a fixed time of day: the files' day boundaries never fall within the readers' clock-step margin)."""
    yesterday_noon = (time.time() // DAY_S) * DAY_S - DAY_S / 2
    clock = [yesterday_noon - days * DAY_S]

    def now() -> float:
        clock[0] += DAY_S / per_day
        return clock[0]

    log = AuditLog(tmp_path / "logs", max_bytes=max_bytes, clock=now).open()
    for i in range(days * per_day):
        log.append("llm_call", correlation_id=f"run{i}", cost_usd=0.01)
    log.flush_now()
    return log, clock[0]


def _plant_future_lines(path: Path, ts: str = "2099-01-01T00:00:00.000Z", event: str = "planted") -> None:
    """A line dated later in the middle of an old file: anyone who reads that file would yield it."""
    lines = lines_of(path)
    planted = json.loads(lines[1])
    planted.update(ts=ts, event=event, cost_usd=100.0)
    path.write_text("".join([lines[0], json.dumps(planted) + "\n", *lines[1:]]))


def test_records_since_a_time_skip_the_older_files_unread(tmp_path: Path) -> None:
    log, end = _days_of_log(tmp_path)
    rotated = sorted(log.dir.glob("audit-*.jsonl"))
    since = iso_of(end - DAY_S)
    old = [p for p in rotated if json.loads(lines_of(p)[-1])["ts"] < iso_of(end - DAY_S - 3600)]
    assert len(old) >= 5
    for path in old:
        _plant_future_lines(path)
    records = list(iter_records_since(log.dir, ts=since))
    assert records and all(r["event"] != "planted" for r in records)
    assert min(r["ts"] for r in records) >= iso_of(end - DAY_S - 3600)  # the clock-step margin, no more
    assert records[-1]["seq"] == log.last.seq


def test_records_after_a_seq_skip_the_older_files_unread(tmp_path: Path) -> None:
    log, _ = _days_of_log(tmp_path)
    rotated = sorted(log.dir.glob("audit-*.jsonl"))
    for path in rotated[:-2]:
        _plant_future_lines(path)
    boundary = json.loads(lines_of(rotated[-2])[0])["seq"]
    records = list(iter_records_since(log.dir, seq=boundary))
    assert [r["seq"] for r in records] == list(range(boundary + 1, log.last.seq + 1))


def test_budget_load_on_a_new_day_reads_only_today(tmp_path: Path) -> None:
    # Given four days of paid calls and no saved spend (the first start of the day)
    log, end = _days_of_log(tmp_path)
    today = iso_of(end)[:10]
    for path in sorted(log.dir.glob("audit-*.jsonl")):
        if json.loads(lines_of(path)[-1])["ts"][:10] < today:
            _plant_future_lines(path, ts=iso_of(end), event="llm_call")  # $100 if these files were read
    expected = sum(1 for p in [*sorted(log.dir.glob("audit-*.jsonl")), log.path] for line in lines_of(p)
                   if json.loads(line)["ts"][:10] == today and json.loads(line)["cost_usd"] == 0.01)
    # When the budget loads
    budget = Budget(Decimal("1"), Decimal(0), state_dir=tmp_path, clock=lambda: end).load(log.dir)
    # Then today's spend is exactly today's calls
    assert float(budget.spent_today) == round(expected * 0.01, 6)


def test_recovery_reads_only_the_files_from_its_claims_on(home: Path) -> None:
    from agentd import config as config_mod
    from agentd.durable.group import GroupSync
    from agentd.spool.deferred import Deferrals
    from agentd.spool.layout import claim_name, new_correlation_id
    from agentd.spool.store import Store

    # Given days of history, then a claim left in processing/ by a crash
    log, end = _days_of_log(home)
    cid = new_correlation_id(now=end)
    log.clock = lambda: end + 1
    log.append("claimed", correlation_id=cid, workflow="triage", original_name="left-2048.txt", size=4)
    log.flush_now()
    (home / "processing").mkdir()
    (home / "processing" / claim_name(cid, "triage")).write_text("text")
    old = [p for p in sorted(log.dir.glob("audit-*.jsonl")) if json.loads(lines_of(p)[-1])["ts"] < iso_of(end - 7200)]
    for path in old:  # an outcome for it planted in old files: read, it would end the run unrun
        lines = lines_of(path)
        planted = {**json.loads(lines[1]), "event": "outcome", "correlation_id": cid, "outcome": "failed"}
        path.write_text("".join([lines[0], json.dumps(planted) + "\n", *lines[1:]]))
    config = config_mod.load(environ={"AGENTD_HOME": str(home)})
    # When the spool recovers
    claims = Store(config, log, GroupSync(), Deferrals(home / "state")).recover(clean_shutdown=False)
    # Then the claim has its name from the claimed line and no outcome from the unread files
    assert [(c.cid, c.original_name, c.logged_outcome) for c in claims] == [(cid, "left-2048.txt", None)]


def test_within_a_large_file_reading_starts_near_the_first_wanted_line(tmp_path: Path) -> None:
    log, _ = _days_of_log(tmp_path, days=2, per_day=2000, max_bytes=1 << 30)
    path = log.path
    assert path.stat().st_size > 400_000 and not list(log.dir.glob("audit-*.jsonl"))
    lines = lines_of(path)
    planted = {**json.loads(lines[len(lines) // 10]), "seq": 10**9, "ts": "2099-01-01T00:00:00.000Z",
               "event": "planted"}
    lines.insert(len(lines) // 10, json.dumps(planted) + "\n")
    path.write_text("".join(lines))
    wanted_from = json.loads(lines[len(lines) * 3 // 4])["seq"]
    records = list(iter_records_since(log.dir, seq=wanted_from))
    assert all(r["event"] != "planted" for r in records)
    assert [r["seq"] for r in records][:3] == [wanted_from + 1, wanted_from + 2, wanted_from + 3]
    assert records[-1]["seq"] == log.last.seq


def test_lines_backwards_reads_lines_of_any_length_and_marks_the_unterminated_tail(tmp_path: Path) -> None:
    from agentd.audit.files import TAIL_BYTES, lines_backwards
    lines = [b"a", b"b" * (TAIL_BYTES * 5 + 3), b"", b"c" * 10, b"d" * (TAIL_BYTES - 1)]
    data = b"\n".join(lines) + b"\n" + b"torn" * 50_000
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        got = list(lines_backwards(fd, len(data)))
    finally:
        os.close(fd)
    expected = [(data.index(b"torn"), b"torn" * 50_000, False)]
    offset = 0
    starts = []
    for line in lines:
        starts.append((offset, line, True))
        offset += len(line) + 1
    expected += [s for s in reversed(starts) if s[1]]  # empty lines skipped
    assert got == expected
    assert all(data[o:o + len(raw)] == raw for o, raw, _ in got)
