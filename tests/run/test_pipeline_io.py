"""The pipeline and I/O errors: a disk error in a step is no outcome (the claim is held and retried, its
journal in memory), while a claimed file swapped for a link is the file's fault (failed, data). In-process
with the daemon's own parts (agentd.lifecycle.services.build) on a tmp home."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentd.lifecycle.services import Services, build
from agentd.workflows import Workflow
from tests.helpers import sidecars
from tests.tools.support import config

DISK = {"full": True}


async def _write_a_report(run: Any) -> dict[str, Any]:
    if DISK["full"]:
        raise OSError(28, "No space left on device")  # what a full disk says to a step's own write
    return {"chars": len(run.data)}


WORKFLOWS = {"report": Workflow("report", steps=(_write_a_report,))}


def _services(home: Path) -> Services:
    return build(config(home), workflows=WORKFLOWS)


async def _claim(parts: Services, name: str = "a.txt") -> Any:
    folder = parts.config.home / "incoming" / "report"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("twelve bytes")
    claim = await parts.store.claim(folder / name, "report")
    assert claim is not None
    return claim


async def test_a_disk_error_in_a_step_holds_the_claim_and_the_retry_finishes_it(tmp_path: Path) -> None:
    parts = _services(tmp_path)
    claim = await _claim(parts)
    # When the step meets a full disk
    DISK["full"] = True
    with pytest.raises(OSError):
        await parts.pipeline.process(claim)
    # Then the file is held in processing/, neither failed nor anywhere else
    assert sidecars(tmp_path) == [] and claim.data.exists()
    # When the disk has room and the claim is tried again (the daemon's stalled retry)
    DISK["full"] = False
    await parts.pipeline.process(claim)
    (meta,) = sidecars(tmp_path)
    assert (meta["outcome"], meta["result"]) == ("archived", {"chars": 12})


async def test_a_claimed_file_swapped_for_a_link_fails_as_data_not_held(tmp_path: Path) -> None:
    parts = _services(tmp_path)
    claim = await _claim(parts)
    (tmp_path / "elsewhere.txt").write_text("not the dropped file")
    os.unlink(claim.data)
    os.symlink(tmp_path / "elsewhere.txt", claim.data)
    DISK["full"] = False
    await parts.pipeline.process(claim)
    (meta,) = sidecars(tmp_path, "failed")
    assert (meta["reason"], meta["error_class"]) == ("not_a_regular_file", "data")
