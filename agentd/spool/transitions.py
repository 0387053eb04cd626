"""Operators' moves as transactions: a reviewer's decision and a requeue, recorded before they move.

A review decision, in write order (each step a crash point of agentd/durable/crash.py):
  1. the record state/transitions/<cid>.json (the new sidecar, the folder and name it ends
     under, who and when), fsynced: from here on the item is decided
  2. the `review_decision` audit line, carrying the same and the record's `op` id, fsynced
  3. the new sidecar beside the final name, fsynced (never over another run's)
  4. the rename review/ -> archive/ | failed/ (never over a file)
  5. the old sidecar removed from review/
  6. the record removed
A requeue: the record, the `requeued` line, the rename into incoming/, the old sidecar removed,
the record removed. The file is only ever renamed, so it never exists twice.

`recover()` (the daemon's start, every CLI command touching review/ or failed/, every console
decision) carries each record on from the first step its traces on disk do not show: the line
is looked up by `op` (written once), a step is redone only where its source is still the
recorded run's (its sidecar names the run). All of it runs under the decision lock, so a record
found there was left by a process that died.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from agentd import logs
from agentd.audit import iter_records_since, utcnow_iso
from agentd.durable.group import fsync_path, json_bytes
from agentd.spool import layout
from agentd.spool.layout import Outcome, display_name, free_name, sidecar_of
from agentd.spool.noreplace import rename_noreplace

if TYPE_CHECKING:
    from agentd.spool.store import Store

log = logs.get("agentd.spool")
RECORDS = "transitions"  # under state/
LOCK = "review.lock"  # under state/
EVENTS = {"review": "review_decision", "requeue": "requeued"}


@contextmanager
def decision_lock(state_dir: Path) -> Iterator[None]:
    """One operator's move at a time on this AGENTD_HOME (the daemon's console and the CLI)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def pending(state_dir: Path) -> list[Path]:
    """Records of moves begun and not finished (empty unless a process died mid-move)."""
    try:
        names = os.listdir(state_dir / RECORDS)
    except FileNotFoundError:
        return []
    return sorted(state_dir / RECORDS / n for n in names if n.endswith(".json") and not n.startswith("."))


# -- a review decision ----------------------------------------------------------------------------

def decide(store: "Store", data: Path, outcome: Outcome, meta: dict[str, Any], decision: dict[str, Any]) -> Path:
    """Decide the review item `data` (call under decision_lock): record, line, sidecar, rename."""
    cid = str(meta.get("correlation_id", ""))
    target_dir = layout.terminal_dir(store.home, outcome)
    target_dir.mkdir(parents=True, exist_ok=True)
    final = free_name(target_dir, data.name, cid, store._reserved)
    record = {"kind": "review", "op": secrets.token_hex(8), "cid": cid, "workflow": meta.get("workflow"),
              "ts": utcnow_iso(), "source": _rel(store, data), "folder": target_dir.name, "file": final.name,
              "outcome": Outcome(outcome).value, "decision": decision, "sidecar": meta}
    _write_record(store, record)
    store.crash_point("review_after_record")
    return _finish_review(store, record, None)


def _finish_review(store: "Store", record: dict[str, Any], line: dict[str, Any] | None) -> Path:
    cid = record["cid"]
    if line is None and _source_gone(store, record):
        return store.home / record["source"]
    if line is None:
        # a record carried on after a crash: its name may have been taken since (never written over)
        record["file"] = free_name(store.home / record["folder"], record["file"], cid, store._reserved).name
        entry = store.audit.append("review_decision", correlation_id=cid, workflow=record.get("workflow"),
                                   **record["decision"], outcome=record["outcome"], file=record["file"],
                                   op=record["op"], redacted={"sidecar": record["sidecar"]})
        store.audit.flush_now()
        line = {"seq": entry.seq, "hash": entry.hash, "file": record["file"]}
        store.crash_point("review_after_decision_line")
    source = store.home / record["source"]
    final = store.home / record["folder"] / str(line.get("file") or record["file"])  # the line's word is final
    if os.path.lexists(source) and _belongs(sidecar_of(source), cid):
        meta = {**record["sidecar"], "audit_seq": line["seq"], "audit_hash": line["hash"]}
        final = _put_sidecar(store, final, meta, cid)
        store.crash_point("review_after_sidecar")
        from agentd.spool.store import Claim

        final = store._place_final(Claim(cid=cid, workflow=str(record.get("workflow")), original_name=source.name,
                                         data=source), final)
        _sync(store, final.parent)
        store.crash_point("review_after_rename")
    _drop_old_sidecar(store, source, cid)
    store.crash_point("review_after_old_sidecar")
    _remove_record(store, record)
    return final


def _put_sidecar(store: "Store", final: Path, meta: dict[str, Any], cid: str) -> Path:
    """Write the sidecar of `final` (a free variant of it when another run holds the name): the data path."""
    for _ in range(100):
        tmp = final.parent / f".{cid}.sidecar.tmp"  # a crash before its rename: the recovery's write reuses it
        with open(tmp, "wb") as fh:
            fh.write(json_bytes(meta))
            if store.sync.enabled:
                os.fsync(fh.fileno())
        meta_path = sidecar_of(final)
        try:
            rename_noreplace(tmp, meta_path)
        except FileExistsError:
            if not _belongs(meta_path, cid):  # another run's: never replaced
                final = free_name(final.parent, final.name, cid, store._reserved)
                continue
            os.replace(tmp, meta_path)  # ours, from before a crash: the same content again
        _sync(store, final.parent)
        return final
    raise OSError(f"no free name in {final.parent} for {display_name(final.name)}")


