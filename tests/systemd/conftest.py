"""The `systemd` marker: tests that boot a real systemd in a private namespace (root only).
Deselect them with `-m "not systemd"`."""
from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "systemd: boots a real systemd in a private namespace (needs root)")
