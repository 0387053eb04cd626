"""The promises a crash anywhere must keep, checked on a state root after the restart: each one counted.

Each check is one assertion a user would notice broken: a file lost, doubled or beside a stranger's
sidecar, a run decided twice, a paid call bought again, a cap overshot, an audit log that no longer
verifies. `Checks.that` counts what it checked (the sweep's summary line) and fails with the case's name.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.sweep.tally import TALLY
from tests.helpers import TERMINAL, audit_events, cli

FOLDER_OF = {"archived": "archive", "failed": "failed", "review": "review"}
UNREAD_REASONS = ("too_large",)  # failed unread: the sidecar has no sha256 to compare


@dataclass
class Checks:
    case: str
    count: int = 0

    def that(self, ok: Any, what: str, detail: Any = "") -> None:
        self.count += 1
        TALLY.invariants += 1
        assert ok, f"{self.case}: {what}" + (f": {detail}" if detail != "" else "")


def journals(home: Path) -> dict[str, list[dict[str, Any]]]:
    """The entries of every run's journal in processing/ (.<cid>.journal.jsonl), read as the test's own
    oracle (not through agentd's reader): cid -> entries; a torn last line is skipped."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((home / "processing").glob(".*.journal.jsonl")):
        entries = found.setdefault(path.name[1:].split(".", 1)[0], [])
        for line in path.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the kill cut it
            if isinstance(entry, dict):
                entries.append(entry)
    return found


def unanswered_model_intents(home: Path) -> dict[str, float]:
    """cid -> the worst case of its model intents with neither a meter (`call`) nor a `void`."""
    found = {}
    for cid, entries in journals(home).items():
        resolved = {str(e.get("intent")) for e in entries if e.get("type") in ("call", "void")}
        worst = sum(float(e.get("worst_usd") or 0) for e in entries
                    if e.get("type") == "intent" and str(e.get("id")) not in resolved)
        if worst:
            found[cid] = worst
    return found


@dataclass
class Decided:
    """What was on disk when the process died: cid -> the folder its outcome (or review decision) line
    names, and cid -> the worst case of the model calls it had in flight (intents with no answer)."""

    outcomes: dict[str, str] = field(default_factory=dict)
    reviews: dict[str, str] = field(default_factory=dict)
    unanswered: dict[str, float] = field(default_factory=dict)
    records: dict[str, str] = field(default_factory=dict)  # cid -> kind of a move recorded, not finished

    @classmethod
    def read(cls, home: Path) -> "Decided":
        return cls({e["correlation_id"]: FOLDER_OF[e["outcome"]] for e in audit_events(home, "outcome")},
                   {e["correlation_id"]: FOLDER_OF[e["outcome"]] for e in audit_events(home, "review_decision")},
                   unanswered_model_intents(home), transition_records(home))

    def folder_of(self, cid: str) -> str | None:
        return self.reviews.get(cid) or self.outcomes.get(cid)


def transition_records(home: Path) -> dict[str, str]:
    """The review decisions and requeues recorded in state/transitions/ and not finished: cid -> kind."""
    found = {}
    for path in sorted((home / "state" / "transitions").glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue  # a record the kill cut: never taken (it is written to a temporary name first)
        found[str(record.get("cid"))] = str(record.get("kind"))
    return found


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def places(home: Path) -> dict[str, list[str]]:
    """The visible names in every state folder (dot files are the daemon's own)."""
    found = {}
    for sub in ("incoming", "processing", *TERMINAL):
        folder = home / sub
        found[sub] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                            if not p.name.startswith(".") and not p.is_dir()) if folder.exists() else []
    return found


def check_places(checks: Checks, home: Path, dropped: dict[str, bytes]) -> dict[str, tuple[str, dict]]:
    """Every dropped file in exactly one terminal place, with exactly one sidecar that is its own;
    nothing left in incoming/ or processing/; no sidecar without its file. Returns name -> (folder, sidecar)."""
    seen = places(home)
    checks.that(os.listdir(home / "processing") == [], "nothing left in processing/", os.listdir(home / "processing"))
    checks.that(seen["incoming"] == [], "nothing left in incoming/", seen["incoming"])
    found: dict[str, tuple[str, dict]] = {}
    cids: Counter[str] = Counter()
    for sub in TERMINAL:
        names = set(seen[sub])
        for name in sorted(names):
            if name.endswith(".meta.json"):
                checks.that(name[: -len(".meta.json")] in names, f"{sub}/{name} has its file (no orphan sidecar)")
                continue
            checks.that(f"{name}.meta.json" in names, f"{sub}/{name} has a sidecar")
            meta = json.loads((home / sub / f"{name}.meta.json").read_text())
            original = meta.get("original_name")
            checks.that(original in dropped, f"{sub}/{name} is a file that was dropped", original)
            checks.that(original not in found, f"{original} is in one place only", (found.get(original), sub))
            found[original] = (sub, meta)
            cids[meta["correlation_id"]] += 1
            data = home / sub / name
            checks.that(data.read_bytes() == dropped[original], f"{sub}/{name} holds {original}'s bytes")
            want = None if meta.get("reason") in UNREAD_REASONS and meta.get("outcome") == "failed" else sha256_of(data)
            checks.that(meta.get("sha256") == want, f"{sub}/{name}'s sidecar sha256 is the file's")
            checks.that(FOLDER_OF.get(meta.get("outcome")) == sub, f"{sub}/{name}'s sidecar outcome is its folder",
                        meta.get("outcome"))
    litter = sorted(f"{sub}/{p.name}" for sub in TERMINAL if (home / sub).exists()
                    for p in (home / sub).iterdir() if p.name.startswith("."))
    checks.that(litter == [], "no temporary file left in a terminal folder", litter)
    records = home / "state" / "transitions"
    left = sorted(os.listdir(records)) if records.exists() else []
    checks.that(left == [], "no review decision or requeue left half-done (state/transitions/)", left)
    checks.that(sorted(found) == sorted(dropped), "every dropped file is in a terminal place",
                sorted(set(dropped) - set(found)))
    checks.that(all(n == 1 for n in cids.values()), "no two files share a correlation id", cids)
    return found


def check_audit(checks: Checks, home: Path, found: dict[str, tuple[str, dict]], before: Decided) -> None:
    """One outcome line per run and at most one review decision; what was decided before the crash
    is where the file ended, whatever the restart's configuration; the chain verifies."""
    outcomes = Counter(e["correlation_id"] for e in audit_events(home, "outcome"))
    checks.that(set(outcomes.values()) <= {1}, "exactly one outcome line per correlation id",
                {c: n for c, n in outcomes.items() if n != 1})
    reviews = Counter(e["correlation_id"] for e in audit_events(home, "review_decision"))
    checks.that(set(reviews.values()) <= {1}, "at most one review_decision line per item", reviews)
    for original, (sub, meta) in found.items():
        cid = meta["correlation_id"]
        checks.that(outcomes[cid] == 1, f"{original}'s run has its outcome line")
        decided = before.folder_of(cid)
        if decided is not None and not (decided == "review" and sub != "review"):  # a reviewer may decide later
            checks.that(sub == decided, f"{original} ended where the line logged before the crash said",
                        (sub, decided))
    verified = cli(home, "audit", "verify")
    checks.that(verified.returncode == 0, "agentd audit verify exits 0", verified.stdout[-1500:])


def check_caps(checks: Checks, home: Path, found: dict[str, tuple[str, dict]], caps: list[dict[str, str]],
               before: Decided) -> None:
    """Run spend (sidecar cost_usd) and day spend (agentd status / costs) within the caps of every life,
    a call the kill left unanswered charged to its run at its worst case."""
    cost_of = {meta["correlation_id"]: float(meta.get("cost_usd") or 0) for _, meta in found.values()}
    for cid, worst in before.unanswered.items():
        checks.that(cost_of.get(cid, 0.0) + 1e-9 >= worst, "a model call the kill left unanswered is charged to its "
                    "run at its worst case", (cid, cost_of.get(cid), worst))
    per_run = min(float(c.get("MAX_COST_PER_RUN", "0.50")) for c in caps)
    daily = min((float(c["DAILY_BUDGET_USD"]) for c in caps if float(c.get("DAILY_BUDGET_USD", 0))), default=0.0)
    for original, (_, meta) in found.items():
        checks.that(float(meta.get("cost_usd") or 0) <= per_run + 1e-9, f"{original}'s cost within MAX_COST_PER_RUN",
                    (meta.get("cost_usd"), per_run))
    paid = sum(float(meta.get("cost_usd") or 0) for _, meta in found.values() if not meta.get("duplicate_of"))
    if not paid and not daily:
        return  # nothing paid, no day cap (the offline provider): no spend to count
    status = json.loads(cli(home, "status", "--json").stdout)
    costs = json.loads(cli(home, "costs", "--json").stdout)
    checks.that(status["spend_today_usd"] + 1e-9 >= paid, "the day's spend counts what the runs paid",
                (status["spend_today_usd"], paid))
    checks.that(costs["total"]["cost_usd"] + 1e-9 >= paid, "agentd costs (the llm_call lines) counts what the runs "
                "paid", (costs["total"]["cost_usd"], paid))
    if daily:
        checks.that(status["spend_today_usd"] <= daily + 1e-9, "the day's spend within DAILY_BUDGET_USD",
                    (status["spend_today_usd"], daily))
        checks.that(costs["total"]["cost_usd"] <= daily + 1e-9, "agentd costs within DAILY_BUDGET_USD",
                    (costs["total"]["cost_usd"], daily))


def proves_kill(checks: Checks, returncode: int | None, output: str, point: str) -> None:
    """The process died by SIGKILL, and at `point` (crash_point says so on stderr just before)."""
    checks.that(returncode == -9, f"the process was SIGKILLed (exit {returncode})", output[-2000:])
    checks.that(f"agentd: crash point {point}: SIGKILL" in output, f"the kill happened at {point}", output[-2000:])
    TALLY.kills += 1
    TALLY.points.add(point)  # covered: killed there at least once