# -- a requeue ------------------------------------------------------------------------------------

def requeue(store: "Store", data: Path, workflow: str, cid: str, by: str, name: str | None = None) -> Path:
    """Send a finished file back to incoming/ (call under decision_lock): record, line, rename."""
    if not os.path.lexists(data) or not _belongs(sidecar_of(data), cid):
        raise FileNotFoundError(f"{display_name(data.name)} is no longer in {data.parent.name}/")
    target_dir = layout.incoming_dir(store.home, workflow)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = free_name(target_dir, name or data.name, cid, store._reserved)
    record = {"kind": "requeue", "op": secrets.token_hex(8), "cid": cid, "workflow": workflow, "ts": utcnow_iso(),
              "source": _rel(store, data), "folder": _rel(store, target_dir), "file": target.name, "by": by}
    _write_record(store, record)
    store.crash_point("requeue_after_record")
    return _finish_requeue(store, record, None)


def _finish_requeue(store: "Store", record: dict[str, Any], line: dict[str, Any] | None) -> Path:
    cid = record["cid"]
    source = store.home / record["source"]
    if line is None and _source_gone(store, record):
        return source
    if line is None:
        record["file"] = free_name(store.home / record["folder"], record["file"], cid, store._reserved).name
        store.audit.append("requeued", correlation_id=cid, workflow=record["workflow"],
                           file=display_name(record["file"]), was=source.parent.name, by=record["by"],
                           op=record["op"])
        store.audit.flush_now()
        store.crash_point("requeue_after_line")
    target = store.home / record["folder"] / record["file"]
    if os.path.lexists(source) and _belongs(sidecar_of(source), cid):
        target = store._place(source, target.parent, target.name, cid)
        _sync(store, target.parent)
        store.on_move(source.parent.name, layout.INCOMING)
        store.crash_point("requeue_after_rename")
    _drop_old_sidecar(store, source, cid)
    store.crash_point("requeue_after_old_sidecar")
    _remove_record(store, record)
    return target


# -- recovery -------------------------------------------------------------------------------------

def recover_now(store: "Store") -> list[str]:
    """Finish what a killed move left (no lock is taken when there is none: the usual case)."""
    if not pending(store.config.state_dir):
        return []
    with decision_lock(store.config.state_dir):
        return recover(store)


def recover(store: "Store") -> list[str]:
    """Finish every recorded move (call under decision_lock); the correlation ids carried on."""
    done = []
    for path in pending(store.config.state_dir):
        try:
            record = json.loads(path.read_bytes())
            kind, op = record["kind"], record["op"]
        except (OSError, ValueError, KeyError, TypeError):
            log.error("transition_record_unreadable", record=path.name)
            path.rename(path.with_name("." + path.name + ".unreadable"))
            continue
        line = _logged(store, EVENTS.get(kind, ""), op, record.get("ts", ""))
        finish = _finish_review if kind == "review" else _finish_requeue
        final = finish(store, record, line)
        log.warning("transition_recovered", kind=kind, correlation_id=record.get("cid"),
                    file=display_name(final.name), line_was_written=line is not None)
        done.append(str(record.get("cid")))
    return done


def _logged(store: "Store", event: str, op: str, ts: str) -> dict[str, Any] | None:
    """The audit line of move `op`, if it was written (it is never older than its record)."""
    store.audit.write_staged()
    for line in iter_records_since(store.audit.dir, ts=ts, margin_s=60.0):
        if line.get("event") == event and line.get("op") == op:
            return line
    return None


# -- the record and the small steps ---------------------------------------------------------------

def _write_record(store: "Store", record: dict[str, Any]) -> None:
    folder = store.config.state_dir / RECORDS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['cid']}.json"
    tmp = folder / f".{record['cid']}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(json_bytes(record))
        if store.sync.enabled:
            os.fsync(fh.fileno())
    os.replace(tmp, path)  # a record of the same run left behind is carried on before any new one
    _sync(store, folder)


def _remove_record(store: "Store", record: dict[str, Any]) -> None:
    # no fsync: a record back after a power cut is carried on again, and each step sees it is done
    (store.config.state_dir / RECORDS / f"{record['cid']}.json").unlink(missing_ok=True)


def _source_gone(store: "Store", record: dict[str, Any]) -> bool:
    """A record with no line yet whose file left (an operator moved it): nothing can follow; dropped."""
    source = store.home / record["source"]
    if os.path.lexists(source) and _belongs(sidecar_of(source), record["cid"]):
        return False
    log.warning("transition_abandoned", kind=record.get("kind"), correlation_id=record["cid"],
                file=display_name(source.name), why=f"the file is no longer in {source.parent.name}/")
    _remove_record(store, record)
    return True


def _drop_old_sidecar(store: "Store", source: Path, cid: str) -> None:
    """The item's old sidecar (no longer beside its file), unless another run holds the name now."""
    old = sidecar_of(source)
    if not os.path.lexists(source) and _belongs(old, cid):
        old.unlink()
        _sync(store, source.parent)


def _belongs(meta_path: Path, cid: str) -> bool:
    try:
        return json.loads(meta_path.read_bytes()).get("correlation_id") == cid
    except (OSError, ValueError, AttributeError):
        return False


def _rel(store: "Store", path: Path) -> str:
    return os.fspath(path.relative_to(store.home))


def _sync(store: "Store", path: Path) -> None:
    if store.sync.enabled:
        fsync_path(path)
