"""The audit room: the hash-chained log, its anchor, verification and secret redaction."""
from __future__ import annotations

from agentd.audit.chain import CURRENT, GENESIS, Entry, canonical, iso_of, line_hash, utcnow_iso
from agentd.audit.files import audit_files, iter_records, iter_records_after, iter_records_since
from agentd.audit.log import AuditLog, open_for
from agentd.audit.verify import Problem, Report, verify, verify_report

__all__ = ["CURRENT", "GENESIS", "AuditLog", "Entry", "Problem", "Report", "audit_files", "canonical", "iter_records",
           "iso_of", "iter_records_after", "iter_records_since", "line_hash", "open_for", "utcnow_iso", "verify",
           "verify_report"]
