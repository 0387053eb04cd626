"""Bulk decisions: the selected rows (or all matching the filter) -> a confirmation page that says
how many and which -> the decisions, each through the same review.decide as one at a time."""
from __future__ import annotations

from typing import Any

from aiohttp import web

from agentd.server import review
from agentd.server.console import queue
from agentd.server.console.app import Console, changing, console_of, message, page
from agentd.server.console.auth import Session
from agentd.server.console.item import decide_now

MAX_BULK = 500


def _plan(console: Console, session: Session, cids: list[str], approve: bool) -> tuple[list[Any], list[Any]]:
    """(rows that will be decided, (row, why) that will be skipped)."""
    config, now = console.config(), console.clock()
    by_cid = {r.cid: r for r in queue.rows(config.home, config.review_sla_s, now)}
    metas = {str(m.get("correlation_id")): m for _, m in review.items(config.home)}
    held = console.leases.held(now)
    go, skip = [], []
    for cid in dict.fromkeys(cids):
        row = by_cid.get(cid)
        if row is None:
            continue
        lease = held.get(cid)
        if lease is not None and lease.holder != session.user.name:
            skip.append((row, f"held by {lease.holder} until {queue.iso(lease.until)}"))
        elif approve and review.candidates(metas[cid]):
            skip.append((row, "needs a choice of candidate: open it"))
        else:
            go.append(row)
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
        cids = [r.cid for r in queue.rows(config.home, config.review_sla_s, console.clock(),
                                          str(form.get("workflow", "")), str(form.get("reason", "")))]
    else:
        cids = [str(c) for c in form.getall("ids", [])]
    go, skip = _plan(console, session, cids, action == "approve")
    if not go and not skip:
        return message(request, 400, "Nothing selected", "Select rows first, or use the buttons for the filter.")
    return page(request, "confirm.html", action=action, go=go, skip=skip, scope=scope,
                workflow=form.get("workflow", ""), reason=form.get("reason", ""))


async def confirmed(request: web.Request, session: Session) -> web.StreamResponse:
    console = console_of(request)
    form = await request.post()
    action = str(form.get("action", ""))
    if action not in ("approve", "reject"):
        return message(request, 400, "No bulk action", "Choose approve or reject.")
    approve = action == "approve"
    go, skip = _plan(console, session, [str(c) for c in form.getall("ids", [])], approve)
    done, failed = [], list(skip)
    config = console.config()
    for row in go:
        try:
            sidecar, meta = review.find(config.home, row.cid)
            decide_now(console, sidecar, meta, approve, None, str(form.get("reason", "")), session.user.name,
                       {}, console.schema_of(row.workflow))
        except review.ReviewError as exc:
            failed.append((row, str(exc)))
            continue
        console.leases.release(row.cid)
        done.append(row)
    return page(request, "bulk_done.html", action=action, done=done, failed=failed)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/review/bulk", changing(confirm_page))
    app.router.add_post("/review/bulk/confirm", changing(confirmed))
