"""A run's sidecar never replaces a file another writer put under its name: the run takes the next
free name; its own sidecar from an interrupted finish stands (the real GroupSync, thread and helper)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from agentd.audit import AuditLog
from agentd.config import Config
from agentd.durable.group import GroupSync
from agentd.spool.deferred import Deferrals
from agentd.spool.layout import ALL_FOLDERS, Outcome
from agentd.spool.store import Claim, Store

STRANGER = b'{"correlation_id": "someone-else", "note": "another writer\'s sidecar"}\n'


class RacingSync(GroupSync):
    """A real GroupSync; another writer creates the file of the first write right before its round
    (after free_name looked), or the first round's fsyncs fail after its write (ENOSPC)."""

    def __init__(self, stranger: bool = False, fail_at: int = 0) -> None:
        super().__init__(enabled=True)
        self.stranger, self.fail_at, self.writes = stranger, fail_at, 0

    async def sync(self, paths: Any, write: Any = None) -> None:
        if write is not None:
            self.writes += 1
            if self.stranger and self.writes == 1:
                Path(write[0]).write_bytes(STRANGER)
        await super().sync(paths, write)
        if write is not None and self.writes == self.fail_at:
            raise OSError(28, "No space left on device")


@pytest.fixture
async def make_store(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[tuple[AuditLog, GroupSync]] = []

    async def make(sync: RacingSync, helper: bool) -> Store:
        config = Config(home=tmp_path)
        for sub in ALL_FOLDERS:
            (tmp_path / sub).mkdir(exist_ok=True)
        if helper:
            sync.use_helper()
            assert await sync.helper_started() is not None
        audit = AuditLog(config.logs_dir).open()
        made.append((audit, sync))
        return Store(config, audit, sync, Deferrals(config.state_dir))

    yield make
    for audit, sync in made:
        audit.close()
        await sync.close()


async def _claimed(make_store: Any, sync: RacingSync, helper: bool, home: Path) -> tuple[Store, Claim]:
    """A store on `sync` and a claim of incoming/a.txt."""
    store = await make_store(sync, helper)
    (home / "incoming" / "a.txt").write_text("a")
    claim = await store.claim(home / "incoming" / "a.txt", "triage")
    assert claim is not None
    return store, claim


@pytest.mark.parametrize("helper", [False, True], ids=["thread", "helper"])
async def test_a_sidecar_name_taken_after_free_name_looked_is_left_alone(
        tmp_path: Path, make_store: Any, helper: bool) -> None:
    store, claim = await _claimed(make_store, RacingSync(stranger=True), helper, tmp_path)
    # When another writer puts a.txt.meta.json in archive/ between free_name and the sidecar's write
    final = await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    # Then its file is untouched, and the run landed under a free name with its own sidecar
    assert (tmp_path / "archive" / "a.txt.meta.json").read_bytes() == STRANGER
    assert final.name == f"a-{claim.cid[:8]}.txt" and final.read_text() == "a"
    assert json.loads((final.parent / (final.name + ".meta.json")).read_text())["correlation_id"] == claim.cid
    assert not [n for n in os.listdir(tmp_path / "archive") if n.startswith(".tmp-")]


@pytest.mark.parametrize("helper", [False, True], ids=["thread", "helper"])
async def test_a_finish_retried_after_its_sidecar_was_written_keeps_that_sidecar(
        tmp_path: Path, make_store: Any, helper: bool) -> None:
    store, claim = await _claimed(make_store, RacingSync(fail_at=1), helper, tmp_path)
    # Given the sidecar written but the round's fsync failed (the file still in processing/)
    with pytest.raises(OSError):
        await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    assert (tmp_path / "archive" / "a.txt.meta.json").exists() and claim.data.exists()
    # When the run is finished again, its own sidecar is no stranger: the file lands under its name
    final = await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    assert final == tmp_path / "archive" / "a.txt" and final.read_text() == "a"
    assert sorted(os.listdir(tmp_path / "archive")) == ["a.txt", "a.txt.meta.json"]


@pytest.mark.parametrize("helper", [False, True], ids=["thread", "helper"])
async def test_a_finish_retried_after_it_moved_off_a_strangers_name_goes_on_under_that_name(
        tmp_path: Path, make_store: Any, helper: bool) -> None:
    # Given a finish that found a stranger's sidecar, wrote its own under a-<cid8>.txt, and then failed
    # (its fsync: ENOSPC; a crash there leaves the same), the file still in processing/
    store, claim = await _claimed(make_store, RacingSync(stranger=True, fail_at=2), helper, tmp_path)
    with pytest.raises(OSError):
        await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    # When it is finished again (the outcome line names a.txt, as recovery reads it)
    final = await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    # Then it lands under the name its earlier try took: one sidecar of its own, none left over
    assert final.name == f"a-{claim.cid[:8]}.txt" and final.read_text() == "a"
    assert sorted(os.listdir(tmp_path / "archive")) == sorted(["a.txt.meta.json", final.name,
                                                               final.name + ".meta.json"])
    assert (tmp_path / "archive" / "a.txt.meta.json").read_bytes() == STRANGER
