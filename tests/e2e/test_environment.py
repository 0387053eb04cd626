"""The environment never stops the service: an entry of incoming/ the daemon may not read is skipped
(and shown), the daemon starts and claims everything else, and exit 78 means a real configuration error."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import AgentdProcess, base_env, cli, sidecars, wait_until

NOBODY = 65534
SETPRIV = shutil.which("setpriv")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None,
                                reason="needs root and setpriv (util-linux) to run the daemon without the "
                                       "capabilities that let root read every folder")


class UnprivilegedProcess(AgentdProcess):
    """`agentd run` as root with an empty capability bounding set: file permissions apply to it."""

    def start(self, wait: bool = True) -> "AgentdProcess":
        self.starts += 1
        log = open(self.log_path, "ab")
        command = [str(SETPRIV), "--bounding-set", "-all", "--inh-caps", "-all", "--",
                   sys.executable, "-m", "agentd", "run"]
        self.proc = subprocess.Popen(command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            wait_until(self.healthy, timeout=20, message="agentd /health")
        return self


@needs_root
@pytest.mark.timeout(60)
def test_an_unreadable_workflow_folder_is_skipped_and_everything_else_runs(home: Path) -> None:
    # Given a workflow folder of another user that the daemon may not read (an operator's umask 077)
    (home / "incoming").mkdir()
    locked = home / "incoming" / "private"
    locked.mkdir(mode=0o700)
    (locked / "secret.txt").write_text("not for agentd")
    os.chown(locked, NOBODY, NOBODY)
    (home / "incoming" / "letter.txt").write_text("Dear team, a letter.")
    env = base_env(home)
    # When agentd starts without the capabilities that would let it read anyway
    agent = UnprivilegedProcess(home, env)
    try:
        agent.start()
        # Then it starts (no false exit 78), archives the readable file, and /health names the skipped folder
        wait_until(lambda: sidecars(home, "archive"), message="the readable file archived")
        health = agent.health()
        assert health["status"] == "degraded" and str(locked) in health["unreadable"]
        assert "Permission" in health["unreadable"][str(locked)]
        status = cli(home, "status", env=env)
        assert status.returncode == 0 and str(locked) in status.stdout
        (home / "incoming" / "second.txt").write_text("Dear team, another letter.")
        wait_until(lambda: len(sidecars(home, "archive")) == 2, message="later files still claimed")
        assert agent.output().count("entry_skipped") == 1  # one warning per entry, not per scan
        assert (locked / "secret.txt").exists()
    finally:
        agent.kill()


def test_a_port_in_use_is_exit_78_naming_health_port(home: Path) -> None:
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli(home, "run", HEALTH_PORT=str(port))
    assert done.returncode == 78
    assert done.stderr.strip().startswith("agentd: HEALTH_PORT: cannot listen on 127.0.0.1:")
