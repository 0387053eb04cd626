"""An eval report as JUnit XML: one testsuite, one testcase per case, a failure per missed field."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def render(report: dict[str, Any], gates_missed: list[str]) -> bytes:
    results = report["results"]
    failures = sum(1 for c in results if not c["passed"])
    suite = ET.Element("testsuite", name=f"agentd.eval.{report['workflow']}", tests=str(len(results) + 1),
                       failures=str(failures + (1 if gates_missed else 0)), errors="0", skipped="0",
                       time=f"{sum(c['latency_s'] for c in results):.3f}")
    props = ET.SubElement(suite, "properties")
    for name in ("accuracy", "cost_usd", "mode", "cases", "passed"):
        ET.SubElement(props, "property", name=name, value=_text(report[name]))
    for case in results:
        element = ET.SubElement(suite, "testcase", classname=f"agentd.eval.{report['workflow']}",
                                name=case["case"], time=f"{case['latency_s']:.3f}")
        if not case["passed"]:
            missed = [f"{f['field']}: expected {_text(f['expected'])} ({f['match']}), got {_text(f['actual'])}"
                      for f in case["failures"]]
            failure = ET.SubElement(element, "failure", type="mismatch",
                                    message=f"{len(missed)} field(s) differ; outcome {case['outcome']}")
            failure.text = "\n".join(missed)
    gate = ET.SubElement(suite, "testcase", classname=f"agentd.eval.{report['workflow']}", name="gates", time="0")
    if gates_missed:
        ET.SubElement(gate, "failure", type="gate", message="; ".join(gates_missed))
    root = ET.Element("testsuites", name="agentd eval", tests=suite.get("tests", "0"),
                      failures=suite.get("failures", "0"))
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def write(path: Path, report: dict[str, Any], gates_missed: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(render(report, gates_missed))
