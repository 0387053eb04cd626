"""The folder state machine: incoming -> processing/<cid>/ -> archive | failed | review.

Every move is an os.rename within AGENTD_HOME; the fsyncs of many files are grouped.
The sidecar is durable before the rename that makes an outcome visible, and the
outcome's audit line is durable before both.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from agentd.audit import AuditLog, iter_records, utcnow_iso
from agentd.config import Config
from agentd.durable import GroupSync, write_json

TEMP_SUFFIXES = (".part", ".tmp", ".crdownload", ".swp", "~")
TERMINAL = {"archived": "archive", "failed": "failed", "review": "review"}
SIDECAR = ".meta.json"
NAME_MAX = 255
# control files start with a dot: a dropped file never has such a name (it is ignored)
CLAIM_FILE = ".claim.json"
OUTCOME_FILE = ".outcome.json"
JOURNAL_FILE = ".journal.jsonl"
DEFAULT_WORKFLOW = "triage"


def ignored_name(name: str) -> bool:
    """Names SPEC section 4 leaves alone until they are renamed."""
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


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


@dataclass
class Claim:
    """A file the daemon owns: processing/<cid>/ holds it, its claim record and journal."""

    cid: str
    workflow: str
    original_name: str
    dir: Path
    kind: str = "file"
    size: int = 0
    started_at: str = ""
    resumed: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> Path:
        return self.dir / self.original_name

    @property
    def journal_path(self) -> Path:
        return self.dir / JOURNAL_FILE

    def record(self) -> dict[str, Any]:
        return {"correlation_id": self.cid, "workflow": self.workflow,
                "original_name": self.original_name, "kind": self.kind, "size": self.size,
                "started_at": self.started_at, **self.meta}


class Spool:
    def __init__(self, config: Config, audit: AuditLog, sync: GroupSync):
        self.config = config
        self.home = config.home
        self.audit = audit
        self.sync = sync
        self._reserved: set[Path] = set()

    # -- layout -----------------------------------------------------------------------
    def ensure_dirs(self) -> None:
        for sub in ("incoming", "processing", "archive", "failed", "review", "state", "logs", "data"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)

    def terminal_dir(self, outcome: str) -> Path:
        return self.home / TERMINAL[outcome]

    # -- claim ------------------------------------------------------------------------
    async def claim(self, path: Path, workflow: str, extra: dict[str, Any] | None = None) -> Claim | None:
        """Take `path` out of incoming/ by rename; None if it is gone (someone else took it)."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        cid = new_correlation_id()
        claim = Claim(cid=cid, workflow=workflow, original_name=path.name,
                      dir=self.home / "processing" / cid, kind=file_kind(st.st_mode),
                      size=st.st_size, started_at=utcnow_iso(), meta=dict(extra or {}))
        claim.dir.mkdir(mode=0o750)
        write_json(claim.dir / CLAIM_FILE, claim.record())
        try:
            os.rename(path, claim.data)
        except FileNotFoundError:
            shutil.rmtree(claim.dir, ignore_errors=True)
            return None
        await self.sync.sync([claim.dir / CLAIM_FILE, claim.dir, claim.dir.parent, path.parent])
        return claim

    # -- recovery ---------------------------------------------------------------------
    def recover(self) -> Iterator[Claim]:
        """Claims left in processing/ by a crash, oldest first; empty leftovers removed."""
        processing = self.home / "processing"
        entries = sorted(os.scandir(processing), key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
        for entry in entries:
            path = Path(entry.path)
            if not entry.is_dir(follow_symlinks=False):
                # not ours: put it back where the operator can see it
                os.rename(path, self._free_name(self.home / "incoming", entry.name, "stray"))
                continue
            claim = self._load_claim(path)
            if claim is None:
                shutil.rmtree(path, ignore_errors=True)
                continue
            claim.resumed = True
            yield claim

    def _load_claim(self, cid_dir: Path) -> Claim | None:
        try:
            record = json.loads((cid_dir / CLAIM_FILE).read_text("utf-8", "surrogateescape"))
        except (OSError, ValueError):
            record = None
        data_files = [p for p in cid_dir.iterdir() if not p.name.startswith(".")]
        if record is None:
            if not data_files:
                return None
            # the claim record was lost (power cut): keep the file, let a human decide
            name = data_files[0].name
            return Claim(cid=cid_dir.name, workflow=DEFAULT_WORKFLOW, original_name=name, dir=cid_dir,
                         kind=file_kind(os.lstat(data_files[0]).st_mode), started_at=utcnow_iso(),
                         meta={"claim_lost": True})
        claim = Claim(cid=record["correlation_id"], workflow=record["workflow"],
                      original_name=record["original_name"], dir=cid_dir, kind=record.get("kind", "file"),
                      size=record.get("size", 0), started_at=record.get("started_at", ""),
                      meta={k: v for k, v in record.items() if k not in (
                          "correlation_id", "workflow", "original_name", "kind", "size", "started_at")})
        if not os.path.lexists(claim.data):
            return None  # finished except for the clean-up, or never moved in
        return claim

    def pending_outcome(self, claim: Claim) -> dict | None:
        """An outcome decided before the crash, still to be made visible."""
        try:
            return json.loads((claim.dir / OUTCOME_FILE).read_text("utf-8", "surrogateescape"))
        except (OSError, ValueError):
            return None

    async def unclaim(self, claim: Claim, reason: str) -> Path:
        """Put a claim that did no paid work back into incoming/: it waits there, not failed."""
        source = claim.meta.get("source") or claim.original_name
        target_dir = (self.home / "incoming" / source).parent
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
        """Make the outcome durable (audit line, sidecar), then visible (rename). Idempotent."""
        target_dir = self.terminal_dir(outcome)
        pending = self.pending_outcome(claim)
        if pending and pending.get("outcome") == outcome:
            final = target_dir / pending["final_name"]
            sidecar = pending["sidecar"]
        else:
            final = self._free_name(target_dir, claim.original_name, claim.cid)
            write_json(claim.dir / OUTCOME_FILE, {"outcome": outcome, "final_name": final.name,
                                                  "sidecar": sidecar})
        self._reserved.add(final)
        try:
            entry = self._logged_outcome(claim.cid) if pending else None
            if entry is None:
                entry = self.audit.append("outcome", correlation_id=claim.cid, workflow=claim.workflow,
                                          outcome=outcome, file=final.name, **audit_fields)
                entry = {"seq": entry.seq, "hash": entry.hash}
            await self.sync.sync([claim.dir / OUTCOME_FILE, self.audit.path])
            sidecar = {**sidecar, "audit_seq": entry["seq"], "audit_hash": entry["hash"]}
            meta_path = final.with_name(final.name + SIDECAR)
            write_json(meta_path, sidecar)
            await self.sync.sync([meta_path, target_dir])
            if os.path.lexists(claim.data):
                os.rename(claim.data, final)
            await self.sync.sync([target_dir, claim.dir])
            shutil.rmtree(claim.dir, ignore_errors=True)
        finally:
            self._reserved.discard(final)
        return final

    def _logged_outcome(self, cid: str) -> dict | None:
        found = None
        for record in iter_records(self.audit.dir):
            if record.get("event") == "outcome" and record.get("correlation_id") == cid:
                found = {"seq": record["seq"], "hash": record["hash"]}
        return found

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
