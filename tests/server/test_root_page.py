"""GET / on the HTTP listener points to /health and /review (a real daemon)."""
from __future__ import annotations

import json
import urllib.request
from typing import Callable

from tests.helpers import AgentdProcess


def test_the_root_points_to_health_and_review(daemon: Callable[..., AgentdProcess]) -> None:
    agent = daemon()
    with urllib.request.urlopen(f"{agent.url}/", timeout=10) as reply:
        assert reply.status == 200
        body = json.loads(reply.read())
    assert body["health"] == "/health" and body["review"] == "/review"
    request = urllib.request.Request(f"{agent.url}/", headers={"Accept": "text/html,*/*"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        page = reply.read().decode()
    assert reply.headers["Content-Type"].startswith("text/html")
    assert 'href="/health"' in page and 'href="/review"' in page
