"""The memo the gateway is handed by the run: paid answers by key, intents, meters (a run's journal implements it).

The gateway knows nothing of files: what it must not lose (a paid answer) and what must be on
disk before a request leaves (the call's intent, its reservation at worst case) go through
this interface, in that order: `intend` (durable), the request, `note_call`, `keep`.
"""
from __future__ import annotations

from typing import Any, Protocol


class Memo(Protocol):
    precious: bool  # it is written: what it keeps is on disk (after a paid call's intent)

    def paid_answer(self, key: str) -> dict[str, Any] | None:
        """The paid answer kept under `key` ({"value", "provider", "model", ...}), or None."""

    async def keep(self, key: str, answer: dict[str, Any]) -> None:
        """Keep a paid answer (in memory first: a disk error raised after it is kept loses nothing)."""

    async def intend(self, **reservation: Any) -> str:
        """Record a model call's intent durably (fsynced) before its request leaves; its id."""

    def void(self, intent_id: str) -> None:
        """The intent's request never left: nothing to charge for it."""

    def note_call(self, precious: bool = True, **meter: Any) -> None:
        """Record one request's meter (tokens, cost, status; `intent` names its intent)."""

    def calls_made(self) -> int:
        """Requests metered for the run so far (across restarts)."""

    async def flush(self) -> None:
        """Make what was kept durable (fsync)."""
