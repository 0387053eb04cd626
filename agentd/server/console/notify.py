"""Review notifications: when NOTIFY_WEBHOOK_URL is set, one POST per item that enters review/,
carrying a link to its console page (the link only shows the item; deciding needs a login and a
POST). At least once: an item is marked sent after the receiver's 2xx (state/review-notify.sqlite),
and the POST carries an Idempotency-Key so a receiver can drop a repeat."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import aiohttp
from aiohttp import web

from agentd import __version__, logs
from agentd.server import review
from agentd.audit import utcnow_iso
from agentd.spool.layout import display_name

log = logs.get("agentd.server.review")
EVERY_S = 2.0
UNSET_EVERY_S = 10.0  # with no URL, only a reload can set one: look less often (an idle daemon wakes less)
TIMEOUT_S = 10.0


class ReviewNotifier:
    def __init__(self, config: Callable[[], Any], state_path: Path, audit: Any):
        self.config = config
        self.audit = audit
        state_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(state_path, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS sent (cid TEXT PRIMARY KEY, at TEXT NOT NULL)")

    def link(self, config: Any, cid: str) -> str:
        base = config.review_base_url or f"http://{config.health_host}:{config.health_port}"
        return f"{base}/review/{cid}"

    async def tick(self, http: aiohttp.ClientSession) -> int:
        """Send what is waiting and not yet acknowledged; the count sent."""
        config = self.config()
        if not config.webhook_url:
            return 0
        sent = 0
        for _, meta in review.items(config.home):
            cid = str(meta.get("correlation_id", ""))
            if not cid or self._db.execute("SELECT 1 FROM sent WHERE cid = ?", (cid,)).fetchone():
                continue
            body = {"source": "agentd", "event": "review_waiting", "correlation_id": cid,
                    "workflow": meta.get("workflow"), "file": display_name(str(meta.get("original_name", ""))),
                    "reason": meta.get("reason"), "url": self.link(config, cid), "sent_at": utcnow_iso()}
            try:
                async with http.post(config.webhook_url, json=body, allow_redirects=False,
                                     headers={"Idempotency-Key": f"review-{cid}",
                                              "User-Agent": f"agentd/{__version__}"}) as response:
                    delivered = 200 <= response.status < 300
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("review_notify_failed", correlation_id=cid, error=exc.__class__.__name__)
                return sent
            if not delivered:
                log.warning("review_notify_refused", correlation_id=cid, status=response.status)
                return sent
            self._db.execute("INSERT OR IGNORE INTO sent (cid, at) VALUES (?, ?)", (cid, utcnow_iso()))
            self.audit.append("review_notified", correlation_id=cid, workflow=meta.get("workflow"))
            await self.audit.flush()
            sent += 1
        return sent

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http:
            while True:
                await self.tick(http)
                await asyncio.sleep(EVERY_S if self.config().webhook_url else UNSET_EVERY_S)

    async def background(self, _app: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context: the loop runs while the HTTP app does."""
        task = asyncio.create_task(self.run(), name="review-notify")
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._db.close()
