"""The review queue: `agentd review list | show ID | approve ID [--choice N] | reject ID [--reason ...]`.

`decide` is the one way an item leaves review/ (this CLI and the review console both call
it): the choice and any edits are checked (edits against the workflow's output schema), then
the decision is a transaction (agentd.spool.transitions): its record in state/, the
`review_decision` audit line (reviewer, decision, edits, when, the new sidecar), the sidecar,
then the rename review/ -> archive/ (approve) or failed/ (reject). A decision a killed process
left half-done is finished by the next review command, console decision or daemon start; a
second decision on one item is refused, naming who decided it and when.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from agentd.audit import open_for, utcnow_iso
from agentd.config import Config
from agentd.durable.group import GroupSync
from agentd.audit.redact import Redactor
from agentd.spool.deferred import Deferrals
from agentd.spool.layout import SIDECAR, Outcome, display_name
from agentd.spool import transitions
from agentd.spool.store import Store, iter_sidecars

from agentd.errors import EX_OK, EX_PROBLEM, EX_USAGE  # noqa: E402
MIN_PREFIX = 6
SHORT_ID = 12


class ReviewError(Exception):
    def __init__(self, message: str, code: int = EX_PROBLEM):
        super().__init__(message)
        self.code = code


# -- finding items ------------------------------------------------------------------------------

def items(home: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Files waiting in review/, oldest first."""
    found = list(iter_sidecars(home, ("review",)))
    return sorted(found, key=lambda item: str(item[1].get("finished_at", "")))


def find(home: Path, ident: str) -> tuple[Path, dict[str, Any]]:
    """The review item with correlation id `ident` (or a unique prefix of 6+ characters)."""
    ident = ident.strip().lower()
    waiting = items(home)
    exact = [item for item in waiting if item[1].get("correlation_id") == ident]
    if exact:
        return exact[0]
    if len(ident) < MIN_PREFIX:
        raise ReviewError(f"give the correlation id or at least {MIN_PREFIX} characters of it", EX_USAGE)
    matches = [item for item in waiting if str(item[1].get("correlation_id", "")).startswith(ident)]
    if len(matches) > 1:
        ids = ", ".join(str(m.get("correlation_id", ""))[:SHORT_ID] for _, m in matches[:5])
        raise ReviewError(f"id {ident} is ambiguous: {len(matches)} files in review/ ({ids})")
    if not matches:
        decided = [m for _, m in iter_sidecars(home, ("archived", "failed"))
                   if str(m.get("correlation_id", "")).startswith(ident)]
        if decided:
            review = decided[0].get("review") if isinstance(decided[0].get("review"), dict) else None
            by = f": already decided by {review.get('reviewer') or review.get('by')} at {review.get('at')}" \
                if review else ""
            raise AlreadyDecided(f"{ident} is not waiting for review (it is {decided[0].get('outcome')}){by}")
        raise ReviewError(f"no file in review/ with id {ident}")
    return matches[0]


def candidates(meta: dict[str, Any]) -> list[dict[str, Any]]:
    found = meta.get("candidates")
    if not found and isinstance(meta.get("result"), dict):
        found = (meta["result"].get("party_link") or {}).get("candidates")
    return [c for c in found or [] if isinstance(c, dict)]


# -- deciding ------------------------------------------------------------------------------------

class AlreadyDecided(ReviewError):
    """A second decision on one item: the message names who decided it and when."""


class EditError(ReviewError):
    """Edits that do not fit the workflow's output schema: a message per field (JSON path)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{path}: {why}" for path, why in errors.items()), EX_USAGE)
        self.errors = errors


def decided_message(home: Path, cid: str) -> str | None:
    """'already decided by X at T' for a run a reviewer finished, else None."""
    for _, meta in iter_sidecars(home, ("archived", "failed")):
        review = meta.get("review")
        if meta.get("correlation_id") == cid and isinstance(review, dict):
            who = review.get("reviewer") or review.get("by")
            return f"already decided by {who} at {review.get('at')} ({review.get('decision')})"
    return None


def apply_edits(result: Any, edits: dict[str, Any], schema: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The result with `edits` ({JSON path: new value}) applied and checked against `schema`,
    and the changes as {path: {"old", "new"}}; EditError names each field that does not fit."""
    if not edits:
        return result, {}
    if schema is None or not isinstance(result, dict):
        raise EditError({path: "this workflow's result has no schema, so it cannot be edited" for path in edits})
    import copy

    import jsonschema

    new = copy.deepcopy(result)
    changes: dict[str, Any] = {}
    for path, value in edits.items():
        parent, key = _walk(new, path)
        old = parent[key] if _has(parent, key) else None
        if old != value:
            changes[path] = {"old": old, "new": value}
            if isinstance(parent, list) and key == len(parent):
                parent.append(value)
            else:
                parent[key] = value
    errors: dict[str, str] = {}
    for error in jsonschema.Draft202012Validator(schema).iter_errors(new):
        errors.setdefault(".".join(str(p) for p in error.absolute_path) or "result", error.message)
    if errors:
        raise EditError(errors)
    return new, changes


