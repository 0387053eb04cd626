"""Bench plumbing: temp homes, an agentd process to time, mixed documents, /proc readings."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import base_env, free_port

PYTHON = sys.executable
TERMINAL = ("archive", "failed", "review")
SIDECAR = ".meta.json"
KINDS = ("txt", "md", "csv", "json", "html", "eml")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# the checkout whose agentd a bench runs unless it names one (bench/compare.py switches it)
SOURCE = {"path": ROOT}
# the daemon's own defaults, not the test suite's shortened ones: the bench measures what ships
DAEMON_DEFAULTS = {"AGENTD_SETTLE_S": "1", "AGENTD_RESCAN_S": "10"}


# -- temp homes -------------------------------------------------------------------------
@contextmanager
def temp_home(label: str) -> Iterator[Path]:
    """A fresh AGENTD_HOME under /tmp, removed afterwards whatever happens."""
    with tempfile.TemporaryDirectory(prefix=f"agentd-bench-{label}-", dir="/tmp") as tmp:
        home = Path(tmp) / "var"
        home.mkdir()
        yield home


@contextmanager
def source_at(rev: str) -> Iterator[Path]:
    """The agentd package as it was at commit `rev`, exported with `git archive` into a temp folder."""
    with tempfile.TemporaryDirectory(prefix="agentd-bench-source-") as tmp:
        archive = subprocess.run(["git", "archive", rev, "agentd"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


# -- documents --------------------------------------------------------------------------
WORDS = ("invoice", "amount", "due", "payment", "terms", "order", "quantity", "please", "ship", "receipt",
         "report", "findings", "contract", "agreement", "refund", "complaint", "dear", "sincerely", "regards",
         "review", "approve", "meeting", "budget", "quarterly", "delivery", "customer", "supplier", "account",
         "balance", "schedule", "project")
PEOPLE = ("Alice Martin", "Bob Keller", "Carla Rossi", "Dan Novak", "Eva Lindqvist", "Farid Haddad")
ORGS = ("Acme Corp", "Globex Ltd", "Initech LLC", "Umbrella GmbH", "Stark Inc", "Wayne SA")


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def document(index: int, kind: str | None = None, seed: int = 6) -> tuple[str, bytes]:
    """A small unique document of one of the six kinds: (file name, content)."""
    rng = random.Random(seed * 1_000_003 + index)
    kind = kind or KINDS[index % len(KINDS)]
    person, org = rng.choice(PEOPLE), rng.choice(ORGS)
    amount = f"${rng.randint(10, 99_999)}.{rng.randint(0, 99):02d}"
    date = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    body = " ".join(_sentence(rng, rng.randint(6, 14)) for _ in range(rng.randint(3, 8)))
    tag = f"doc {index}"
    if kind == "txt":
        text = f"Dear {person},\n\n{body}\nAmount due: {amount} by {date}.\n\nSincerely,\n{org}\n{tag}\n"
    elif kind == "md":
        text = f"# Report {index}\n\n{body}\n\n- owner: {person}\n- company: {org}\n- date: {date}\n"
    elif kind == "csv":
        rows = "\n".join(f"{i},{rng.choice(WORDS)},{rng.randint(1, 50)},{rng.randint(1, 999)}.00"
                         for i in range(rng.randint(3, 12)))
        text = f"# {tag} {org}\nline,item,quantity,price\n{rows}\n"
    elif kind == "json":
        text = json.dumps({"id": index, "customer": person, "company": org, "date": date,
                           "amount": amount, "notes": body})
    elif kind == "html":
        text = (f"<!doctype html><html><head><title>Order {index}</title></head><body>"
                f"<h1>{org}</h1><p>{body}</p><p>Total {amount}, {date}</p><p>{person}</p></body></html>")
    elif kind == "eml":
        text = (f"From: {person} <{person.split()[0].lower()}@example.com>\nTo: ops@example.org\n"
                f"Subject: {tag} from {org}\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n"
                f"Content-Type: text/plain; charset=utf-8\n\n{body}\nPlease reply by {date}.\n")
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return f"doc-{index:05d}.{kind}", text.encode()


def documents(count: int, seed: int = 6) -> list[tuple[str, bytes]]:
    return [document(i, seed=seed) for i in range(count)]


def write_file(path: Path, data: bytes) -> None:
    """Open, write, close: the way a person's copy lands (inotify sees the close)."""
    with open(path, "wb") as fh:
        fh.write(data)


def drop_all(incoming: Path, docs: list[tuple[str, bytes]]) -> float:
    """Write every document into incoming/ at once; returns the wall time of the first drop."""
    started = time.time()
    for name, data in docs:
        write_file(incoming / name, data)
    return started


# -- terminal folders ---------------------------------------------------------------------
def data_files(folder: Path) -> list[os.DirEntry]:
    """The moved-in files of one terminal folder (no sidecars, no temp names)."""
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not e.name.endswith(SIDECAR) and not e.name.startswith(".")]
    except FileNotFoundError:
        return []


def terminal_count(home: Path) -> dict[str, int]:
    return {sub: len(data_files(home / sub)) for sub in TERMINAL}


def arrival_times(home: Path) -> dict[str, float]:
    """name -> when it was renamed into its terminal folder (a rename sets the inode's ctime)."""
    times: dict[str, float] = {}
    for sub in TERMINAL:
        for entry in data_files(home / sub):
            times[entry.name] = entry.stat(follow_symlinks=False).st_ctime
    return times


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.05) -> Any:
    """Poll `predicate` until it is truthy or `timeout_s` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval_s)


# -- /proc -------------------------------------------------------------------------------
def proc_status_kib(pid: int, field: str) -> int:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM) in KiB; 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children_cpu_seconds(pid: int) -> float:
    """CPU of a process's children (agentd's parser processes): the live ones' utime + stime and
    the reaped ones' (cutime + cstime of the parent)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    total = int(fields[13]) + int(fields[14])
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                child = fh.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(child[1]) == pid:
            total += int(child[11]) + int(child[12])
    return total / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- helper processes (the baseline, the slow model) ---------------------------------------
