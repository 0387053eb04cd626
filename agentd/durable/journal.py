"""A run's journal: completed steps, paid model answers and tool results, by key.

A resumed run replays from it instead of paying or acting again. It lives in the
run's processing folder and goes with it when the run reaches its terminal place.
Entries stay in memory until the run does something precious (a paid model call, a
tool's side effect), and are serialized only then; from then on every entry is on disk
before the run goes on. A run of free, deterministic steps (the offline provider) writes
(and serializes) no journal at all: after a crash it simply runs again.
"""
from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from agentd.durable.group import GroupSync

MISSING = object()


def _line(entry: dict[str, Any]) -> bytes:
    """One JSON line; text with lone surrogates (from a broken PDF) is written \\u-escaped, never lost."""
    try:
        return (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return (json.dumps(entry, ensure_ascii=True, default=str) + "\n").encode("ascii")


class Journal:
    def __init__(self, path: Path, sync: GroupSync):
        self.path = path
        self.sync = sync
        self.values: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []
        self.precious = False
        self.unsynced = False
        self._pending: list[dict[str, Any]] = []  # serialized only when written (a free run never is)
        self._unwritten = b""  # what a short write left of the last lines
        self._fd: int | None = None
        self.load()

    def load(self) -> None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return
        self.precious = True
        for line in raw.split(b"\n"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line: that step simply runs again
            if entry.get("type") == "call":
                self.calls.append(entry)
            elif "key" in entry:
                self.values[entry["key"]] = entry.get("value")

    def get(self, key: str) -> Any:
        return self.values.get(key, MISSING)

    def _append(self, entry: dict[str, Any]) -> None:
        self._pending.append(entry)
        if self.precious:
            self._write()

    def _write(self) -> None:
        """Write what is pending; on a short write or an error (a full disk) it stays pending, in memory."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        data = self._unwritten + b"".join(_line(entry) for entry in self._pending)
        self._pending = []
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        finally:
            self._unwritten = bytes(view)

    def mark_precious(self) -> None:
        """From now on everything is written: what follows must not be repeated."""
        if not self.precious:
            self.precious = True
            self._write()

    async def put(self, key: str, value: Any, durable: bool = True, wait: bool = True) -> None:
        """Record an output before the run goes on: written once the run is precious.

        Written is enough against a crash of the process. Against a power cut, a tool's
        result is fsynced before the run goes on (wait); a paid answer is fsynced with the
        run's next sync point (its next model call, a tool call or its outcome: `flush`), so
        at worst a power cut in between pays for that answer again. A free step's output is not
        fsynced on its own: after a power cut that step simply runs again.
        """
        self._append({"key": key, "value": value})
        self.values[key] = value
        if self.precious and durable:
            if wait:
                self.unsynced = False
                await self.sync.sync([self.path])
            else:
                self.unsynced = True

    async def flush(self) -> None:
        """fsync what `put(wait=False)` left unsynced."""
        if self.unsynced:
            self.unsynced = False
            await self.sync.sync([self.path])

    def note_call(self, precious: bool = True, **meter: Any) -> None:
        """Record a model call's meter (durable with the next put or the outcome)."""
        entry = {"type": "call", **meter}
        self.calls.append(entry)
        if precious:
            self.mark_precious()
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
