"""A run's journal: completed steps, paid model answers, model and tool intents and tool results, by key.

A resumed run replays from it instead of paying or acting again. It lives in the
run's processing folder and goes with it when the run reaches its terminal place.
Entries stay in memory until the run does something precious (a paid model call, a
tool's side effect), and are serialized only then; from then on every entry is on disk
before the run goes on. A run of free, deterministic steps (the offline provider) writes
(and serializes) no journal at all: after a crash it simply runs again.

Write order of a paid model call: its intent (the reservation at worst case) written and
fsynced before the request leaves, then its meter (`type: call`, naming the intent), then
the answer under its key. An intent with neither a meter nor a `void` is *unanswered*: the
process died with the request out; recovery charges it at its worst case, once. The journal
implements the gateway's memo (agentd.llm.memo.Memo).

A disk error never loses what the journal was given: an entry is kept in memory first and
stays pending until a later write gets it to disk; only `put` and `intend` raise the error
(after the value is kept), so a retry replays a paid answer instead of paying again.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

from agentd.durable.group import GroupSync
from agentd.durable.sync_worker import fsync_path

MISSING = object()
SUFFIX = ".journal.jsonl"  # processing/.<cid>.journal.jsonl (agentd.spool.layout.JOURNAL_SUFFIX)


def _line(entry: dict[str, Any]) -> bytes:
    """One JSON line; text with lone surrogates (from a broken PDF) is written \\u-escaped, never lost."""
    try:
        return (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return (json.dumps(entry, ensure_ascii=True, default=str) + "\n").encode("ascii")


class Journal:
    def __init__(self, path: Path, sync: GroupSync | None):
        self.path = path
        self.sync = sync
        self.values: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []
        self.intents: dict[str, dict[str, Any]] = {}  # model intents by id
        self.resolved: set[str] = set()  # intents with a meter or a void
        self.precious = False  # written: every entry goes to disk (a paid call's intent, paid work, a resume)
        self.paid = False  # paid work or a side effect in it: the run must not start afresh (waits in place)
        self.unsynced = False
        self.write_error: OSError | None = None  # the last write's error, while entries wait in memory
        self._pending: list[dict[str, Any]] = []  # serialized only when written (a free run never is)
        self._unwritten = b""  # what a short write left of the last lines
        self._fd: int | None = None
        self._new_file = False  # created by us and its folder not yet fsynced
        self.load()

    def load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        self.precious = self.paid = True
        for line in raw.split(b"\n"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line: that step simply runs again
            if isinstance(entry, dict):
                self._take(entry)

    def _take(self, entry: dict[str, Any]) -> None:
        kind = entry.get("type")
        if kind == "call":
            self.calls.append(entry)
            if entry.get("intent"):
                self.resolved.add(str(entry["intent"]))
        elif kind == "intent":
            self.intents[str(entry.get("id"))] = entry
        elif kind == "void":
            self.resolved.add(str(entry.get("intent")))
        elif "key" in entry:
            self.values[entry["key"]] = entry.get("value")

    # -- reading ----------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        return self.values.get(key, MISSING)

    def paid_answer(self, key: str) -> dict[str, Any] | None:
        """The paid answer recorded under `key` (the memo's face), or None."""
        found = self.values.get(key)
        return found if isinstance(found, dict) and "value" in found else None

    def calls_made(self) -> int:
        return len(self.calls)

    def unanswered(self) -> list[dict[str, Any]]:
        """Model intents whose request may have gone out with no meter recorded: a crash took the answer."""
        return [i for id_, i in self.intents.items() if id_ not in self.resolved]

    # -- writing ----------------------------------------------------------------------------
    def _append(self, entry: dict[str, Any]) -> None:
        """Keep the entry, then write it if the journal is precious; an error leaves it pending (never raises)."""
        self._pending.append(entry)
        if self.precious:
            self._try_write()

    def _try_write(self) -> None:
        try:
            self._write()
        except OSError as exc:
            self.write_error = exc
        else:
            self.write_error = None

    def _raise_unwritten(self) -> None:
        """What was given is kept in memory; raise the disk error if some of it is still not on disk."""
        if self.write_error is not None and (self._pending or self._unwritten):
            raise self.write_error

    def _write(self) -> None:
        """Write what is pending; on a short write or an error (a full disk) it stays pending, in memory."""
        if self._fd is None:
            existed = os.path.exists(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self._new_file = self._new_file or not existed
        data = self._unwritten + b"".join(_line(entry) for entry in self._pending)
        self._pending = []
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        finally:
            self._unwritten = bytes(view)

    def _sync_paths(self) -> list[Path]:
        """The journal, and its folder while the file is new (its name must survive a power cut too)."""
        if self._new_file:
            self._new_file = False
            return [self.path, self.path.parent]
        return [self.path]

    async def _sync(self) -> None:
        if self.sync is not None:
            paths = self._sync_paths()
            try:
                await self.sync.sync(paths)
            except OSError:
                self._new_file = self._new_file or len(paths) > 1  # its folder is fsynced by the next try
                raise

    async def _sync_now(self) -> None:
        """fdatasync the journal (and its new folder entry) in a worker thread, at once.

        For an intent, which holds its request until it is on disk: a group commit's round may be
        busy with other runs' claims and outcomes: waiting behind it cost bench/concurrency.py (a 100 ms
        model, 16 in flight) 13 % of its speed, a thread of its own about 1 %."""
        if self.sync is None or not self.sync.enabled or self._fd is None:
            return
        paths, fd = self._sync_paths(), os.dup(self._fd)  # its own descriptor: a cancelled run may close ours
        try:
            await asyncio.to_thread(_datasync, fd, paths[1:])
        except OSError:
            self._new_file = self._new_file or len(paths) > 1  # its folder is fsynced by the next try
            raise

    def mark_precious(self) -> None:
        """From now on everything is written: what follows must not be repeated."""
        self.paid = True
        if not self.precious:
            self.precious = True
            self._try_write()

    async def put(self, key: str, value: Any, durable: bool = True, wait: bool = True) -> None:
        """Record an output before the run goes on: written once the run is precious.

        Written is enough against a crash of the process. Against a power cut, a tool's
        result is fsynced before the run goes on (wait); a paid answer is fsynced with the
        run's next sync point (its next model call, a tool call or its outcome: `flush`), so
        at worst a power cut in between pays for that answer again. A free step's output is not
        fsynced on its own: after a power cut that step simply runs again. A disk error is
        raised only after the value is kept in memory (a retry of the claim replays it).
        """
        self.values[key] = value
        self._append({"key": key, "value": value})
        self._raise_unwritten()
        if self.precious and durable:
            if wait:
                self.unsynced = False
                await self._sync()
            else:
                self.unsynced = True

    async def keep(self, key: str, answer: dict[str, Any]) -> None:
        """A paid answer (the memo's face): written at once, fsynced with the run's next sync point."""
        await self.put(key, answer, wait=False)

    async def intend(self, **reservation: Any) -> str:
        """A model call's intent, written and fsynced before its request leaves; its id.

        `reservation`: what recovery charges if no meter follows (provider, model, worst_usd,
        tokens_in, tokens_out, the ask's key, attempt)."""
        intent_id = f"m{len(self.intents) + 1}"
        now = time.time()
        entry = {"type": "intent", "id": intent_id, **reservation,
                 "at": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="milliseconds")
                 .replace("+00:00", "Z"), "day": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%d")}
        self.intents[intent_id] = entry
        self.precious = True
        self._append(entry)
        self._raise_unwritten()
        self.unsynced = False  # the answers before it are fsynced with it
        await self._sync_now()
        return intent_id

    def void(self, intent_id: str) -> None:
        """The intent's request never left (the kill switch after its fsync, a cancel): nothing to charge."""
        self.resolved.add(intent_id)
        self._append({"type": "void", "intent": intent_id})

    async def flush(self) -> None:
        """fsync what `put(wait=False)` left unsynced."""
        if self.unsynced:
            self.unsynced = False
            await self._sync()

    def note_call(self, precious: bool = True, **meter: Any) -> None:
        """Record a model call's meter (durable with the next put or the outcome); never raises."""
        entry = {"type": "call", **meter}
        self.calls.append(entry)
        if meter.get("intent"):
            self.resolved.add(str(meter["intent"]))
        if precious:
            self.precious = self.paid = True
        self._append(entry)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @property
    def cost_usd(self) -> Decimal:
        return sum((Decimal(str(c.get("cost_usd", 0))) for c in self.calls), Decimal(0))

    @property
    def tokens(self) -> dict[str, int]:
        return {"input": sum(int(c.get("tokens_in", 0)) for c in self.calls),
                "output": sum(int(c.get("tokens_out", 0)) for c in self.calls)}


def _datasync(fd: int, folders: list[Path]) -> None:
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)
    for folder in folders:
        fsync_path(folder)


def unanswered_in(folder: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(correlation id, intent) of every unanswered model intent in the journals of `folder` (processing/)."""
    try:
        names = sorted(n for n in os.listdir(folder) if n.startswith(".") and n.endswith(SUFFIX))
    except OSError:
        return
    for name in names:
        cid = name[1:-len(SUFFIX)]
        for intent in Journal(folder / name, None).unanswered():
            yield cid, intent
