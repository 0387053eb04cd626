"""e2e payload: run by a copy of agentd.service (same user, same sandbox). What agentd
needs must work (ssl, sqlite3, asyncio subprocesses with tesseract, ctypes, inotify) and
what the sandbox forbids must fail. One line per check; exit status 1 if any failed.

argv: a port to listen on, then ADDR=allow|deny pairs for the IP address filter (the
test puts those addresses on the namespace's loopback first): an allowed address takes
a TCP connection and a datagram; a denied one gets neither.
"""
from __future__ import annotations

import asyncio
import ctypes
import mmap
import os
import shutil
import socket
import sqlite3
import ssl
import sys
import tempfile
import time
from pathlib import Path

failures: list[str] = []


def check(name: str, ok: bool, detail: object = "") -> None:
    print(f"{'ok' if ok else 'FAIL'} {name} {detail}".rstrip(), flush=True)
    if not ok:
        failures.append(name)


def status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


def needs() -> None:
    ctx = ssl.create_default_context()
    check("ssl: CA certificates load", ctx.cert_store_stats()["x509_ca"] > 0, ssl.OPENSSL_VERSION)
    db_path = Path(tempfile.mkdtemp()) / "check.sqlite"
    db = sqlite3.connect(db_path)
    db.execute("pragma journal_mode=wal")
    db.execute("create table t (x)")
    db.execute("insert into t values (1)")
    db.commit()
    check("sqlite3: WAL database", db.execute("select count(*) from t").fetchone() == (1,))
    db.close()
    callback = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 7)
    check("ctypes: a callback runs under MemoryDenyWriteExecute", callback() == 7)
    check("asyncio: subprocess (tesseract)", asyncio.run(run_tool()) == 0, shutil.which("tesseract"))
    check("watchdog: inotify sees a new file", inotify_works())
    check("extraction: a parser process with a memory limit and a lower priority", *asyncio.run(parser_works()))


async def parser_works() -> tuple[bool, str]:
    from agentd.run.isolated import ExtractPool

    pool = ExtractPool(size=1, memory_mb=256)
    try:
        document = await pool.extract("check.html", b"<p>parsed in a worker</p>", 30)
        pids = pool.pids()
        nice = int(Path(f"/proc/{pids['idle'][0]}/stat").read_text().rsplit(")", 1)[1].split()[16])
        limits = Path(f"/proc/{pids['idle'][0]}/limits").read_text()
    finally:
        await pool.close()
    limited = any(line.startswith("Max address space") and str(256 << 20) in line for line in limits.splitlines())
    return document.text == "parsed in a worker" and limited and nice > 0, f"nice {nice}, RLIMIT_AS set: {limited}"


async def run_tool() -> int | None:
    tool = shutil.which("tesseract") or "/bin/true"
    proc = await asyncio.create_subprocess_exec(tool, "--version", stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    return await proc.wait()


def inotify_works() -> bool:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers.inotify import InotifyObserver

    seen: list[str] = []

    class Handler(FileSystemEventHandler):
        def on_closed(self, event: object) -> None:
            seen.append(str(getattr(event, "src_path", "")))

    folder = tempfile.mkdtemp()
    observer = InotifyObserver()
    observer.schedule(Handler(), folder)
    observer.start()
    try:
        Path(folder, "x").write_text("x")
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        observer.stop()
        observer.join()
    return bool(seen)


def forbidden() -> None:
    check("seccomp filter on, no new privileges", status_field("Seccomp") == "2" and status_field("NoNewPrivs") == "1")
    check("no capabilities", int(status_field("CapEff"), 16) == 0 and int(status_field("CapBnd"), 16) == 0)
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        check("writable+executable memory is refused", False)
    except PermissionError:
        check("writable+executable memory is refused", True)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -5)
        check("raising the CPU priority is refused", False)
    except PermissionError:
        check("raising the CPU priority is refused", True)
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    check("other processes are invisible in /proc", 1 not in pids and os.getpid() in pids)
    check("the config file is unreadable", not os.access("/etc/agentd/agentd.env", os.R_OK))
    check("the app is read-only", _write_fails("/opt/agentd"))
    check("/home is out of reach", _unlistable_or_empty("/home"))
    check("incoming/ is writable", os.access("/var/lib/agentd/incoming", os.W_OK))


def _unlistable_or_empty(folder: str) -> bool:
    try:
        return not os.listdir(folder)
    except PermissionError:
        return True


def _write_fails(folder: str) -> bool:
    try:
        Path(folder, ".probe").write_text("x")
    except OSError:
        return True
    return False


def network(port: int, targets: list[tuple[str, str]]) -> None:
    listeners = []
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(16)
        listeners.append(sock)
    for addr, expected in targets:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as conn:
            conn.settimeout(1.0)
            try:
                conn.connect((addr, port))
                tcp = "allow"
            except (PermissionError, TimeoutError):
                tcp = "deny"  # the cgroup's address filter drops the SYN
            except OSError as exc:
                tcp = f"error {exc.__class__.__name__}: {exc}"
        with socket.socket(family, socket.SOCK_DGRAM) as dgram:
            try:
                dgram.sendto(b"x", (addr, port))
                udp = "allow"
            except PermissionError:
                udp = "deny"  # a dropped datagram is EPERM at once
            except OSError as exc:
                udp = f"error {exc.__class__.__name__}: {exc}"
        check(f"ip filter: {addr} {expected}", tcp == udp == expected, f"tcp {tcp}, udp {udp}")
    for sock in listeners:
        sock.close()


def main() -> int:
    needs()
    forbidden()
    port, pairs = int(sys.argv[1]), [tuple(a.split("=", 1)) for a in sys.argv[2:]]
    network(port, pairs)  # type: ignore[arg-type]
    print(f"{len(failures)} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
