"""Payload for test_extract_sandbox.py: the parser pool at work, printed one fact per line."""
from __future__ import annotations

import asyncio
import mmap
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from agentd.errors import DataError  # noqa: E402
from agentd.run.isolated import ExtractPool  # noqa: E402
from tests.heavy_inputs import bomb_pdf, slow_pdf, text_pdf  # noqa: E402


def filtered() -> str:
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except PermissionError:
        return "wx-refused"
    return "wx-allowed"


async def main() -> None:
    print("seccomp", Path("/proc/self/status").read_text().split("Seccomp:")[1].split()[0], filtered())
    pool = ExtractPool(size=1, memory_mb=256)
    try:
        document = await pool.extract("a.pdf", text_pdf("hello from a worker"), 10)
        pid = pool.pids()["idle"][0]
        print("text", document.text)
        print("nice", Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
        limit = [line.split()[3] for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                 if line.startswith("Max address space")]
        print("rlimit_as", limit[0])
        for name, data, timeout_s in (("slow.pdf", slow_pdf(), 1.0), ("bomb.pdf", bomb_pdf(), 30.0)):
            try:
                await pool.extract(name, data, timeout_s)
                print(name, "parsed")
            except DataError as exc:
                print(name, exc.reason)
        print("after", (await pool.extract("b.html", b"<p>still works</p>", 10)).text)
    finally:
        await pool.close()


asyncio.run(main())
