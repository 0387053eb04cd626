"""An example user workflow: files dropped into incoming/invoices/ are checked as invoices.

Enable it with AGENTD_WORKFLOWS=examples/invoices.py (a path) or a module name on
PYTHONPATH. Each step is an async function taking the run context and returning
JSON-able output; the output is journaled, so a restarted run does not repeat it.
"""
from __future__ import annotations

import re
from typing import Any

from agentd import DataError, NeedsReview, Workflow
from agentd.llm.offline import register_rule

INVOICE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["vendor", "total", "currency", "due_date", "confidence"],
    "properties": {
        "vendor": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "maxLength": 3},
        "due_date": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
}


@register_rule("invoice")
def offline_invoice(text: str) -> dict[str, Any]:
    """What LLM_PROVIDER=offline answers for this task: plain pattern matching."""
    total = re.search(r"(?i)total[^0-9]{0,20}([0-9][0-9,]*(?:\.[0-9]{2})?)", text)
    vendor = re.search(r"(?im)^from:\s*(.+)$", text)
    due = re.search(r"(?i)due[^0-9]{0,20}(\d{4}-\d{2}-\d{2})", text)
    currency = "EUR" if "€" in text or "EUR" in text else "USD"
    return {"vendor": vendor.group(1).strip() if vendor else "", "currency": currency,
            "total": float(total.group(1).replace(",", "")) if total else 0.0,
            "due_date": due.group(1) if due else "", "confidence": 0.9 if total and vendor else 0.4}


async def read(ctx: Any) -> dict[str, Any]:
    """Extract the text; refuse files that are obviously not invoices."""
    text = await ctx.text()
    if "invoice" not in text.lower():
        raise DataError("not_an_invoice", "the word 'invoice' does not appear in the document")
    return {"text": text[:20_000]}


async def extract_fields(ctx: Any) -> dict[str, Any]:
    """Ask the model for the invoice fields (validated against INVOICE_SCHEMA)."""
    return await ctx.ask(task="invoice", system="Extract the invoice fields as JSON.",
                         document=ctx.outputs["read"]["text"], schema=INVOICE_SCHEMA)


async def check(ctx: Any) -> dict[str, Any]:
    """Large or doubtful invoices go to a human; the rest are archived with the fields."""
    fields = ctx.outputs["extract_fields"]
    if fields["total"] > 10_000 or fields["confidence"] < 0.7:
        raise NeedsReview("needs_approval", result=fields)
    return fields


INVOICES = Workflow("invoices", steps=(read, extract_fields, check),
                    description="extract vendor, total and due date from invoices")
