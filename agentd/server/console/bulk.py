"""Bulk decisions: the selected rows (or all matching the filter) -> a confirmation page that says
how many and which -> the decisions, each through the same review.decide as one at a time.

The work leaves the event loop (the confirmation's look through review/ in a thread, the
decisions in the console's desk thread) and is linear in the number of items: review/ is read
once per request, each item decided from what that read found."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from agentd.server import review
from agentd.server.console import queue
from agentd.server.console.app import Console, changing, console_of, message, page
from agentd.server.console.auth import Session
from agentd.spool.store import Store

MAX_BULK = 500
Entry = tuple[queue.Row, Path, dict[str, Any]]


def _scan(home: Path, sla_s: float, now: float, workflow: str = "", reason: str = "") -> list[Entry]:
    """One look through review/: (row, sidecar, meta) per item, soonest due first."""
    found = [(queue.row_of(meta, sla_s, now), path, meta) for path, meta in review.items(home)]
    found = [e for e in found if (not workflow or e[0].workflow == workflow) and (not reason or e[0].reason == reason)]
    return sorted(found, key=lambda e: (e[0].due_at, e[0].cid))


def _plan(console: Console, user: str, cids: list[str], approve: bool) -> tuple[list[Entry], list[Any]]:
    """(entries that will be decided, (row, why) that will be skipped); in a thread."""
    config, now = console.config(), console.clock()
    by_cid = {e[0].cid: e for e in _scan(config.home, config.review_sla_s, now)}
    held = console.leases.held(now)
    go, skip = [], []
    for cid in dict.fromkeys(cids):
        entry = by_cid.get(cid)
        if entry is None:
            continue
        lease = held.get(cid)
        if lease is not None and lease.holder != user:
            skip.append((entry[0], f"held by {lease.holder} until {queue.iso(lease.until)}"))
        elif approve and review.candidates(entry[2]):
            skip.append((entry[0], "needs a choice of candidate: open it"))
        else:
            go.append(entry)
    return go[:MAX_BULK], skip


async def confirm_page(request: web.Request, session: Session) -> web.StreamResponse:
    """Nothing moves here: the page lists what the confirmation would decide."""
    console = console_of(request)
    form = await request.post()
    action, _, scope = str(form.get("bulk", "")).partition("-")
    if action not in ("approve", "reject") or scope not in ("selected", "filter"):
        return message(request, 400, "No bulk action", "Choose approve or reject, for the selection or the filter.")
    if scope == "filter":
        config = console.config()
        found = await asyncio.to_thread(_scan, config.home, config.review_sla_s, console.clock(),
                                        str(form.get("workflow", "")), str(form.get("reason", "")))
        cids = [e[0].cid for e in found]
    else:
        cids = [str(c) for c in form.getall("ids", [])]
    go, skip = await asyncio.to_thread(_plan, console, session.user.name, cids, action == "approve")
    if not go and not skip:
        return message(request, 400, "Nothing selected", "Select rows first, or use the buttons for the filter.")
    return page(request, "confirm.html", action=action, go=[e[0] for e in go], skip=skip, scope=scope,
                workflow=form.get("workflow", ""), reason=form.get("reason", ""))


async def confirmed(request: web.Request, session: Session) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    action = str(form.get("action", ""))
    if action not in ("approve", "reject"):
        return message(request, 400, "No bulk action", "Choose approve or reject.")
    cids = [str(c) for c in form.getall("ids", [])]
    done, failed = await console.desk.run(_decide, console, session.user.name, cids, action == "approve",
                                          str(form.get("reason", "")))
    return page(request, "bulk_done.html", action=action, done=done, failed=failed)


def _decide(store: Store, console: Console, user: str, cids: list[str], approve: bool,
            note: str) -> tuple[list[queue.Row], list[Any]]:
    """In the desk's thread: the plan, each decision, each lease let go."""
    go, skip = _plan(console, user, cids, approve)
    done, failed = [], list(skip)
    for row, sidecar, meta in go:
        try:
            review.decide(store.config, sidecar, meta, approve, None, note.strip()[:500], user, {},
                          console.schema_of(row.workflow), store=store, look_back=False)
        except review.ReviewError as exc:
            failed.append((row, str(exc)))
            continue
        console.leases.release(row.cid)
        done.append(row)
    return done, failed


def add_routes(app: web.Application) -> None:
    app.router.add_post("/review/bulk", changing(confirm_page))
    app.router.add_post("/review/bulk/confirm", changing(confirmed))
