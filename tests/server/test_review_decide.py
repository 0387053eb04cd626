"""agentd.server.review.decide in-process: many deciders at once on one item (threads, each with its
own audit handle and store, as the CLI and the console's desk have), and what one decision leaves."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.server import review
from tests.helpers import audit_events, cli
from tests.server.support import review_item

CID = "dddd0000111122223333444455556666"


@pytest.fixture
def config(home: Path, monkeypatch: pytest.MonkeyPatch) -> config_mod.Config:
    monkeypatch.chdir(home.parent)  # no developer .env
    return config_mod.load(environ={"AGENTD_HOME": str(home), "AGENTD_FSYNC": "0"})


def test_eight_deciders_at_once_make_one_decision_and_the_others_are_told_who(home: Path,
                                                                              config: config_mod.Config) -> None:
    sidecar = review_item(home, "invoice.txt", CID)
    meta = json.loads(sidecar.read_text())
    start = threading.Barrier(8)
    outcomes: dict[str, str] = {}

    def decider(name: str) -> None:
        start.wait()
        try:
            review.decide(config, sidecar, meta, name.endswith(("0", "2", "4", "6")), by=name)
            outcomes[name] = "decided"
        except review.AlreadyDecided as exc:
            outcomes[name] = str(exc)

    threads = [threading.Thread(target=decider, args=(f"reviewer-{n}",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    winners = [name for name, what in outcomes.items() if what == "decided"]
    assert len(outcomes) == 8 and len(winners) == 1
    [decision] = audit_events(home, "review_decision")
    assert decision["reviewer"] == winners[0]
    folder = "archive" if decision["decision"] == "approve" else "failed"
    assert sorted(p.name for p in (home / folder).iterdir()) == ["invoice.txt", "invoice.txt.meta.json"]
    assert list((home / "review").iterdir()) == []
    for name, refusal in outcomes.items():
        if name != winners[0]:
            assert f"already decided by {winners[0]} at {decision['at']}" in refusal
    assert cli(home, "audit", "verify").returncode == 0


def test_a_decision_leaves_its_line_and_sidecar_bound_and_no_record_behind(home: Path,
                                                                          config: config_mod.Config) -> None:
    sidecar = review_item(home, "invoice.txt", CID)

    final = review.decide(config, sidecar, json.loads(sidecar.read_text()), False, note="not ours", by="ana")

    assert final == home / "failed" / "invoice.txt"
    meta = json.loads((home / "failed" / "invoice.txt.meta.json").read_text())
    [line] = audit_events(home, "review_decision")
    assert (line["seq"], line["hash"]) == (meta["audit_seq"], meta["audit_hash"]) and line["op"]
    assert line["sidecar"]["review"] == meta["review"] and meta["reason"] == "rejected_by_reviewer"
    assert list((home / "state" / "transitions").iterdir()) == []
    assert review.recover_pending(config) == []  # nothing left to carry on
