"""The OTEL_* variables: validated at load, the headers a secret, the traces URL as the spec says."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentd import config as config_mod
from agentd.config import ConfigError
from tests.helpers import cli

HEADER_SECRET = "otlp-hdr-9b1e77"


def _load(**env: str) -> config_mod.Config:
    return config_mod.load(environ={"AGENTD_HOME": "/tmp/agentd-otel-config", **env})


def test_the_traces_url_is_the_endpoint_plus_v1_traces_or_the_traces_variable_as_is() -> None:
    assert _load().traces_url == ""
    assert _load(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318/").traces_url == "http://127.0.0.1:4318/v1/traces"
    both = _load(OTEL_EXPORTER_OTLP_ENDPOINT="http://a:4318", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://b:9/x")
    assert both.traces_url == "http://b:9/x"


@pytest.mark.parametrize("variable, value, problem", [
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317", "must start with http:// or https://"),
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "grpc://collector", "must start with http:// or https://"),
    ("OTEL_RESOURCE_ATTRIBUTES", "team", "comma list of key=value pairs"),
    ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "maybe", "must be 1 or 0"),
    ("OTEL_EXPORTER_OTLP_TIMEOUT", "ten", "whole number"),
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0", "whole number"),
])
def test_a_bad_otel_value_names_the_variable(variable: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as bad:
        _load(**{variable: value})
    assert bad.value.variable == variable and problem in bad.value.problem


def test_the_headers_are_a_secret_in_errors_check_config_and_the_redactor(home: Path) -> None:
    with pytest.raises(ConfigError) as bad:
        _load(OTEL_EXPORTER_OTLP_HEADERS=f"no-equals-{HEADER_SECRET}")
    assert bad.value.variable == "OTEL_EXPORTER_OTLP_HEADERS" and HEADER_SECRET not in str(bad.value)
    loaded = _load(OTEL_EXPORTER_OTLP_HEADERS=f"authorization=Bearer%20{HEADER_SECRET},x-team=ops")
    assert loaded.otel_headers == (("authorization", f"Bearer {HEADER_SECRET}"), ("x-team", "ops"))
    assert f"Bearer {HEADER_SECRET}" in loaded.secrets  # each value alone is redacted from logs too

    shown = cli(home, "check-config", OTEL_EXPORTER_OTLP_HEADERS=f"authorization={HEADER_SECRET}",
                OTEL_RESOURCE_ATTRIBUTES="deployment.environment=prod", OTEL_SERVICE_NAME="billing-agentd")
    assert shown.returncode == 0, shown.stderr
    assert HEADER_SECRET not in shown.stdout and "OTEL_EXPORTER_OTLP_HEADERS=(set)" in shown.stdout
    assert "OTEL_RESOURCE_ATTRIBUTES=deployment.environment=prod" in shown.stdout  # not a secret: shown
    assert "OTEL_SERVICE_NAME=billing-agentd" in shown.stdout
    refused = cli(home, "check-config", OTEL_EXPORTER_OTLP_HEADERS=f"{HEADER_SECRET}")
    assert refused.returncode == 78 and "OTEL_EXPORTER_OTLP_HEADERS" in refused.stderr
    assert HEADER_SECRET not in refused.stderr
