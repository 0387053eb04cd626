"""The shipped unit's reload applies the env file (SPEC sections 3, 7), checked on deploy/agentd.service
itself: its env file reaches agentd through --env-file (a copy systemd makes as root at start and at
reload), never as the real environment, which would win over the file and never change. Then the
unit's own start and reload command lines are run (paths moved into a scratch folder) against a
real daemon: a token changed in the env file works after the reload. The real-systemd run is
tests/e2e/test_systemd_e2e.py (reload_applies_the_env_file)."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from agentd.lifecycle.reloading import LIVE_FIELDS, variables_of
from tests.helpers import AgentdProcess, base_env, wait_until
from tests.systemd.test_unit_file import unit

CONF = "/etc/agentd/agentd.env"


def _copy(line: str) -> tuple[list[str], str, str]:
    """A unit line copying the env file: (its argv without the owner flags, source, target)."""
    assert line.startswith("+"), f"{line!r} must run as root: the env file is 0600 root"
    argv = shlex.split(line[1:])
    assert Path(argv[0]).name == "install", argv
    kept = [a for i, a in enumerate(argv) if a not in ("-o", "-g") and argv[i - 1] not in ("-o", "-g")]
    return kept, argv[-2], argv[-1]


def test_the_unit_hands_agentd_a_copy_of_the_env_file_at_start_and_at_reload() -> None:
    u = unit()
    assert "EnvironmentFile" not in u  # its values would be the real environment: a reload could not change them
    [pre] = u["ExecStartPre"]
    copy_reload, hup = u["ExecReload"]
    _, source, target = _copy(pre)
    assert source == CONF and _copy(copy_reload)[1:] == (source, target)
    assert hup == "/bin/kill -HUP $MAINPID"  # after the copy: the daemon reads the new values
    start = shlex.split(u["ExecStart"][0])
    assert start[1:] == ["run", "--env-file", target]
    assert target.startswith("/run/agentd/") and u["RuntimeDirectory"] == ["agentd"]
    assert u["RuntimeDirectoryMode"] == ["0700"]
    # nothing the unit puts in the real environment is a setting a reload should change
    real = dict(pair.split("=", 1) for line in u["Environment"] for pair in shlex.split(line))
    assert not set(real) & set(variables_of(sorted(LIVE_FIELDS))), real


def _run(argv: list[str], moved: dict[str, str]) -> None:
    subprocess.run([moved.get(a, a) for a in argv], check=True)


def test_the_units_own_reload_lines_make_a_changed_token_work(home: Path, tmp_path: Path) -> None:
    u = unit()
    pre, source, target = _copy(u["ExecStartPre"][0])
    reload_copy, _, _ = _copy(u["ExecReload"][0])
    moved = {source: str(tmp_path / "agentd.env"), target: str(tmp_path / "run" / "agentd.env")}
    (tmp_path / "run").mkdir(mode=0o700)
    Path(moved[source]).write_text("ADMIN_TOKEN=admin-before-0123456789\n")
    os.chmod(moved[source], 0o600)
    # Given agentd started as the unit starts it: the copy first, then ExecStart's arguments
    _run(pre, moved)
    argv = [moved.get(a, a) for a in shlex.split(u["ExecStart"][0])[1:]]
    agent = AgentdProcess(home, base_env(home))
    log = open(agent.log_path, "ab")
    agent.proc = subprocess.Popen([sys.executable, "-m", "agentd", *argv], env=agent.env, cwd=agent.cwd,
                                  stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_until(agent.healthy, timeout=20, message="agentd /health")
        bearer = {"Authorization": "Bearer admin-before-0123456789"}
        assert agent.request("POST", "/admin/kill-switch", headers=bearer)[0] == 200
        # When the operator rotates the token in the env file and the unit reloads (its two lines)
        Path(moved[source]).write_text("ADMIN_TOKEN=admin-after-9876543210\n")
        _run(reload_copy, moved)
        agent.proc.send_signal(signal.SIGHUP)
        # Then the new token works and the old one is refused, in the same process
        fresh = {"Authorization": "Bearer admin-after-9876543210"}
        wait_until(lambda: agent.request("DELETE", "/admin/kill-switch", headers=fresh)[0] == 200, timeout=10,
                   message="the new token accepted")
        assert agent.request("POST", "/admin/kill-switch", headers=bearer)[0] == 401
        assert agent.proc.poll() is None and agent.starts == 0
    finally:
        agent.kill()
