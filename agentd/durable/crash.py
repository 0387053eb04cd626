"""The crash points: every durable step of every transition, by name, in one registry.

A test names a point in AGENTD_CRASH_AT and the process (the daemon, or the CLI deciding a review
item or requeueing a file) writes one line naming the point to stderr and SIGKILLs itself right
there; never set in production. `tests/e2e/test_crash_sweep.py` enumerates POINTS and kills agentd
at each one (the line is its proof that the kill came at that point); a `crash_point(config, name)`
call whose name is not registered here raises, a registered point the sweep does not reach fails
the suite, and tests/durable/test_crash_registry.py finds durable steps in agentd/ that no point
names, so a new durable step cannot escape the test.

Each point says which scenario of the sweep reaches it (`scenario`) and what is on disk when the
process dies there (`leaves`): docs/durability.md is the same table, in write order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# the sweep's drivers: which kind of run reaches a point
SCENARIOS = ("offline", "model", "waiting", "tool", "review", "requeue")


@dataclass(frozen=True)
class Point:
    name: str
    transition: str  # claim, model call, tool call, outcome, review decision, requeue, ...
    scenario: str  # one of SCENARIOS
    leaves: str  # what a crash here leaves, and what recovery does with it


_TABLE: tuple[Point, ...] = (
    # -- claim: the claimed line, then the rename into processing/ -------------------------------
    Point("after_claimed_line", "claim", "offline",
          "a claimed line, the file still in incoming/: claimed again under a new id (claim_lost never)"),
    Point("after_claim_rename", "claim", "offline",
          "the file in processing/ under its correlation id: resumed with that id"),
    # -- model call: intent (reservation at worst case), answer, journal ---------------------------
    Point("after_model_intent", "model call", "model",
          "the call's intent fsynced in the run's journal, the request not sent: the resumed run charges it "
          "at its worst case (to the day at start, to the run on resume) and asks again"),
    Point("after_paid_answer", "model call", "model",
          "the paid answer in the run's journal: replayed on resume, not asked again"),
    # -- outcome: the outcome line, the sidecar with the fsyncs, the final rename ------------------
    Point("after_outcome_line", "outcome", "offline",
          "the outcome line (carrying the sidecar): finished as it says, whatever the new config"),
    Point("after_sidecar", "outcome", "offline",
          "the sidecar and the line fsynced, the file in processing/: renamed as the line says"),
    Point("before_final_rename", "outcome", "offline",
          "as after_sidecar"),
    Point("after_final_rename", "outcome", "offline",
          "the file and its sidecar in the terminal folder: nothing left to do"),
    Point("after_journal_kept", "outcome", "model",
          "the file archived, its journal moved to logs/journals/: nothing left to do (replay serves from it)"),
    # -- dedupe: the index entry of a first run, put after its final rename -------------------------
    Point("before_dedupe_index_put", "dedupe", "offline",
          "the first run archived, no index entry for its content: a later copy runs as new (paid once "
          "more), never with another file's result"),
    # -- waiting: a claim that did no paid work back to incoming/ --------------------------------
    Point("after_unclaim_rename", "waiting", "waiting",
          "the file back in incoming/, no waiting line (its journal, if any, still in processing/): claimed "
          "anew later under a new id; the orphan journal is put away at start"),
    Point("after_waiting_line", "waiting", "waiting",
          "the file in incoming/ and its waiting line: nothing left to do, claimed anew later"),
    # -- audit rotation: audit.jsonl renamed to audit-<first seq>.jsonl, then a new live file -----
    Point("after_audit_rotate", "audit rotation", "offline",
          "the rotated file, no live audit.jsonl: start opens one, the chain going on from the rotated "
          "file's last line"),
    # -- tool call: intent, side effect, result ----------------------------------------------------
    Point("after_tool_intent", "tool call", "tool",
          "the tool's intent (its idempotency key) fsynced, the tool not called: an idempotent tool is "
          "called with the same key on resume; any other goes to review, tool_outcome_unknown"),
    Point("after_tool_effect", "tool call", "tool",
          "the side effect done, its result not journaled: as after_tool_intent (the receiver drops the "
          "repeat of the key)"),
    Point("after_tool_result", "tool call", "tool",
          "the tool's result fsynced in the journal: replayed on resume, the tool not called again"),
    # -- review decision (the CLI or the console): decision record, sidecar, rename ----------------
    Point("review_after_record", "review decision", "review",
          "the decision record in state/transitions/, nothing else: the next review command or start "
          "finishes it (line, sidecar, rename); a second decision is refused"),
    Point("review_after_decision_line", "review decision", "review",
          "the record and its review_decision line: finished as recorded, the line not written again"),
    Point("review_after_sidecar", "review decision", "review",
          "the new sidecar beside the final name, the file still in review/: renamed as recorded"),
    Point("review_after_rename", "review decision", "review",
          "the file and its new sidecar in archive/ or failed/, the old sidecar in review/: it is removed"),
    Point("review_after_old_sidecar", "review decision", "review",
          "only the record left: it is removed"),
    # -- requeue -----------------------------------------------------------------------------------
    Point("requeue_after_record", "requeue", "requeue",
          "the requeue record, the file still in failed/ or review/: the next requeue or start moves it"),
    Point("requeue_after_line", "requeue", "requeue",
          "the record and its requeued line: the file moved as recorded, the line not written again"),
    Point("requeue_after_rename", "requeue", "requeue",
          "the file in incoming/ (one copy), its old sidecar in failed/ or review/: the sidecar is removed"),
    Point("requeue_after_old_sidecar", "requeue", "requeue",
          "only the record left: it is removed"),
)

POINTS: dict[str, Point] = {p.name: p for p in _TABLE}
assert len(POINTS) == len(_TABLE), "a crash point is registered twice"
assert all(p.scenario in SCENARIOS for p in _TABLE)


def crash_point(config: Any, name: str) -> None:
    """SIGKILL this process here when AGENTD_CRASH_AT names this point (tests only)."""
    if name not in POINTS:
        raise KeyError(f"crash point {name!r} is not registered in agentd/durable/crash.py")
    if config.crash_at == name:
        try:  # the sweep's proof that the kill happened here, not elsewhere (stderr: the log, or the CLI's)
            os.write(2, f"agentd: crash point {name}: SIGKILL\n".encode())
        except OSError:
            pass  # no stderr (closed): the SIGKILL alone
        os.kill(os.getpid(), 9)
