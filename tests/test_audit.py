"""The audit log: a hash chain that shows any edit, removal, reordering or lost tail."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from agentd.audit import AuditLog, iter_records, verify
from agentd.redact import Redactor
from tests.helpers import AgentdProcess, audit_events, cli, sidecar_for, wait_until


def _log(tmp_path: Path, lines: int = 10, max_bytes: int = 1 << 30) -> AuditLog:
    log = AuditLog(tmp_path / "logs", max_bytes=max_bytes).open()
    for i in range(lines):
        log.append("llm_call", correlation_id=f"run{i}", cost_usd=0.001 * i, tokens_in=i)
    log.flush_now()
    return log


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


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
