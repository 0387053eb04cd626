"""The spool store: the only code that renames a state file (claim, unclaim, finish, recover, requeue).

incoming/ -> processing/<cid>.<workflow> -> archive/ | failed/ | review/, each move a
rename inside AGENTD_HOME that never replaces an existing file. The decided outcome
is the `outcome` audit line, which carries the whole sidecar: once it is in the log,
the run's end is fixed (folder, name, sidecar) and a recovery after a crash finishes
it from that record, whatever the configuration at restart. fsyncs of many runs are
grouped (agentd.durable.GroupSync).

A claim is made durable (its folders and its claimed line fsynced) when something
first needs it: a tool's side effect (Claim.durable) or, for most runs, the outcome's
own group commit, which covers the claim too. A run thus waits for one commit, not two
in a row. The claim's rename and claimed line were written before the outcome line, and
a journaling file system (ext4, XFS) commits in that order: a power cut never keeps the
outcome line without the claim.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from agentd import logs
from agentd.audit import AuditLog, iso_of, iter_records_since
from agentd.config import Config
from agentd.durable.crash import crash_point
from agentd.durable.group import GroupSync, json_bytes
from agentd.spool import layout
from agentd.spool.deferred import Deferrals
from agentd.spool.layout import (DEFAULT_WORKFLOW, INCOMING, JOURNAL_SUFFIX, PROCESSING, SIDECAR, Outcome, cid_time,
                                 cid_time_iso, display_name, file_kind, free_name, new_correlation_id,
                                 parse_claim_name)
from agentd.spool.noreplace import rename_noreplace

log = logs.get("agentd.spool")
RECORD_EVENTS = ("claimed", "resumed", "outcome")
KEPT_JOURNALS = "logs/journals"  # a finished run's journal, kept for `agentd replay`
CLAIM_SLACK_S = 3600.0  # audit files that ended this long before the oldest claim cannot hold its lines


@dataclass
class Claim:
    """A file the daemon owns: processing/<cid>.<workflow>, and .<cid>.journal.jsonl once precious.

    Its dropped name is in the `claimed` audit line, written before the claim's rename.
    """

    cid: str
    workflow: str
    original_name: str
    data: Path
    kind: str = "file"
    size: int = 0
    started_at: str = ""
    resumed: bool = False
    crash_resumes: int = 0  # how often a crash interrupted this run (from its `resumed` lines)
    strikes: int = 0  # retryable failures so far (carried by its deferral while it waits in incoming/)
    logged_outcome: dict[str, Any] | None = None  # the outcome line, when decided before a crash
    journal: Any = field(default=None, repr=False)  # the run's Journal while a retry after a disk error waits
    commit_paths: list[str] = field(default_factory=list, repr=False)  # to fsync for it; [] once on disk
    synced: "asyncio.Future[None] | None" = field(default=None, repr=False)  # its group commit, once asked for
    commit: Callable[[list[str]], Any] = field(default=lambda paths: asyncio.sleep(0), repr=False)

    async def durable(self) -> None:
        """Wait until the claim's rename and claimed line are on disk (the first wait starts the
        commit); a failed commit is tried afresh by the next wait, never remembered."""
        if not self.commit_paths:
            return
        if self.synced is None:
            self.synced = asyncio.ensure_future(self.commit(self.commit_paths))
        try:
            await self.synced
        except OSError:
            self.synced = None
            raise
        self.committed()

    def committed(self) -> None:
        """The claim is on disk (its own commit, or a later one that covered its paths)."""
        self.commit_paths = []

    @property
    def journal_path(self) -> Path:
        return self.data.with_name(f".{self.cid}{JOURNAL_SUFFIX}")


class Store:
    def __init__(self, config: Config, audit: AuditLog, sync: GroupSync, deferrals: Deferrals,
                 on_move: Callable[[str, str], None] = lambda src, dst: None):
        self.config = config
        home = self.home = config.home
        self.processing = home / PROCESSING
        self.audit = audit
        self.sync = sync
        self.deferrals = deferrals
        self.on_move = on_move  # (from folder, to folder): keeps the counts current
        self._reserved: set[Path] = set()

    def crash_point(self, point: str) -> None:
        crash_point(self.config, point)

    # -- the one primitive ------------------------------------------------------------
    def _place(self, src: Path, directory: Path, name: str, cid: str) -> Path:
        """Rename `src` into `directory` under `name`, or a free variant of it; never over a file."""
        for _ in range(100):
            target = free_name(directory, name, cid, self._reserved)
            try:
                rename_noreplace(src, target)
                return target
            except FileExistsError:
                continue  # taken since free_name looked: the next free name
        raise OSError(f"no free name in {directory} for {display_name(name)}")

    # -- claim ------------------------------------------------------------------------
    async def claim(self, path: Path, workflow: str) -> Claim | None:
        """Take `path` out of incoming/; None if it is gone (someone else took it)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        cid = new_correlation_id()
        claim = Claim(cid=cid, workflow=workflow, original_name=path.name,
                      data=self.processing / layout.claim_name(cid, workflow), kind=file_kind(st.st_mode),
                      size=st.st_size, started_at=cid_time_iso(cid))
        shown = display_name(path.name)
        # the record first: a claim that exists is never without its dropped name
        self.audit.append("claimed", correlation_id=cid, workflow=workflow, original_name=shown,
                          raw_name=path.name if shown != path.name else None, size=st.st_size, kind=claim.kind)
        self.crash_point("after_claimed_line")
        try:
            rename_noreplace(path, claim.data)
        except FileNotFoundError:
            self.audit.append("claim_lost", correlation_id=cid, why="the file left incoming/ first")
            return None
        self.crash_point("after_claim_rename")
        claim.strikes = self.deferrals.take(os.fspath(path), st.st_ino)
        self.on_move(INCOMING, PROCESSING)
        # the claim is made durable when first needed: a tool's side effect waits for it
        # (Claim.durable), the outcome's commit covers it. A model call does not wait: after a
        # power cut that undid the claim, the file is back in incoming/ and at worst that call
        # is paid again.
        claim.commit_paths = [os.fspath(p) for p in (self.processing, path.parent, self.audit.path)]
        claim.commit = self.sync.sync
        return claim

    # -- recovery ---------------------------------------------------------------------
    def recover(self, clean_shutdown: bool) -> list[Claim]:
        """Claims left in processing/ by a crash or a drain deadline, oldest first; leftovers cleaned up.

        First a review decision or requeue that a killed process (the CLI, or this daemon's console)
        left half-done is finished as its record says (agentd.spool.transitions)."""
        from agentd.spool import transitions

        transitions.recover_now(self)
        claims, journals = [], set()
        for entry in os.scandir(self.processing):
            path = Path(entry.path)
            if entry.name.startswith("."):
                if entry.name.endswith(JOURNAL_SUFFIX):
                    journals.add(path)
                elif entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path, ignore_errors=True)  # a tool's scratch folder
                else:
                    path.unlink(missing_ok=True)  # a temporary file
                continue
            parsed = None if entry.is_dir(follow_symlinks=False) else parse_claim_name(entry.name)
            if parsed is None:  # not ours: put it back where the operator can see it
                self._place(path, self.home / INCOMING, entry.name, new_correlation_id())
                continue
            st = os.lstat(path)
            claims.append(Claim(cid=parsed[0], workflow=parsed[1], original_name=parsed[0], data=path,
                                kind=file_kind(st.st_mode), size=st.st_size, started_at=cid_time_iso(parsed[0]),
                                resumed=True))
        claims.sort(key=lambda c: c.started_at)
        records = self._records_of(claims)
        for claim in claims:
            claimed = records.get((claim.cid, "claimed"), {})
            claim.original_name = claimed.get("raw_name") or claimed.get("original_name") or claim.cid
            claim.logged_outcome = records.get((claim.cid, "outcome"))
            claim.crash_resumes = int(records.get((claim.cid, "resumed"), {}).get("crash_resumes", 0))
            if not clean_shutdown:
                claim.crash_resumes += 1
            journals.discard(claim.journal_path)
        for orphan in journals:
            self.keep_journal(orphan)  # its run finished before its journal was put away
        return claims

    def _records_of(self, claims: list[Claim]) -> dict[tuple[str, str], dict[str, Any]]:
        """The last claimed, resumed and outcome lines of these runs, reading only files that can hold them."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        cids = {c.cid for c in claims}
        if not cids:
            return found
        times = [t for t in (cid_time(c) for c in cids) if t is not None]
        since = min(times) - CLAIM_SLACK_S if times else 0.0
        for record in iter_records_since(self.audit.dir, ts=iso_of(since) if since else ""):
            cid = record.get("correlation_id")
            if cid in cids and record.get("event") in RECORD_EVENTS:
                found[(cid, record["event"])] = record
        return found

    # -- waiting ----------------------------------------------------------------------
    async def unclaim(self, claim: Claim, reason: str, not_before: float | None = None, strikes: int = 0) -> Path:
        """Put a claim that did no paid work back into incoming/: it waits there, not failed."""
        await claim.durable()
        target_dir = layout.incoming_dir(self.home, claim.workflow)
        if not target_dir.is_dir():  # like incoming/ itself: operators of the group drop here
            target_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(target_dir, os.stat(self.home / INCOMING).st_mode & 0o7777)
        target = self._place(claim.data, target_dir, claim.original_name, claim.cid)
        self.crash_point("after_unclaim_rename")
        self.on_move(PROCESSING, INCOMING)
        claim.journal_path.unlink(missing_ok=True)
        if not_before is not None or strikes:  # its time, and the strikes it has had, wait with it
            self.deferrals.defer(target, not_before or 0.0, reason, strikes)
        await self.sync.sync([target_dir, self.processing])
        self.audit.append("waiting", correlation_id=claim.cid, workflow=claim.workflow, reason=reason,
                          file=display_name(target.name), not_before=layout.iso_utc(not_before) if not_before else None)
        self.crash_point("after_waiting_line")
        return target

    # -- finish -----------------------------------------------------------------------
    async def finish(self, claim: Claim, outcome: Outcome, sidecar: dict[str, Any],
                     audit_fields: dict[str, Any]) -> Path:
        """Decide (the outcome line, carrying the sidecar), make it durable, then visible (rename)."""
        if claim.logged_outcome is not None:
            return await self.finish_recorded(claim)
        target_dir = layout.terminal_dir(self.home, outcome)
        final = free_name(target_dir, claim.original_name, claim.cid, self._reserved)
        self._reserved.add(final)
        try:
            record = self.audit.append("outcome", correlation_id=claim.cid, workflow=claim.workflow,
                                       outcome=outcome.value, file=final.name, **audit_fields,
                                       redacted={"sidecar": sidecar})  # the pipeline redacted it
            claim.logged_outcome = {"outcome": outcome.value, "file": final.name, "sidecar": sidecar,
                                    "seq": record.seq, "hash": record.hash}
            self.crash_point("after_outcome_line")
            return await self._complete(claim)
        finally:
            self._reserved.discard(final)

    async def finish_recorded(self, claim: Claim) -> Path:
        """End a run the way its outcome line says (after a crash, or a retry after a disk error)."""
        return await self._complete(claim)

    async def _complete(self, claim: Claim) -> Path:
        logged = claim.logged_outcome
        assert logged is not None
        target_dir = layout.terminal_dir(self.home, logged["outcome"])
        final = target_dir / logged["file"]
        meta = {**(logged.get("sidecar") or {}), "audit_seq": logged["seq"], "audit_hash": logged["hash"]}
        in_processing = os.path.lexists(claim.data)  # not after a retry whose rename was done
        if in_processing and os.path.lexists(final) and not _is_ours(final, claim.cid):
            final = self._next_name(claim, final)  # a stranger took the name
        # a run that never wrote its journal has none on disk (a recovered claim's is looked for)
        unwritten = claim.journal is not None and not claim.journal.precious
        journal = [] if unwritten or not os.path.exists(claim.journal_path) else [claim.journal_path]
        final = await self._write_sidecar(claim, final, meta, [*journal, *claim.commit_paths])
        self.crash_point("after_sidecar")
        claim.committed()
        self.crash_point("before_final_rename")
        if in_processing:
            final = self._place_final(claim, final)
        self.crash_point("after_final_rename")
        # no wait for this rename to be durable: if a power cut undoes it, the file is back in
        # processing/ with its outcome line logged, and recovery ends it the same way
        if not unwritten:
            self.keep_journal(claim.journal_path)
        return final

    async def _write_sidecar(self, claim: Claim, final: Path, meta: dict[str, Any], also: list[str]) -> Path:
        """The sidecar, written by the group commit just before its fsyncs (creating a file costs up to
        ~0.6 ms on a busy disk: not on the loop); the commit covers the claim too when it is not on disk
        yet (one commit, not two in a row). Never over another writer's sidecar: a name taken since
        free_name looked moves the run to the next free one; our own (a crash or a retry) stands."""
        for _ in range(100):
            meta_path = layout.sidecar_of(final)
            try:
                await self.sync.sync([self.audit.path, meta_path, final.parent, *also],
                                     write=(meta_path, json_bytes(meta)))
                return final
            except FileExistsError:
                if _is_ours(meta_path, claim.cid, sidecar=True):
                    return final  # written before a crash or a failed fsync: the same record
                log.warning("sidecar_name_taken", file=display_name(meta_path.name))
                final = self._next_name(claim, final)
        raise OSError(f"no free sidecar name in {final.parent} for {display_name(final.name)}")

    def _next_name(self, claim: Claim, final: Path) -> Path:
        """The name a run takes when a stranger holds `final` (its file or sidecar): the same one a try
        before a crash took, whose sidecar is the run's own."""
        return layout.free_name(final.parent, final.name, claim.cid, self._reserved,
                                ours=lambda sidecar: _is_ours(sidecar, claim.cid, sidecar=True))

    def keep_journal(self, path: Path) -> None:
        """Move a finished run's journal to logs/journals/<cid>.journal.jsonl (`agentd replay` serves from it)."""
        if not os.path.lexists(path):
            return
        kept = self.home / KEPT_JOURNALS
        kept.mkdir(parents=True, exist_ok=True)
        try:
            rename_noreplace(path, kept / path.name.lstrip("."))
        except FileExistsError:
            path.unlink(missing_ok=True)  # kept already (a retried finish)
        self.crash_point("after_journal_kept")

    def _place_final(self, claim: Claim, final: Path) -> Path:
        try:
            rename_noreplace(claim.data, final)
        except FileExistsError:
            moved = self._place(claim.data, final.parent, final.name, claim.cid)
            if _is_ours(layout.sidecar_of(final), claim.cid, sidecar=True):
                os.replace(layout.sidecar_of(final), layout.sidecar_of(moved))  # our own sidecar follows
            log.warning("terminal_name_taken", file=display_name(final.name), moved_to=display_name(moved.name))
            final = moved
        self.on_move(claim.data.parent.name, final.parent.name)
        return final

    # -- operators' moves ---------------------------------------------------------------
    def requeue(self, data: Path, workflow: str, cid: str, by: str, name: str | None = None) -> Path:
        """Move a finished file back to incoming/ (its workflow's folder), as `name` if that is free: a
        transaction of agentd.spool.transitions (reviewers' decisions are the other), one at a time."""
        from agentd.spool import transitions

        with transitions.decision_lock(self.config.state_dir):
            transitions.recover(self)
            return transitions.requeue(self, data, workflow, cid, by, name)


__all__ = ["Claim", "Store", "KEPT_JOURNALS", "DEFAULT_WORKFLOW", "SIDECAR", "iter_sidecars"]


def _is_ours(path: Path, cid: str, sidecar: bool = False) -> bool:
    """True when `path` (a terminal file) belongs to run `cid`, by its sidecar."""
    meta = path if sidecar else layout.sidecar_of(path)
    try:
        return json.loads(meta.read_text("utf-8", "surrogateescape")).get("correlation_id") == cid
    except (OSError, ValueError):
        return False


def iter_sidecars(home: Path, outcomes: tuple[str, ...] = ("archived", "failed", "review")
                  ) -> Iterator[tuple[Path, dict[str, Any]]]:
    for outcome in outcomes:
        directory = layout.terminal_dir(home, outcome)
        if not directory.is_dir():
            continue
        for path in directory.glob("*" + SIDECAR):
            try:
                yield path, json.loads(path.read_text("utf-8", "surrogateescape"))
            except (OSError, ValueError):
                continue
