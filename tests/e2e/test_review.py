"""The review queue: ambiguous parties wait in review/; a human approves with a choice or rejects."""
from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest

from agentd.durable.crash import POINTS
from tests.helpers import audit_events, cli, sidecar_for

DIRECTORY = ("id,name,email,aliases\n"
             "c-100,Acme Widgets Ltd,billing@acme-widgets.example,\n"
             "c-200,ACME Widgets Limited,accounts@acme-uk.example,Acme Widgets Ltd|Acme UK\n"
             "c-300,Nordwind GmbH,info@nordwind.example,\n")
INVOICE = "INVOICE 2291\nAcme Widgets Ltd\n12 Mill Road\nAmount due: $120.00\nPlease pay by 2026-07-01.\n"


@pytest.fixture
def ambiguous(home: Path) -> dict:
    """One invoice whose sender matches two directory entries, processed into review/."""
    (home / "data").mkdir(exist_ok=True)
    (home / "data" / "directory.csv").write_text(DIRECTORY)
    (home / "incoming").mkdir(exist_ok=True)
    (home / "incoming" / "invoice.txt").write_text(INVOICE)
    done = cli(home, "run", "--burst")
    assert done.returncode == 0, done.stderr
    meta = sidecar_for(home, "invoice.txt")
    assert meta is not None
    return meta


def test_a_party_matching_two_directory_entries_waits_in_review_with_both_candidates(
        home: Path, ambiguous: dict) -> None:
    assert ambiguous["outcome"] == "review" and ambiguous["reason"] == "ambiguous_party"
    assert (home / "review" / "invoice.txt").exists()
    assert [(c["id"], c["name"]) for c in ambiguous["candidates"]] == [
        ("c-100", "Acme Widgets Ltd"), ("c-200", "ACME Widgets Limited")]
    assert ambiguous["result"]["party_link"]["status"] == "ambiguous"


