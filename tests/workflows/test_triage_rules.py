"""The offline triage rules, parser by parser: dates, amounts, parties (legal forms), document types."""
from __future__ import annotations

import asyncio
from pathlib import Path

import jsonschema
import pytest

from agentd.config import Config
from agentd.llm.base import LLMRequest
from agentd.llm.gateway import make_provider
from agentd.workflows import load, offline_rules
from agentd.workflows.triage import TRIAGE_SCHEMA
from agentd.workflows.triage_rules import classify, find_amounts, find_dates, find_party, triage
from agentd.workflows.triage_rules.amounts import parse_number


# -- dates ------------------------------------------------------------------------------------
@pytest.mark.parametrize("written", [
    "2014-08-03", "03.08.2014", "3.8.2014", "03.08.14", "3-8-2014", "3/8/2014", "03/08/2014",
    "3 Aug 2014", "3 Aug. 2014", "August 3, 2014", "August 3rd, 2014", "Aug 3 , 2014", "3rd August 2014",
    "3 août 2014", "3 aout 2014", "03 Août 2014", "3. August 2014", "3. Aug. 2014", "3 augustus 2014",
    "3 aug 2014",
])
def test_a_date_in_any_common_form_is_returned_as_iso(written: str) -> None:
    assert find_dates(f"Datum: {written}") == ["2014-08-03"]


@pytest.mark.parametrize("written, iso", [
    ("1er juillet 2015", "2015-07-01"), ("7. Mai 2014", "2014-05-07"), ("29 maart 2014", "2014-03-29"),
    ("19 oktober 2015", "2015-10-19"), ("17. Dezember 2018", "2018-12-17"), ("2 février 2020", "2020-02-02"),
    ("1 mei 2021", "2021-05-01"), ("March 1st 2022", "2022-03-01"), ("31/12/2017", "2017-12-31"),
    ("28 Jan 15", "2015-01-28"),
])
def test_month_names_in_english_german_french_and_dutch(written: str, iso: str) -> None:
    assert find_dates(written) == [iso]


def test_a_slash_date_follows_the_locale_order_unless_one_part_cannot_be_a_month() -> None:
    assert find_dates("3/8/2014") == ["2014-08-03"]
    assert find_dates("3/8/2014", month_first=True) == ["2014-03-08"]
    assert find_dates("03/20/2023") == ["2023-03-20"]
    assert find_dates("20/03/2023", month_first=True) == ["2023-03-20"]


def test_a_us_dollar_english_document_reads_slash_dates_month_first() -> None:
    answer = triage("INVOICE\nInvoice date: 3/8/2014\nTotal: $10.00\n")
    assert answer["entities"]["dates"] == ["2014-03-08"]
    answer = triage("RECHNUNG\nRechnungsdatum: 3/8/2014\nGesamtbetrag: 10,00 €\n")
    assert answer["entities"]["dates"] == ["2014-08-03"]


def test_impossible_dates_and_numbers_that_only_look_like_dates_are_left_out() -> None:
    assert find_dates("31.02.2014 and 13/13/2014 and 2014-13-01 and IP 78.46.77.79 and v1.2.3") == []
    assert find_dates("Tel. 01234/987654, Kto 12.345.678") == []


def test_the_invoice_date_comes_first_whatever_order_the_dates_are_written_in() -> None:
    text = "Order date: 01.08.2014\nDue date: 17.08.2014\nInvoice date: 03.08.2014\nDelivery: 02.08.2014\n"
    assert find_dates(text) == ["2014-08-03", "2014-08-01", "2014-08-17", "2014-08-02"]


def test_a_label_written_after_its_date_still_names_it() -> None:
    # pdf text extraction often puts a label after its value: "15-10-2015Order Date:"
    assert find_dates(" 15-10-2015Order Date:\n 20-10-2015Invoice Date:\n")[0] == "2015-10-20"
    assert find_dates("18 april 2014Orderdatum:\n19 april 2014Factuurdatum:\n")[0] == "2014-04-19"


