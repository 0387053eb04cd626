"""The folder state machine: incoming -> processing/<cid>.<workflow> -> archive | failed | review.

Every move is an os.rename within AGENTD_HOME; the fsyncs of many files are grouped.
The outcome's audit line and the sidecar are durable before the rename that makes the
outcome visible. A run creates one file of its own (the sidecar): creating files and
folders is the costly metadata operation, so a claim is a single rename, its record is
the `claimed` audit line (synced with it) and the decided outcome is the audit line.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import quote, unquote_to_bytes

from agentd.audit import AuditLog, iter_records, utcnow_iso
from agentd.config import Config
from agentd.durable import GroupSync, write_json

TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", "~")
TERMINAL = {"archived": "archive", "failed": "failed", "review": "review"}
SIDECAR = ".meta.json"
NAME_MAX = 255
CID_LEN = 32
JOURNAL_SUFFIX = ".journal.jsonl"  # .<cid>.journal.jsonl: a dot name is never a dropped file
KEPT_JOURNALS = "logs/journals"  # a finished run's journal, kept for `agentd replay`
DEFAULT_WORKFLOW = "triage"


def ignored_name(name: str) -> bool:
    """Names SPEC section 4 leaves alone until they are renamed."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def new_correlation_id(now: float | None = None) -> str:
    """32 hex digits: 80 random bits (any 6+ leading digits pick one run), then 48 bits of ms."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{secrets.token_hex(10)}{ms:012x}"


def cid_time_iso(cid: str) -> str:
    try:
        ms = int(cid[-12:], 16)
    except ValueError:
        return utcnow_iso()
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISDIR(mode):
        return "directory"
    return "unknown"


def display_name(name: str) -> str:
    """A file name as valid UTF-8 text (undecodable bytes shown as \\xNN)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def claim_name(cid: str, workflow: str) -> str:
    """processing/<cid>.<workflow> is the claimed file itself: a claim is one rename."""
    encoded = quote(os.fsencode(workflow), safe="-_")
    return f"{cid}.{encoded[:NAME_MAX - CID_LEN - 1]}"


def parse_claim_name(name: str) -> tuple[str, str] | None:
    cid, dot, encoded = name.partition(".")
    if len(cid) != CID_LEN or not dot or not encoded:
        return None
    try:
        int(cid, 16)
    except ValueError:
        return None
    return cid, os.fsdecode(unquote_to_bytes(encoded))


@dataclass
class Claim:
    """A file the daemon owns: processing/<cid>.<workflow>, and .<cid>.journal.jsonl once precious.

    Its dropped name is in the `claimed` audit line, made durable with the claim.
    """

    cid: str
    workflow: str
    original_name: str
    data: Path
    kind: str = "file"
    size: int = 0
    started_at: str = ""
    resumed: bool = False
    logged_outcome: dict[str, Any] | None = None  # an outcome audited before a crash
    synced: "asyncio.Future[None] | None" = None  # the claim's group commit, under way

    async def durable(self) -> None:
        """Wait until the claim's rename and claimed line are on disk."""
        if self.synced is not None:
            await self.synced

    @property
    def journal_path(self) -> Path:
        return self.data.with_name(f".{self.cid}{JOURNAL_SUFFIX}")


