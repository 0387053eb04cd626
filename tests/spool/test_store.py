"""The spool store, the one mover: no rename replaces a file, in any folder, even when a name is taken
between the check and the rename."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from agentd.audit import AuditLog
from agentd.config import Config
from agentd.durable.group import GroupSync
from agentd.spool import store as store_mod
from agentd.spool.deferred import Deferrals
from agentd.spool.layout import ALL_FOLDERS, Outcome, free_name
from agentd.spool.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    config = Config(home=tmp_path, fsync=False)
    for sub in ALL_FOLDERS:
        (tmp_path / sub).mkdir()
    audit = AuditLog(config.logs_dir).open()
    yield Store(config, audit, GroupSync(enabled=False), Deferrals(config.state_dir))
    audit.close()


@pytest.fixture
def racing(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """free_name answers a name that a stranger takes right after the check (the race NOREPLACE closes)."""
    taken: list[Path] = []

    def first_free_then_taken(directory: Path, name: str, cid: str, reserved: Any = frozenset()) -> Path:
        chosen = free_name(directory, name, cid, reserved)
        if not taken:
            chosen.write_text("a stranger's file")
            taken.append(chosen)
        return chosen

    monkeypatch.setattr(store_mod, "free_name", first_free_then_taken)
    return taken


async def _claim(store: Store, tmp_path: Path, name: str = "doc.txt", body: str = "ours") -> Any:
    path = tmp_path / "incoming" / name
    path.write_text(body)
    claim = await store.claim(path, "triage")
    assert claim is not None
    return claim


@pytest.mark.parametrize("outcome", [Outcome.ARCHIVED, Outcome.FAILED, Outcome.REVIEW])
async def test_finishing_onto_a_name_taken_meanwhile_keeps_both_files(
        store: Store, tmp_path: Path, racing: list[Path], outcome: Outcome) -> None:
    claim = await _claim(store, tmp_path)
    final = await store.finish(claim, outcome, {"correlation_id": claim.cid, "original_name": "doc.txt"}, {})
    folder = tmp_path / outcome.folder
    assert racing and racing[0].parent == folder and racing[0].read_text() == "a stranger's file"
    assert final.parent == folder and final != racing[0] and final.read_text() == "ours"
    assert json.loads((folder / (final.name + ".meta.json")).read_text())["correlation_id"] == claim.cid


async def test_putting_a_claim_back_onto_a_name_taken_meanwhile_keeps_both(
        store: Store, tmp_path: Path, racing: list[Path]) -> None:
    claim = await _claim(store, tmp_path)
    back = await store.unclaim(claim, "kill_switch")
    assert back.parent == tmp_path / "incoming" and back.read_text() == "ours"
    assert racing[0].parent == tmp_path / "incoming" and racing[0].read_text() == "a stranger's file"


async def test_a_requeue_onto_a_name_in_incoming_keeps_both(store: Store, tmp_path: Path) -> None:
    claim = await _claim(store, tmp_path)
    final = await store.finish(claim, Outcome.FAILED, {"correlation_id": claim.cid}, {})
    (tmp_path / "incoming" / "doc.txt").write_text("dropped again meanwhile")
    back = store.requeue(final, "triage", claim.cid, by="test", name="doc.txt")
    assert (tmp_path / "incoming" / "doc.txt").read_text() == "dropped again meanwhile"
    assert back.read_text() == "ours" and back.name != "doc.txt"
    assert not (tmp_path / "failed" / (final.name + ".meta.json")).exists()


async def test_the_claimed_line_is_written_before_the_claim_exists(store: Store, tmp_path: Path) -> None:
    # a claim found in processing/ always has its dropped name on record
    claim = await _claim(store, tmp_path, name="Rechnung 2026.pdf")
    lines = [json.loads(line) for line in (tmp_path / "logs" / "audit.jsonl").read_text().splitlines()]
    claimed = next(r for r in lines if r["event"] == "claimed")
    assert claimed["correlation_id"] == claim.cid and claimed["original_name"] == "Rechnung 2026.pdf"
    recovered = store.recover(clean_shutdown=False)
    assert [(c.cid, c.original_name, c.crash_resumes) for c in recovered] == [(claim.cid, "Rechnung 2026.pdf", 1)]
