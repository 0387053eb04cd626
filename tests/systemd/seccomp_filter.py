"""Run a command under the system-call filter deploy/agentd.service asks systemd for, without systemd.

Usage (Debian's python3 with python3-seccomp): seccomp_filter.py UNIT COMMAND [ARGS...]
Reads the unit's SystemCallFilter= lines in order (the first allow list sets the default,
then `~` entries remove groups and plain entries add them back, as systemd merges them),
expands the @groups with `systemd-analyze syscall-filter`, adds MemoryDenyWriteExecute= and
NoNewPrivileges=, loads the filter and execs COMMAND: what runs there runs as under the unit.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from functools import cache

import seccomp

PROT_WRITE, PROT_EXEC = 2, 4
GUARDED = ("mmap", "mprotect", "pkey_mprotect", "shmat")


@cache
def expand(name: str) -> frozenset[str]:
    if not name.startswith("@"):
        return frozenset({name})
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                         check=True).stdout
    found: set[str] = set()
    for line in out.splitlines()[1:]:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            found |= expand(entry)
    return frozenset(found)


def directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    with open(unit, encoding="utf-8") as fh:
        for line in fh:
            if "=" in line and not line.startswith(("#", "[")):
                key, _, value = line.partition("=")
                found.setdefault(key.strip(), []).append(value.strip())
    return found


def allowed(filters: list[str]) -> set[str]:
    assert filters and not filters[0].startswith("~"), "the unit's first SystemCallFilter= must be an allow list"
    names: set[str] = set()
    for entry in filters:
        remove = entry.startswith("~")
        group = set().union(*(expand(part) for part in entry.lstrip("~").split()))
        names = names - group if remove else names | group
    return names


def load(unit: str) -> None:
    d = directives(unit)
    names = allowed(d["SystemCallFilter"])
    rules = seccomp.SyscallFilter(defaction=seccomp.ERRNO(errno.EPERM))
    mdwe = d.get("MemoryDenyWriteExecute") == ["yes"]
    for name in sorted(names):
        if mdwe and name in GUARDED:
            continue
        try:
            rules.add_rule(seccomp.ALLOW, name)
        except (RuntimeError, ValueError, OSError):
            pass  # a name this kernel or libseccomp does not know
    if mdwe:  # what systemd adds: no W+X mapping, no mprotect to executable
        for prot in (0, PROT_EXEC, PROT_WRITE):
            rules.add_rule(seccomp.ALLOW, "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, PROT_WRITE | PROT_EXEC, prot))
        for name in ("mprotect", "pkey_mprotect"):
            rules.add_rule(seccomp.ALLOW, name, seccomp.Arg(2, seccomp.MASKED_EQ, PROT_EXEC, 0))
    rules.set_attr(seccomp.Attr.CTL_NNP, 1)
    rules.load()


if __name__ == "__main__":
    load(sys.argv[1])
    os.execv(sys.argv[2], sys.argv[2:])