@pytest.mark.parametrize("text, own", [
    ("Rechnung Nr. 42 vom 05.03.2018\nZahlbar bis 04.04.2018", "2018-03-05"),
    ("Bitte überweisen Sie bis zum 09.06.2014.\nRechnungsdatum: 19.05.2014", "2014-05-19"),
    ("Facture n°562044387 du 02 Juillet 2015\nDate limite de paiement le 05 Juillet 2015", "2015-07-02"),
    ("Vervaldatum: 12 november 2015\nDatum: 29 oktober 2015", "2015-10-29"),
    ("Date d'échéance 13/12/2017\nDate de facture 13/11/2017", "2017-11-13"),
    ("Invoice Date:\n03/20/2023\nDue Date:\n04/04/2023", "2023-03-20"),
])
def test_the_documents_own_date_in_each_language(text: str, own: str) -> None:
    assert find_dates(text)[0] == own


def test_with_no_label_the_first_date_that_is_not_a_due_date_is_the_documents() -> None:
    assert find_dates("Payable until 2024-02-01\n2024-01-15\n2024-01-20")[0] == "2024-01-15"
    assert find_dates("Credits will expire on 28 Jan 2016.\nOrder: 28 Jan 15")[0] == "2015-01-28"


def test_the_noun_before_vom_du_or_of_says_whose_date_it_is() -> None:
    text = "Rechnung gemäß Bestellung Nr. 2018-471331 vom 01.03.2018.\nHandelsrechnung (380) 05.06.2018 Nr. 471102"
    assert find_dates(text)[0] == "2018-06-05"
    assert find_dates("Verordnung von Dr. Heilerin vom 05.09.2018\nRechnung Nr. R18-31 vom 03.10.2018")[0] == \
        "2018-10-03"
    assert find_dates("Beitragsrechnung Nr. 7 11. März 2014\nRechnungszeitraum: 01.04.2014 - 30.06.2014")[0] == \
        "2014-03-11"


def test_a_word_that_is_no_month_does_not_hide_the_date_after_it() -> None:
    assert find_dates("Rechnung Nr. 42 vom 05.03.2018") == ["2018-03-05"]


# -- amounts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, value", [
    ("1.234,50", 1234.5), ("1,234.50", 1234.5), ("1 234,50", 1234.5), ("1'234.50", 1234.5),
    ("1.234.567,89", 1234567.89), ("1,234,567.89", 1234567.89), ("1234", 1234.0), ("12,5", 12.5),
    ("0.025", 0.025), ("1.000", 1000.0), ("2,000", 2000.0), ("-233,47", -233.47), ("41,1765", 41.1765),
])
def test_numbers_with_either_separator_convention(raw: str, value: float) -> None:
    assert parse_number(raw) == pytest.approx(value)


@pytest.mark.parametrize("text, total", [
    ("Total: 1.234,50 €", "1234.50 EUR"),
    ("Amount due: $1,234.50", "1234.50 USD"),
    ("Grand Total £ 99.00", "99.00 GBP"),
    ("Gesamtbetrag: 559,84 €", "559.84 EUR"),
    ("Rechnungsbetrag 1.589,80 EUR", "1589.80 EUR"),
    ("Montant TTC : 56,02 €", "56.02 EUR"),
    ("Total TTC 1 234,56 €", "1234.56 EUR"),
    ("Totaal € 717,97", "717.97 EUR"),
    ("Totaalbedrag € 22,50", "22.50 EUR"),
    ("Factuur totaal EUR 49,99", "49.99 EUR"),
    ("Total CHF 12.50", "12.50 CHF"),
    ("Grand Total\nRs 1939", "1939.00 INR"),
])
def test_the_total_with_its_currency_in_each_language(text: str, total: str) -> None:
    assert find_amounts(text)[0] == total


def test_the_gross_total_comes_before_net_subtotal_tax_and_what_is_left_to_pay() -> None:
    text = ("Subtotal $100.00\nTax $8.00\nTotal $108.00\n"
            "Total HT 46,68 €\nTVA 20% : 9,34 €\nTotal TTC : 56,02 €\nSolde à payer 20,00 €\n")
    assert find_amounts(text)[0] == "56.02 EUR"
    german = "Netto 87,39 €\nUSt. (19 %) 16,61 €\nBrutto 104,00 €\nZahlbetrag 104,00 €"
    assert find_amounts(german)[0] == "104.00 EUR"
    assert find_amounts("Total 2,076.76 €\nResidual 1,453.76 €")[0] == "2076.76 EUR"
    assert find_amounts("Bedrag inclusief BTW € 189,00\nTe betalen € 0,00")[0] == "189.00 EUR"


