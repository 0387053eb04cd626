"""Amounts with their currency, as "<number with two decimals> <ISO code>", the grand total first."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP", "₹": "INR", "¥": "JPY", "rs": "INR", "rs.": "INR",
           "euro": "EUR", "euros": "EUR", "fr.": "CHF", "zł": "PLN"}
CODES = ("EUR", "USD", "GBP", "INR", "CHF", "PLN", "SEK", "NOK", "DKK", "JPY", "CAD", "AUD", "CZK", "HUF")
_CUR = r"€|\$|£|₹|¥|\b(?:" + "|".join(CODES) + r"|Rs\.?|euros?)(?![A-Za-z])"
_NUM = (r"(?:[-−][ \t]?)?(?:\d{1,3}(?:[.,'\u00a0\u202f]\d{3})+(?:[.,]\d{1,4})?|\d{1,3}(?: \d{3})+,\d{2}"
        r"|\d+(?:[.,]\d{1,4})?)")
# the look-ahead lets every position that cannot start an amount (a space, most letters) fail at once
MONEY = re.compile(rf"(?=[\dreugicpsndjah€$£₹¥−-])(?:(?P<pre>{_CUR})[ \t]*|(?<![\w.,]))(?P<num>{_NUM})"
                   rf"(?![\d.,]?\d)(?!\s*%)[ \t]*(?P<post>{_CUR})?", re.IGNORECASE)
CURRENCY = re.compile(_CUR, re.IGNORECASE)
DECLARED = re.compile(r"(?:rechnungswährung|währung|currency|devise|valuta)\s*:?\s*(?P<code>[A-Z]{3})\b"
                      r"|prices\s+are\s+in\s+(?P<words>US\s+dollars?|euros?|pounds?)", re.IGNORECASE)
WORDS = {"us dollar": "USD", "us dollars": "USD", "euro": "EUR", "euros": "EUR", "pound": "GBP", "pounds": "GBP"}

# labels of a total: 3 = the gross grand total, 2 = a total that may be a remainder (amount due)
GROSS = (r"grand\s+total|total\s+amount(?:\s+due)?|total\s+for\s+this\s+invoice|invoice\s+total|total\s+ttc"
         r"|montant\s+ttc|ttc|bruttosumme|brutto|gesamtbetrag|rechnungsbetrag|endbetrag|endsumme|summe\s+gesamt"
         r"|summe\s+inkl\.?"
         r"|total\s+incl\.?(?:uding)?|bedrag\s+incl\.?(?:usief)?|totaalbedrag|factuur\s*totaal|totaal\s+incl\.?")
DUE = (r"total|totaal|summe|amount\s+due|balance\s+due|due\s+payable|zahlbetrag|zu\s+zahlen\w*(?:\s+beitrag)?"
       r"|montant(?:\s+total)?"
       r"|somme\s+à\s+payer|net\s+à\s+payer|solde\s+à\s+payer|te\s+betalen|residual|bedrag|betrag")
# a label ends where its word ends; "TTCDate" (pdf text run together) still ends after "TTC"
WORD_END = r"(?!(?-i:[a-zà-ÿ]|[A-ZÀ-Þ](?![a-zà-ÿ])))"
LABEL = re.compile(rf"(?<![\w])(?=[^\W\d_])(?:(?P<gross>{GROSS})|(?P<due>{DUE})){WORD_END}", re.IGNORECASE)
NOT_TOTAL_BEFORE = re.compile(r"(?:net|tax|vat|tva|sub|netto|steuer|mwst|ust|rabatt|skonto)\W*$", re.IGNORECASE)
NOT_TOTAL_AFTER = re.compile(r"^\W*(?:ht|hors|excl\w*|exkl\w*|ohne|netto|net|nett|taxes?|tva|vat|btw|ust|mwst"
                             r"|der\s+(?:zu|ab)schl\w*|du\s+prélèvement)(?![\w])", re.IGNORECASE)
GROSS_MARK = re.compile(r"incl|inkl|ttc|brutto", re.IGNORECASE)
COLUMN_ROWS = 6
ONLY_MONEY = re.compile(rf"^\s*(?:{_CUR})?\s*{_NUM}?\s*(?:{_CUR})?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Money:
    value: float
    currency: str  # "" when the number stands alone
    start: int
    end: int

    def render(self, default: str) -> str:
        return f"{self.value:.2f} {self.currency or default}".strip()


def parse_number(raw: str) -> float | None:
    """'1.234,50', '1,234.50', '1 234,50', '-12' -> float; None when it is no amount."""
    text = raw.replace("−", "-").replace(" ", "").replace("\u00a0", "").replace("\u202f", "").replace("'", "")
    sign = -1.0 if text.startswith("-") else 1.0
    text = text.lstrip("-")
    dot, comma = text.rfind("."), text.rfind(",")
    if dot >= 0 and comma >= 0:
        decimal = max(dot, comma)
        whole, frac = text[:decimal], text[decimal + 1:]
        whole = whole.replace(".", "").replace(",", "")
    elif dot >= 0 or comma >= 0:
        sep = "." if dot >= 0 else ","
        pieces = text.split(sep)
        if len(pieces) > 2 or (len(pieces[1]) == 3 and pieces[0] not in ("0", "")):
            whole, frac = "".join(pieces), ""
        else:
            whole, frac = pieces
    else:
        whole, frac = text, ""
    if not whole.isdigit() or (frac and not frac.isdigit()):
        return None
    return sign * float(f"{whole}.{frac or 0}")


def _currency(token: str | None) -> str:
    if not token:
        return ""
    token = token.strip()
    return token.upper() if token.upper() in CODES else SYMBOLS.get(token.lower(), "")


def scan(text: str) -> list[Money]:
    """Every number in the text that may be an amount, with its adjacent currency if any."""
    found = []
    for m in MONEY.finditer(text):
        value = parse_number(m["num"])
        if value is None:
            continue
        found.append(Money(value, _currency(m["pre"]) or _currency(m["post"]), m.start("num"), m.end("num")))
    return found


def document_currency(text: str, money: list[Money], fallback: str) -> str:
    """The declared currency, else the one most used, else `fallback`."""
    declared = DECLARED.search(text)
    if declared and declared["code"] and declared["code"].upper() in CODES:
        return declared["code"].upper()
    if declared and declared["words"]:
        return WORDS.get(" ".join(declared["words"].lower().split()), fallback)
    counts = Counter(m.currency for m in money if m.currency)
    if not counts:  # a symbol in a heading ("Total € Incl. VAT 681.87") still says the currency
        counts = Counter(_currency(token) for token in CURRENCY.findall(text))
        counts.pop("", None)
    return counts.most_common(1)[0][0] if counts else fallback


def _rank(line: str, label: re.Match[str]) -> int:
    if label["gross"]:
        return 3
    after = line[label.end():label.end() + 40]
    if GROSS_MARK.search(after[:12]):
        return 3
    if NOT_TOTAL_BEFORE.search(line[max(0, label.start() - 20):label.start()]) or NOT_TOTAL_AFTER.search(after):
        return 0
    return 2


def _line_total(lines: list[str], index: int, label: re.Match[str], money_of: dict[int, list[Money]]) -> Money | None:
    """The amount a label on line `index` names: the last one after it on the line, else one before
    it with a currency, else a line below holding nothing but an amount, else the foot of the
    table column the label heads."""
    line_money = money_of.get(index, [])
    after = [m for m in line_money if m.start >= label.end()]
    if after:
        return after[-1]
    before = [m for m in line_money if m.start < label.start() and m.currency]
    if before:
        return before[-1]
    for below in range(index + 1, min(index + 3, len(lines))):
        if not ONLY_MONEY.match(lines[below]):
            break
        if money_of.get(below):
            return money_of[below][-1]
    return None if line_money else _column_foot(lines, index, label.end(), money_of)


def _column_foot(lines: list[str], index: int, column: int, money_of: dict[int, list[Money]]) -> Money | None:
    """The last amount right-aligned under a table heading that ends at `column`."""
    foot = None
    for below in range(index + 1, min(index + COLUMN_ROWS + 1, len(lines))):
        cell = [m for m in money_of.get(below, []) if abs(m.end - column) <= 2]
        if not cell:
            break
        foot = cell[-1]
    return foot


def totals(lines: list[str], money_of: dict[int, list[Money]]) -> list[tuple[int, Money]]:
    """(rank, amount) for each labelled total in the document."""
    found = []
    for index, line in enumerate(lines):
        for label in LABEL.finditer(line):
            rank = _rank(line, label)
            if rank == 0:
                continue
            money = _line_total(lines, index, label, money_of)
            if money is not None:
                found.append((rank, money))
    return found


def find_amounts(text: str, fallback_currency: str = "EUR", limit: int = 10,
                 skip: list[tuple[int, int]] | None = None) -> list[str]:
    """The grand total first (the gross total over a remainder due; the largest amount with a
    currency when no total is labelled), then the other amounts with a currency, in order."""
    masked = _mask(text, skip or [])
    lines = masked.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    everything = scan(masked)
    money_of: dict[int, list[Money]] = {}
    index = 0
    for money in everything:
        while index + 1 < len(starts) and starts[index + 1] <= money.start:
            index += 1
        offset = starts[index]
        money_of.setdefault(index, []).append(
            Money(money.value, money.currency, money.start - offset, money.end - offset))
    currency = document_currency(text, everything, fallback_currency)
    ranked = totals(lines, money_of)
    tagged = [m for m in everything if m.currency]
    if ranked:
        top = max(rank for rank, _ in ranked)
        total: Money | None = max((m for rank, m in ranked if rank == top), key=lambda m: abs(m.value))
    else:
        total = max(tagged, key=lambda m: m.value, default=None)
    rendered = [m.render(currency) for m in ([total] if total else []) + tagged]
    return list(dict.fromkeys(rendered))[:limit]


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with the spans blanked (dates hold digits that are no amounts); lines kept."""
    if not spans:
        return text
    pieces, last = [], 0
    for start, end in spans:
        pieces += [text[last:start], re.sub(r"[^\n]", " ", text[start:end])]
        last = end
    pieces.append(text[last:])
    return "".join(pieces)
