"""A real systemd as PID 1 of a private namespace, to test deploy/agentd.service end to end.

boot.sh runs init.sh as PID 1 of new PID, mount, UTS, IPC and network namespaces;
init.sh moves into a cgroup of its own (and a cgroup namespace rooted there) and fences
the host off before it execs systemd: overlays on /etc /var /usr /opt /root whose upper
layers live in the scratch folder, tmpfs on /run /tmp /home /dev, and everything else
read-only. The test works inside through `nsenter` (never systemctl on the host);
`poweroff` ends it, and `destroy` makes sure nothing of it is left.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

from tests.helpers import wait_until

HERE = Path(__file__).resolve().parent
SYSTEMD = Path("/usr/lib/systemd/systemd")
SYSTEM_PYTHON = Path("/usr/bin/python3")
SHARE = "/run/agentd-e2e"  # the scratch share as the namespace sees it; SHARE/src is the repo
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "TERM": "dumb", "HOME": "/root",
             "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "PIP_CONFIG_FILE": "/dev/null"}


class BootError(AssertionError):
    pass


def cgroup2_root() -> Path | None:
    """Where this host mounts the cgroup2 (unified) hierarchy, or None."""
    points = set()
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                points.add(left.split()[4])
    for candidate in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if candidate in points:
            return Path(candidate)
    return None


def unavailable(scratch: Path) -> str | None:
    """Why a namespaced systemd cannot run on this host (a skip reason), or None."""
    if os.geteuid() != 0:
        return "needs root: it mounts overlays and boots systemd in a private namespace"
    for tool in ("unshare", "nsenter", "findmnt", "setpriv", "make", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not SYSTEMD.exists():
        return f"systemd is not installed ({SYSTEMD} missing)"
    if cgroup2_root() is None:
        return "no cgroup2 hierarchy is mounted"
    if not Path("/opt").is_dir():
        return "/opt does not exist, so it cannot be overlaid"
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys, venv, ensurepip; "
                            "sys.exit(sys.version_info < (3, 11))"], capture_output=True)
    if probe.returncode != 0:
        return f"{SYSTEM_PYTHON} is missing, older than 3.11 or without venv (python3-venv)"
    lower, upper, work, target = (scratch / "overlay-probe" / d for d in ("lower", "upper", "work", "mnt"))
    for d in (lower, upper, work, target):
        d.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "mount", "-t", "overlay", "probe", "-o",
         f"lowerdir={lower},upperdir={upper},workdir={work}", str(target)], capture_output=True, text=True)
    if mount.returncode != 0:
        return f"overlayfs cannot be mounted here: {mount.stderr.strip()}"
    return None


def build_wheelhouse(repo: Path, wheels: Path) -> None:
    """Wheels of agentd's dependencies (and its build backend) for the system python.

    install.sh then runs with PIP_NO_INDEX=1 PIP_FIND_LINKS=<wheels>: the namespace has
    no network but loopback, and this is faster than the index anyway.
    """
    project = tomllib.loads((repo / "pyproject.toml").read_text())
    requirements = project["build-system"]["requires"] + project["project"]["dependencies"]
    wheels.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(SYSTEM_PYTHON), "wheel", "--quiet",
                             "--disable-pip-version-check", "--wheel-dir", str(wheels), *requirements],
                            capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        raise RuntimeError(f"pip wheel failed: {result.stderr.strip()[-2000:]}")


class Machine:
    """One booted namespace. Use run()/sh()/systemctl() inside; poweroff(), then destroy()."""

    def __init__(self, scratch: Path, repo: Path):
        self.scratch = scratch
        self.repo = repo
        self.share = scratch / "share"
        root = cgroup2_root()
        assert root is not None
        self.cgroup = root / f"agentd-e2e-{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pid: int | None = None  # systemd's pid as the host sees it
        self.pidns: str | None = None
        self.boot_s: float | None = None

    # -- life cycle ---------------------------------------------------------------------
    def boot(self, timeout_s: float = 60.0) -> float:
        self.share.mkdir(parents=True, exist_ok=True)
        self.share.chmod(0o755)  # the agentd user reads payloads from it
        (self.share / "console.log").touch()
        self.cgroup.mkdir()
        started = time.monotonic()
        with open(self.scratch / "boot.log", "wb") as log:
            self.proc = subprocess.Popen(
                [str(HERE / "boot.sh"), str(self.scratch), str(self.repo), str(self.cgroup)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/")
        self.pid = wait_until(self._systemd_pid, timeout_s, message="systemd to start in the namespace")
        self.pidns = os.readlink(f"/proc/{self.pid}/ns/pid")
        wait_until(lambda: self.system_state() in ("running", "degraded"), timeout_s, message="the boot to finish")
        self.boot_s = time.monotonic() - started
        return self.boot_s

    def _systemd_pid(self) -> int | None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise BootError(f"the namespace ended during boot:\n{self.boot_log()}")
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
            pid = int(children[0]) if children else None
            if pid and Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                return pid
        except (FileNotFoundError, ProcessLookupError):
            return None
        return None

    def boot_log(self) -> str:
        return (self.scratch / "boot.log").read_text(errors="replace")

    def system_state(self) -> str:
        return self.run("systemctl", "is-system-running", check=False).stdout.strip()

    def poweroff(self, timeout_s: float = 60.0) -> float:
        """`systemctl poweroff` inside; the seconds until the namespace has ended."""
        assert self.proc is not None
        started = time.monotonic()
        self.run("systemctl", "poweroff", check=False)
        self.proc.wait(timeout=timeout_s)
        return time.monotonic() - started

    def leftovers(self) -> list[int]:
        """Host pids still in the namespace's PID namespace or cgroup."""
        pids: set[int] = set()
        if self.pidns:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        if os.readlink(entry / "ns" / "pid") == self.pidns:
                            pids.add(int(entry.name))
                    except (FileNotFoundError, ProcessLookupError, PermissionError):
                        continue
        if self.cgroup.exists():
            for procs in self.cgroup.rglob("cgroup.procs"):
                pids.update(int(p) for p in procs.read_text().split())
        return sorted(pids)

    def destroy(self) -> list[int]:
        """Make sure nothing is left (kill the process group, then the cgroup); returns
        what was still running before that."""
        left = self.leftovers()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # --kill-child takes the namespace's PID 1 along
            self.proc.wait(timeout=30)
        if self.cgroup.exists():
            kill = self.cgroup / "cgroup.kill"
            if self.leftovers() and kill.exists():
                kill.write_text("1")
            for pid in self.leftovers():  # kernels before 5.14 have no cgroup.kill
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
            wait_until(lambda: not self.leftovers(), 30, message="the namespace's processes to die")
            for path in sorted((p for p in self.cgroup.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                path.rmdir()
            self.cgroup.rmdir()
        return left

    # -- inside -------------------------------------------------------------------------
    def _enter(self, user: str | None) -> list[str]:
        assert self.pid is not None
        cmd = ["nsenter", "-t", str(self.pid), "-m", "-p", "-n", "-u", "-i", "--"]
        if user:
            cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
        return cmd

    def run(self, *argv: str, user: str | None = None, check: bool = True, timeout_s: float = 120.0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv inside the namespace (as root, or as `user` with its groups)."""
        result = subprocess.run([*self._enter(user), *argv], env={**CLEAN_ENV, **(env or {})},
                                capture_output=True, text=True, timeout=timeout_s, cwd="/")
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}\n"
                                 f"stdout: {result.stdout[-3000:]}\nstderr: {result.stderr[-3000:]}")
        return result

    def output_bytes(self, *argv: str, timeout_s: float = 120.0) -> bytes:
        """What argv (run inside as root) prints, as bytes; it must succeed."""
        return subprocess.run([*self._enter(None), *argv], env=CLEAN_ENV, capture_output=True, check=True,
                              timeout=timeout_s, cwd="/").stdout

    def sh(self, script: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-c", script, **kwargs)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, "-p", ",".join(props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self, *args: str) -> str:
        return self.run("journalctl", "--no-pager", *args).stdout