def _walk(value: Any, path: str) -> tuple[Any, Any]:
    parts = path.split(".")
    for part in parts[:-1]:
        value = value[int(part)] if isinstance(value, list) else value.setdefault(part, {})
    last = parts[-1]
    return value, (int(last) if isinstance(value, list) else last)


def _has(parent: Any, key: Any) -> bool:
    return (0 <= key < len(parent)) if isinstance(parent, list) else key in parent


def decide(config: Config, sidecar: Path, meta: dict[str, Any], approve: bool, choice: int | None = None,
           note: str = "", by: str | None = None, edits: dict[str, Any] | None = None,
           schema: dict[str, Any] | None = None, store: Store | None = None, look_back: bool = True) -> Path:
    """Finish a reviewed run (the CLI and the console both come here): check the choice and the
    edits, then, under the decision lock and after any move a killed process left half-done, the
    transaction of agentd.spool.transitions (record, review_decision line, sidecar, rename).

    `store`: the one to write with (a bulk decision's, reused); `look_back`: on an item no longer
    waiting, name who decided it (a look through archive/ and failed/)."""
    _check_choice(meta, approve, choice)
    with transitions.decision_lock(config.state_dir), _store_for(config, store) as used:
        transitions.recover(used)
        data = sidecar.with_name(sidecar.name[: -len(SIDECAR)])
        cid = str(meta.get("correlation_id"))
        if not _waiting(sidecar, cid):
            raise AlreadyDecided((decided_message(config.home, cid) if look_back else None)
                                 or "this item is no longer in review/")
        if not os.path.lexists(data):
            raise ReviewError(f"the reviewed file {display_name(data.name)} is missing from review/")
        result, changes = apply_edits(meta.get("result"), edits or {}, schema) if approve else (meta.get("result"), {})
        return _finish(config, used, data, {**meta, "result": result}, approve, choice, note, by or _who(), changes)


def recover_pending(config: Config) -> list[str]:
    """Finish the decisions and requeues a killed command left half-done (the CLI's review commands
    start here); nothing is opened when there are none."""
    if not transitions.pending(config.state_dir):
        return []
    with _store_for(config, None) as store:
        return transitions.recover_now(store)


@contextmanager
def _store_for(config: Config, store: Store | None) -> Iterator[Store]:
    """`store`, or a store of this process's own (its audit log closed afterwards)."""
    if store is not None:
        yield store
        return
    sync = GroupSync(enabled=config.fsync)
    log = open_for(config, Redactor(config.secrets), sync)
    try:
        yield Store(config, log, sync, Deferrals(config.state_dir))
    finally:
        log.close()


def _waiting(sidecar: Path, cid: str) -> bool:
    try:
        return json.loads(sidecar.read_bytes()).get("correlation_id") == cid
    except (OSError, ValueError, AttributeError):
        return False


def _check_choice(meta: dict[str, Any], approve: bool, choice: int | None) -> None:
    options = candidates(meta)
    if choice is not None and not approve:
        raise ReviewError("--choice goes with approve", EX_USAGE)
    if approve and options and choice is None:
        raise ReviewError(f"this file has {len(options)} candidates: approve it with --choice 1..{len(options)}",
                          EX_USAGE)
    if choice is not None and not 1 <= choice <= len(options):
        raise ReviewError(f"--choice {choice}: there {'is' if len(options) == 1 else 'are'} "
                          f"{len(options) or 'no'} candidate{'' if len(options) == 1 else 's'}"
                          + (f"; choose 1..{len(options)}" if options else ""), EX_USAGE)


def _finish(config: Config, store: Store, data: Path, meta: dict[str, Any], approve: bool, choice: int | None,
            note: str, by: str, changes: dict[str, Any]) -> Path:
    redact = Redactor(config.secrets)
    at = utcnow_iso()
    decision = {"reviewer": by, "decision": "approve" if approve else "reject", "at": at, "edits": changes,
                "was": meta.get("reason"), "choice": choice, "note": redact(note) or None}
    outcome = "archived" if approve else "failed"
    new = {k: v for k, v in meta.items() if k not in ("audit_seq", "audit_hash", "error_class", "detail")}
    new.update(outcome=outcome, review={k: v for k, v in decision.items() if v is not None}, decided_at=at)
    if approve:
        new["reason"] = "approved"
        if choice is not None:
            new["result"] = _linked(meta.get("result"), candidates(meta)[choice - 1], by, at)
    else:
        new.update(reason="rejected_by_reviewer", error_class="policy", detail=redact(note) or None)
    # the new sidecar as its record, its audit line and its file all hold it (a reviewer's edits redacted)
    return transitions.decide(store, data, Outcome(outcome), redact({k: v for k, v in new.items() if v is not None}),
                              decision)


