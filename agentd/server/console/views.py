"""Login, logout and the queue page."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aiohttp import web

from agentd.server.console import queue
from agentd.server.console.app import (COOKIE, changing, client_address, console_of, is_https, message, page,
                                       session_of, viewing)
from agentd.server.console.auth import SESSION_TTL_S, Session, authenticate
from agentd.spool.layout import sidecar_of


async def login_form(request: web.Request) -> web.StreamResponse:
    if session_of(request) is not None:
        raise web.HTTPSeeOther("/review")
    return page(request, "login.html")


async def login(request: web.Request) -> web.StreamResponse:
    console = console_of(request)
    remote = client_address(request)
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
        return message(request, 403, "Refused", "A login must come from this site's own form.")
    wait_s = console.limiter.retry_after_s(remote)
    if wait_s:
        refused = page(request, "login.html", status=429,
                       error=f"Too many failed logins: try again in {wait_s:.0f} seconds.")
        refused.headers["Retry-After"] = f"{wait_s:.0f}"
        return refused
    form = await request.post()
    given = str(form.get("token", ""))
    user = authenticate(console.config(), given)
    if user is None:
        failures = console.limiter.failed(remote)
        await console.record("review_login_failed", remote=remote, failures=failures)
        return page(request, "login.html", status=401, error="That token is not valid.")
    console.limiter.succeeded(remote)
    await console.record("review_login", reviewer=user.name, role=user.role, remote=remote)
    response = web.HTTPSeeOther("/review")
    response.set_cookie(COOKIE, console.sessions.start(user, given), max_age=SESSION_TTL_S, path="/review",
                        httponly=True, samesite="Strict", secure=is_https(request))
    raise response


async def logout(request: web.Request, session: Session) -> web.StreamResponse:
    console = console_of(request)
    console.sessions.end(request.cookies.get(COOKIE))
    await console.record("review_logout", reviewer=session.user.name)
    response = web.HTTPSeeOther("/review/login")
    response.del_cookie(COOKIE, path="/review")
    raise response


async def queue_page(request: web.Request, session: Session) -> web.StreamResponse:
    console = console_of(request)
    config, now = console.config(), console.clock()
    workflow, reason = request.query.get("workflow", ""), request.query.get("reason", "")
    await console.desk.settle()
    everything = await asyncio.to_thread(queue.rows, config.home, config.review_sla_s, now)
    shown = [r for r in everything if (not workflow or r.workflow == workflow) and (not reason or r.reason == reason)]
    held = console.leases.held(now)
    return page(request, "queue.html", rows=shown, held=held, workflow=workflow, reason=reason,
                workflows=sorted({r.workflow for r in everything}), reasons=sorted({r.reason for r in everything}),
                total=len(everything), overdue=sum(r.overdue for r in everything),
                held_count=sum(r.cid in held for r in everything),
                decided=await asyncio.to_thread(_decided, console.desk.decided.get(request.query.get("decided", ""))))


def _decided(final: Path | None) -> str:
    """The notice after a decision made here (read only: the query names the item, its sidecar tells)."""
    if final is None:
        return ""
    try:
        meta = json.loads(sidecar_of(final).read_bytes())
    except (OSError, ValueError):
        return ""  # moved on since (requeued, pruned)
    if not isinstance(meta, dict) or not isinstance(meta.get("review"), dict):
        return ""
    where = "archive/" if meta.get("outcome") == "archived" else "failed/"
    verb = "Approved" if meta["review"].get("decision") == "approve" else "Rejected"
    return f"{verb} {meta.get('original_name')}: moved to {where}"


def add_routes(app: web.Application) -> None:
    app.router.add_get("/review/login", login_form)
    app.router.add_post("/review/login", login)
    app.router.add_post("/review/logout", changing(logout, decide=False))
    app.router.add_get("/review", viewing(queue_page))
    app.router.add_get("/review/", _to_queue)


async def _to_queue(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/review")