def test_a_total_without_a_currency_takes_the_documents_currency() -> None:
    assert find_amounts("Subtotal 573.00\nTotal € Incl. VAT 681.87", fallback_currency="USD")[0] == "681.87 EUR"
    assert find_amounts("Positionen netto 804,35 €\nEndsumme 963,12 €")[0] == "963.12 EUR"
    assert find_amounts("Rechnungswährung : GBP\nBruttosumme 1021,91\n")[0] == "1021.91 GBP"
    assert find_amounts("Price is inclusive of a discount of Rs -40.00\nGrand Total\n319.00\n")[0] == "319.00 INR"
    assert find_amounts("Summe 12,00", fallback_currency="EUR") == ["12.00 EUR"]


def test_a_total_at_the_foot_of_a_table_column_is_found() -> None:
    text = ("   Warenwert      Nettobetrag     Endbetrag\n"
            "      326,50           321,40        382,47\n"
            "      130,70           127,59        136,52\n"
            "      457,20           448,99        518,99\n"
            "Zahlbar innerhalb 14 Tagen.\n")
    assert find_amounts(text)[0] == "518.99 EUR"


def test_with_no_labelled_total_the_largest_amount_with_a_currency_comes_first() -> None:
    assert find_amounts("Service A $120.00\nService B $7.50\nDue: see above, 3 items") == [
        "120.00 USD", "7.50 USD"]


def test_percentages_and_dates_are_not_amounts() -> None:
    assert find_amounts("TOTAL AMOUNT DUE ON August 3 , 2014 $4.11\nVAT 21%", skip=[(20, 35)])[0] == "4.11 USD"
    assert find_amounts("USt 19 %\nRabatt 10%") == []


# -- parties ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "Acme Widgets Ltd", "Acme Widgets Ltd.", "Nordwind GmbH", "Van Dijk B.V.", "Coolblue B.V.", "bol.com b.v.",
    "Transportes Lopez S.A.", "Stark Industries, Inc.", "Au bon moulin SARL", "Free SAS", "QualityHosting AG",
    "Initech LLC", "Globex plc", "Philips N.V.", "WS Retail Services Pvt. Ltd", "Oravel Stays Private Limited",
    "Metallbau Leipzig GmbH & Co. KG", "Grundbesitz GmbH & Co.", "Versicherungsverein Musterstadt a.G.",
])
def test_a_company_name_is_recognised_by_its_legal_form(name: str) -> None:
    party, organizations = find_party(f"{name}\nMain Street 1\n12345 Town\n", [])
    assert party == name and organizations == [name]


def test_the_sender_of_an_email_is_the_party() -> None:
    assert find_party("From: Nordwind GmbH <billing@nordwind.example>\nTo: ops@example.org\n", [])[0] == \
        "Nordwind GmbH"
    assert find_party("From: billing@hetzner.de\nSubject: Rechnung\n", ["billing@hetzner.de"])[0] == "Hetzner"


def test_the_seller_wins_over_the_customer_it_is_addressed_to() -> None:
    text = ("Bill to:\nBuyer Holdings Ltd\n1 High Street\n\nInvoice 7\nTotal $5.00\n"
            "Seller Widgets GmbH | Hauptstr. 2 | 10115 Berlin\n")
    assert find_party(text, [])[0] == "Seller Widgets GmbH"
    assert find_party("Verkäufer:\nNummer : 1\nRohstoff AG Salzgitter\nKäufer:\nKunden AG Mitte\n", [])[0] == \
        "Rohstoff AG Salzgitter"
    assert find_party("Verkäufer\nNummer: 549910\nName: Lieferant GmbH\nKäufer\nName: Kunden AG Mitte\n", [])[0] == \
        "Lieferant GmbH"