def _linked(result: Any, chosen: dict[str, Any], by: str, at: str) -> Any:
    link = {"status": "linked", **{k: v for k, v in chosen.items() if k != "matched_on"},
            "chosen_by": by, "chosen_at": at}
    if isinstance(result, dict):
        return {**result, "party_link": link}
    return {"party_link": link}


def _who() -> str:
    from agentd.guards.killswitch import _who as who
    return who()


# -- output -----------------------------------------------------------------------------------------

def _row(meta: dict[str, Any]) -> dict[str, Any]:
    return {"id": meta.get("correlation_id"), "workflow": meta.get("workflow"), "file": meta.get("original_name"),
            "reason": meta.get("reason"), "since": meta.get("finished_at"), "candidates": len(candidates(meta))}


def print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("review queue is empty")
        return
    headers = ("ID", "SINCE", "WORKFLOW", "REASON", "CHOICES", "FILE")
    table = [(str(r["id"])[:SHORT_ID], str(r["since"] or "")[:19].replace("T", " "), str(r["workflow"]),
              str(r["reason"]), str(r["candidates"] or "-"), str(r["file"])) for r in rows]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]
    for line in (headers, *table):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
    print(f"{len(rows)} waiting; `agentd review show ID` for details")


def print_item(sidecar: Path, meta: dict[str, Any]) -> None:
    print(f"{meta.get('correlation_id')}  ({meta.get('workflow')})")
    print(f"  file      review/{display_name(sidecar.name[: -len(SIDECAR)])}  (dropped as {meta.get('original_name')})")
    print(f"  reason    {meta.get('reason')}" + (f": {meta['detail']}" if meta.get("detail") else ""))
    for key in ("why", "refused_tools", "confidence", "threshold", "pending_tool_calls", "pending_tool_call"):
        if key in meta:
            print(f"  {key:<9} {json.dumps(meta[key], ensure_ascii=False)}")
    print(f"  since     {meta.get('finished_at')}   cost ${meta.get('cost_usd', 0):.6f}, "
          f"{meta.get('llm_calls', 0)} model calls")
    options = candidates(meta)
    if options:
        print("  candidates (approve with --choice N):")
        for n, option in enumerate(options, 1):
            print(f"    {n}. {option.get('name')} <{option.get('email') or '-'}>  id {option.get('id')}"
                  + (f"  matched on {', '.join(option['matched_on'])}" if option.get("matched_on") else ""))
    result = meta.get("result")
    if result is not None:
        print("  result:")
        for line in json.dumps(result, indent=2, ensure_ascii=False, default=str).splitlines():
            print(f"    {line}")


# -- commands -----------------------------------------------------------------------------------------

def cmd_review(args: argparse.Namespace, config: Config) -> int:
    try:
        recover_pending(config)  # a decision or requeue a killed command left half-done: finished first
        if args.action == "list":
            rows = [_row(meta) for _, meta in items(config.home)]
            if args.json:
                print(json.dumps(rows, indent=2, ensure_ascii=False, default=str))
            else:
                print_table(rows)
            return EX_OK
        sidecar, meta = find(config.home, args.id)
        if args.action == "show":
            if args.json:
                print(json.dumps(meta, indent=2, ensure_ascii=False, default=str))
            else:
                print_item(sidecar, meta)
            return EX_OK
        approve = args.action == "approve"
        final = decide(config, sidecar, meta, approve, getattr(args, "choice", None), getattr(args, "reason", "") or "")
    except ReviewError as exc:
        print(f"agentd: review {args.action}: {exc}", file=sys.stderr)
        return exc.code
    where = "archive/" if approve else "failed/"
    print(f"{'approved' if approve else 'rejected'} {meta.get('correlation_id')} -> {where}{display_name(final.name)}")
    return EX_OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register `agentd review ...` on the CLI's subparsers."""
    p = sub.add_parser("review", parents=[common], help="files waiting for a human decision")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ident = "correlation id (or its first 6+ characters)"
    a = actions.add_parser("list", parents=[common], help="what waits in review/")
    a.add_argument("--json", action="store_true", help="machine-readable output")
    a = actions.add_parser("show", parents=[common], help="one file's reason, candidates and result")
    a.add_argument("id", help=ident)
    a.add_argument("--json", action="store_true", help="the sidecar as JSON")
    a = actions.add_parser("approve", parents=[common], help="finish the run with your choice -> archive/")
    a.add_argument("id", help=ident)
    a.add_argument("--choice", type=int, metavar="N", help="the candidate to link (1 = the first listed)")
    a = actions.add_parser("reject", parents=[common], help="fail the run (error_class policy) -> failed/")
    a.add_argument("id", help=ident)
    a.add_argument("--reason", help="why (recorded as the failure reason)")
    p.set_defaults(func=cmd_review)
