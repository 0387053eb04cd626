"""The review console: web pages where people decide the files waiting in review/ (SPEC section 9).

`app.mount(app, console)` adds the routes to the daemon's aiohttp application; the parts:
auth (users, sessions, CSRF, login limits), leases, queue (rows, deadlines, gauges),
forms (schema -> inputs -> edits), preview (safe views of a dropped file), views (handlers).
"""
