"""The dedupe index reuses a first run's result only while that run's sidecar is still its own."""
from __future__ import annotations

import json
from pathlib import Path

from agentd.spool.dedupe import DedupeIndex

SHA_A, SHA_B = "a" * 64, "b" * 64


def _sidecar(path: Path, cid: str, sha256: str, outcome: str = "archived") -> Path:
    path.write_text(json.dumps({"correlation_id": cid, "workflow": "triage", "sha256": sha256,
                                "outcome": outcome, "result": {"of": cid}}))
    return path


def test_an_entry_whose_sidecar_is_still_its_own_is_reused(tmp_path: Path) -> None:
    index = DedupeIndex(tmp_path / "index.sqlite")
    index.put("triage", SHA_A, "cid-a", _sidecar(tmp_path / "a.txt.meta.json", "cid-a", SHA_A))
    found = index.reusable("triage", SHA_A)
    assert found is not None and found[0] == "cid-a" and found[1]["result"] == {"of": "cid-a"}


def test_a_sidecar_now_of_another_run_is_not_reused_and_the_entry_is_forgotten(tmp_path: Path) -> None:
    # Given the first run's sidecar replaced by a new file's under the same name (archive/ pruned)
    index = DedupeIndex(tmp_path / "index.sqlite")
    meta = tmp_path / "a.txt.meta.json"
    index.put("triage", SHA_A, "cid-a", _sidecar(meta, "cid-a", SHA_A))
    _sidecar(meta, "cid-b", SHA_B)
    # Then the other run's result is never handed out, and the stale entry goes
    assert index.reusable("triage", SHA_A) is None
    assert index.get("triage", SHA_A) is None


def test_a_sidecar_with_another_sha256_or_outcome_or_unreadable_is_not_reused(tmp_path: Path) -> None:
    index = DedupeIndex(tmp_path / "index.sqlite")
    cases = {"sha": _sidecar(tmp_path / "1.meta.json", "cid-a", SHA_B),
             "moved": _sidecar(tmp_path / "2.meta.json", "cid-a", SHA_A, outcome="failed"),
             "broken": tmp_path / "3.meta.json", "array": tmp_path / "4.meta.json",
             "gone": tmp_path / "5.meta.json"}
    cases["broken"].write_text("{not json")
    cases["array"].write_text("[1, 2]")
    for name, path in cases.items():
        index.put("triage", SHA_A, "cid-a", path)
        assert index.reusable("triage", SHA_A) is None, name
        assert index.get("triage", SHA_A) is None, name


def test_an_entry_of_another_workflow_is_not_reused(tmp_path: Path) -> None:
    index = DedupeIndex(tmp_path / "index.sqlite")
    meta = _sidecar(tmp_path / "a.meta.json", "cid-a", SHA_A)  # a triage run's sidecar
    index.put("invoices", SHA_A, "cid-a", meta)
    assert index.reusable("invoices", SHA_A) is None


def test_the_crash_hook_runs_before_the_entry_is_put(tmp_path: Path) -> None:
    seen: list[tuple[str, object]] = []
    index = DedupeIndex(tmp_path / "index.sqlite", crash=lambda point: seen.append((point, index.get("t", SHA_A))))
    index.put("t", SHA_A, "cid-a", tmp_path / "a.meta.json")
    assert seen == [("before_dedupe_index_put", None)]
