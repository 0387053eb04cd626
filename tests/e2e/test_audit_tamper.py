"""The audit log after agentd ran again: tamper while stopped (or under a running daemon), start,
work, stop, then `agentd audit verify` must still name what was done. A cut tail is never
carried over in silence: the daemon writes an `audit_gap` line naming the lost seqs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from agentd.audit import AuditLog
from tests.fakellm import FakeLLM
from tests.fakewire import Seen, default_answer
from tests.helpers import AgentdProcess, audit_events, base_env, cli, sidecar_for, wait_until

KEY = "tamper-hmac-key-71c0ffee"
Lines = list[str]


def _lines(home: Path) -> Lines:
    return (home / "logs" / "audit.jsonl").read_text().splitlines(keepends=True)


def _write(home: Path, lines: Lines) -> None:
    (home / "logs" / "audit.jsonl").write_text("".join(lines))


def _run_one_file(home: Path, env: dict[str, str], name: str) -> AgentdProcess:
    """Start agentd, let it finish one dropped file, stop it (SIGTERM, exit 0)."""
    agent = AgentdProcess(home, env).start()
    (home / "incoming" / name).write_text(f"Invoice {name}: amount due 2048.00 EUR")
    wait_until(lambda: sidecar_for(home, name), message=f"{name} finished")
    assert agent.stop() == 0
    return agent


def _verify(env: dict[str, str]) -> tuple[int, str]:
    result = cli(None, "audit", "verify", env=env)
    return result.returncode, result.stdout + result.stderr


def _env(home: Path, key: str) -> dict[str, str]:
    return base_env(home, AUDIT_HMAC_KEY=key) if key else base_env(home)


def _seqs(home: Path) -> list[int]:
    return [r["seq"] for r in audit_events(home)]


CUTS: dict[str, Callable[[Lines], Lines]] = {
    "one line": lambda lines: lines[:-1],
    "three lines": lambda lines: lines[:-3],
    "a partial line": lambda lines: lines[:-3] + [lines[-3][: len(lines[-3]) // 2]],
    "every line (truncated to 0 bytes)": lambda lines: [],
}


@pytest.mark.parametrize("key", ["", KEY], ids=["no key", "hmac key"])
@pytest.mark.parametrize("cut", list(CUTS))
def test_a_tail_cut_while_stopped_is_named_by_verify_after_agentd_ran_again(
        home: Path, cut: str, key: str) -> None:
    # Given a stopped daemon whose log's tail an attacker cut
    env = _env(home, key)
    _run_one_file(home, env, "first.txt")
    before = _lines(home)
    last_seq = json.loads(before[-1])["seq"]
    _write(home, CUTS[cut](before))
    # When agentd starts, does more work and stops
    agent = _run_one_file(home, env, "second.txt")
    # Then the start said so loudly, the log holds a gap line naming the lost seqs, no seq is used twice
    out = agent.output()
    assert '"audit_tamper_suspected"' in out and '"level": "error"' in out and "were removed" in out
    kept = len(CUTS[cut](before)) - (cut == "a partial line")
    gap = audit_events(home, "audit_gap")
    assert len(gap) == 1 and gap[0]["lost_through_seq"] == last_seq
    assert gap[0]["after_seq"] == kept and gap[0]["seq"] == last_seq + 1
    seqs = _seqs(home)
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    if cut == "a partial line":  # the torn piece was dropped too, and that repair logged
        assert len(audit_events(home, "audit_repaired")) == 1
    # and verify exits 1 naming the gap, also after the anchor moved on
    code, text = _verify(env)
    assert code == 1, text
    assert "a gap in the chain" in text and f"lines {kept + 1} to {last_seq} were removed" in text
    assert sidecar_for(home, "second.txt")["outcome"] == "archived"


def test_a_tail_cut_under_a_running_daemon_is_named_by_verify(home: Path) -> None:
    # Given a running daemon whose anchor has reached its head
    env = base_env(home)
    agent = AgentdProcess(home, env).start()
    (home / "incoming" / "first.txt").write_text("Invoice 1: amount due 2048.00 EUR")
    wait_until(lambda: sidecar_for(home, "first.txt"))
    anchor = home / "logs" / "audit.anchor.json"
    wait_until(lambda: json.loads(anchor.read_text())["head_seq"] == json.loads(_lines(home)[-1])["seq"],
               message="the anchor at the head")
    # When two lines are cut off the live file and the daemon writes again
    before = _lines(home)
    _write(home, before[:-2])
    (home / "incoming" / "second.txt").write_text("Invoice 2: amount due 10.00 EUR")
    wait_until(lambda: sidecar_for(home, "second.txt"))
    assert agent.stop() == 0
    # Then its next line was a gap line naming them, and verify fails
    gap = audit_events(home, "audit_gap")
    assert len(gap) == 1 and "this writer had seen it reach" in gap[0]["problem"]
    said = [json.loads(line) for line in agent.output().splitlines() if "this writer had seen it reach" in line]
    assert [(line["event"], line["level"]) for line in said] == [("audit_tamper_suspected", "error")]
    assert (gap[0]["lost_from_seq"], gap[0]["lost_through_seq"]) == (len(before) - 1, len(before))
    code, text = _verify(env)
    assert code == 1 and "a gap in the chain" in text, text


@pytest.mark.parametrize("key", ["", KEY], ids=["no key", "hmac key"])
def test_a_removed_anchor_is_said_loudly_at_start_and_by_verify(home: Path, key: str) -> None:
    # Given a stopped daemon's log whose anchor was deleted
    env = _env(home, key)
    _run_one_file(home, env, "first.txt")
    assert _verify(env)[0] == 0
    (home / "logs" / "audit.anchor.json").unlink()
    # When agentd starts again and works
    agent = _run_one_file(home, env, "second.txt")
    # Then the start said so in its log and in the audit log
    out = agent.output()
    level = "error" if key else "warning"
    said = [json.loads(line) for line in out.splitlines() if "audit.anchor.json was missing" in line]
    assert said and said[0]["level"] == level
    assert len(audit_events(home, "audit_anchor_created")) == 1
    # and verify says so too: with a key it is a problem (exit 1), without a key a warning
    code, text = _verify(env)
    assert "the anchor was missing and created anew" in text
    if key:
        assert code == 1 and "BROKEN" in text, text
    else:
        assert code == 0 and "WARNING" in text, text


def test_a_removed_anchor_and_head_lines_fail_verify_without_a_key(home: Path) -> None:
    env = base_env(home)
    _run_one_file(home, env, "first.txt")
    (home / "logs" / "audit.anchor.json").unlink()
    _write(home, _lines(home)[3:])
    _run_one_file(home, env, "second.txt")
    code, text = _verify(env)
    assert code == 1 and "not at the chain's start" in text, text


def _edit(lines: Lines) -> Lines:
    record = json.loads(lines[2])
    record["seq_note"] = "edited"
    return lines[:2] + [json.dumps(record) + "\n"] + lines[3:]


TAMPERS: dict[str, tuple[Callable[[Lines], Lines], str]] = {
    "head deletion": (lambda lines: lines[2:], "removed at the start"),
    "middle deletion": (lambda lines: lines[:3] + lines[4:], "seq 5 follows seq 3"),
    "edit": (_edit, "seq 3: content does not match its hash (edited)"),
    "reorder": (lambda lines: lines[:2] + [lines[3], lines[2]] + lines[4:], "seq 4 follows seq 2"),
}


@pytest.mark.parametrize("key", ["", KEY], ids=["no key", "hmac key"])
@pytest.mark.parametrize("tamper", list(TAMPERS))
def test_tampering_while_stopped_is_found_after_agentd_ran_again(home: Path, tamper: str, key: str) -> None:
    env = _env(home, key)
    _run_one_file(home, env, "first.txt")
    change, words = TAMPERS[tamper]
    _write(home, change(_lines(home)))
    _run_one_file(home, env, "second.txt")
    assert sidecar_for(home, "second.txt")["outcome"] == "archived"
    code, text = _verify(env)
    assert code == 1 and words in text, text


def test_a_last_line_over_a_mebibyte_is_continued_with_the_right_seq(home: Path) -> None:
    # Given a stopped daemon's log whose last line is 2 MiB long
    env = base_env(home)
    _run_one_file(home, env, "first.txt")
    log = AuditLog(home / "logs").open()
    big = log.append("note", text="x" * (2 << 20))
    log.flush_now()
    log.close()
    # When agentd starts, works and stops
    agent = _run_one_file(home, env, "second.txt")
    # Then the chain went on from that line: no false alarm, consecutive seqs, verify clean
    assert "audit_tamper_suspected" not in agent.output()
    seqs = _seqs(home)
    assert seqs == list(range(1, len(seqs) + 1)) and big.seq in seqs
    startup = audit_events(home, "startup")[-1]
    assert startup["seq"] == big.seq + 1
    code, text = _verify(env)
    assert code == 0, text


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_a_rotated_file_deleted_while_stopped_is_named_after_agentd_ran_again(home: Path, which: str) -> None:
    # Given a stopped daemon whose log rotated every few lines
    env = base_env(home, AGENTD_AUDIT_MAX_BYTES="4096")
    for name in ("a.txt", "b.txt", "c.txt"):
        _run_one_file(home, env, name)
    rotated = sorted((home / "logs").glob("audit-*.jsonl"))
    assert len(rotated) >= 2
    # When one rotated file is deleted, and agentd starts, works and stops
    gone = rotated[0] if which == "oldest" else rotated[-1]
    gone.unlink()
    _run_one_file(home, env, "d.txt")
    # Then verify names the file
    code, text = _verify(env)
    assert code == 1 and f"{gone.name}: seq" in text and "the file is missing" in text, text


def test_a_kill_right_after_an_outcome_line_over_a_mebibyte_is_continued_cleanly(
        home: Path, llm_server: Callable[..., FakeLLM]) -> None:
    # Given a model whose answer makes the outcome line 1.5 MiB long, and a kill right after that line
    people = [f"Person {i:06d} of a very long list of names" for i in range(40_000)]  # schema-valid, 1.6 MiB

    def responder(seen: Seen) -> dict:
        answer = default_answer(seen)
        return {**answer, "entities": {**answer["entities"], "people": people}}

    server = llm_server(responder=responder)
    env = base_env(home, AGENTD_CRASH_AT="after_outcome_line", **server.env())
    agent = AgentdProcess(home, env).start()
    (home / "incoming" / "big.txt").write_text("Invoice 1: amount due 2048.00 EUR")
    assert agent.proc is not None and agent.proc.wait(timeout=30) == -9
    last = _lines(home)[-1]
    assert json.loads(last)["event"] == "outcome" and len(last) > 1 << 20
    # When agentd starts again (no crash point), finishes the file and stops
    env.pop("AGENTD_CRASH_AT")
    agent = _run_one_file(home, env, "after.txt")
    # Then the chain went on from the long line: no false alarm, consecutive seqs, verify clean
    assert "audit_tamper_suspected" not in agent.output()
    seqs = _seqs(home)
    assert seqs == list(range(1, len(seqs) + 1))
    assert sidecar_for(home, "big.txt")["outcome"] in ("archived", "review")
    code, text = _verify(env)
    assert code == 0, text
