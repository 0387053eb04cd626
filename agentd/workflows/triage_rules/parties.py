"""The issuer (party) of a document: letterhead, From:, seller cues, legal forms, the sender's e-mail."""
from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from itertools import accumulate
from dataclasses import dataclass, field

LEGAL_FORMS = (r"GmbH\s*&\s*Co\.?\s*KG|GmbH\s*&\s*Co\.|GmbH|GMBH|Gmbh|gGmbH|AG|KG|KGaA|OHG|UG|e\.\s?K\.|e\.V\."
               r"|a\.G\.|VVaG|mbH"
               r"|Pvt\.?\s*Ltd\.?|Private\s+Limited|PRIVATE\s+LIMITED|Ltd\.?|LTD\.?|Limited|LIMITED|LLC|LLP"
               r"|Inc\.?|INC\.?|Incorporated|Corp\.?|Corporation|plc|PLC"
               r"|S\.A\.S\.?|SAS|SASU|SARL|Sarl|S\.à\s?r\.l\.|S\.A\.|SA|EURL"
               r"|B\.V\.|BV|b\.v\.|N\.V\.|NV|n\.v\.|V\.O\.F\.|VOF|S\.L\.|S\.r\.l\.|Srl|S\.p\.A\.|SpA|Oy|AB|A/S|ApS")
# (?<![ \t]) and ++: a run of spaces is tried once, not once per space (tables are full of them)
LEGAL = re.compile(rf"(?P<sep>,?(?<![ \t])[ \t]++)(?P<form>{LEGAL_FORMS})(?![\w&])")
SEPARATOR = re.compile(r"(?:^|[|•●·:;()\[\]]|\s[-–]\s|\s{2,}|\t)")
NAME_WORD = re.compile(r"^(?:[A-ZÀ-Þ][\w&'.+-]*|[0-9]+&[0-9]+|[a-z][\w-]*\.[a-z]{2,}|&|und|and|et|en|de|du|van|der)$")
# a local part starts where no address character precedes it: one try per run of letters, not one per letter
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@([\w-]{1,63}(?:\.[\w-]{1,63})+)")
FROM_HEADER = re.compile(r"(?im)^(?:from|von|de|van)\s*:\s*\"?([^<\n\"]*?)\"?\s*(?:<([^>\n]+)>)?\s*$")
SELLER = re.compile(r"(?im)^[ \t]*(?:verkäufer|seller|vendor|supplier|lieferant|service\s+provider|sold\s+by"
                    r"|leverancier|vendeur|fournisseur|émetteur|rechnungssteller)\b[ \t:]*$")
HOLDER = re.compile(r"(?im)(?:kontoinhaber|kontoname|account\s+(?:holder|name)|titulaire\s+du\s+compte"
                    r"|rekeninghouder|ten\s+name\s+van|payable\s+to)[ \t]*:?[ \t]*([^\n]{2,60})$")
RECIPIENT = re.compile(r"(?im)(?<![\w])(?=[^\W\d_])(?:bill(?:ed)?\s+to|ship\s+to|sold\s+to|invoice\s+to|deliver\s+to"
                       r"|käufer"
                       r"|leistungsempfänger|rechnungsempfänger|warenempfänger|empfänger|kunde\b|customer"
                       r"|buyer|client\b|adresse\s+de\s+(?:livraison|facturation)|factuuradres|afleveradres"
                       r"|delivery\s+address|guest\s+name|attn|t\.a\.v\.|z\.\s?hd\.|an:|to:|à\s*:|aan:)")
PERSON_LINE = re.compile(r"^[ \t]*([A-ZÀ-Þ][a-zà-ÿ]+(?:[ -][A-ZÀ-Þ][a-zà-ÿ]+){1,2})[ \t]*$", re.MULTILINE)
FREE_MAIL = frozenset({"gmail", "googlemail", "yahoo", "hotmail", "outlook", "live", "gmx", "web", "aol",
                       "icloud", "example", "localhost", "fake", "mail", "t-online", "orange", "free"})
# a letterhead: a short capitalised line near the top, over an address or a registration number
LETTERHEAD_LINES = 5
LETTERHEAD_NAME = re.compile(r"^[ \t]*([A-ZÀ-Þ][\w&'.-]*(?:[ \t]+[A-ZÀ-Þ&][\w&'.-]*){0,3})[ \t]*$")
ADDRESS_CUE = re.compile(r"\b(?:ABN|ACN|VAT|USt|UID|TVA|SIRET|SIREN|KvK|BTW|GST|P\.?\s?O\.?\s+Box|Postfach"
                         r"|\d{4,5}\s+[A-ZÀ-Þ][a-zà-ÿ]+)|(?:str\.|straße|strasse|street|road|weg|laan|rue)\b",
                         re.IGNORECASE)
