"""The audit log: a hash chain that shows any edit, removal, reordering or lost tail."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from agentd.audit import AuditLog, iter_records, verify
from agentd.audit.redact import Redactor
from tests.audit.support import lines_of, make_log
from tests.helpers import AgentdProcess, audit_events, cli, sidecar_for, wait_until


_log, _lines = make_log, lines_of


def test_an_untouched_log_verifies(tmp_path: Path) -> None:
    log = _log(tmp_path)
    count, problems = verify(log.dir)
    assert count == 10 and problems == []


@pytest.mark.parametrize("tamper,where,words", [
    ("edit", "audit.jsonl:4", "edited"),
    ("delete", "audit.jsonl:4", "removed or reordered"),
    ("swap", "audit.jsonl:4", "removed or reordered"),
    ("garbage", "audit.jsonl:7", "not a valid audit line"),
])
def test_tampering_is_found_and_placed(tmp_path: Path, tamper: str, where: str, words: str) -> None:
    log = _log(tmp_path)
    lines = _lines(log.path)
    if tamper == "edit":
        record = json.loads(lines[3])
        record["cost_usd"] = 0.0
        lines[3] = json.dumps(record) + "\n"
    elif tamper == "delete":
        del lines[3]
    elif tamper == "swap":
        lines[3], lines[4] = lines[4], lines[3]
    else:
        lines[6] = "{not json\n"
    log.path.write_text("".join(lines))
    _, problems = verify(log.dir)
    assert problems, "tampering not detected"
    assert problems[0].where == where and words in problems[0].what


def test_a_rehashed_edit_still_breaks_the_chain(tmp_path: Path) -> None:
    from agentd.audit import line_hash
    log = _log(tmp_path)
    lines = _lines(log.path)
    record = json.loads(lines[2])
    record["cost_usd"] = 99.0
    record["hash"] = line_hash(record)
    lines[2] = json.dumps(record) + "\n"
    log.path.write_text("".join(lines))
    _, problems = verify(log.dir)
    assert problems and problems[0].where == "audit.jsonl:4" and "prev" in problems[0].what


def test_a_truncated_tail_is_found_through_the_sidecars(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    for i in range(3):
        (home / "incoming" / f"t{i}.txt").write_text(f"text {i}")
    wait_until(lambda: all(sidecar_for(home, f"t{i}.txt") for i in range(3)))
    agent.stop()
    assert cli(home, "audit", "verify").returncode == 0
    path = home / "logs" / "audit.jsonl"
    lines = _lines(path)
    last_outcome = max(i for i, line in enumerate(lines) if '"event":"outcome"' in line)
    path.write_text("".join(lines[:last_outcome]))
    result = cli(home, "audit", "verify")
    assert result.returncode == 1
    assert "BROKEN" in result.stdout and ".meta.json" in result.stdout and "missing" in result.stdout


def test_a_torn_last_line_is_repaired_at_start_up_and_the_repair_logged(tmp_path: Path) -> None:
    log = _log(tmp_path, lines=3)
    log.close()
    with open(log.path, "ab") as fh:
        fh.write(b'{"event":"llm_call","seq":4,"corr')  # a crash mid-write
    reopened = AuditLog(tmp_path / "logs").open()
    assert reopened.repaired and reopened.repaired["dropped_bytes"] > 0
    reopened.append("startup")
    reopened.flush_now()
    events = [r["event"] for r in iter_records(reopened.dir)]
    assert events == ["llm_call"] * 3 + ["audit_repaired", "startup"]
    assert verify(reopened.dir) == (5, [])


def test_rotation_by_size_continues_the_chain(tmp_path: Path) -> None:
    log = _log(tmp_path, lines=60, max_bytes=4096)
    rotated = sorted(log.dir.glob("audit-*.jsonl"))
    assert len(rotated) >= 2
    seqs = [r["seq"] for r in iter_records(log.dir)]
    assert seqs == list(range(1, 61))
    count, problems = verify(log.dir)
    assert (count, problems) == (60, [])
    first_line = json.loads(_lines(rotated[1])[0])
    last_of_previous = json.loads(_lines(rotated[0])[-1])
    assert first_line["prev"] == last_of_previous["hash"]


def test_two_processes_appending_keep_one_chain(tmp_path: Path) -> None:
    daemon_side = AuditLog(tmp_path / "logs").open()
    cli_side = AuditLog(tmp_path / "logs").open()
    for i in range(20):
        (daemon_side if i % 3 else cli_side).append("event", n=i)
    assert verify(tmp_path / "logs") == (20, [])


def test_secrets_and_credential_shapes_never_reach_the_log(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "logs", Redactor(["canary-secret-value"])).open()
    log.append("llm_call", error="401 for key canary-secret-value", header="Authorization: Bearer abcdefghijkl123",
               other="sk-proj-ABCDEFGHIJKLMNOPQRST and AKIAABCDEFGHIJKLMNOP")
    log.flush_now()
    text = log.path.read_text()
    for leaked in ("canary-secret-value", "abcdefghijkl123", "sk-proj-ABCDEF", "AKIAABCDEFGHIJKLMNOP"):
        assert leaked not in text
    assert verify(log.dir)[1] == []


def test_the_cli_exits_1_naming_the_line(home: Path) -> None:
    log = _log(home, lines=5)
    lines = _lines(log.path)
    lines[1] = lines[1].replace('"tokens_in":1', '"tokens_in":1000')
    log.path.write_text("".join(lines))
    result = cli(home, "audit", "verify")
    assert result.returncode == 1 and "audit.jsonl:2" in result.stdout
    assert audit_events(home)  # the log is still readable


def test_an_edited_complete_last_line_is_kept_and_reported_not_repaired(tmp_path: Path) -> None:
    # Given a log whose last complete line was edited (its newline is there: not torn)
    log = _log(tmp_path, lines=3)
    log.close()
    lines = _lines(log.path)
    edited = lines[-1].replace('"tokens_in":2', '"tokens_in":9')
    log.path.write_text("".join(lines[:-1]) + edited)
    # When the log is opened (start-up)
    reopened = AuditLog(tmp_path / "logs").open()
    # Then the line is still there, nothing was "repaired", and the suspicion is audited
    assert reopened.repaired is None
    assert _lines(reopened.path)[2] == edited
    suspected = [r for r in iter_records(reopened.dir) if r["event"] == "audit_tamper_suspected"]
    assert len(suspected) == 1 and "does not match its hash" in suspected[0]["problem"]
    _, problems = verify(reopened.dir)
    assert problems[0].where == "audit.jsonl:3" and "edited" in problems[0].what


def test_an_unparseable_complete_last_line_is_kept(tmp_path: Path) -> None:
    log = _log(tmp_path, lines=3)
    log.close()
    with open(log.path, "ab") as fh:
        fh.write(b'{"garbage": true\n')
    reopened = AuditLog(tmp_path / "logs").open()
    assert reopened.repaired is None and b'{"garbage": true\n' in reopened.path.read_bytes()
    assert reopened.suspect and verify(reopened.dir)[1][0].where == "audit.jsonl:4"


def test_a_tail_removed_while_stopped_is_reported_at_start_up_and_stays_reported(tmp_path: Path) -> None:
    log = _log(tmp_path, lines=6)
    log.close()
    log.path.write_text("".join(_lines(log.path)[:-2]))
    reopened = AuditLog(tmp_path / "logs").open()
    assert any("lines 5 to 6 were removed (the tail cut" in problem for problem in reopened.suspect)
    for i in range(10):  # the chain goes on past the anchored head
        reopened.append("llm_call", n=i)
    reopened.flush_now()
    # the gap line is chained to seq 4 (what the file held) and numbered 7: no seq is used twice
    gap = next(r for r in iter_records(reopened.dir) if r["event"] == "audit_gap")
    assert (gap["seq"], gap["after_seq"], gap["lost_from_seq"], gap["lost_through_seq"]) == (7, 4, 5, 6)
    _, problems = verify(reopened.dir)
    assert [p.where for p in problems] == ["audit.jsonl:5"]
    assert "a gap in the chain" in problems[0].what and "lines 5 to 6 were removed" in problems[0].what


def test_the_daemon_logs_a_torn_line_repair_and_an_edit_it_kept(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a stopped daemon's log: a line edited in the middle of the tail, then a torn line
    log = _log(home, lines=4)
    log.close()
    lines = _lines(log.path)
    lines[-1] = lines[-1].replace('"tokens_in":3', '"tokens_in":7')
    log.path.write_text("".join(lines) + '{"event":"llm_call","seq":5,"co')
    # When the daemon starts
    agent = daemon()
    # Then the torn piece is dropped and logged, the edited line kept and logged loudly, the daemon runs
    out = agent.output()
    assert '"audit_repaired"' in out and '"dropped_bytes": 31' in out
    assert '"audit_tamper_suspected"' in out and '"level": "error"' in out
    assert _lines(log.path)[3] == lines[3] and agent.healthy()
    result = cli(home, "audit", "verify")
    assert result.returncode == 1 and "audit.jsonl:4" in result.stdout and "edited" in result.stdout


WRITER = """
import sys
from pathlib import Path
from agentd.audit import AuditLog
log = AuditLog(Path(sys.argv[1]), max_bytes=4096).open()
for i in range(int(sys.argv[2])):
    log.append("event", writer=sys.argv[3], n=i)
    if i % 10 == 0:
        log.flush_now()
