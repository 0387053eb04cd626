"""agentd as a systemd service, end to end on a real systemd (issue 5, "Done means" 1-7).

`make install-service`, then the unit's promises: notify + watchdog, restart after a
crash without losing files, no restart loop on a bad config, a draining stop, the
sandbox, and a journal with the run outcomes and no secrets. systemd runs as PID 1 of a
private namespace with the host fenced off (tests/systemd/harness.py, init.sh); needs
root, skips elsewhere with the reason. Deselect with `-m "not systemd"`.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.helpers import ROOT, wait_until
from tests.systemd import harness
from tests.systemd.harness import SHARE, Machine

pytestmark = pytest.mark.systemd

STATE = "/var/lib/agentd"
ENV_FILE = "/etc/agentd/agentd.env"
UNIT = "/etc/systemd/system/agentd.service"
HEALTH = "http://127.0.0.1:8080/health"
RESTART_S = 2.0  # RestartSec= in deploy/agentd.service
PIP_OFFLINE = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": f"{SHARE}/wheels"}
PAYLOADS = ("slow_workflow.py", "sandbox_check.py")


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    """A booted namespace with the repo and a wheelhouse under SHARE; destroyed after."""
    reason = harness.unavailable(tmp_path)
    if reason:
        pytest.skip(reason)
    share = tmp_path / "share"
    try:
        harness.build_wheelhouse(ROOT, share / "wheels")
    except RuntimeError as exc:
        pytest.skip(f"cannot build the wheelhouse for the offline install: {exc}")
    for name in PAYLOADS:
        shutil.copy(Path(harness.HERE, name), share / name)
        (share / name).chmod(0o644)
    machine = Machine(tmp_path, ROOT)
    try:
        machine.boot()
        yield machine
    finally:
        if machine.proc is not None and machine.proc.poll() is None and machine.pid is not None:
            print(machine.run("journalctl", "--no-pager", "-b", "-n", "150", check=False).stdout)
        print(machine.boot_log())
        machine.destroy()


# -- helpers ------------------------------------------------------------------------------
def health(m: Machine) -> tuple[int, dict[str, Any]]:
    out = m.run("curl", "-s", "-m", "5", "-w", "\n%{http_code}", HEALTH, check=False).stdout
    body, _, code = out.rpartition("\n")
    return int(code or 0), json.loads(body) if body.strip() else {}


def mode_owner(m: Machine, path: str) -> str:
    return m.run("stat", "-c", "%a %U %G", path).stdout.strip()


def sha256(m: Machine, path: str) -> str:
    return hashlib.sha256(m.run("cat", path).stdout.encode()).hexdigest()


def drop(m: Machine, user: str, folder: str, name: str, text: str) -> None:
    """Write as `user` (umask 002, like an operator of group agentd) and rename into place."""
    m.run("sh", "-c", 'umask 002; mkdir -p "$D" && printf %s "$T" > "$D/.$N.part" && mv "$D/.$N.part" "$D/$N"',
          user=user, env={"D": folder, "N": name, "T": text})


def terminal_names(m: Machine, folder: str = "archive") -> set[str]:
    out = m.run("ls", "-1", f"{STATE}/{folder}").stdout.split()
    return {n for n in out if not n.endswith(".meta.json")}


def leftovers(m: Machine) -> list[str]:
    """Anything not yet in a terminal folder."""
    return m.run("find", f"{STATE}/incoming", f"{STATE}/processing", "-mindepth", "1", "-type", "f").stdout.split()


def main_pid(m: Machine) -> int:
    return int(m.show("agentd", "MainPID")["MainPID"])


def wait_restarted(m: Machine, old_pid: int, timeout_s: float) -> float:
    """Seconds from now until agentd is active (READY=1 sent) under a new main PID."""
    started = time.monotonic()

    def restarted() -> bool:
        props = m.show("agentd", "ActiveState", "SubState", "MainPID")
        return props["ActiveState"] == "active" and props["MainPID"] not in ("0", str(old_pid))

    wait_until(restarted, timeout_s, message="agentd to be active again under a new PID")
    return time.monotonic() - started


def wait_in_flight(m: Machine, n: int) -> None:
    wait_until(lambda: health(m)[1].get("in_flight", 0) >= n, 20, message=f"{n} runs in flight")


def set_env(m: Machine, **values: str) -> None:
    """Append to agentd.env (the last assignment wins)."""
    lines = "".join(f"{k}={v}\n" for k, v in values.items())
    m.run("sh", "-c", f'printf %s "$L" >> {ENV_FILE}', env={"L": lines})


# -- the steps, in order ------------------------------------------------------------------
def install_and_start(m: Machine, secrets: dict[str, str]) -> dict[str, float]:
    # Given a fresh machine, When `make install-service` runs as root from the checkout
    started = time.monotonic()
    out = m.run("make", "-C", f"{SHARE}/src", "install-service", env=PIP_OFFLINE, timeout_s=300).stdout
    install_s = time.monotonic() - started
    assert "systemctl enable --now agentd" in out
    # Then the unit verifies, the config is root's alone, incoming/ is the group's drop zone
    verify = m.run("systemd-analyze", "verify", UNIT, check=False)
    assert verify.returncode == 0 and not verify.stdout.strip() and not verify.stderr.strip(), verify
    assert mode_owner(m, ENV_FILE) == "600 root root"
    assert f"AGENTD_HOME={STATE}" in m.run("cat", ENV_FILE).stdout.splitlines()
    assert mode_owner(m, f"{STATE}/incoming") == "2770 agentd agentd"
    for sub in ("", "/processing", "/archive", "/failed", "/review", "/state", "/logs"):
        assert mode_owner(m, f"{STATE}{sub}") == "750 agentd agentd", sub
    # And running it again changes nothing an operator edited
    set_env(m, AGENTD_WORKFLOWS=f"{SHARE}/slow_workflow.py", **secrets)
    before = sha256(m, ENV_FILE)
    started = time.monotonic()
    again = m.run("make", "-C", f"{SHARE}/src", "install-service", env=PIP_OFFLINE, timeout_s=300).stdout
    assert f"keeping {ENV_FILE}" in again
    assert sha256(m, ENV_FILE) == before and mode_owner(m, ENV_FILE) == "600 root root"
    reinstall_s = time.monotonic() - started

    started = time.monotonic()
    m.systemctl("enable", "--now", "agentd")
    start_s = time.monotonic() - started
    props = m.show("agentd", "ActiveState", "SubState", "StatusText")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running")
    assert props["StatusText"].startswith("processed 0"), props
    return {"install_s": install_s, "reinstall_s": reinstall_s, "start_s": start_s}


def operator_drop_is_archived(m: Machine, admin_token: str) -> None:
    # Given an operator in group agentd (not the agentd user)
    m.run("useradd", "--groups", "agentd", "--no-create-home", "alice")
    code, body = health(m)
    assert code == 200 and body["status"] == "ok", body
    # When she drops a file, Then it ends in archive/ (PrivateUsers= maps her to nobody,
    # group permissions still let agentd take it)
    drop(m, "alice", f"{STATE}/incoming", "invoice-1.txt", "Invoice 1\nFrom: ACME\nTotal 12.50 EUR\n")
    wait_until(lambda: "invoice-1.txt" in terminal_names(m), 20, message="invoice-1.txt in archive/")
    assert mode_owner(m, f"{STATE}/archive/invoice-1.txt").split()[1:] == ["alice", "agentd"]
    meta = json.loads(m.run("cat", f"{STATE}/archive/invoice-1.txt.meta.json").stdout)
    assert meta["outcome"] == "archived" and meta["original_name"] == "invoice-1.txt"
    # The admin token works over loopback (and must not show up in the journal later)
    for method in ("POST", "DELETE"):
        status = admin(m, method, admin_token)
        assert status == "200", (method, status)


def admin(m: Machine, method: str, token: str) -> str:
    """The HTTP status of /admin/kill-switch for `method` with this bearer token."""
    return m.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method, "-H",
                 f"Authorization: Bearer {token}", "http://127.0.0.1:8080/admin/kill-switch").stdout


def reload_applies_the_env_file(m: Machine, secrets: dict[str, str]) -> None:
    # Given the admin token rotated in agentd.env (a live setting)
    old, rotated = main_pid(m), f"canary-rotated-{uuid.uuid4().hex}"
    set_env(m, ADMIN_TOKEN=rotated)
    secrets["ADMIN_TOKEN (rotated)"] = rotated
    # When the unit is reloaded (SIGHUP), Then the same process goes on
    m.systemctl("reload", "agentd")
    wait_until(lambda: "config_reloaded" in m.journal("-u", "agentd", "-n", "5", "-o", "cat"), 10,
               message="config_reloaded in the journal")
    assert main_pid(m) == old and m.show("agentd", "ActiveState")["ActiveState"] == "active"
    # and takes the new token, refusing the old one
    assert admin(m, "POST", rotated) == "200" and admin(m, "DELETE", rotated) == "200"
    assert admin(m, "POST", secrets["ADMIN_TOKEN"]) == "401"


def sigkill_restarts_without_loss(m: Machine) -> float:
    # Given three slow runs, at least one of them in flight
    names = {f"slow-{i}.txt" for i in range(3)}
    for name in sorted(names):
        drop(m, "alice", f"{STATE}/incoming/slow", name, f"slow file {name}")
    wait_in_flight(m, 1)
    old = main_pid(m)
    # When the main process is SIGKILLed
    m.run("kill", "-9", str(old))
    restart_s = wait_restarted(m, old, RESTART_S + 10)
    # Then it is back within RestartSec + 2 s, and every file ends in archive/
    assert restart_s <= RESTART_S + 2, f"active again only after {restart_s:.1f}s"
    assert m.show("agentd", "NRestarts")["NRestarts"] == "1"
    wait_until(lambda: names <= terminal_names(m), 30, message="the slow files in archive/")
    assert not leftovers(m) and not terminal_names(m, "failed")
    return restart_s


def watchdog_kills_a_hung_daemon(m: Machine) -> float:
    # Given a short watchdog (a drop-in, as an operator would add one)
    m.run("sh", "-c", "mkdir -p /etc/systemd/system/agentd.service.d && printf '[Service]\\nWatchdogSec=3s\\n"
          "TimeoutAbortSec=2s\\n' > /etc/systemd/system/agentd.service.d/e2e-watchdog.conf")
    m.systemctl("daemon-reload")
    m.systemctl("restart", "agentd")
    assert m.show("agentd", "WatchdogUSec")["WatchdogUSec"] == "3s"
    old = main_pid(m)
    # When the daemon stops answering (SIGSTOP: no more WATCHDOG=1)
    m.run("kill", "-STOP", str(old))
    # Then systemd kills it for the watchdog and starts it again
    restart_s = wait_restarted(m, old, 30)
    assert m.show("agentd", "NRestarts")["NRestarts"] == "1"
    journal = m.journal("-u", "agentd", "-n", "200")
    assert "Watchdog timeout" in journal
    # And the hung process's thread stacks are in the journal (PYTHONFAULTHANDLER=1)
    assert "Fatal Python error: Aborted" in journal and "most recent call first" in journal
    m.run("rm", "-r", "/etc/systemd/system/agentd.service.d")
    m.systemctl("daemon-reload")
    m.systemctl("restart", "agentd")
    return restart_s


def bad_config_fails_once(m: Machine) -> None:
    # Given a bad value in agentd.env, When the unit is restarted
    set_env(m, AGENTD_CONCURRENCY="abc")
    assert m.systemctl("restart", "agentd", check=False).returncode != 0
    time.sleep(RESTART_S + 2)
    # Then it failed once with 78 and was not restarted
    props = m.show("agentd", "ActiveState", "Result", "ExecMainStatus", "NRestarts")
    assert props == {"ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "78", "NRestarts": "0"}
    assert "AGENTD_CONCURRENCY" in m.journal("-u", "agentd", "-n", "20", "-o", "cat")
    m.run("sed", "-i", "/^AGENTD_CONCURRENCY=abc$/d", ENV_FILE)
    m.systemctl("reset-failed", "agentd")
    m.systemctl("start", "agentd")


def stop_drains(m: Machine) -> float:
    # Given two slow runs in flight
    names = {"drain-1.txt", "drain-2.txt"}
    for name in sorted(names):
        drop(m, "alice", f"{STATE}/incoming/slow", name, f"drain {name}")
    wait_in_flight(m, 2)
    # When the service is stopped
    started = time.monotonic()
    m.systemctl("stop", "agentd")
    stop_s = time.monotonic() - started
    # Then both runs finished first, and the stop counts as a clean one
    props = m.show("agentd", "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    assert props == {"ActiveState": "inactive", "Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0"}
    assert names <= terminal_names(m) and not leftovers(m)
    events = [json.loads(line) for line in m.journal("-u", "agentd", "-n", "30", "-o", "cat").splitlines()
              if line.startswith("{")]
    assert any(e.get("event") == "stopping" and e.get("in_flight") == 2 for e in events), events
    assert any(e.get("event") == "stopped" and e.get("unfinished") == 0 for e in events), events
    return stop_s


def exposure(m: Machine) -> float:
    out = m.run("systemd-analyze", "security", "--no-pager", "agentd").stdout
    found = re.search(r"Overall exposure level for agentd\.service: ([0-9.]+)", out)
    assert found, out
    return float(found.group(1))


def sandbox_runs_python_and_fences_the_network(m: Machine) -> str:
    # Given addresses on the namespace's loopback: one public, the rest private
    targets = {"127.0.0.1": "allow", "203.0.113.7": "allow", "10.1.2.3": "deny", "172.16.5.5": "deny",
               "192.168.1.9": "deny", "169.254.169.254": "deny", "100.64.0.9": "deny",
               "2001:db8::7": "allow", "fd00::9": "deny"}
    for addr in targets:
        if addr != "127.0.0.1":
            m.run("ip", "addr", "add", f"{addr}/{128 if ':' in addr else 32}", "dev", "lo")
    # When the check runs as a copy of the unit (same user, same sandbox, oneshot)
    m.run("sh", "-c", f'sed -e "s/^Type=notify/Type=oneshot/" -e "/^WatchdogSec=/d" -e "/^Restart/d" '
          f'-e "/^NotifyAccess=/d" -e "/^ExecReload=/d" -e "/^ExecStartPre=/d" -e "/^RuntimeDirectory/d" '
          f'-e "s|^ExecStart=.*|ExecStart=/opt/agentd/venv/bin/python '
          f'{SHARE}/sandbox_check.py 9999 {" ".join(f"{a}={e}" for a, e in targets.items())}|" {UNIT} '
          "> /etc/systemd/system/agentd-sandbox-check.service")
    m.systemctl("daemon-reload")
    started = m.systemctl("start", "agentd-sandbox-check", check=False)
    out = m.journal("-u", "agentd-sandbox-check", "-o", "cat")
    # Then everything agentd needs works and everything the sandbox forbids fails
    assert started.returncode == 0 and "0 failed" in out, out
    m.run("rm", "/etc/systemd/system/agentd-sandbox-check.service")
    m.systemctl("daemon-reload")
    return out


def journal_has_outcomes_and_no_secrets(m: Machine, secrets: dict[str, str]) -> int:
    lines = m.journal("-u", "agentd", "-o", "cat").splitlines()
    finished = [e for e in (json.loads(line) for line in lines if line.startswith("{"))
                if e.get("event") == "run_finished"]
    assert {e["file"] for e in finished} >= {"invoice-1.txt", "slow-0.txt", "drain-1.txt"}, finished
    assert all(re.fullmatch(r"[0-9a-f]{32}", e.get("correlation_id", "")) for e in finished), finished
    everything = m.output_bytes("journalctl", "--no-pager", "-o", "export")
    state = m.output_bytes("sh", "-c", f"find {STATE} -type f -exec cat {{}} +")
    for name, value in secrets.items():
        assert value.encode() not in everything, f"{name}'s value is in the journal"
        assert value.encode() not in state, f"{name}'s value is in {STATE}"
    return len(finished)


def uninstall_keeps_data(m: Machine, env_sha: str) -> None:
    m.run("make", "-C", f"{SHARE}/src", "uninstall-service")
    assert m.systemctl("cat", "agentd", check=False).returncode != 0
    gone = ("/opt/agentd", UNIT, "/etc/tmpfiles.d/agentd.conf", "/etc/sysusers.d/agentd.conf")
    assert m.run("ls", "-d", *gone, check=False).stdout.strip() == ""
    assert "invoice-1.txt" in terminal_names(m) and sha256(m, ENV_FILE) == env_sha
    # Starts, restarts and StateDirectory= left the drop zone as tmpfiles.d made it
    assert mode_owner(m, f"{STATE}/incoming") == "2770 agentd agentd"


@pytest.mark.timeout(400)
def test_agentd_service_on_a_real_systemd(machine: Machine, tmp_path: Path,
                                          record_property: Any) -> None:
    m = machine
    secrets = {"LLM_API_KEY": f"canary-key-{uuid.uuid4().hex}", "ADMIN_TOKEN": f"canary-token-{uuid.uuid4().hex}"}
    timings: dict[str, float] = {"boot_s": m.boot_s or 0.0}
    timings.update(install_and_start(m, secrets))                           # 1
    operator_drop_is_archived(m, secrets["ADMIN_TOKEN"])                     # 1
    reload_applies_the_env_file(m, secrets)
    timings["restart_after_sigkill_s"] = sigkill_restarts_without_loss(m)  # 2
    timings["restart_after_watchdog_s"] = watchdog_kills_a_hung_daemon(m)  # 3
    bad_config_fails_once(m)                                                 # 4
    sandbox_runs_python_and_fences_the_network(m)
    timings["stop_with_2_in_flight_s"] = stop_drains(m)                    # 5
    timings["exposure"] = exposure(m)                                        # 6
    assert timings["exposure"] <= 1.5
    timings["runs_in_journal"] = journal_has_outcomes_and_no_secrets(m, secrets)  # 7
    uninstall_keeps_data(m, sha256(m, ENV_FILE))
    timings["poweroff_s"] = m.poweroff()
    wait_until(lambda: not m.leftovers(), 10, message="every process of the namespace to be gone")
    assert m.destroy() == []
    rounded = {k: round(v, 2) for k, v in timings.items()}
    record_property("timings", rounded)
    (tmp_path / "timings.json").write_text(json.dumps(rounded, indent=2))
    print("systemd e2e timings:", json.dumps(rounded))
