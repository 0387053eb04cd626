"""End-to-end tests' session hooks: the crash sweep says what it covered at the end of the run."""
from __future__ import annotations

from typing import Any

from tests.e2e.sweep.tally import TALLY


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY.restarts:
        terminalreporter.write_line(TALLY.line())
