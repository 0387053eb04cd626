"""The daemon end to end as a real process: drop files, read terminal folders and sidecars."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

from tests.helpers import AgentdProcess, audit_events, cli, sidecar_for, sidecars, terminal_files, wait_until

SIDECAR_FIELDS = {"correlation_id", "workflow", "original_name", "sha256", "size", "outcome", "cost_usd",
                  "tokens", "llm_calls", "started_at", "finished_at", "result", "audit_seq", "audit_hash"}


def test_a_dropped_text_file_is_archived_with_its_sidecar(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    body = b"Dear team,\nplease find the invoice attached. Amount due: $120.00.\nKind regards,\nAnna Berg\n"
    (home / "incoming" / "letter.txt").write_bytes(body)
    meta = wait_until(lambda: sidecar_for(home, "letter.txt"), timeout=2, message="archived within 2 s")
    assert (home / "archive" / "letter.txt").read_bytes() == body
    assert SIDECAR_FIELDS <= set(meta)
    assert meta["outcome"] == "archived" and meta["workflow"] == "triage"
    assert meta["sha256"] == hashlib.sha256(body).hexdigest() and meta["size"] == len(body)
    assert meta["result"]["document_type"] == "invoice"
    assert meta["result"]["provider"] == "offline"
    assert meta["cost_usd"] == 0 and meta["llm_calls"] == 1
    assert list((home / "processing").iterdir()) == []
    outcome = [e for e in audit_events(home, "outcome") if e["correlation_id"] == meta["correlation_id"]]
    assert outcome and outcome[0]["seq"] == meta["audit_seq"] and outcome[0]["hash"] == meta["audit_hash"]
    assert agent.health()["status"] == "ok"


def test_files_in_a_workflow_folder_run_that_workflow(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    root = Path(__file__).resolve().parents[2]
    daemon(AGENTD_WORKFLOWS=str(root / "examples" / "invoices.py"))
    folder = home / "incoming" / "invoices"
    folder.mkdir(exist_ok=True)
    (folder / "inv-1.txt").write_text("INVOICE\nFrom: Nordwind GmbH\nTotal: 1,250.00 EUR\nDue 2026-12-24\n")
    meta = wait_until(lambda: sidecar_for(home, "inv-1.txt"), message="the invoice")
    assert meta["workflow"] == "invoices" and meta["outcome"] == "archived", meta
    assert meta["result"] == {"vendor": "Nordwind GmbH", "total": 1250.0, "currency": "EUR",
                              "due_date": "2026-12-24", "confidence": 0.9}


def test_same_content_twice_reuses_the_first_result_without_a_model_call(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    (home / "incoming" / "a.txt").write_text("Quarterly report: findings attached.")
    first = wait_until(lambda: sidecar_for(home, "a.txt"))
    (home / "incoming" / "b.txt").write_text("Quarterly report: findings attached.")
    second = wait_until(lambda: sidecar_for(home, "b.txt"))
    assert second["outcome"] == "archived"
    assert first["correlation_id"] in second["reason"]
    assert second["result"] == first["result"]
    assert second["llm_calls"] == 0
    calls = [e for e in audit_events(home, "llm_call") if e["correlation_id"] == second["correlation_id"]]
    assert calls == []


def test_dedupe_can_be_turned_off(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon(AGENTD_DEDUPE="0")
    (home / "incoming" / "a.txt").write_text("same words")
    wait_until(lambda: sidecar_for(home, "a.txt"))
    (home / "incoming" / "b.txt").write_text("same words")
    second = wait_until(lambda: sidecar_for(home, "b.txt"))
    assert second["llm_calls"] == 1 and "reason" not in second


def test_a_slow_writer_is_processed_once_with_the_full_content(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon(AGENTD_SETTLE_S="0.5")
    first, rest = b"first half of a long letter. " * 50, b"and the second half, written later." * 50
    target = home / "incoming" / "slow.txt"
    with open(target, "wb") as fh:
        fh.write(first)
        fh.flush()
        time.sleep(2.0)
        assert target.exists(), "taken while still being written"
        fh.write(rest)
    meta = wait_until(lambda: sidecar_for(home, "slow.txt"))
    assert meta["sha256"] == hashlib.sha256(first + rest).hexdigest()
    time.sleep(0.5)
    assert len(sidecars(home)) == 1


def test_temp_names_wait_until_renamed(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    incoming = home / "incoming"
    names = ["upload.part", ".hidden.txt", "download.crdownload", "x.tmp", ".x.swp", "notes.txt~"]
    for name in names:
        (incoming / name).write_text("not yet")
    time.sleep(2.5)  # two rescans
    assert sorted(p.name for p in incoming.iterdir()) == sorted(names)
    assert sidecars(home) == []
    os.rename(incoming / "upload.part", incoming / "upload.txt")
    meta = wait_until(lambda: sidecar_for(home, "upload.txt"))
    assert meta["outcome"] == "archived"


def test_files_dropped_while_stopped_are_found_by_the_startup_scan(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    for sub in ("incoming",):
        (home / sub).mkdir(exist_ok=True)
    for i in range(5):
        (home / "incoming" / f"early-{i}.txt").write_text(f"document {i}")
    daemon(AGENTD_WATCH_MODE="poll")
    wait_until(lambda: len(terminal_files(home)["archive"]) == 5, message="5 archived")


def test_sigterm_drains_in_flight_work_and_exits_0(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    fixture = str(Path(__file__).parent.parent / "workflows_fixture.py")
    agent = daemon(AGENTD_WORKFLOWS=fixture, TEST_SLOW_STEP_S="2", AGENTD_DRAIN_TIMEOUT_S="20")
    (home / "incoming" / "slow").mkdir()
    (home / "incoming" / "slow" / "s.txt").write_text("slow one")
    wait_until(lambda: any((home / "processing").iterdir()), message="claimed")
    assert agent.stop(signal.SIGTERM) == 0
    meta = sidecar_for(home, "s.txt")
    assert meta is not None and meta["outcome"] == "archived"
    assert list((home / "processing").iterdir()) == []
    assert audit_events(home)[-1]["event"] == "shutdown"


def test_work_past_the_drain_deadline_resumes_at_the_next_start(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    fixture = str(Path(__file__).parent.parent / "workflows_fixture.py")
    agent = daemon(AGENTD_WORKFLOWS=fixture, TEST_SLOW_STEP_S="3", AGENTD_DRAIN_TIMEOUT_S="0.2")
    (home / "incoming" / "slow").mkdir()
    (home / "incoming" / "slow" / "s.txt").write_text("slow one")
    claimed = wait_until(lambda: list((home / "processing").iterdir()), message="claimed")
    assert agent.stop(signal.SIGINT) == 0
    assert [p.name for p in (home / "processing").iterdir()] == [claimed[0].name]
    daemon(AGENTD_WORKFLOWS=fixture, TEST_SLOW_STEP_S="0.1")
    meta = wait_until(lambda: sidecar_for(home, "s.txt"), message="resumed run")
    assert meta["correlation_id"] == claimed[0].name.split(".")[0]
    assert any(e["correlation_id"] == meta["correlation_id"] for e in audit_events(home, "resumed"))


def test_a_crashing_step_fails_the_file_not_the_daemon(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    fixture = str(Path(__file__).parent.parent / "workflows_fixture.py")
    agent = daemon(AGENTD_WORKFLOWS=fixture)
    (home / "incoming" / "broken").mkdir()
    (home / "incoming" / "broken" / "b.txt").write_text("boom")
    meta = wait_until(lambda: sidecar_for(home, "b.txt"))
    assert meta["outcome"] == "failed" and meta["error_class"] == "internal"
    assert "a bug in a user step" in meta["detail"]
    (home / "incoming" / "after.txt").write_text("still alive")
    assert wait_until(lambda: sidecar_for(home, "after.txt"))["outcome"] == "archived"
    assert agent.health()["status"] == "ok"


def test_status_shows_counts_and_requeue_sends_a_failed_file_back(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    (home / "incoming" / "empty.txt").write_bytes(b"")
    meta = wait_until(lambda: sidecar_for(home, "empty.txt"))
    assert meta["outcome"] == "failed" and meta["reason"] == "empty"
    status = json.loads(cli(None, "status", "--json", env=agent.env).stdout)
    assert status["running"] is True and status["counts"]["failed"] == 1
    human = cli(None, "status", env=agent.env).stdout
    assert "failed" in human and "running" in human
    (home / "failed" / "empty.txt").write_text("now it has words")
    result = cli(None, "requeue", meta["correlation_id"][:8], env=agent.env)
    assert result.returncode == 0, result.stderr
    again = wait_until(lambda: (sidecar_for(home, "empty.txt") or {}).get("outcome") == "archived"
                       and sidecar_for(home, "empty.txt"))
    assert again["correlation_id"] != meta["correlation_id"]
    assert terminal_files(home)["failed"] == []
    assert any(e["correlation_id"] == meta["correlation_id"] for e in audit_events(home, "requeued"))


def test_requeue_of_an_unknown_id_exits_1(home: Path) -> None:
    result = cli(home, "requeue", "abcdef123")
    assert result.returncode == 1 and "no failed or review file" in result.stderr


def test_a_second_daemon_on_the_same_home_refuses_to_start(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    result = cli(home, "run")
    assert result.returncode == 1 and "another agentd" in result.stderr


def test_logs_are_json_lines_with_the_correlation_id_bound(home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    (home / "incoming" / "x.txt").write_text("hello")
    meta = wait_until(lambda: sidecar_for(home, "x.txt"))
    lines = [json.loads(line) for line in agent.output().splitlines() if line.startswith("{")]
    finished = [e for e in lines if e.get("event") == "run_finished"]
    assert finished and finished[0]["correlation_id"] == meta["correlation_id"]
    assert finished[0]["workflow"] == "triage" and "duration_ms" in finished[0]
    assert "cost_usd" in finished[0]
