"""deploy/: what the unit, the tmpfiles entry and the installer promise, checked on the
files themselves (no root, no systemd). The real-systemd run is tests/e2e/test_systemd_e2e.py."""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from agentd.cli.main import EX_CONFIG
from agentd.config import Config
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
PRIVATE = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.168.0.0/16", "224.0.0.0/4", "240.0.0.0/4", "fc00::/7", "fe80::/10")]


def unit() -> dict[str, list[str]]:
    """Directive -> its values in order ([Service] and [Unit] together), comments dropped."""
    found: dict[str, list[str]] = {}
    for line in (DEPLOY / "agentd.service").read_text().splitlines():
        if line.strip() and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(n) for v in unit()["IPAddressAllow"] for n in v.split() if n != "localhost"]


def test_ip_allow_list_has_no_private_or_link_local_range() -> None:
    assert unit()["IPAddressDeny"] == ["any"]
    for net in allowed_networks():
        for private in PRIVATE:
            assert net.version != private.version or not net.overlaps(private), (net, private)
    assert "169.254.169.254" not in " ".join(unit()["IPAddressAllow"])


def test_ip_allow_list_covers_the_rest_of_the_internet() -> None:
    # Given the allowed IPv4 ranges and the private ones, Then together they are all of IPv4
    v4 = [n for n in allowed_networks() if n.version == 4] + [p for p in PRIVATE if p.version == 4]
    assert sum(n.num_addresses for n in v4) == 2 ** 32
    assert list(ipaddress.collapse_addresses(v4)) == [ipaddress.ip_network("0.0.0.0/0")]
    assert ipaddress.ip_network("2000::/3") in allowed_networks()


def test_stop_timeout_outlasts_the_drain_and_bad_config_does_not_loop() -> None:
    drain_s = next(f.default for f in dataclasses.fields(Config) if f.name == "drain_timeout_s")
    u = unit()
    assert seconds(u["TimeoutStopSec"][0]) >= drain_s + 10
    assert str(EX_CONFIG) in u["RestartPreventExitStatus"][0].split()
    assert u["Type"] == ["notify"] and u["Restart"] == ["always"] and u["WatchdogSec"]
    assert u["CapabilityBoundingSet"] == [""] and u["AmbientCapabilities"] == [""]


def test_tmpfiles_make_incoming_a_setgid_group_drop_zone_and_the_rest_private() -> None:
    modes = {}
    for line in (DEPLOY / "agentd.tmpfiles").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            kind, path, mode, user, group, *_ = line.split()
            assert (kind, user, group) == ("d", "agentd", "agentd"), line
            modes[path] = mode
    assert modes.pop("/var/lib/agentd/incoming") == "2770"
    assert set(modes.values()) == {"0750"} and "/var/lib/agentd" in modes


@pytest.mark.skipif(shutil.which("sh") is None, reason="no sh")
def test_installer_parses_and_refuses_without_a_command() -> None:
    script = DEPLOY / "install.sh"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    usage = subprocess.run(["sh", str(script)], capture_output=True, text=True)
    assert usage.returncode == 2 and "install|uninstall" in usage.stderr


def test_harness_scripts_parse() -> None:
    for script in ("boot.sh", "init.sh"):
        assert subprocess.run(["sh", "-n", str(Path(__file__).parent / script)]).returncode == 0