log.flush_now()
"""


def test_processes_contending_the_lock_through_rotations_keep_one_anchored_chain(tmp_path: Path) -> None:
    import subprocess
    import sys
    logs = tmp_path / "logs"
    AuditLog(logs).open().close()
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(logs), "150", name]) for name in "abc"]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0]
    count, problems = verify(logs)
    assert problems == [] and count == 450
    assert len(list(logs.glob("audit-*.jsonl"))) >= 5  # the writers rotated under each other
    assert sorted({r.get("writer") for r in iter_records(logs)} - {None}) == ["a", "b", "c"]


def test_the_cli_appending_while_the_daemon_works_keeps_the_chain(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon(AGENTD_AUDIT_MAX_BYTES="8192")
    for i in range(30):
        (home / "incoming" / f"c{i}.txt").write_text(f"text {i}")
    flips = 0
    while not all(sidecar_for(home, f"c{i}.txt") for i in range(30)) or flips < 6:
        assert cli(home, "kill-switch", "off", "--reason", f"flip {flips}").returncode == 0
        flips += 1
    wait_until(lambda: all(sidecar_for(home, f"c{i}.txt") for i in range(30)), timeout=30)
    agent.stop()
    result = cli(home, "audit", "verify")
    assert result.returncode == 0, result.stdout
    assert len(audit_events(home, "kill_switch")) == flips and len(audit_events(home, "outcome")) == 30


def test_staged_lines_go_out_with_the_next_line_in_order_and_on_flush(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    log = AuditLog(tmp_path, clock=lambda: now[0]).open()
    log.stage("step", step="a", note="sk-abcdefghijklmnopqrstu")  # staged lines are redacted too
    now[0] += 1
    log.stage("step", step="b")
    assert [r["event"] for r in iter_records(tmp_path)] == []  # nothing written yet
    now[0] += 1
    entry = log.append("outcome", outcome="archived")
    records = list(iter_records(tmp_path))
    assert [(r["event"], r.get("step"), r["seq"]) for r in records] == [
        ("step", "a", 1), ("step", "b", 2), ("outcome", None, 3)]
    assert [r["ts"][:19] for r in records] == ["2023-11-14T22:13:20", "2023-11-14T22:13:21", "2023-11-14T22:13:22"]
    assert entry.seq == 3 and entry.hash == records[-1]["hash"] and "sk-abc" not in log.path.read_text()
    log.stage("step", step="c")
    log.flush_now()
    log.stage("step", step="d")
    log.close()
    assert [r.get("step") for r in iter_records(tmp_path)][-2:] == ["c", "d"]
    assert verify(tmp_path) == (5, [])


def test_a_current_file_renamed_by_hand_is_left_within_a_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agentd.audit import log as log_mod
    clock = [100.0]
    monkeypatch.setattr(log_mod.time, "monotonic", lambda: clock[0])
    log = AuditLog(tmp_path).open()
    log.append("one")
    (tmp_path / "audit.jsonl").rename(tmp_path / "moved.jsonl")  # no append: same size, still linked
    clock[0] += log_mod.PATH_CHECK_S + 0.1
    log.append("two")
    # the new file does not pretend to continue the chain: it begins with the gap it found
    assert [r["event"] for r in map(json.loads, (tmp_path / "audit.jsonl").read_text().splitlines())] == [
        "audit_gap", "two"]
    assert "lines 1 to 1 were removed" in verify(tmp_path)[1][0].what