SEPARATED = re.compile(r"[|•●·]|[ \t][-–][ \t]")
RETURN_SEPARATOR = re.compile(r"[ \t]*(?:[|•●·]|[ \t][-–][ \t])[ \t]*")
FIELD_LABEL = re.compile(r"^[ \t]*(?:name|firma|company|raison\s+sociale|naam|bedrijf)[ \t]*:[ \t]*", re.I)
NAME_REACH = 120  # characters before a legal form that can hold its name (bounds the work on long lines)
MIN_SCORE = 2.0  # below it no candidate is believable: the party stays empty
TYPE_WORD = re.compile(r"invoice|rechnung|facture|factuur|receipt|quittung|reçu|order|bestellung|commande"
                       r"|contract|vertrag|contrat|page|seite|tax|date|datum", re.IGNORECASE)
BANK = re.compile(r"\b(?:bank|banque|sparkasse|volksbank|raiffeisen)\b", re.IGNORECASE)


@dataclass
class Candidate:
    name: str
    score: float = 0.0
    lines: list[int] = field(default_factory=list)


def key(name: str) -> str:
    """Names that differ in case, punctuation or legal form are the same party."""
    words = re.sub(r"[^\w]+", " ", name.casefold()).split()
    forms = {"gmbh", "ag", "kg", "co", "ltd", "limited", "pvt", "private", "inc", "llc", "corp", "plc", "sa",
             "sas", "sarl", "bv", "b", "v", "nv", "n", "srl", "spa", "oy", "ab"}
    while len(words) > 1 and words[-1] in forms:
        words.pop()
    return " ".join(words)


def _name_before(line: str, start: int) -> str:
    """The name a legal form at `start` closes: its words back to a separator, capitalised."""
    segment = line[max(0, start - NAME_REACH):start]
    cut = [m.end() for m in SEPARATOR.finditer(segment)]
    segment = segment[cut[-1]:] if cut else segment
    words = segment.split()
    whole_segment = 1 <= len(words) <= 4 and NAME_WORD.match(words[0]) is not None
    if whole_segment and (len(words) == 1 or not words[0][0].islower()):
        return " ".join(words)  # "Au bon moulin SARL", "bol.com b.v."
    run: list[str] = []
    for word in reversed(words):
        if not NAME_WORD.match(word) or word[0].islower() or len(run) == 4:
            break
        run.insert(0, word)
    return " ".join(run)


def legal_names(lines: list[str]) -> list[tuple[int, str]]:
    """(line number, "Name Legal-form") for each company name with a legal form."""
    found = []
    for index, line in enumerate(lines):
        for m in LEGAL.finditer(line):
            name = _name_before(line, m.start())
            if not name or name.isdigit():
                continue
            full = f"{name}{', ' if ',' in m['sep'] else ' '}{m['form']}"
            rest = line[m.end():].strip() if len(line) - m.end() <= NAME_REACH else ""
            if re.fullmatch(r"[A-ZÀ-Þ][a-zà-ÿ]{2,}", rest):
                full = f"{full} {rest}"  # "Rohstoff AG Salzgitter": a seat written after the form
            found.append((index, " ".join(full.split())))
    return found


def _email_hint(name: str, emails: list[tuple[str, str]]) -> bool:
    """Whether a sender-looking e-mail address names this party (domain or local part)."""
    words = [w for w in re.sub(r"[^\w]+", " ", key(name)).split() if len(w) >= 4]
    compact = key(name).replace(" ", "")
    for local, domain in emails:
        label = domain.split(".")[-2] if "." in domain else domain
        haystacks = [local.casefold()] + ([] if label in FREE_MAIL else [label.casefold().replace("-", "")])
        for hay in haystacks:
            if compact and (compact in hay or hay in compact and len(hay) >= 5):
                return True
            if any(len(w) >= 5 and w in hay for w in words):
                return True
    return False


def _hits(pattern: re.Pattern[str], text: str, starts: list[int]) -> list[tuple[int, re.Match[str]]]:
    """(line number, match) for each match of a multi-line pattern: one pass over the text."""
    return [(bisect_right(starts, m.start()) - 1, m) for m in pattern.finditer(text)]


def _windows(lines: list[str], heads: list[int], span: int) -> set[int]:
    """The lines a cue (such as "Bill to") heads: its own and up to `span` below, to a blank line."""
    marked: set[int] = set()
    for index in heads:
        marked.add(index)
        for below in range(index + 1, min(index + span + 1, len(lines))):
            if not lines[below].strip():
                break
            marked.add(below)
    return marked


def _cue_names(text: str, lines: list[str], starts: list[int]) -> list[tuple[int, str, float]]:
    """Names that a seller or account-holder cue points at, with the cue's weight."""
    found = []
    for index, _ in _hits(SELLER, text, starts):
        for below in range(index + 1, min(index + 4, len(lines))):
            candidate = FIELD_LABEL.sub("", lines[below]).strip()
            if LEGAL.search(candidate) or PERSON_LINE.match(candidate):
                found.append((below, candidate, 5.0))
                break
    for index, holder in _hits(HOLDER, text, starts):
        found.append((index, holder.group(1).strip(" .,:"), 3.0))
    return found


