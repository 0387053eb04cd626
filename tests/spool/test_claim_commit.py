"""A claim whose group commit failed (a full disk) is not wedged: the next wait commits it afresh."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentd.audit import AuditLog
from agentd.config import Config
from agentd.spool.deferred import Deferrals
from agentd.spool.layout import ALL_FOLDERS
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
