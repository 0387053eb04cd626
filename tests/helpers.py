"""Test helpers: a real agentd process to start, SIGKILL and restart, and polling waits."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = ("archive", "failed", "review")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
               message: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def process_gone(pid: int) -> bool:
    """No such process any more, or only its zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def children_of(pid: int) -> set[int]:
    """The live child processes of `pid` (of all its threads)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(p) for p in (task / "children").read_text().split()}
    return found


def base_env(home: Path, **overrides: Any) -> dict[str, str]:
    """A clean environment for agentd: only the variables a test sets, loopback only."""
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("AGENTD_", "LLM_", "HEALTH_")) or k in (
               "MAX_COST_PER_RUN", "DAILY_BUDGET_USD", "ALLOWED_SERVICES", "ADMIN_TOKEN", "NOTIFY_SOCKET",
               "JOURNAL_STREAM"))}
    env.update({"AGENTD_HOME": str(home), "HEALTH_HOST": "127.0.0.1", "HEALTH_PORT": str(free_port()),
                "AGENTD_SETTLE_S": "0.2", "AGENTD_RESCAN_S": "1", "AGENTD_LOG_FORMAT": "json",
                "AGENTD_PROBE_INTERVAL_S": "0", "PYTHONUNBUFFERED": "1",
                "PYTHONFAULTHANDLER": "1"})  # a daemon that hangs on stop is SIGABRTed: its threads' stacks
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def terminal_files(home: Path) -> dict[str, list[Path]]:
    """Data files (not sidecars) in each terminal folder."""
    out: dict[str, list[Path]] = {}
    for sub in TERMINAL:
        folder = home / sub
        out[sub] = sorted(p for p in folder.iterdir() if not p.name.endswith(".meta.json")
                          and not p.name.startswith(".")) if folder.exists() else []
    return out


def sidecars(home: Path, sub: str | None = None) -> list[dict]:
    """Sidecars of finished files: an outcome is visible once its file is renamed in
    (the sidecar is written just before that rename)."""
    found = []
    for folder in ([sub] if sub else TERMINAL):
        for path in sorted((home / folder).glob("*.meta.json")) if (home / folder).exists() else []:
            if os.path.lexists(path.with_name(path.name[: -len(".meta.json")])):
                found.append(json.loads(path.read_text()))
    return found


def sidecar_for(home: Path, original_name: str) -> dict | None:
    for meta in sidecars(home):
        if meta.get("original_name") == original_name:
            return meta
    return None


def audit_events(home: Path, event: str | None = None) -> list[dict]:
    """The audit log's complete lines (a line the daemon is writing right now has no newline yet)."""
    records = []
    logs = home / "logs"
    files = sorted(logs.glob("audit-*.jsonl")) + [logs / "audit.jsonl"]
    for path in files:
        if path.exists():
            for line in path.read_text().split("\n")[:-1]:
                if line.strip():
                    record = json.loads(line)
                    if event is None or record.get("event") == event:
                        records.append(record)
    return records


def cli(home: Path | None, *args: str, env: dict[str, str] | None = None, **overrides: Any) -> subprocess.CompletedProcess:
    run_env = env or base_env(home, **overrides)  # type: ignore[arg-type]
    # run from the state root's parent: a developer's ./.env in the checkout must not leak in
    cwd = Path(run_env["AGENTD_HOME"]).parent
    return subprocess.run([sys.executable, "-m", "agentd", *args], env=run_env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


class AgentdProcess:
    """`agentd run` as a real subprocess."""

    def __init__(self, home: Path, env: dict[str, str], cwd: Path | None = None, args: tuple[str, ...] = ()):
        self.home = home
        self.args = args
        self.env = env
        self.cwd = cwd or home.parent  # not the checkout: its ./.env must not leak into a test
        self.proc: subprocess.Popen | None = None
        self.log_path = home.parent / f"{home.name}-agentd.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['HEALTH_PORT']}"

    def start(self, wait: bool = True) -> "AgentdProcess":
        self.starts += 1
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "agentd", *self.args, "run"], env=self.env, cwd=self.cwd,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            wait_until(self.healthy, timeout=20, message="agentd /health")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"agentd exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
        try:
            self.health()
            return True
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def health(self) -> dict:
        return self.get_json("/health")[1]

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return exc.code, json.loads(body)
            except ValueError:
                return exc.code, body.decode(errors="replace")

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, method=method, headers=headers or {}, data=body)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # where it hung: its threads' stacks (faulthandler) and its log
            self.proc.send_signal(signal.SIGABRT)
            time.sleep(1)
            self.kill()
            raise AssertionError(f"agentd did not stop within {timeout:g}s of {signal.Signals(sig).name}; "
                                 f"its log ends:\n{self.output()[-6000:]}") from None


class HealthPoller:
    """A thread that GETs /health every `interval_s` and keeps the worst answer time (and any failure)."""

    def __init__(self, url: str, interval_s: float = 0.01, timeout_s: float = 10.0):
        import threading

        self.url = url
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.latencies_s: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="health-poller", daemon=True)

    def __enter__(self) -> "HealthPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 5)

    @property
    def worst_s(self) -> float:
        return max(self.latencies_s, default=float("nan"))

    def _poll(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
                    response.read()
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                self.failures.append(f"{exc.__class__.__name__}: {exc}")
            self.latencies_s.append(time.monotonic() - began)
            self._stop.wait(self.interval_s)


def metric(text: str, name: str) -> float:
    """One unlabelled sample of a Prometheus text page."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name} in /metrics")


def drop_letters(home: Path, count: int, prefix: str = "doc", folder: str = "",
                 text: str = "{prefix} {i}: please pay the attached invoice of 120 EUR.") -> list[str]:
    """`count` small text files in incoming/ (or incoming/<folder>/); their names."""
    target = home / "incoming" / folder if folder else home / "incoming"
    target.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"{prefix}-{i:03d}.txt"
        (target / name).write_text(text.format(prefix=prefix, i=i))
        names.append(name)
    return names