class Spool:
    def __init__(self, config: Config, audit: AuditLog, sync: GroupSync):
        self.config = config
        self.home = config.home
        self.processing = config.home / "processing"
        self.audit = audit
        self.sync = sync
        self._reserved: set[Path] = set()

    def terminal_dir(self, outcome: str) -> Path:
        return self.home / TERMINAL[outcome]

    # -- claim ------------------------------------------------------------------------
    async def claim(self, path: Path, workflow: str) -> Claim | None:
        """Take `path` out of incoming/ by rename; None if it is gone (someone else took it)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        cid = new_correlation_id()
        claim = Claim(cid=cid, workflow=workflow, original_name=path.name,
                      data=self.processing / claim_name(cid, workflow), kind=file_kind(st.st_mode),
                      size=st.st_size, started_at=cid_time_iso(cid))
        try:
            os.rename(path, claim.data)
        except FileNotFoundError:
            return None
        shown = display_name(path.name)
        try:
            self.audit.append("claimed", correlation_id=cid, workflow=workflow, original_name=shown,
                              raw_name=path.name if shown != path.name else None, size=st.st_size, kind=claim.kind)
        except OSError:
            os.rename(claim.data, path)  # unrecorded: it waits in incoming/ instead
            raise
        # the run goes on while the claim is made durable; a tool's side effect and the
        # outcome wait for it (Claim.durable). A model call does not: after a power cut that
        # undid the claim, the file is back in incoming/ and at worst that call is paid again.
        claim.synced = asyncio.ensure_future(self.sync.sync([self.processing, path.parent, self.audit.path]))
        return claim

    # -- recovery ---------------------------------------------------------------------
    def recover(self) -> list[Claim]:
        """Claims left in processing/ by a crash, oldest first; leftovers cleaned up."""
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
            if parsed is None:
                # not ours: put it back where the operator can see it
                os.rename(path, self._free_name(self.home / "incoming", entry.name, new_correlation_id()))
                continue
            st = os.lstat(path)
            claims.append(Claim(cid=parsed[0], workflow=parsed[1], original_name=parsed[0], data=path,
                                kind=file_kind(st.st_mode), size=st.st_size, started_at=cid_time_iso(parsed[0]),
                                resumed=True))
        claims.sort(key=lambda c: c.started_at)
        records = self._records_of({c.cid for c in claims})
        for claim in claims:
            claimed = records.get((claim.cid, "claimed"), {})
            claim.original_name = claimed.get("raw_name") or claimed.get("original_name") or claim.cid
            claim.logged_outcome = records.get((claim.cid, "outcome"))
            journals.discard(claim.journal_path)
        for orphan in journals:
            self.keep_journal(orphan)  # its run finished before its journal was put away
        return claims

    def _records_of(self, cids: set[str]) -> dict[tuple[str, str], dict[str, Any]]:
        """The claimed and outcome audit lines of these runs (one pass over the log)."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        if not cids:
            return found
        for record in iter_records(self.audit.dir):
            cid = record.get("correlation_id")
            if cid in cids and record.get("event") in ("claimed", "outcome"):
                found[(cid, record["event"])] = record
        return found

    async def unclaim(self, claim: Claim, reason: str) -> Path:
        """Put a claim that did no paid work back into incoming/: it waits there, not failed."""
        await claim.durable()
        target_dir = self.home / "incoming"
        if claim.workflow != DEFAULT_WORKFLOW:
            target_dir = target_dir / claim.workflow
            if not target_dir.is_dir():  # like incoming/ itself: operators of the group drop here
                target_dir.mkdir(parents=True, exist_ok=True)
                os.chmod(target_dir, os.stat(self.home / "incoming").st_mode & 0o7777)
        target = target_dir / claim.original_name
        if os.path.lexists(target):
            target = self._free_name(target_dir, claim.original_name, claim.cid)
        os.rename(claim.data, target)
        claim.journal_path.unlink(missing_ok=True)
        await self.sync.sync([target_dir, self.processing])
        self.audit.append("waiting", correlation_id=claim.cid, workflow=claim.workflow, reason=reason,
                          file=display_name(target.name))
        return target
    # -- finish -----------------------------------------------------------------------
    async def finish(self, claim: Claim, outcome: str, sidecar: dict[str, Any],
                     audit_fields: dict[str, Any]) -> Path:
        """Make the outcome durable (audit line + sidecar), then visible (rename). Idempotent."""
        await claim.durable()
        target_dir = self.terminal_dir(outcome)
        logged = claim.logged_outcome
        if logged and logged.get("outcome") == outcome and logged.get("file"):
            final = target_dir / logged["file"]  # decided before a crash: the same name again
            entry = {"seq": logged["seq"], "hash": logged["hash"]}
        else:
            final = self._free_name(target_dir, claim.original_name, claim.cid)
            appended = self.audit.append("outcome", correlation_id=claim.cid, workflow=claim.workflow,
                                         outcome=outcome, file=final.name, **audit_fields)
            entry = {"seq": appended.seq, "hash": appended.hash}
            claim.logged_outcome = {"outcome": outcome, "file": final.name, **entry}  # a retry reuses it
        self._reserved.add(final)
        try:
            meta_path = final.with_name(final.name + SIDECAR)
            # creating a file costs up to ~0.6 ms on a busy disk: not on the event loop
            await asyncio.to_thread(write_json, meta_path, {**sidecar, "audit_seq": entry["seq"],
                                                            "audit_hash": entry["hash"]})
            # one group commit: the outcome line, the sidecar and its folder entry (and the
            # journal's last entries), then the rename
            journal = [claim.journal_path] if os.path.exists(claim.journal_path) else []
            await self.sync.sync([self.audit.path, meta_path, target_dir, *journal])
            if os.path.lexists(claim.data):
                os.rename(claim.data, final)
            # no wait for this rename to be durable: if a power cut undoes it, the file is
            # back in processing/ with its outcome line logged, and recovery ends it the same way
            self.keep_journal(claim.journal_path)
        finally:
            self._reserved.discard(final)
        return final

    def keep_journal(self, path: Path) -> None:
        """Move a finished run's journal to logs/journals/<cid>.journal.jsonl (replay serves from it)."""
        kept = self.home / KEPT_JOURNALS
        try:
            os.rename(path, kept / path.name.lstrip("."))
        except FileNotFoundError:
            if not kept.is_dir() and os.path.lexists(path):
                kept.mkdir(parents=True, exist_ok=True)
                os.rename(path, kept / path.name.lstrip("."))

    def _free_name(self, directory: Path, name: str, cid: str) -> Path:
        return free_name(directory, name, cid, self._reserved)