def test_approve_with_a_choice_archives_the_file_with_that_link_and_an_audit_event(
        home: Path, ambiguous: dict) -> None:
    cid = ambiguous["correlation_id"]

    done = cli(home, "review", "approve", cid[:8], "--choice", "2")

    assert done.returncode == 0, done.stderr
    assert "approved" in done.stdout and "archive/invoice.txt" in done.stdout
    assert not (home / "review" / "invoice.txt").exists() and (home / "archive" / "invoice.txt").exists()
    assert list((home / "review").glob("*.meta.json")) == []
    meta = sidecar_for(home, "invoice.txt")
    assert meta["outcome"] == "archived" and meta["reason"] == "approved"
    link = meta["result"]["party_link"]
    assert link["status"] == "linked" and link["id"] == "c-200" and link["name"] == "ACME Widgets Limited"
    assert meta["review"]["decision"] == "approve" and meta["review"]["choice"] == 2
    assert meta["review"]["reviewer"] == getpass.getuser() and meta["review"]["was"] == "ambiguous_party"
    [decision] = audit_events(home, "review_decision")
    assert decision["correlation_id"] == cid and decision["decision"] == "approve" and decision["choice"] == 2
    assert decision["reviewer"] == getpass.getuser() and decision["at"] and decision["edits"] == {}
    # the run keeps its one outcome line (review); the decision's line carries the new place and sidecar
    outcomes = [e for e in audit_events(home, "outcome") if e["correlation_id"] == cid]
    assert [o["outcome"] for o in outcomes] == ["review"]
    assert decision["outcome"] == "archived" and decision["seq"] == meta["audit_seq"]
    assert decision["hash"] == meta["audit_hash"] and decision["sidecar"]["result"]["party_link"]["id"] == "c-200"
    verified = cli(home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout


def test_reject_moves_the_file_to_failed_with_a_policy_error(home: Path, ambiguous: dict) -> None:
    done = cli(home, "review", "reject", ambiguous["correlation_id"], "--reason", "not a customer of ours")
    assert done.returncode == 0, done.stderr
    meta = sidecar_for(home, "invoice.txt")
    assert (home / "failed" / "invoice.txt").exists()
    assert meta["outcome"] == "failed" and meta["error_class"] == "policy"
    assert meta["reason"] == "rejected_by_reviewer" and meta["review"]["decision"] == "reject"
    assert meta["review"]["note"] == "not a customer of ours" and meta["detail"] == "not a customer of ours"
    [decision] = audit_events(home, "review_decision")
    assert decision["decision"] == "reject"


def test_reject_without_a_reason_says_rejected_by_reviewer(home: Path, ambiguous: dict) -> None:
    assert cli(home, "review", "reject", ambiguous["correlation_id"]).returncode == 0
    meta = sidecar_for(home, "invoice.txt")
    assert meta["reason"] == "rejected_by_reviewer" and "note" not in meta["review"]


def test_list_shows_a_table_for_people_and_json_for_scripts(home: Path, ambiguous: dict) -> None:
    table = cli(home, "review", "list")
    assert table.returncode == 0
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["ID", "SINCE", "WORKFLOW", "REASON", "CHOICES", "FILE"]
    assert ambiguous["correlation_id"][:12] in row and "ambiguous_party" in row and "invoice.txt" in row
    rows = json.loads(cli(home, "review", "list", "--json").stdout)
    assert [(r["id"], r["reason"], r["candidates"]) for r in rows] == [
        (ambiguous["correlation_id"], "ambiguous_party", 2)]


def test_show_numbers_the_candidates_for_choice(home: Path, ambiguous: dict) -> None:
    shown = cli(home, "review", "show", ambiguous["correlation_id"][:6])
    assert shown.returncode == 0
    assert "1. Acme Widgets Ltd <billing@acme-widgets.example>" in shown.stdout
    assert "2. ACME Widgets Limited <accounts@acme-uk.example>" in shown.stdout
    as_json = json.loads(cli(home, "review", "show", ambiguous["correlation_id"], "--json").stdout)
    assert as_json["correlation_id"] == ambiguous["correlation_id"]


@pytest.mark.parametrize("args", [("--choice", "3"), ("--choice", "0"), ()])
def test_a_bad_or_missing_choice_is_a_usage_error_and_changes_nothing(home: Path, ambiguous: dict,
                                                                     args: tuple[str, ...]) -> None:
    done = cli(home, "review", "approve", ambiguous["correlation_id"], *args)
    assert done.returncode == 2 and "choice" in done.stderr
    assert (home / "review" / "invoice.txt").exists() and audit_events(home, "review_decision") == []


def test_an_unknown_id_is_exit_1(home: Path, ambiguous: dict) -> None:
    done = cli(home, "review", "approve", "ffffffffff", "--choice", "1")
    assert done.returncode == 1 and "no file in review/" in done.stderr


def test_an_id_already_decided_says_so(home: Path, ambiguous: dict) -> None:
    cid = ambiguous["correlation_id"]
    assert cli(home, "review", "approve", cid, "--choice", "1").returncode == 0
    again = cli(home, "review", "reject", cid)
    assert again.returncode == 1 and "not waiting for review (it is archived)" in again.stderr
    assert f"already decided by {getpass.getuser()} at " in again.stderr


def test_a_prefix_shared_by_two_files_is_ambiguous_and_a_short_one_is_a_usage_error(home: Path) -> None:
    (home / "review").mkdir()
    for n, cid in enumerate(("abcdef0123456789", "abcdef9876543210")):
        (home / "review" / f"f{n}.txt").write_text("x")
        (home / "review" / f"f{n}.txt.meta.json").write_text(json.dumps(
            {"correlation_id": cid, "workflow": "triage", "original_name": f"f{n}.txt", "outcome": "review",
             "reason": "low_confidence", "finished_at": f"2026-01-0{n + 1}T00:00:00Z"}))
    ambiguous = cli(home, "review", "show", "abcdef")
    assert ambiguous.returncode == 1 and "ambiguous" in ambiguous.stderr
    assert cli(home, "review", "show", "abc").returncode == 2
    approved = cli(home, "review", "approve", "abcdef98")
    assert approved.returncode == 0, approved.stderr
    assert json.loads((home / "archive" / "f1.txt.meta.json").read_text())["reason"] == "approved"


def test_an_empty_queue_says_so(home: Path) -> None:
    done = cli(home, "review", "list")
    assert done.returncode == 0 and "review queue is empty" in done.stdout


# -- a decision or a requeue killed at each of its durable steps ----------------------------------

REVIEW_POINTS = [p.name for p in POINTS.values() if p.scenario == "review"]
REQUEUE_POINTS = [p.name for p in POINTS.values() if p.scenario == "requeue"]


def placed(home: Path) -> dict[str, list[str]]:
    """Every name in the state folders a user looks at (the recovery's leftovers included)."""
    return {sub: sorted(p.name for p in (home / sub).iterdir()) if (home / sub).is_dir() else []
            for sub in ("incoming", "processing", "archive", "failed", "review", "state/transitions")}


def assert_verified(home: Path) -> None:
    verified = cli(home, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize("then", ["second_decision_first", "restart_first"])
@pytest.mark.parametrize("point", REVIEW_POINTS)
def test_an_approve_killed_at_any_step_ends_once_and_a_second_decision_is_refused(
        home: Path, ambiguous: dict, point: str, then: str) -> None:
    cid = ambiguous["correlation_id"]
    killed = cli(home, "review", "approve", cid[:8], "--choice", "2", AGENTD_CRASH_AT=point)
    assert killed.returncode == -9 and f"crash point {point}" in killed.stderr, killed.stderr  # the kill was there

    if then == "restart_first":  # the daemon's start finishes it, before any review command
        assert cli(home, "run", "--burst").returncode == 0
        assert placed(home)["archive"] == ["invoice.txt", "invoice.txt.meta.json"] and placed(home)["review"] == []
    again = cli(home, "review", "reject", cid[:8])
    assert cli(home, "run", "--burst").returncode == 0

    # the second reviewer is told who decided and when; nothing changes for it
    assert again.returncode == 1, again.stderr
    assert "it is archived" in again.stderr and f"already decided by {getpass.getuser()} at " in again.stderr
    assert placed(home) == {"incoming": [], "processing": [], "archive": ["invoice.txt", "invoice.txt.meta.json"],
                            "failed": [], "review": [], "state/transitions": []}
    meta = sidecar_for(home, "invoice.txt")
    assert meta["outcome"] == "archived" and meta["review"]["decision"] == "approve"
    assert meta["result"]["party_link"]["id"] == "c-200"
    [decision] = audit_events(home, "review_decision")
    assert decision["correlation_id"] == cid and decision["decision"] == "approve"
    assert (decision["seq"], decision["hash"]) == (meta["audit_seq"], meta["audit_hash"])
    assert_verified(home)


def test_a_decision_left_half_done_is_finished_by_the_next_review_list(home: Path, ambiguous: dict) -> None:
    cid = ambiguous["correlation_id"]
    assert cli(home, "review", "reject", cid, AGENTD_CRASH_AT="review_after_sidecar").returncode == -9
    assert (home / "review" / "invoice.txt").exists()  # half done: the file still where it was

    listed = cli(home, "review", "list")

    assert listed.returncode == 0 and "review queue is empty" in listed.stdout
    assert placed(home)["failed"] == ["invoice.txt", "invoice.txt.meta.json"] and placed(home)["review"] == []
    assert sidecar_for(home, "invoice.txt")["reason"] == "rejected_by_reviewer"
    assert len(audit_events(home, "review_decision")) == 1


@pytest.mark.parametrize("point", REQUEUE_POINTS)
def test_a_requeue_killed_at_any_step_moves_the_file_once(home: Path, ambiguous: dict, point: str) -> None:
    cid = ambiguous["correlation_id"]
    killed = cli(home, "requeue", cid[:8], AGENTD_CRASH_AT=point)
    assert killed.returncode == -9 and f"crash point {point}" in killed.stderr, killed.stderr

    again = cli(home, "requeue", cid[:8])

    # the killed requeue is finished first, so the second finds nothing left to move
    assert again.returncode == 1 and f"no failed or review file with id {cid[:8]}" in again.stderr, again.stderr
    assert placed(home) == {"incoming": ["invoice.txt"], "processing": [], "archive": [], "failed": [],
                            "review": [], "state/transitions": []}
    [requeued] = audit_events(home, "requeued")
    assert requeued["correlation_id"] == cid and requeued["was"] == "review"
    # the daemon runs it again as a new run: one copy, back in review/ under a new id
    assert cli(home, "run", "--burst").returncode == 0
    assert placed(home)["review"] == ["invoice.txt", "invoice.txt.meta.json"]
    assert sidecar_for(home, "invoice.txt")["correlation_id"] != cid
    assert_verified(home)


def test_a_requeue_killed_before_its_move_is_finished_by_the_daemons_start(home: Path, ambiguous: dict) -> None:
    cid = ambiguous["correlation_id"]
    assert cli(home, "requeue", cid, AGENTD_CRASH_AT="requeue_after_record").returncode == -9
    assert (home / "review" / "invoice.txt").exists()

    assert cli(home, "run", "--burst").returncode == 0

    assert placed(home)["review"] == ["invoice.txt", "invoice.txt.meta.json"] and placed(home)["incoming"] == []
    assert sidecar_for(home, "invoice.txt")["correlation_id"] != cid  # it ran again, once
    assert [e["correlation_id"] for e in audit_events(home, "requeued")] == [cid]
    assert_verified(home)


def test_a_half_done_decision_never_lands_on_a_file_that_took_its_name_meanwhile(home: Path, ambiguous: dict) -> None:
    cid = ambiguous["correlation_id"]
    assert cli(home, "review", "approve", cid, "--choice", "1", AGENTD_CRASH_AT="review_after_record").returncode == -9
    # another run's file and sidecar arrive under the recorded name before anything finishes the decision
    (home / "archive" / "invoice.txt").write_text("someone else's invoice\n")
    stranger = {"correlation_id": "f" * 32, "outcome": "archived", "original_name": "invoice.txt"}
    (home / "archive" / "invoice.txt.meta.json").write_text(json.dumps(stranger))

    assert cli(home, "review", "list").returncode == 0

    assert (home / "archive" / "invoice.txt").read_text() == "someone else's invoice\n"
    assert json.loads((home / "archive" / "invoice.txt.meta.json").read_text()) == stranger
    moved = home / "archive" / f"invoice-{cid[:8]}.txt"
    assert moved.read_text() == INVOICE
    assert json.loads((home / "archive" / f"invoice-{cid[:8]}.txt.meta.json").read_text())["correlation_id"] == cid
    assert placed(home)["review"] == [] and placed(home)["state/transitions"] == []
    [decision] = audit_events(home, "review_decision")
    assert decision["file"] == moved.name  # the line names where the file really went


def test_a_recorded_decision_whose_file_an_operator_took_away_is_dropped_without_a_line(
        home: Path, ambiguous: dict) -> None:
    cid = ambiguous["correlation_id"]
    assert cli(home, "review", "approve", cid, "--choice", "1", AGENTD_CRASH_AT="review_after_record").returncode == -9
    (home / "review" / "invoice.txt").rename(home / "invoice.txt")  # the operator keeps it elsewhere

    listed = cli(home, "review", "list")

    assert listed.returncode == 0 and placed(home)["state/transitions"] == []
    assert placed(home)["archive"] == [] and audit_events(home, "review_decision") == []
    assert (home / "invoice.txt").read_text() == INVOICE


def test_an_unreadable_transition_record_is_set_aside_and_nothing_moves(home: Path, ambiguous: dict) -> None:
    records = home / "state" / "transitions"
    records.mkdir(parents=True)
    (records / f"{ambiguous['correlation_id']}.json").write_text('{"kind": "review", "op"')  # torn by a disk fault

    listed = cli(home, "review", "list")

    assert listed.returncode == 0 and ambiguous["correlation_id"][:12] in listed.stdout  # still waiting
    assert sorted(p.name for p in records.iterdir()) == [f".{ambiguous['correlation_id']}.json.unreadable"]
    assert placed(home)["review"] == ["invoice.txt", "invoice.txt.meta.json"]


def test_requeue_failed_killed_mid_list_moves_every_file_once(home: Path) -> None:
    (home / "failed").mkdir(parents=True)
    for n in range(3):
        (home / "failed" / f"doc-{n}.txt").write_text(f"document {n}\n")
        (home / "failed" / f"doc-{n}.txt.meta.json").write_text(json.dumps(
            {"correlation_id": f"{n:02d}" + "ab" * 15, "workflow": "triage", "original_name": f"doc-{n}.txt",
             "outcome": "failed", "reason": "extract_timeout", "error_class": "data"}))
    killed = cli(home, "requeue", "--failed", AGENTD_CRASH_AT="requeue_after_rename")
    assert killed.returncode == -9 and len(placed(home)["incoming"]) == 1  # the first one moved, then the kill

    again = cli(home, "requeue", "--failed")

    assert again.returncode == 0, again.stderr
    assert placed(home)["incoming"] == ["doc-0.txt", "doc-1.txt", "doc-2.txt"] and placed(home)["failed"] == []
    assert sorted(e["file"] for e in audit_events(home, "requeued")) == ["doc-0.txt", "doc-1.txt", "doc-2.txt"]
    assert placed(home)["state/transitions"] == []
