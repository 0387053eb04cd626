"""A full disk for tests, for real: a small tmpfs (root only) filled to the last byte, and a file's last
page filled too, so the next append to it needs a page the disk does not have (ENOSPC)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted on a tmp folder (skipped without root or mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(filler: Path, *last_pages: Path) -> None:
    """Fill the disk with `filler`, then the last page of each of `last_pages` with blank lines (a JSON
    lines reader skips them)."""
    with open(filler, "ab", buffering=0) as fh:
        for size in (65536, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError:
                continue
    for path in last_pages:
        with open(path, "ab", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\n")
            except OSError:
                pass
