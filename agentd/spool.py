"""The folder state machine: incoming -> processing/<cid>.<workflow>/ -> archive | failed | review.

Every move is an os.rename within AGENTD_HOME; the fsyncs of many files are grouped.
The outcome's audit line and the sidecar are durable before the rename that makes the
outcome visible. A run creates one file of its own (the sidecar): file creation is the
costly metadata operation, so the claim record is the folder's name and the decided
outcome is the audit line.
"""
from __future__ import annotations

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

from agentd.audit import AuditLog, utcnow_iso
from agentd.config import Config
from agentd.durable import GroupSync, write_json

TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", "~")
TERMINAL = {"archived": "archive", "failed": "failed", "review": "review"}
SIDECAR = ".meta.json"
NAME_MAX = 255
CID_LEN = 32
# control files start with a dot: a dropped file never has such a name (it is ignored)
JOURNAL_FILE = ".journal.jsonl"
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


def claim_dir_name(cid: str, workflow: str) -> str:
    """processing/<cid>.<workflow>: the folder name is the claim record (no file to create)."""
    encoded = quote(os.fsencode(workflow), safe="-_")
    return f"{cid}.{encoded[:NAME_MAX - CID_LEN - 1]}"


def parse_claim_dir(name: str) -> tuple[str, str] | None:
    cid, dot, encoded = name.partition(".")
    if len(cid) != CID_LEN or not dot or not encoded:
        return None
    return cid, os.fsdecode(unquote_to_bytes(encoded))


@dataclass
class Claim:
    """A file the daemon owns: processing/<cid>.<workflow>/ holds it and its journal."""

    cid: str
    workflow: str
    original_name: str
    dir: Path
    kind: str = "file"
    size: int = 0
    started_at: str = ""
    resumed: bool = False
    logged_outcome: dict[str, Any] | None = None  # an outcome audited before a crash

    @property
    def data(self) -> Path:
        return self.dir / self.original_name

    @property
    def journal_path(self) -> Path:
        return self.dir / JOURNAL_FILE


class Spool:
    def __init__(self, config: Config, audit: AuditLog, sync: GroupSync):
        self.config = config
        self.home = config.home
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
                      dir=self.home / "processing" / claim_dir_name(cid, workflow), kind=file_kind(st.st_mode),
                      size=st.st_size, started_at=cid_time_iso(cid))
        claim.dir.mkdir(mode=0o750)
        try:
            os.rename(path, claim.data)
        except FileNotFoundError:
            os.rmdir(claim.dir)
            return None
        await self.sync.sync([claim.dir, claim.dir.parent, path.parent])
        return claim

    # -- recovery ---------------------------------------------------------------------
    def recover(self) -> list[Claim]:
        """Claims left in processing/ by a crash, oldest first; empty leftovers removed."""
        processing = self.home / "processing"
        claims = []
        for entry in sorted(os.scandir(processing), key=lambda e: e.name[CID_LEN - 12:CID_LEN]):
            path = Path(entry.path)
            parsed = parse_claim_dir(entry.name) if entry.is_dir(follow_symlinks=False) else None
            if parsed is None:
                # not ours: put it back where the operator can see it
                os.rename(path, self._free_name(self.home / "incoming", entry.name, new_correlation_id()))
                continue
            data = [p for p in path.iterdir() if not p.name.startswith(".")]
            if not data:
                shutil.rmtree(path, ignore_errors=True)  # finished but for the clean-up
                continue
            st = os.lstat(data[0])
            claims.append(Claim(cid=parsed[0], workflow=parsed[1], original_name=data[0].name, dir=path,
                                kind=file_kind(st.st_mode), size=st.st_size, started_at=cid_time_iso(parsed[0]),
                                resumed=True))
        if claims:
            logged = self._logged_outcomes({c.cid for c in claims})
            for claim in claims:
                claim.logged_outcome = logged.get(claim.cid)
        return claims

    def _logged_outcomes(self, cids: set[str]) -> dict[str, dict[str, Any]]:
        """Outcome lines already in the current audit file for these runs (one pass)."""
        found: dict[str, dict[str, Any]] = {}
        try:
            fh = open(self.audit.path, "rb")
        except FileNotFoundError:
            return found
        with fh:
            for raw in fh:
                if b'"outcome"' not in raw:
                    continue
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if record.get("event") == "outcome" and record.get("correlation_id") in cids:
                    found[record["correlation_id"]] = record
        return found

    async def unclaim(self, claim: Claim, reason: str) -> Path:
        """Put a claim that did no paid work back into incoming/: it waits there, not failed."""
        target_dir = self.home / "incoming"
        if claim.workflow != DEFAULT_WORKFLOW:
            target_dir = target_dir / claim.workflow
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / claim.original_name
        if os.path.lexists(target):
            target = self._free_name(target_dir, claim.original_name, claim.cid)
        os.rename(claim.data, target)
        await self.sync.sync([target_dir, claim.dir])
        shutil.rmtree(claim.dir, ignore_errors=True)
        self.audit.append("waiting", correlation_id=claim.cid, workflow=claim.workflow, reason=reason,
                          file=display_name(target.name))
        return target

    # -- finish -----------------------------------------------------------------------
    async def finish(self, claim: Claim, outcome: str, sidecar: dict[str, Any],
                     audit_fields: dict[str, Any]) -> Path:
        """Make the outcome durable (audit line + sidecar), then visible (rename). Idempotent."""
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
            write_json(meta_path, {**sidecar, "audit_seq": entry["seq"], "audit_hash": entry["hash"]})
            # one group commit: the outcome line, the sidecar and its folder entry, then the rename
            await self.sync.sync([self.audit.path, meta_path, target_dir])
            if os.path.lexists(claim.data):
                os.rename(claim.data, final)
            await self.sync.sync([target_dir])
            shutil.rmtree(claim.dir, ignore_errors=True)
        finally:
            self._reserved.discard(final)
        return final

    def _free_name(self, directory: Path, name: str, cid: str) -> Path:
        """`name` if it and its sidecar are free, else name-<cid8>; always short enough."""
        def fits(candidate: str) -> bool:
            return len(os.fsencode(candidate + SIDECAR)) <= NAME_MAX

        def taken(candidate: str) -> bool:
            path = directory / candidate
            return (path in self._reserved or os.path.lexists(path)
                    or os.path.lexists(directory / (candidate + SIDECAR)))

        if fits(name) and not name.endswith(SIDECAR) and not taken(name):
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
            raw = os.fsencode(stem)[:room]
            candidate = os.fsdecode(raw) + tag + suffix
            if not taken(candidate):
                return directory / candidate
        raise OSError(f"no free name in {directory} for {display_name(name)}")

    # -- reading ----------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        result = {}
        for sub in ("incoming", "processing", "archive", "failed", "review"):
            result[sub] = count_entries(self.home / sub, sub)
        return result


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
