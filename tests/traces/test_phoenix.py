"""A real OTLP backend, Arize Phoenix started locally, accepts agentd's export.

Phoenix (PyPI arize-phoenix) is about 850 MB installed, so `make test` does not install it:
this test runs where it is installed (AGENTD_TEST_PHOENIX=/path/to/phoenix, or `phoenix` on
PATH) and skips, saying so, elsewhere.
    python3 -m venv /tmp/phoenix-venv && /tmp/phoenix-venv/bin/pip install arize-phoenix
    AGENTD_TEST_PHOENIX=/tmp/phoenix-venv/bin/phoenix .venv/bin/python -m pytest tests/traces/test_phoenix.py
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.fakellm import FakeLLM
from tests.helpers import cli, free_port, sidecars, wait_until
from tests.traces.support import SPANS_PER_TRIAGE, drop

PHOENIX = os.environ.get("AGENTD_TEST_PHOENIX") or shutil.which("phoenix")
pytestmark = pytest.mark.skipif(
    not PHOENIX, reason="Arize Phoenix not installed (pip install arize-phoenix, ~850 MB; "
                        "then AGENTD_TEST_PHOENIX=/path/to/bin/phoenix)")


def _get(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read() or b"null")
    except (urllib.error.URLError, ConnectionError, ValueError):
        return None


@pytest.fixture
def phoenix(tmp_path: Path) -> Iterator[str]:
    """`phoenix serve` on loopback, its own working folder, no telemetry; yields its base URL."""
    port = free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(tmp_path / "phoenix"), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(free_port()), "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = open(tmp_path / "phoenix.log", "wb")
    proc = subprocess.Popen([str(PHOENIX), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is not None or _get(f"{base}/v1/projects") is not None, timeout=180,
                   interval=0.5, message="Phoenix to serve")
        assert proc.poll() is None, (tmp_path / "phoenix.log").read_text(errors="replace")[-2000:]
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.timeout(300)
def test_phoenix_accepts_the_export_and_shows_the_run_as_one_trace(
        home: Path, phoenix: str, llm_server: Callable[..., FakeLLM]) -> None:
    llm = llm_server()
    drop(home, 1)
    ran = cli(home, "run", "--burst", OTEL_EXPORTER_OTLP_ENDPOINT=phoenix, **llm.env())
    assert ran.returncode == 0 and "trace_export_failed" not in ran.stdout, ran.stdout[-2000:]
    [meta] = sidecars(home)

    def stored() -> list[dict[str, Any]]:
        found = _get(f"{phoenix}/v1/projects/default/spans?limit=100") or {}
        return [s for s in found.get("data", []) if s["context"]["trace_id"] == meta["correlation_id"]]

    spans = wait_until(lambda: len(stored()) == SPANS_PER_TRIAGE and stored(), timeout=60,
                       message="Phoenix to store the run's spans")
    names = sorted(span["name"] for span in spans)
    assert names == ["agentd.run triage", "agentd.step classify", "agentd.step extract_text",
                     "agentd.step route", "chat fake-model"]
    [chat] = [span for span in spans if span["name"] == "chat fake-model"]
    assert chat["attributes"]["gen_ai.request.model"] == "fake-model"