def _letterhead(lines: list[str]) -> list[tuple[int, str]]:
    """Short capitalised lines among the first non-empty ones with an address right below."""
    found = []
    shown = [i for i, line in enumerate(lines) if line.strip()][:LETTERHEAD_LINES]
    for index in shown:
        name = LETTERHEAD_NAME.match(lines[index])
        below = " ".join(lines[index + 1:index + 3])
        if name and ADDRESS_CUE.search(below) and not TYPE_WORD.search(name.group(1)):
            found.append((index, name.group(1)))
    return found


class _Candidates(dict[str, Candidate]):
    """Candidate names by key(name); each source adds weight and the lines it saw the name on."""

    def add(self, index: int, name: str, score: float) -> None:
        name = name.strip(" ,:;")
        if len(name) < 2 or len(name) > 80 or not any(c.isalpha() for c in name):
            return
        entry = self.setdefault(key(name), Candidate(name))
        entry.score += score
        entry.lines.append(index)


def _from_header(text: str, found: _Candidates) -> None:
    header = FROM_HEADER.search(text)
    if not header:
        return
    display, address = header.group(1).strip(), (header.group(2) or "").strip()
    if display and "@" not in display:
        found.add(0, display, 8.0)
    elif "@" in (address or display):
        domain = (address or display).split("@")[1].split(".")[0]
        if domain not in FREE_MAIL:
            found.add(0, domain.capitalize(), 6.0)


def _return_addresses(lines: list[str], found: _Candidates) -> list[int]:
    """"Name GmbH · Street 1 · 12345 City": the sender's line over the window envelope; its lines."""
    senders = []
    for index, line in enumerate(lines):
        if not SEPARATED.search(line):
            continue
        name, *rest = RETURN_SEPARATOR.split(line.strip())
        if (len(rest) >= 2 and ADDRESS_CUE.search(" ".join(rest)) and not any(c.isdigit() for c in name)
                and 1 <= len(name.split()) <= 6):
            found.add(index, name, 3.0)
            senders.append(index)
    return senders


def _domain_words(text: str, starts: list[int], addresses: list[tuple[str, str]], found: _Candidates) -> None:
    """A sender domain's name written as a word ("CRONUS" for info@cronus.com) when no candidate has it."""
    for _, domain in addresses:
        label = domain.split(".")[-2] if "." in domain else domain
        if len(label) < 4 or label in FREE_MAIL or any(label in k.replace(" ", "") for k in found):
            continue
        word = re.search(rf"(?<![\w@./-]){re.escape(label)}(?![\w@-]|\.\w)", text, re.IGNORECASE)
        if word:
            found.add(bisect_right(starts, word.start()) - 1, word.group(0), 1.0)


def find_party(text: str, emails: list[str]) -> tuple[str, list[str]]:
    """(the issuer or "", the organisations named, issuer first)."""
    lines = text.split("\n")
    starts = list(accumulate((len(line) + 1 for line in lines[:-1]), initial=0))
    addresses = [(e.split("@")[0], e.split("@")[1].casefold()) for e in emails if "@" in e]
    found = _Candidates()
    _from_header(text, found)
    senders = _return_addresses(lines, found)
    for index, name in legal_names(lines):
        found.add(index, name, 2.0)
    for index, name, weight in _cue_names(text, lines, starts):
        found.add(index, name, weight)
    for index, name in _letterhead(lines):
        found.add(index, name, 1.0)
    for index, person in _hits(PERSON_LINE, text, starts):
        if index < 6 or _email_hint(person.group(1), addresses):
            found.add(index, person.group(1), 0.5)
    _domain_words(text, starts, addresses, found)
    heads = [index for index, _ in _hits(RECIPIENT, text, starts)] + [i + 1 for i in senders]
    _score(found, lines, addresses, _windows(lines, heads, 3) - set(senders))
    ranked = sorted(found.values(), key=lambda c: (-c.score, min(c.lines)))
    keys = [key(c.name) for c in ranked]
    organizations = [c.name for c, k in zip(ranked, keys) if LEGAL.search(" " + c.name)
                     and not any(k != other and k.endswith(" " + other) for other in keys)]
    party = ranked[0].name if ranked and ranked[0].score >= MIN_SCORE else ""
    return party, organizations[:10]


def _score(candidates: dict[str, Candidate], lines: list[str], addresses: list[tuple[str, str]],
           recipient: set[int]) -> None:
    total = len(lines)
    counts: defaultdict[str, int] = defaultdict(int)
    lowered = "\n".join(lines).casefold()
    for k, entry in candidates.items():
        counts[k] = lowered.count(entry.name.casefold())
        entry.score += min(counts[k] - 1, 3) * 1.0
        if _email_hint(entry.name, addresses):
            entry.score += 3.0
        if any(i < 6 or i >= total - 8 for i in entry.lines):
            entry.score += 1.0
        if all(i in recipient for i in entry.lines):
            entry.score -= 6.0
        if BANK.search(entry.name):
            entry.score -= 3.0
