"""The triage workflow answered by the offline rules as they were before agentd/workflows/triage_rules/
(bench/baseline_offline_rules.py), for bench/throughput.py: what the rest of agentd costs a file."""
from agentd import Workflow
from agentd.workflows.triage import TRIAGE
from bench.baseline_offline_rules import triage as old_rules

WORKFLOW = Workflow("triage", steps=TRIAGE.steps, offline_rules={"triage": old_rules},
                    description="triage with the old offline rules (bench only)", output_schema=TRIAGE.output_schema)
