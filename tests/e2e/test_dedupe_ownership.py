"""Dedupe end to end: a repeat reuses a first run's result only while that run's sidecar is still its own."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from tests.helpers import AgentdProcess, audit_events, sidecar_for, sidecars, wait_until

OLD = "Quarterly report: the findings of the audit are attached for the board.\n"
NEW = "Dear team,\nplease pay the attached invoice of $120.00 by Friday.\nKind regards,\nAnna Berg\n"


def _drop(home: Path, name: str, text: str) -> dict:
    (home / "incoming" / name).write_text(text)
    return wait_until(lambda: sidecar_for(home, name), message=f"{name} finished")


def _prune(home: Path, name: str) -> None:
    (home / "archive" / name).unlink()
    (home / "archive" / (name + ".meta.json")).unlink()


def test_after_archive_is_pruned_a_repeat_of_old_content_never_gets_the_new_files_result(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    # Given a.txt archived, then pruned by the operator, and a new file archived under the same name
    first = _drop(home, "a.txt", OLD)
    _prune(home, "a.txt")
    newcomer = _drop(home, "a.txt", NEW)
    assert (home / "archive" / "a.txt").read_text() == NEW and newcomer["result"] != first["result"]
    # When a copy of the old content arrives
    repeat = _drop(home, "copy.txt", OLD)
    # Then it runs as new: a model call of its own, its own content's result, no duplicate_of
    assert repeat["outcome"] == "archived"
    assert "duplicate_of" not in repeat and "reason" not in repeat, repeat
    assert repeat["llm_calls"] == 1
    assert repeat["result"] == first["result"] and repeat["result"] != newcomer["result"]
    # and the stale entry was replaced: the next copy reuses the repeat's result
    again = _drop(home, "again.txt", OLD)
    assert again["duplicate_of"] == repeat["correlation_id"] and again["llm_calls"] == 0


def test_a_first_runs_sidecar_edited_to_another_sha256_is_not_reused(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    daemon()
    first = _drop(home, "a.txt", OLD)
    meta_path = home / "archive" / "a.txt.meta.json"
    meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "sha256": "0" * 64}))
    repeat = _drop(home, "copy.txt", OLD)
    assert "duplicate_of" not in repeat and repeat["llm_calls"] == 1
    assert repeat["result"] == first["result"]


def test_a_crash_before_the_index_entry_lets_the_next_copy_run_as_new(
        home: Path, daemon: Callable[..., AgentdProcess]) -> None:
    # Given a daemon killed right after the first run's final rename, before its index entry
    agent = daemon(AGENTD_CRASH_AT="before_dedupe_index_put")
    (home / "incoming" / "a.txt").write_text(OLD)
    wait_until(lambda: agent.proc is not None and agent.proc.poll() is not None, message="the crash")
    assert agent.proc is not None and agent.proc.returncode == -9
    assert [m["original_name"] for m in sidecars(home, "archive")] == ["a.txt"]
    # When it runs again and a copy arrives
    agent.env.pop("AGENTD_CRASH_AT")
    agent.start()
    repeat = _drop(home, "copy.txt", OLD)
    # Then the copy is run as new, once; a.txt stays where it was, with one outcome line
    assert "duplicate_of" not in repeat and repeat["llm_calls"] == 1
    first = sidecar_for(home, "a.txt")
    assert first is not None
    assert len([e for e in audit_events(home, "outcome") if e["correlation_id"] == first["correlation_id"]]) == 1
