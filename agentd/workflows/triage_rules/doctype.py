"""The document's type (en, de, fr, nl keywords; a title counts more) and the action it asks for."""
from __future__ import annotations

import re

from agentd.workflows.triage_rules.amounts import WORD_END

# ties go to the type listed first (the more specific one)
DOC_TYPES: tuple[tuple[str, str], ...] = (
    ("invoice", r"invoices?|tax\s+invoice|bill\s+to|amount\s+due|payment\s+terms|credit\s+note"
                r"|\w*rechnung\w*|gutschrift|zahlungsziel|zahlbar"
                r"|factures?|avoir|montant\s+ttc|total\s+ttc|conditions\s+de\s+paiement"
                r"|factu(?:u)?r\w*|creditnota|btw|faktura|fattura|factura"),
    ("receipt", r"receipt|payment\s+received|thank\s+you\s+for\s+your\s+purchase|paid\s+with|transaction\s+id"
                r"|quittung|kassenbon|kassenbeleg|zahlungsbestätigung|reçu|ticket\s+de\s+caisse|kassabon"
                r"|betaalbewijs|kwitantie"),
    ("order", r"purchase\s+order|order\s+confirmation|please\s+ship|bestellung|auftragsbestätigung"
              r"|bestellbestätigung|bon\s+de\s+commande|confirmation\s+de\s+commande|bestelling"
              r"|bestelbevestiging|inkooporder|orderbevestiging"),
    ("contract", r"agreement|contract|hereinafter|the\s+parties|vertrag\w*|im\s+folgenden|vertragsparteien"
                 r"|contrat|ci-après|les\s+parties|overeenkomst|hierna|partijen"),
    ("complaint", r"complaint|dissatisfied|unacceptable|disappointed|beschwerde|reklamation|réclamation"
                  r"|klacht"),
    ("resume", r"curriculum\s+vitae|resume|work\s+experience|education|lebenslauf|berufserfahrung"),
    ("report", r"report|findings|executive\s+summary|quarterly|bericht|rapport|verslag"),
    ("email", r"(?m:^(?:from|to|subject|cc|von|an|betreff|de|à|objet|van|aan|onderwerp)\s*:)"),
    ("letter", r"dear\s|sincerely|kind\s+regards|best\s+regards|yours\s+faithfully|sehr\s+geehrte"
               r"|mit\s+freundlichen\s+grüßen|madame,\s+monsieur|cordialement|veuillez\s+agréer"
               r"|geachte|met\s+vriendelijke\s+groet"),
)
# one pass over the text: a named group per type (nine separate patterns cost ~4x more)
PATTERN = re.compile(r"(?<![\w])(?=[^\W\d_])(?:" + "|".join(f"(?P<{name}>{words})" for name, words in DOC_TYPES)
                     + r")" + WORD_END, re.IGNORECASE)
RANK = {name: rank for rank, (name, _) in enumerate(DOC_TYPES)}
TITLE_BONUS = 5  # a title ("FACTUUR.", "PAYMENT RECEIPT", "PURCHASE ORDER: PO-1") names the document
TITLE_LINES = 4
HEADING_LINES = 15
ACTIONS = (
    ("pay", r"amount\s+due|please\s+pay|payment\s+due|due\s+date|remit|bitte\s+überweisen|zahlbar|zahlungsziel"
            r"|à\s+régler|à\s+payer|date\s+d'échéance|te\s+betalen|vervaldatum|gelieve\s+te\s+betalen"),
    ("reply", r"please\s+reply|let\s+me\s+know|please\s+respond|get\s+back\s+to|bitte\s+antworten"
              r"|merci\s+de\s+répondre|graag\s+een\s+reactie"),
    ("refund", r"refund|erstattung|rembourse\w*|terugbetal\w*"),
    ("sign", r"please\s+sign|signature|unterschrift|unterzeichnen|à\s+signer|ondertekenen"),
    ("ship", r"please\s+ship|deliver|liefern|livrer|leveren"),
    ("review", r"please\s+review|for\s+your\s+review|approve|prüfen\s+sie|à\s+valider|ter\s+beoordeling"),
)
ACTION_PATTERN = re.compile(r"(?<![\w])(?=[^\W\d_])(?:" + "|".join(f"(?P<{name}>{words})" for name, words in ACTIONS)
                            + ")", re.IGNORECASE)
PAID = re.compile(r"bereits\s+beglichen|already\s+paid|vooruitbetaald|betaald\s+met|paid\s+through"
                  r"|wird\s+von\s+nachfolgendem\s+konto\s+abgebucht|sera\s+prélevée|payment\s+received",
                  re.IGNORECASE)


def _counts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in PATTERN.finditer(text):
        kind = m.lastgroup or ""
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _heading(text: str) -> str | None:
    """The type a title names: a type word starting one of the first lines, else the first type
    word of the first TITLE_LINES lines (letters and e-mails are told by their own cues)."""
    head = text.split("\n", HEADING_LINES)[:HEADING_LINES]
    for line in head:
        m = PATTERN.match(line.lstrip(" \t#*>-"))
        if m and m.lastgroup not in ("email", "letter"):
            return m.lastgroup
    title = "\n".join(head[:TITLE_LINES])
    return next((m.lastgroup for m in PATTERN.finditer(title) if m.lastgroup not in ("email", "letter")), None)


def classify(text: str) -> tuple[str, int]:
    """(document type, the evidence count behind it); "other" with 0 when nothing points anywhere."""
    scores = _counts(text)
    heading = _heading(text)
    if heading:
        scores[heading] += TITLE_BONUS
    if not scores:
        return "other", 0
    best = min(scores, key=lambda name: (-scores[name], RANK[name]))
    return best, scores[best]


def requested_action(text: str, doc_type: str) -> str:
    """What the document asks of its reader: pay, reply, refund, sign, ship, review or none."""
    asked = {m.lastgroup for m in ACTION_PATTERN.finditer(text)}
    paid = PAID.search(text) is not None
    if paid:
        asked.discard("pay")
    elif doc_type == "invoice":
        asked.add("pay")
    return next((name for name, _ in ACTIONS if name in asked), "none")
