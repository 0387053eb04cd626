"""Dates in the forms people write them (en, de, fr, nl), as ISO 8601, the document's own date first."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

MONTHS: dict[str, int] = {}
for _number, _names in enumerate((
        "january jan januar jänner janvier janv januari",
        "february feb februar février févr fév fevrier fevr februari",
        "march mar märz mär mrz maerz mars maart mrt",
        "april apr avril avr",
        "may mai mei",
        "june jun juni juin",
        "july jul juli juillet juil",
        "august aug août aout augustus",
        "september sep sept septembre",
        "october oct oktober okt octobre",
        "november nov novembre",
        "december dec dezember dez décembre decembre déc"), start=1):
    for _name in _names.split():
        MONTHS[_name] = _number

# a month is any word the regex finds in that place, then looked up in MONTHS: one pattern with
# 80 month names as alternatives costs ~5x more per page than a word and a dictionary look-up
_MONTH = r"[^\W\d_]{3,10}"
_DAY_SUFFIX = r"(?:st|nd|rd|th|er|e)?"
DATE = re.compile(
    r"(?<![\d.,/-])(?=[^\W_])(?:"
    r"(?P<iy>\d{4})-(?P<im>\d{1,2})-(?P<id>\d{1,2})"
    r"|(?P<na>\d{1,2})(?P<sep>[./-])(?P<nb>\d{1,2})(?P=sep)(?P<ny>\d{4}|\d{2})"
    rf"|(?P<td>\d{{1,2}}){_DAY_SUFFIX}\.?[ \t]*(?:de[ \t]+)?(?P<tm>{_MONTH})\.?,?[ \t]+(?P<ty>\d{{4}}|\d{{2}})"
    rf"|(?<![^\W\d_])(?P<mm>{_MONTH})\.?[ \t]+(?P<md>\d{{1,2}}){_DAY_SUFFIX}[ \t]*,?[ \t]*(?P<my>\d{{4}})"
    r")(?![\d])")

# a label near a date says whose date it is: the document's own, or another one (due, order, delivery)
OWN = re.compile(
    r"(invoice\s*date|date\s+of\s+(?:the\s+)?invoice|date\s+d[e']\s*(?:la\s+)?facture|date\s+facture"
    r"|rechnungsdatum|belegdatum|beleg-datum|factuurdatum|factuur\s+datum|dated|issued(?:\s+(?:at|on))?"
    r"|(?<![a-z])(?:date|datum|le)\s*:?)\s*$",
    re.IGNORECASE)
# "vom", "du", "of": whose date it is depends on the noun before ("Rechnung Nr. 5 vom" / "Bestellung vom")
PREPOSITION = re.compile(r"(?<![a-z])(?:vom|von|du|of|from|issued\s+at)\s*$", re.IGNORECASE)
INVOICE_NOUN = re.compile(r"rechnung|invoice|factu|gutschrift|avoir|credit|beleg|quittung|receipt|reçu|kassabon",
                          re.IGNORECASE)
OTHER_NOUN = re.compile(r"bestell|order|commande|lieferschein|auftrag|verordnung|vertrag|contract|contrat"
                        r"|betriebskosten|gemäß|according|suivant", re.IGNORECASE)
OTHER = re.compile(
    r"(due|payable|until|by|before|bis(?:\s+zum)?|fällig\w*|zahlungsziel|échéance|limite|prélèvement"
    r"|vervaldatum|verval|order\s*date|orderdatum|bestelldatum|besteldatum|bestell-datum|aankoopdatum"
    r"|leistungs\S*|liefer\S*|lieferschein\S*|delivery|verzenddatum|auftrag\S*|check\s*(?:in|out)"
    r"|valid|gültig|période|period|\w*zeitraum|associ\w*|related|liée|début|debut|fin|start|end|beginn|ende"
    r"|expir\w*|verloopt|verfällt|from\s+\S+\s+to)(?:[\s-]*(?:date|datum|am|le|on|du|vom))?\W*$",
    re.IGNORECASE)
OWN_AFTER = re.compile(r"^\W*(invoice\s*date|rechnungsdatum|factuurdatum|date\s+de\s+facture|datum)\b",
                       re.IGNORECASE)
OTHER_AFTER = re.compile(r"^\W*(order\s*date|orderdatum|besteldatum|due\s*date|vervaldatum)", re.IGNORECASE)


REACH = 80  # characters around a date that can hold its label
MAX_DATES = 200  # a document's own date is among its first dates; past these the scan stops


@dataclass(frozen=True)
class Found:
    iso: str
    start: int
    weight: int  # 2: labelled as the document's date, 1: no label, 0: labelled as another date


def _year(text: str) -> int:
    year = int(text)
    if len(text) == 2:
        year += 2000 if year < 70 else 1900
    return year


def _ymd(m: re.Match[str], month_first: bool) -> tuple[int, int, int] | None:
    if m["iy"]:
        return int(m["iy"]), int(m["im"]), int(m["id"])
    if m["ny"]:
        a, b = int(m["na"]), int(m["nb"])
        # only a slash is ambiguous: 3/8/2014 is 8 March in the US, 3 August elsewhere
        if m["sep"] == "/" and a <= 12 and (b > 12 or month_first):
            return _year(m["ny"]), a, b
        return _year(m["ny"]), b, a
    if m["tm"]:
        month = MONTHS.get(m["tm"].lower())
        return (_year(m["ty"]), month, int(m["td"])) if month else None
    month = MONTHS.get(m["mm"].lower())
    return (int(m["my"]), month, int(m["md"])) if month else None


def _context(text: str, start: int, end: int) -> tuple[str, str]:
    """The text before a date on its line (or the line above, when the date starts its line and
    nothing after it is a label) and the text after it on its line."""
    line_start = text.rfind("\n", max(0, start - REACH), start) + 1
    line_end = text.find("\n", end, end + REACH)
    line_end = end + REACH if line_end < 0 else line_end
    before, after = text[max(line_start, start - REACH):start], text[end:min(line_end, end + 30)]
    if not before.strip() and line_start > 0:
        above = max(0, line_start - 1)
        previous = text[text.rfind("\n", max(0, above - REACH), above) + 1:above]
        if not after.strip() or not (OWN_AFTER.search(after) or OTHER_AFTER.search(after)):
            before = previous[-REACH:]
    return before, after


def _weight(text: str, start: int, end: int) -> int:
    before, after = _context(text, start, end)
    if OWN_AFTER.search(after):
        return 2
    if OTHER_AFTER.search(after) or OTHER.search(before):
        return 0
    if OWN.search(before):
        return 2
    invoice, other = INVOICE_NOUN.search(before), OTHER_NOUN.search(before)
    if PREPOSITION.search(before):
        return 0 if other else (2 if invoice else 1)
    return 2 if invoice and not other else 1


def scan(text: str, month_first: bool = False) -> tuple[list[Found], list[tuple[int, int]]]:
    """Every valid date in the text, in order, with how surely it is the document's own; and the
    spans of all of them (so the amount scanner can skip their digits)."""
    found, spans = [], []
    position = 0
    while len(found) < MAX_DATES and (m := DATE.search(text, position)) is not None:
        parts = _ymd(m, month_first)
        if parts is None:  # a word that is no month: "42 vom 05.03.2018" must still find the date
            position = m.start() + 1
            continue
        position = m.end()
        year, month, day = parts
        if not 1970 <= year <= 2100:
            continue
        try:
            iso = date(year, month, day).isoformat()
        except ValueError:
            continue
        spans.append(m.span())
        found.append(Found(iso, m.start(), _weight(text, m.start(), m.end())))
    return found, spans


def order(found: list[Found], limit: int = 10) -> list[str]:
    """ISO dates, the document's own date first, then the others in the order they appear."""
    if not found:
        return []
    best = max(found, key=lambda f: (f.weight, -f.start))
    return list(dict.fromkeys([best.iso] + [f.iso for f in found]))[:limit]


def find_dates(text: str, month_first: bool = False, limit: int = 10) -> list[str]:
    """ISO dates, the document's own date first, then the others in the order they appear."""
    return order(scan(text, month_first)[0], limit)