def test_the_senders_email_domain_picks_the_issuer_among_several_companies() -> None:
    text = "Beispiel Handel GmbH\nWeg 1\n\nHetzner Online GmbH\nIndustriestr. 25\ninfo@hetzner.de\n"
    assert find_party(text, ["info@hetzner.de"])[0] == "Hetzner Online GmbH"


def test_a_name_with_no_legal_form_is_found_by_the_account_holder_or_the_email() -> None:
    assert find_party("Facture 12\nTitulaire du compte : NETPRESSE\n", [])[0] == "NETPRESSE"
    text = "INVOICE\nSammy Maystone\nsmaystone4@fake.com\nBill To\nTaylor Riddel\ntriddel9@fake.com\n"
    assert find_party(text, ["smaystone4@fake.com", "triddel9@fake.com"])[0] == "Sammy Maystone"


def test_a_letterhead_name_over_an_address_is_the_issuer() -> None:
    text = "Tax Invoice\nEnvato\nABN: 11 119 159 741\nPO Box 16122\nTo: iViveLabs Ltd Order date: 28 Jan 15\n"
    assert find_party(text, [])[0] == "Envato"
    assert find_party("Page 1\nNordlicht Design\nHafenstraße 3\n20095 Hamburg\n", [])[0] == "Nordlicht Design"


def test_the_return_address_line_over_the_window_names_the_sender_not_the_addressee() -> None:
    text = "weclapp.com | Somestreet 42 | 08155 Some city\nBeispiel AG\nFeldstraße 34\n54321 Hithausen\nRechnung 1\n"
    assert find_party(text, [])[0] == "weclapp.com"
    text = "Kraxi GmbH · Flugzeugallee 17 · 12345 Papierfeld\nPapierflieger-Vertriebs-GmbH\nRabattstr. 25\n"
    assert find_party(text, [])[0] == "Kraxi GmbH"


def test_a_sender_domain_written_as_a_word_names_the_issuer() -> None:
    text = "Invoice 103767\nVAT Registration No. Email\nDE777777777 info@cronus.com\nAdatum Corporation CRONUS DE\n"
    assert find_party(text, ["info@cronus.com"])[0] == "CRONUS"


def test_a_bank_is_not_the_issuer_and_no_party_is_better_than_a_guess() -> None:
    assert find_party("Deutsche Bank AG\nIBAN DE12\n", [])[0] == ""
    assert find_party("Please find attached the figures for May.\n", [])[0] == ""


# -- document types ---------------------------------------------------------------------------
DOCUMENTS = {
    "invoice": ["Invoice INV-7\nAmount due: $120.00\nPayment terms: 30 days",
                "Rechnung Nr. 7\nRechnungsdatum: 01.02.2024\nZahlbar bis 01.03.2024",
                "Facture n° 7\nTotal TTC : 56,02 €\nConditions de paiement : 30 jours",
                "FACTUUR.\nFactuurnummer: 7\nBTW 21% € 3,90"],
    "receipt": ["RECEIPT\nThank you for your purchase!\nPaid with Visa", "Quittung\nBetrag dankend erhalten",
                "Reçu de paiement\nMerci de votre visite", "Kassabon\nBedankt voor uw aankoop"],
    "order": ["PURCHASE ORDER PO-19\nPlease ship the following items", "Bestellung Nr. 19\nBitte liefern Sie",
              "Bon de commande n° 19\nMerci de livrer", "Bestelling 19\nGraag leveren op maandag"],
    "contract": ["SERVICE AGREEMENT between Acme Ltd (hereinafter the Supplier) and the Customer",
                 "Mietvertrag zwischen A (im Folgenden Vermieter) und B", "Contrat de prestation entre A, ci-après",
                 "Overeenkomst tussen A, hierna te noemen de leverancier"],
    "letter": ["Dear Mr Smith,\nthank you for your visit.\nKind regards,\nAnna",
               "Sehr geehrte Frau Meier,\nvielen Dank.\nMit freundlichen Grüßen\nHans",
               "Madame, Monsieur,\nnous vous remercions.\nCordialement,\nMarie",
               "Geachte heer Jansen,\nhartelijk dank.\nMet vriendelijke groet,\nPiet"],
    "email": ["From: a@example.org\nTo: b@example.org\nSubject: Meeting\n\nSee you at ten.",
              "Von: a@example.org\nAn: b@example.org\nBetreff: Treffen\n\nBis morgen.",
              "De : a@example.org\nÀ : b@example.org\nObjet : Réunion\n\nÀ demain.",
              "Van: a@example.org\nAan: b@example.org\nOnderwerp: Overleg\n\nTot morgen."],
}


