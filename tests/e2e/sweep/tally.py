"""What the crash sweep covered in this pytest session: points, kills proven, invariants checked."""
from __future__ import annotations

from dataclasses import dataclass, field

from agentd.durable.crash import POINTS


@dataclass
class Tally:
    points: set[str] = field(default_factory=set)  # killed there at least once
    restarts: set[str] = field(default_factory=set)
    kills: int = 0
    invariants: int = 0
    failed: list[str] = field(default_factory=list)

    def line(self) -> str:
        failed = f", {len(self.failed)} cases failed ({', '.join(self.failed)})" if self.failed else ""
        return (f"crash sweep: {len(self.points)} of {len(POINTS)} crash points, {self.kills} kills proven "
                f"(restarts: {', '.join(sorted(self.restarts))}), {self.invariants} invariants checked{failed}")


TALLY = Tally()
