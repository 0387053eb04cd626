"""The anchor: deletion at the start, in the middle, at the tail and of whole files is found;
its HMAC signature holds only for the right key; retention moves it."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from agentd.audit import AuditLog, iter_records, verify, verify_report
from tests.audit.support import anchor_of, lines_of, make_log, rewrite
from tests.helpers import AgentdProcess, audit_events, base_env, cli, wait_until

KEY = "anchor-hmac-key-3f9a1c77"


def _rotated(tmp_path: Path, lines: int = 80, **kwargs: object) -> AuditLog:
    log = make_log(tmp_path, lines=lines, max_bytes=4096, **kwargs)
    log.append("startup")  # a line in the current file too
    log.flush_now()
    assert len(sorted(log.dir.glob("audit-*.jsonl"))) >= 3
    return log


def _whats(problems: list) -> str:
    return " | ".join(str(p) for p in problems)


def test_an_anchored_log_verifies_and_the_anchor_names_its_ends(tmp_path: Path) -> None:
    log = _rotated(tmp_path)
    anchor = anchor_of(log.dir)
    assert (anchor["first_seq"], anchor["head_seq"]) == (1, 81)
    assert anchor["head_hash"] == log.last.hash
    assert set(anchor["files"]) == {p.name for p in log.dir.glob("audit-*.jsonl")}
    assert verify(log.dir) == (81, [])


def test_lines_removed_at_the_start_are_found(tmp_path: Path) -> None:
    log = make_log(tmp_path, lines=10)
    rewrite(log.path, lines_of(log.path)[3:])  # the chain from seq 4 on is intact in itself
    _, problems = verify(log.dir)
    assert "starts at seq 4 but the anchor says seq 1" in _whats(problems)


def test_lines_removed_at_the_tail_are_found_without_any_sidecar(tmp_path: Path) -> None:
    log = make_log(tmp_path, lines=10)
    rewrite(log.path, lines_of(log.path)[:-2])
    _, problems = verify(log.dir)
    assert "ends at seq 8 but the anchor says it reached seq 10" in _whats(problems)


def test_the_oldest_rotated_file_removed_is_found_and_named(tmp_path: Path) -> None:
    log = _rotated(tmp_path)
    oldest = sorted(log.dir.glob("audit-*.jsonl"))[0]
    oldest.unlink()
    _, problems = verify(log.dir)
    text = _whats(problems)
    assert f"{oldest.name}: seq 1 to" in text and "the file is missing" in text
    assert "removed at the start" in text


def test_a_rotated_file_removed_in_the_middle_is_found_and_named(tmp_path: Path) -> None:
    log = _rotated(tmp_path)
    middle = sorted(log.dir.glob("audit-*.jsonl"))[1]
    middle.unlink()
    _, problems = verify(log.dir)
    assert "removed or reordered" in problems[0].what
    assert any(p.where == middle.name and "missing" in p.what for p in problems)


def test_the_current_file_removed_is_a_removed_tail(tmp_path: Path) -> None:
    log = _rotated(tmp_path)
    log.path.unlink()
    _, problems = verify(log.dir)
    assert "removed at the tail" in _whats(problems)


def test_a_removed_anchor_is_found(tmp_path: Path) -> None:
    log = make_log(tmp_path, lines=5)
    (log.dir / "audit.anchor.json").unlink()
    _, problems = verify(log.dir)
    assert problems and "audit.anchor.json: missing" in str(problems[0])


def test_the_cli_exits_1_naming_a_head_deletion(home: Path) -> None:
    log = make_log(home, lines=6)
    rewrite(log.path, lines_of(log.path)[2:])
    result = cli(home, "audit", "verify")
    assert result.returncode == 1
    assert "BROKEN" in result.stdout and "removed at the start" in result.stdout


def test_a_signed_anchor_holds_only_for_its_key(home: Path) -> None:
    log = make_log(home, lines=5, hmac_key=KEY)
    assert "hmac" in anchor_of(log.dir)
    good = cli(home, "audit", "verify", AUDIT_HMAC_KEY=KEY)
    assert good.returncode == 0 and "anchor signature ok" in good.stdout
    wrong = cli(home, "audit", "verify", AUDIT_HMAC_KEY="another-key-0000aaaa")
    assert wrong.returncode == 1 and "signature does not match" in wrong.stdout
    assert "signed: set AUDIT_HMAC_KEY" in cli(home, "audit", "verify").stdout


def test_a_shortened_log_with_a_matching_unsigned_anchor_fails_with_the_key(tmp_path: Path) -> None:
    # Given a signed log whose last two lines an attacker removes
    log = make_log(tmp_path, lines=8, hmac_key=KEY)
    lines = lines_of(log.path)[:-2]
    rewrite(log.path, lines)
    # When the attacker rewrites the anchor to match (without the key)
    anchor = anchor_of(log.dir)
    last = json.loads(lines[-1])
    anchor.update(head_seq=last["seq"], head_hash=last["hash"])
    forged = {k: v for k, v in anchor.items() if k != "hmac"}
    (log.dir / "audit.anchor.json").write_text(json.dumps(forged))
    # Then the shortening is invisible without the key, and found with it
    assert verify(log.dir)[1] == []
    _, problems = verify(log.dir, hmac_key=KEY)
    assert problems and "not signed" in problems[0].what
    # and a keyed start after it signs the forged anchor but says so, so verify with the key still fails
    reopened = AuditLog(log.dir, hmac_key=KEY).open()
    reopened.append("startup")
    reopened.flush_now()
    assert "hmac" in anchor_of(log.dir) and any("was not signed" in w for w in reopened.warnings)
    _, problems = verify(log.dir, hmac_key=KEY)
    assert [p.what for p in problems] == [
        "the anchor was unsigned until seq 7: AUDIT_HMAC_KEY newly set, or a signed anchor replaced by an unsigned one"]
    assert "WARNING" in verify_report(log.dir).notes[0]


def test_an_anchor_whose_signature_fails_is_tampering_at_start_up(tmp_path: Path) -> None:
    log = make_log(tmp_path, lines=4, hmac_key=KEY)
    log.close()
    anchor = anchor_of(log.dir)
    anchor["hmac"] = "0" * 64
    (log.dir / "audit.anchor.json").write_text(json.dumps(anchor))
    reopened = AuditLog(log.dir, hmac_key=KEY).open()
    assert any("signature does not match" in p for p in reopened.suspect)
    assert [r["event"] for r in iter_records(log.dir)][-1] == "audit_tamper_suspected"


def test_a_writer_without_the_key_never_unsigns_the_anchor(tmp_path: Path) -> None:
    make_log(tmp_path, lines=3, hmac_key=KEY)
    before = anchor_of(tmp_path / "logs")
    keyless = AuditLog(tmp_path / "logs").open()
    keyless.append("kill_switch", engaged=True)
    keyless.flush_now()
    assert anchor_of(tmp_path / "logs") == before
    assert verify(tmp_path / "logs", hmac_key=KEY) == (4, [])


def _outcome_sidecar(log: AuditLog, seq: int) -> tuple[Path, dict]:
    record = next(json.loads(line) for path in sorted(log.dir.glob("audit-*.jsonl")) + [log.path]
                  for line in lines_of(path) if json.loads(line)["seq"] == seq)
    return Path(f"archive/f{seq}.txt.meta.json"), {"audit_seq": seq, "audit_hash": record["hash"]}


def test_retention_removes_old_rotated_files_and_verify_still_passes(tmp_path: Path) -> None:
    log = _rotated(tmp_path, keep_days=2)
    old_sidecar = _outcome_sidecar(log, 3)
    rotated = sorted(log.dir.glob("audit-*.jsonl"))
    assert log.apply_retention(now=time.time() + 1 * 86400) == []  # not old enough yet
    removed = log.apply_retention(now=time.time() + 3 * 86400)
    assert removed == [p.name for p in rotated]
    assert not list(log.dir.glob("audit-*.jsonl"))
    anchor = anchor_of(log.dir)
    first_kept = json.loads(lines_of(log.path)[0])
    assert (anchor["first_seq"], anchor["first_prev"]) == (first_kept["seq"], first_kept["prev"])
    report = verify_report(log.dir, [old_sidecar])
    assert report.problems == [] and report.count == 81 - anchor["retired_through"]


def test_after_retention_tampering_is_still_found(tmp_path: Path) -> None:
    # Given five days of lines, one an hour (the log's clock is driven)
    clock = [time.time() - 5 * 86400]

    def now() -> float:
        clock[0] += 3600
        return clock[0]

    # When they are written with AGENTD_AUDIT_KEEP_DAYS=2: retention runs at each rotation
    log = make_log(tmp_path, lines=120, max_bytes=4096, keep_days=2, clock=now)
    left = sorted(log.dir.glob("audit-*.jsonl"))
    anchor = anchor_of(log.dir)
    # Then the files older than two days are gone, the anchor moved, and verify holds
    assert left and not (log.dir / "audit-000000000001.jsonl").exists()
    assert anchor["first_seq"] == json.loads(lines_of(left[0])[0])["seq"] > 1
    oldest_kept = json.loads(lines_of(left[0])[-1])["ts"]
    assert oldest_kept >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(clock[0] - 2 * 86400 - 3600))
    assert verify(log.dir)[1] == []
    # Then removing the oldest file that retention kept is found
    left[0].unlink()
    _, problems = verify(log.dir)
    assert any(p.where == left[0].name and "missing" in p.what for p in problems)
    assert "removed at the start" in _whats(problems)


def test_an_interrupted_retention_is_finished_and_verify_holds_meanwhile(tmp_path: Path) -> None:
    log = _rotated(tmp_path, keep_days=1)
    rotated = sorted(log.dir.glob("audit-*.jsonl"))
    keep_copy = rotated[0].read_bytes()
    log.apply_retention(now=time.time() + 2 * 86400)
    rotated[0].write_bytes(keep_copy)  # as if the crash came after the anchor moved, before the unlink
    assert verify(log.dir)[1] == []
    assert log.apply_retention(now=time.time()) == [rotated[0].name]


def test_retention_is_configured_by_agentd_audit_keep_days(home: Path) -> None:
    from agentd import config as config_mod
    from agentd.audit import open_for

    config = config_mod.load(environ=base_env(home, AGENTD_AUDIT_KEEP_DAYS="7", AGENTD_AUDIT_MAX_BYTES="4096"))
    log = open_for(config)
    assert log.keep_days == 7 and log.max_bytes == 4096


def test_a_running_daemon_keeps_the_anchor_at_the_head_of_its_log(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    for i in range(20):
        (home / "incoming" / f"a{i}.txt").write_text(f"text {i}")
    wait_until(lambda: len(audit_events(home, "outcome")) == 20)
    # the group commits of the run moved it; the last lines are caught up while the daemon idles
    wait_until(lambda: anchor_of(home / "logs")["head_seq"] == audit_events(home)[-1]["seq"], timeout=5)
    assert agent.healthy()
    lines = lines_of(home / "logs" / "audit.jsonl")
    rewrite(home / "logs" / "audit.jsonl", lines[:-1])  # the last outcome line removed under the daemon
    result = cli(home, "audit", "verify")
    assert result.returncode == 1 and "removed at the tail" in result.stdout