def free_name(directory: Path, name: str, cid: str, reserved: set[Path] | frozenset[Path] = frozenset()) -> Path:
    """`name` if it and its sidecar are free in `directory`, else name-<cid8>[-n]; always short enough."""
    def taken(candidate: str) -> bool:
        path = directory / candidate
        return path in reserved or os.path.lexists(path) or os.path.lexists(directory / (candidate + SIDECAR))

    if len(os.fsencode(name + SIDECAR)) <= NAME_MAX and not name.endswith(SIDECAR) and not taken(name):
        return directory / name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix) > 16:
        stem, suffix = name, ""
    suffix = f".{suffix}" if suffix else ""
    if suffix == ".json" and stem.endswith(".meta"):
        stem = stem[: -len(".meta")]
    for n in range(1000):
        tag = f"-{cid[:8]}" + (f"-{n}" if n else "")
        room = NAME_MAX - len(os.fsencode(tag + suffix + SIDECAR))
        candidate = os.fsdecode(os.fsencode(stem)[:room]) + tag + suffix
        if not taken(candidate):
            return directory / candidate
    raise OSError(f"no free name in {directory} for {display_name(name)}")


def count_entries(directory: Path, sub: str) -> int:
    """Files waiting or finished in one state folder (sidecars and temp names not counted)."""
    total = 0
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if sub == "processing":
                    total += entry.is_dir(follow_symlinks=False)
                elif sub == "incoming" and entry.is_dir(follow_symlinks=False):
                    if not entry.name.startswith("."):
                        total += count_entries(Path(entry.path), "incoming-sub")
                elif not ignored_name(entry.name) and not entry.name.endswith(SIDECAR):
                    total += 1
    except FileNotFoundError:
        return 0
    return total


def oldest_waiting_age_s(incoming: Path, now: float) -> float | None:
    oldest = None
    stack = [incoming]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    if ignored_name(entry.name):
                        continue
                    st = entry.stat(follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        if directory == incoming:
                            stack.append(Path(entry.path))
                        continue
                    oldest = st.st_mtime if oldest is None else min(oldest, st.st_mtime)
        except FileNotFoundError:
            continue
    return None if oldest is None else max(0.0, now - oldest)


def iter_sidecars(home: Path, outcomes: tuple[str, ...] = ("archived", "failed", "review")) -> Iterator[tuple[Path, dict]]:
    for outcome in outcomes:
        directory = home / TERMINAL[outcome]
        if not directory.is_dir():
            continue
        for path in directory.glob("*" + SIDECAR):
            try:
                yield path, json.loads(path.read_text("utf-8", "surrogateescape"))
            except (OSError, ValueError):
                continue
