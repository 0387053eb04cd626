"""The gateway and the run's memo (the journal): the intent is on disk before a request leaves, a call
whose intent cannot be written is never sent, and a paid answer survives a full disk in memory, so the
retry replays it. Real parts: the openai provider against the fake model server, a real journal file,
a real full filesystem (a tiny tmpfs)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from agentd.durable.group import GroupSync
from agentd.durable.journal import Journal
from agentd.errors import Paused
from agentd.guards.budget import Budget, BudgetGuard
from agentd.guards.killswitch import KillSwitchGuard
from tests.fakellm import Seen
from tests.fakewire import OK
from tests.fullfs import fill, small_disk  # noqa: F401  (small_disk: the fixture)
from tests.llm.test_providers import REQUEST, FakeRun, Harness, harness  # noqa: F401  (harness: the fixture)

def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _budget(h: Harness) -> Budget:
    return h.gateway.guards.of(BudgetGuard).budget  # type: ignore[no-any-return]


async def test_the_intent_is_fsynced_before_the_request_and_the_meter_names_it(harness: Callable[..., Any]) -> None:
    seen_on_disk: list[list[dict[str, Any]]] = []

    def responder(seen: Seen) -> Any:
        seen_on_disk.append(_lines(h.run.journal.path))  # what the journal held when the request arrived
        return OK

    h: Harness = await harness(responder=responder)
    await h.gateway.structured(h.run, REQUEST, "classify:ask:1")
    # Then the server got the request only after the intent, with its worst case, was on disk
    ((intent,),) = seen_on_disk
    assert intent["type"] == "intent" and intent["id"] == "m1" and intent["model"] == "fake-model"
    (call,) = h.calls()
    assert intent["worst_usd"] != "0" and call["intent"] == "m1"
    # and the meter that followed resolves it: nothing is left to charge after a crash
    assert [e.get("type") for e in _lines(h.run.journal.path)] == ["intent", "call", None]
    assert Journal(h.run.journal.path, None).unanswered() == []


async def test_a_call_whose_intent_cannot_be_written_is_never_sent_and_holds_nothing(
        harness: Callable[..., Any]) -> None:
    h: Harness = await harness()
    os.symlink("/dev/full", h.run.journal.path)  # every write to the journal: ENOSPC
    with pytest.raises(OSError):
        await h.gateway.structured(h.run, REQUEST, "classify:ask:1")
    assert h.server.count() == 0 and h.calls() == []
    assert _budget(h).reserved_today == 0 and _budget(h).run_spent(h.run.cid) == 0


async def test_a_paid_answer_survives_a_full_disk_in_memory_and_is_not_bought_again(
        harness: Callable[..., Any], small_disk: Path) -> None:
    journal = small_disk / "journal.jsonl"

    def responder(seen: Seen) -> Any:
        fill(small_disk / "filler.bin", journal)  # the disk fills while the model answers
        return OK

    h: Harness = await harness(responder=responder)
    h.run = FakeRun("cid-1", "triage", Journal(journal, GroupSync()))
    # When the answer cannot be written
    with pytest.raises(OSError):
        await h.gateway.structured(h.run, REQUEST, "classify:ask:1")
    assert h.server.count() == 1
    paid = h.run.journal.values["classify:ask:1"]["value"]
    # Then once the disk has room, the same ask is answered from memory: no second request
    (small_disk / "filler.bin").unlink()
    assert await h.gateway.structured(h.run, REQUEST, "classify:ask:1") == paid
    assert h.server.count() == 1
    await h.run.journal.put("step:classify", paid)  # the next write takes what waited in memory along
    kinds = [e.get("type", e.get("key")) for e in _lines(journal)]
    assert kinds == ["intent", "call", "classify:ask:1", "step:classify"]


class _SwitchDuringFsync(Journal):
    """The real journal; the kill switch is engaged while its intent is fsynced (an operator at that moment)."""

    def __init__(self, path: Path, engage: Callable[[], Any]):
        super().__init__(path, GroupSync())
        self.engage = engage

    async def _sync_now(self) -> None:
        await super()._sync_now()
        self.engage()


async def test_the_kill_switch_engaged_while_the_intent_is_fsynced_stops_the_request(
        harness: Callable[..., Any], tmp_path: Path) -> None:
    h: Harness = await harness()
    kill = h.gateway.guards.of(KillSwitchGuard).kill
    engage = lambda: kill.set(True, h.gateway.audit, reason="incident", by="ops")  # noqa: E731
    h.run = FakeRun("cid-1", "triage", _SwitchDuringFsync(tmp_path / "switched.jsonl", engage))
    with pytest.raises(Paused) as paused:
        await h.gateway.structured(h.run, REQUEST, "classify:ask:1")
    # Then the request never reached the server, nothing is held or charged, the intent is voided
    assert paused.value.reason == "kill_switch" and h.server.count() == 0 and h.calls() == []
    assert _budget(h).reserved_today == 0 and _budget(h).run_spent(h.run.cid) == 0
    assert [e["type"] for e in _lines(h.run.journal.path)] == ["intent", "void"]
    assert Journal(h.run.journal.path, None).unanswered() == []