@pytest.mark.parametrize("kind, text", [(kind, text) for kind, texts in DOCUMENTS.items() for text in texts])
def test_document_types_in_english_german_french_and_dutch(kind: str, text: str) -> None:
    assert classify(text)[0] == kind


def test_a_title_names_the_type_even_when_the_body_mentions_another() -> None:
    assert classify("PAYMENT RECEIPT\nGuest: Sanjay\nPlease ask the hotel for an invoice at check-out.")[0] == \
        "receipt"


def test_a_title_on_a_line_of_its_own_further_down_still_names_the_type() -> None:
    text = ("Profile:\nType:\nCode:\nIndicator:\n9-Original\nPURCHASE ORDER: PO123456789\n"
            "Contract reference: CT-1\nBlanket agreement: BA-1\nContract: CT-2\n")
    assert classify(text)[0] == "order"


def test_a_type_word_inside_an_all_capitals_word_does_not_count() -> None:
    assert classify("PURCHASE ORDER PO-1\nINVOICEE: X\nINVOICEE_ADDR: Y\nINVOICEE_CITY: Z")[0] == "order"
    assert find_amounts("29.99 € TTCDate limite de paiement")[0] == "29.99 EUR"  # "TTC" then "Date" still a label


def test_a_letter_that_encloses_an_invoice_is_triaged_as_the_invoice() -> None:
    assert classify("Dear team,\nplease find the invoice attached. Amount due: $120.00.\nKind regards,\nAnna")[0] == \
        "invoice"


# -- the whole answer -------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "x", "Invoice\n" * 500, "€€€ 1,2,3,4 //// 99/99/9999", "\x00\ufffd\ud83d"])
def test_the_answer_always_validates_against_the_triage_schema(text: str) -> None:
    jsonschema.validate(triage(text), TRIAGE_SCHEMA)


def test_a_realistic_invoice_yields_its_party_total_and_date() -> None:
    text = ("Hetzner Online GmbH • Industriestr. 25 • 91710 Gunzenhausen\nUsegroup\nHuswertstr. 14\n"
            "Rechnungsnummer: R0005532486\nRechnungsdatum: 19.01.2016\nRechnung R0005532486\n"
            "1 EQ4 (17.01.2016 - 16.02.2016) 41,18 €\nNetto 87,39 €\nUSt. (19 %) 16,61 €\nBrutto 104,00 €\n"
            "Fälligkeitsdatum: 22.01.2016\ninfo@hetzner.de\n")
    answer = triage(text)
    assert answer["document_type"] == "invoice" and answer["party"] == "Hetzner Online GmbH"
    assert answer["entities"]["amounts"][0] == "104.00 EUR" and answer["entities"]["dates"][0] == "2016-01-19"
    assert answer["entities"]["emails"] == ["info@hetzner.de"] and answer["requested_action"] == "pay"


def test_the_offline_provider_answers_triage_with_these_rules() -> None:
    # the rules are the triage workflow's own offline answer, handed to the provider as the daemon does
    text = "INVOICE 2291\nAcme Widgets Ltd\n12 Mill Road\nAmount due: $120.00\nPlease pay by 2026-07-01.\n"
    request = LLMRequest(task="triage", system="", document=text, schema=TRIAGE_SCHEMA)
    provider = make_provider(Config(home=Path("/nonexistent")), offline_rules(load(())))
    response = asyncio.run(provider.complete(request, model="offline", timeout_s=1.0))
    assert response.parsed == triage(text)
    assert response.parsed["party"] == "Acme Widgets Ltd" and response.parsed["entities"]["amounts"] == ["120.00 USD"]
