"""A claim's group commit: one commit, shared with the outcome's, for a run that needs none earlier;
a failed commit (a full disk) is not remembered: the next wait commits it afresh."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentd.audit import AuditLog
from agentd.config import Config
from agentd.durable.group import write_file
from agentd.spool.deferred import Deferrals
from agentd.spool.layout import ALL_FOLDERS, Outcome
from agentd.spool.store import Store


class FlakySync:
    """A GroupSync whose first round fails with ENOSPC, as on a full disk; later rounds succeed."""

    enabled = True

    def __init__(self) -> None:
        self.rounds = 0

    async def sync(self, paths: Any) -> None:
        self.rounds += 1
        if self.rounds == 1:
            raise OSError(28, "No space left on device")


async def test_a_failed_claim_commit_is_tried_again_not_remembered(tmp_path: Path) -> None:
    config = Config(home=tmp_path)
    for sub in ALL_FOLDERS:
        (tmp_path / sub).mkdir()
    sync = FlakySync()
    audit = AuditLog(config.logs_dir).open()
    store = Store(config, audit, sync, Deferrals(config.state_dir))  # type: ignore[arg-type]
    (tmp_path / "incoming" / "a.txt").write_text("a")
    claim = await store.claim(tmp_path / "incoming" / "a.txt", "triage")
    assert claim is not None
    # Given the claim's commit failed
    with pytest.raises(OSError):
        await claim.durable()
    # When the run waits for it again (the daemon retries the stalled claim), it is committed afresh
    await claim.durable()
    await claim.durable()
    assert sync.rounds == 2
    audit.close()


class RecordingSync:
    """A GroupSync that records each commit's paths and how many audit lines were written before it;
    the rounds listed in `failing` fail with ENOSPC."""

    enabled = True

    def __init__(self, audit_path: Path, failing: tuple[int, ...] = ()) -> None:
        self.audit_path = audit_path
        self.failing = failing
        self.commits: list[tuple[set[str], int]] = []

    async def sync(self, paths: Any, write: Any = None) -> None:
        if write is not None:
            write_file(*write)
        lines = len(self.audit_path.read_bytes().splitlines())
        self.commits.append(({str(p) for p in paths}, lines))
        if len(self.commits) in self.failing:
            raise OSError(28, "No space left on device")


def _store(tmp_path: Path, failing: tuple[int, ...] = ()) -> tuple[Store, RecordingSync, AuditLog]:
    config = Config(home=tmp_path)
    for sub in ALL_FOLDERS:
        (tmp_path / sub).mkdir()
    audit = AuditLog(config.logs_dir).open()
    sync = RecordingSync(audit.path, failing)
    return Store(config, audit, sync, Deferrals(config.state_dir)), sync, audit  # type: ignore[arg-type]


async def test_a_run_waits_for_one_commit_that_covers_its_claim_and_its_outcome(tmp_path: Path) -> None:
    store, sync, audit = _store(tmp_path)
    (tmp_path / "incoming" / "a.txt").write_text("a")
    claim = await store.claim(tmp_path / "incoming" / "a.txt", "triage")
    assert claim is not None and sync.commits == []  # the claim alone commits nothing yet
    final = await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    # one commit, after the outcome line, holding the claim's folders and line and the outcome's
    [(paths, lines_before)] = sync.commits
    lines = audit.path.read_text().splitlines()
    assert lines_before == len(lines) and '"event":"outcome"' in lines[-1]
    assert {str(tmp_path / "incoming"), str(tmp_path / "processing"), str(audit.path),
            str(tmp_path / "archive"), str(final) + ".meta.json"} <= paths
    assert final.read_text() == "a" and not claim.commit_paths
    await claim.durable()  # already on disk: no second commit
    assert len(sync.commits) == 1
    audit.close()


async def test_a_failed_outcome_commit_leaves_the_claim_to_be_committed_by_the_retry(tmp_path: Path) -> None:
    store, sync, audit = _store(tmp_path, failing=(1,))
    (tmp_path / "incoming" / "a.txt").write_text("a")
    claim = await store.claim(tmp_path / "incoming" / "a.txt", "triage")
    assert claim is not None
    # Given the outcome's commit failed (the file stays in processing/, its outcome line logged)
    with pytest.raises(OSError):
        await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    assert claim.data.exists() and claim.commit_paths
    # When the run is finished again, its commit covers the claim again, and the file lands once
    final = await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    assert str(tmp_path / "incoming") in sync.commits[1][0] and final.parent.name == "archive"
    assert sum('"event":"outcome"' in line for line in audit.path.read_text().splitlines()) == 1
    audit.close()


async def test_a_wait_before_the_outcome_commits_the_claim_first_and_the_outcome_does_not_repeat_it(
        tmp_path: Path) -> None:
    store, sync, audit = _store(tmp_path)
    (tmp_path / "incoming" / "a.txt").write_text("a")
    claim = await store.claim(tmp_path / "incoming" / "a.txt", "triage")
    assert claim is not None
    # When a tool's side effect waits for the claim, its commit runs then, before anything acts
    await claim.durable()
    [(paths, _)] = sync.commits
    assert {str(tmp_path / "incoming"), str(tmp_path / "processing"), str(audit.path)} <= paths
    # Then the outcome's commit does not fsync the claim's folders again
    await store.finish(claim, Outcome.ARCHIVED, {"correlation_id": claim.cid}, {})
    assert len(sync.commits) == 2 and str(tmp_path / "incoming") not in sync.commits[1][0]
    audit.close()