@contextmanager
def helper_process(argv: list[str], timeout_s: float = 30.0) -> Iterator[tuple[subprocess.Popen, str]]:
    """Start a helper that prints one line when it is ready; yields (process, that line); stops it."""
    proc = subprocess.Popen([PYTHON, *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        line = proc.stdout.readline().strip() if ready else ""  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{' '.join(argv)} did not start")
        yield proc, line
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=10)


# -- an agentd process ---------------------------------------------------------------------
class Agentd:
    """`python -m agentd run` as a subprocess we time: exec, READY=1, /health, log counts.

    Always use it as a context manager: the process is killed and the socket closed on exit.
    """

    def __init__(self, home: Path, notify: bool = False, source: Path | None = None, **env: Any):
        self.home = home
        self.source = source or SOURCE["path"]  # the checkout whose agentd runs (python -m from its folder)
        self.env = base_env(home, **{**DAEMON_DEFAULTS, **{k: str(v) for k, v in env.items()}})
        self.log_path = home.parent / "agentd.log"
        self.proc: subprocess.Popen | None = None
        self.exec_at = 0.0  # monotonic
        self.exec_wall = 0.0  # time.time(), to compare with file ctimes
        self._notify: socket.socket | None = None
        if notify:
            self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            path = home.parent / "notify.sock"
            self._notify.bind(os.fspath(path))
            self.env["NOTIFY_SOCKET"] = os.fspath(path)
        self._log_offset = 0
        self._log_tail = b""
        self.finished = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.env['HEALTH_PORT']}/health"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Agentd:
        with open(self.log_path, "ab") as log:
            self.exec_wall = time.time()
            self.exec_at = time.monotonic()
            self.proc = subprocess.Popen([PYTHON, "-m", "agentd", "run"], env=self.env, cwd=self.source,
                                         stdout=log, stderr=subprocess.STDOUT)
        return self

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"agentd exited with {self.proc.returncode}:\n{tail}")

    def wait_ready(self, timeout_s: float = 30.0) -> float:
        """Seconds from exec to the READY=1 datagram."""
        assert self._notify is not None, "start with notify=True"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            self._notify.settimeout(0.05)
            try:
                message = self._notify.recv(4096)
            except TimeoutError:
                continue
            if b"READY=1" in message.split(b"\n"):
                self._close_notify()
                return time.monotonic() - self.exec_at
        raise RuntimeError(f"no READY=1 within {timeout_s}s")

    def _close_notify(self) -> None:
        """Stop listening: the daemon's later STATUS= datagrams would fill an unread socket (the
        kernel queues only net.unix.max_dgram_qlen of them) and then block its event loop."""
        if self._notify is not None:
            path = self._notify.getsockname()
            self._notify.close()
            self._notify = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def health_ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def wait_health(self, timeout_s: float = 30.0, interval_s: float = 0.01) -> float:
        """Seconds from exec to the first /health 200."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if self.health_ok():
                return time.monotonic() - self.exec_at
            time.sleep(interval_s)
        raise RuntimeError(f"/health not 200 within {timeout_s}s")

    def count_finished(self) -> int:
        """Runs finished so far (its `run_finished` log lines), read incrementally."""
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                chunk = fh.read()
        except FileNotFoundError:
            return self.finished
        self._log_offset += len(chunk)
        data = self._log_tail + chunk
        complete, _, self._log_tail = data.rpartition(b"\n")
        self.finished += complete.count(b'"run_finished"')
        return self.finished

    def wait_finished(self, count: int, timeout_s: float, interval_s: float = 0.05) -> int:
        deadline = time.monotonic() + timeout_s
        while self.count_finished() < count and time.monotonic() < deadline:
            self.check_alive()
            time.sleep(interval_s)
        return self.finished

    def rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        return proc_status_kib(self.pid, "VmHWM")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time; closes the notify socket."""
        proc, self.proc = self.proc, None
        try:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        finally:
            self._close_notify()
        self.proc = proc  # keep pid/returncode readable; poll() says it is gone


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def exit_on_sigterm() -> None:
    """Let SIGTERM unwind through the clean-up (daemons killed, temp dirs removed)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def bench_main(doc: str, run: Callable[..., Any], quick_help: str, **options: dict[str, Any]) -> None:
    """A bench script's command line: --quick plus its own options (--name maps to run(name=...))."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    for name, kwargs in options.items():
        parser.add_argument(f"--{name}", **kwargs)
    args = parser.parse_args()
    exit_on_sigterm()
    run(**vars(args))


def print_figures(title: str, figures: dict[str, Any]) -> None:
    print(f"== {title}")
    for key, value in figures.items():
        print(f"  {key}: {value}")
    sys.stdout.flush()


__all__ = [
    "PYTHON",
    "ROOT",
    "Agentd",
    "arrival_times",
    "bench_main",
    "cpu_seconds",
    "data_files",
    "document",
    "documents",
    "drop_all",
    "exit_on_sigterm",
    "free_port",
    "helper_process",
    "median",
    "mib",
    "percentile",
    "print_figures",
    "source_at",
    "proc_status_kib",
    "temp_home",
    "terminal_count",
    "wait_for",
    "write_file",
]
