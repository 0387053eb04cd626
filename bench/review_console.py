"""Review console figures: how long the queue page, an item page and the /metrics review gauges
take with N items waiting in review/ (in-process app on 127.0.0.1, real files and audit log).

    python bench/review_console.py [--items 1000] [--rounds 20]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402

from agentd import config as config_mod  # noqa: E402
from agentd import workflows  # noqa: E402
from agentd.audit import AuditLog  # noqa: E402
from agentd.server.app import make_app  # noqa: E402
from agentd.server.console.app import Console, mount  # noqa: E402
from agentd.server.console.queue import stats  # noqa: E402

TOKEN = "bench-reviewer-token"


def fill(home: Path, count: int) -> str:
    review = home / "review"
    review.mkdir(parents=True)
    result = {"document_type": "invoice", "summary": "Invoice.", "requested_action": "pay", "party": "Acme",
              "confidence": 0.4, "entities": {k: [] for k in ("people", "organizations", "emails", "amounts",
                                                                 "dates")}}
    cid = ""
    for n in range(count):
        cid = f"{n:08x}" + "0" * 24
        (review / f"file-{n}.txt").write_text(f"document {n}\n")
        (review / f"file-{n}.txt.meta.json").write_text(json.dumps({
            "correlation_id": cid, "workflow": "triage", "original_name": f"file-{n}.txt", "outcome": "review",
            "reason": "low_confidence", "confidence": 0.4, "cost_usd": 0.001,
            "finished_at": f"2026-06-01T10:{n // 60 % 60:02d}:{n % 60:02d}.000Z", "result": result}))
    return cid


async def timed(client: aiohttp.ClientSession, url: str, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        async with client.get(url) as response:
            await response.read()
            assert response.status == 200, response.status
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


async def main(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "var"
        last = fill(home, count)
        config = config_mod.load(environ={"AGENTD_HOME": str(home), "REVIEWER_TOKENS": f"bench:{TOKEN}"})
        config.logs_dir.mkdir(parents=True)
        audit = AuditLog(config.logs_dir).open()
        console = Console.local(lambda: config, audit, workflows.load(()))
        app = make_app(lambda: {}, lambda: b"", lambda: "", lambda *_: {}, mount=lambda a: mount(a, console))
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        base = str(server.make_url("")).rstrip("/")
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            async with client.post(f"{base}/review/login", data={"token": TOKEN}) as response:
                assert response.status == 200
            queue_ms = await timed(client, f"{base}/review", rounds)
            item_ms = await timed(client, f"{base}/review/{last}", rounds)
        start = time.perf_counter()
        for _ in range(rounds):
            stats(home, 86400, time.time())
        gauges_ms = (time.perf_counter() - start) * 1000 / rounds
        await server.close()
        audit.close()
    print(f"review items:        {count}")
    print(f"queue page (median): {queue_ms:.1f} ms")
    print(f"item page (median):  {item_ms:.1f} ms")
    print(f"review gauges:       {gauges_ms:.1f} ms per /metrics scrape")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.items, args.rounds))
