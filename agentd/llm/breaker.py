"""Circuit breakers per provider+model: closed, open, half-open with one trial call."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from agentd.durable.group import write_json

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_LEVEL = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass
class Breaker:
    key: str
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial: bool = False  # a half-open trial call is in flight (not persisted)

    def snapshot(self) -> dict:
        data = asdict(self)
        data.pop("trial")
        return data


class Breakers:
    """All breakers of the daemon; their state survives a restart (state/breakers.json)."""

    def __init__(self, state_dir: Path, failures: int, reset_s: float,
                 clock: Callable[[], float] = time.time):
        self.path = state_dir / "breakers.json"
        self.threshold = failures
        self.reset_s = reset_s
        self.clock = clock
        self.items: dict[str, Breaker] = {}
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            saved = {}
        for key, value in saved.items():
            self.items[key] = Breaker(key=key, state=value.get("state", CLOSED),
                                      failures=int(value.get("failures", 0)),
                                      opened_at=float(value.get("opened_at", 0)))

    def configure(self, failures: int, reset_s: float) -> None:
        """SIGHUP: new thresholds apply to the next failure and the next trial."""
        self.threshold, self.reset_s = failures, reset_s

    def get(self, key: str) -> Breaker:
        return self.items.setdefault(key, Breaker(key))

    def _save(self) -> None:
        write_json(self.path, {k: b.snapshot() for k, b in self.items.items()})

    def ready(self, key: str) -> bool:
        """Could a call go out now (closed, or open long enough for a free trial slot)?"""
        b = self.get(key)
        if b.state == CLOSED:
            return True
        if b.trial:
            return False
        return b.state == HALF_OPEN or self.clock() - b.opened_at >= self.reset_s

    def acquire(self, key: str) -> bool:
        """Take permission for one call; in half-open only one trial at a time."""
        b = self.get(key)
        if b.state == CLOSED:
            return True
        if not self.ready(key):
            return False
        b.state, b.trial = HALF_OPEN, True
        return True

    def success(self, key: str) -> str | None:
        b = self.get(key)
        before = b.state
        b.state, b.failures, b.trial = CLOSED, 0, False
        if before != CLOSED:
            self._save()
            return CLOSED
        return None

    def failure(self, key: str) -> str | None:
        """Count a provider failure; return the new state when it changed."""
        b = self.get(key)
        b.failures += 1
        if b.state == HALF_OPEN or (b.state == CLOSED and b.failures >= self.threshold):
            b.state, b.opened_at, b.trial = OPEN, self.clock(), False
            self._save()
            return OPEN
        return None

    def release(self, key: str) -> None:
        """A trial call ended without a verdict on the provider (e.g. a 4xx)."""
        self.get(key).trial = False

    def states(self) -> dict[str, str]:
        return {k: b.state for k, b in self.items.items()}
