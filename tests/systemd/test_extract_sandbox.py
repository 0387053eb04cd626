"""The parser processes of text extraction work under the unit's system-call filter (no systemd needed).

tests/systemd/seccomp_filter.py loads the filter deploy/agentd.service describes
(SystemCallFilter=, MemoryDenyWriteExecute=, NoNewPrivileges=) and execs a payload that
runs agentd.run.isolated's pool: the memory limit (prlimit64) and the lower priority
(setpriority) must hold there, the deadline and the limit must stop hostile PDFs, and a
fresh parser must take the next file. The full unit runs in tests/e2e/test_systemd_e2e.py.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

HERE = Path(__file__).resolve().parent
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _has_seccomp() -> bool:
    if not SYSTEM_PYTHON.exists() or shutil.which("systemd-analyze") is None:
        return False
    return subprocess.run([str(SYSTEM_PYTHON), "-c", "import seccomp"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _has_seccomp(), reason="needs systemd-analyze and Debian's python3-seccomp "
                                                           "(scripts/test-deps installs them)")


def test_parser_processes_keep_their_limits_under_the_units_syscall_filter() -> None:
    out = subprocess.run([str(SYSTEM_PYTHON), str(HERE / "seccomp_filter.py"), str(ROOT / "deploy" / "agentd.service"),
                          sys.executable, str(HERE / "extract_check.py")], capture_output=True, text=True,
                         timeout=90, cwd="/")
    facts = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert out.returncode == 0, out.stderr[-3000:]
    assert facts["seccomp"] == "2 wx-refused"  # the filter is really on
    assert facts["text"] == "hello from a worker"
    assert int(facts["nice"]) > 0 and facts["rlimit_as"] == str(256 << 20)
    assert facts["slow.pdf"] == "extract_timeout" and facts["bomb.pdf"] == "extract_memory_limit"
    assert facts["after"] == "still works"
