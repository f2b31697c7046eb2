"""The demo world: a deterministic dataset for the seed's firm, a pure function of a seed.

Calder & Finch Advisory is a mid-sized professional-services firm: 150 employees, a US
policy (USD) and a European policy (EUR), both booked into IFS company "10" (USD), and a
month of approved expense reports with everything a real month has: trips abroad in foreign
currencies, company-card and out-of-pocket lines, refunds, zero lines, long reports,
non-ASCII and HTML-entity merchants. A handful of reports need attention (DEMO_ATTENTION):
their report IDs and reasons are fixed, whatever the seed or size, so tests can assert them.

The month is relative to a day (`demo_dataset`: the console's today, console.clock): the
month before it is the one being closed, fully approved; the day's own month is in progress,
with reports approved on its days before that day (`as_of`). `make demo` on any date shows a
period close as it would look that day.

    python -m console.sim.demo [--reports N] [--seed S] [--as-of YYYY-MM-DD | --period YYYY-MM]
"""

from __future__ import annotations

import argparse
import calendar
import json
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from random import Random
from typing import Any

from console import clock
from console.sim.dataset import Dataset, parse_dataset

# ---------------------------------------------------------------- public constants
DEMO_SEED = 2026
# The month the fixtures' and benchmarks' demo world closes; `make demo` closes the month
# before today instead (demo_dataset).
DEMO_PERIOD = "2026-11"
DEMO_REPORTS = 600
DEMO_FIRM = "Calder & Finch Advisory"
DEMO_DOMAIN = "calderfinch.example"
DEMO_COMPANY = "10"
DEMO_POLICY_US = "POL-US"
DEMO_POLICY_EU = "POL-EU"
# The Tokyo desk (JPY): one report of the closing month, booked into company "10" (USD) at
# IFS's rate for JPY, quoted per 100 yen (docs/currency.md). Chosen and converted from a US
# report after generation (tokyo_report), so every other report stays as it was.
DEMO_POLICY_JP = "POL-JP"
# A Submit-and-Close workspace (the field team, USD): its reports close on submission and are
# never approved. In the `make demo` world only (demo_dataset), not in the fixed world.
DEMO_POLICY_SC = "POL-SC"
DEMO_SC_REPORTS = 12
DEMO_EXPORT_LABEL = "ml-console"
# The first poll starts here (for DEMO_PERIOD: the first day of the month before, whose
# approvals fall in a closed period); Expensify's approvedAfter excludes the day itself.
DEMO_APPROVED_AFTER = "2026-10-01"

# Demo credentials: they open only the local simulators.
DEMO_EXPENSIFY_USER_ID = "aa_api_finance_calderfinch_example"
DEMO_EXPENSIFY_SECRET = "demo-exp-7c41e9a05b2d4f68a3e1"
DEMO_IFS_CLIENT_ID = "ml-console-demo"
DEMO_IFS_SECRET = "demo-ifs-2f8b6d13c9e04a57b1d0"
DEMO_REALM = "demo"

DEMO_ACCRUED_EXPENSES_ACCOUNT = "2930"
DEMO_CARD_CLEARING_ACCOUNT = "2940"

# The report field a client-billable report carries (Expensify's `customField.Engagement`).
DEMO_ENGAGEMENT_FIELD = "Engagement"

# What the console is configured with to post the demo ([posting] in config.toml).
DEMO_POSTING: dict[str, Any] = {
    "voucher_type": "X",
    "accrued_expenses_account": DEMO_ACCRUED_EXPENSES_ACCOUNT,
    "card_clearing_account": DEMO_CARD_CLEARING_ACCOUNT,
    "company_by_policy": {
        DEMO_POLICY_US: DEMO_COMPANY,
        DEMO_POLICY_EU: DEMO_COMPANY,
        DEMO_POLICY_JP: DEMO_COMPANY,
    },
    "currency_by_company": {DEMO_COMPANY: "USD"},
    "code_part_by_tag_level": {"Cost Center": "B", "Project": "C"},
    # The European policy tracks VAT (console/tax.py): its Expensify rates map to IFS tax
    # codes; client entertainment carries no recoverable VAT and posts its gross.
    "tax_code_by_policy": {DEMO_POLICY_EU: {"VAT20": "S20", "VAT10": "R10", "VAT0": "Z0"}},
    "tax_exempt_accounts": ["6160"],
    # A client visit's report names its engagement in a report field: code part D.
    "code_part_by_report_field": {DEMO_ENGAGEMENT_FIELD: "D"},
    # A billable line must name the client project it is billed to (code part C, from its
    # Project tag): console/line_coding.py.
    "billable_project_code_part": "C",
}
DEMO_INPUT_VAT_ACCOUNT = "2640"  # where IFS's posting control puts input VAT (AP1)
# IFS's tax codes of the demo company: (code, rate %, description).
DEMO_TAX_CODES = (
    ("S20", 20, "Standard rate 20 %"),
    ("R10", 10, "Reduced rate 10 %"),
    ("Z0", 0, "Zero rate"),
)
# Expensify's tax rate per category in the European policy (code, rate %, name); categories
# not listed carry no VAT (mileage allowances), and lines not in EUR neither (Swiss VAT).
_EU_VAT: dict[str, tuple[str, int, str]] = {
    "Airfare": ("VAT0", 0, "Zero rated (international transport)"),
    "Lodging": ("VAT10", 10, "Reduced 10%"),
    "Meals": ("VAT10", 10, "Reduced 10%"),
    "Ground Transport": ("VAT10", 10, "Reduced 10%"),
    "Client Entertainment": ("VAT20", 20, "Standard 20%"),
    "Parking & Tolls": ("VAT20", 20, "Standard 20%"),
    "Office Supplies": ("VAT20", 20, "Standard 20%"),
    "Software": ("VAT20", 20, "Standard 20%"),
    "Training": ("VAT20", 20, "Standard 20%"),
    "Telecom": ("VAT20", 20, "Standard 20%"),
    "Conference Fees": ("VAT20", 20, "Standard 20%"),
    "Books & Subscriptions": ("VAT10", 10, "Reduced 10%"),
}


def _eu_vat(category: str, amount: int) -> dict[str, Any]:
    """Expensify's tax fields of a European line: the VAT inside the gross amount, rounded
    half-up to the cent (no random draw: the rest of the world stays as it was)."""
    found = _EU_VAT.get(category)
    if found is None or amount == 0:
        return {}
    code, percent, name = found
    tax = Decimal(amount) * percent / (100 + percent)
    return {
        "taxAmount": int(tax.quantize(Decimal(1), rounding=ROUND_HALF_UP)),
        "taxCode": code,
        "taxName": "VAT",
        "taxRateName": name,
    }


# The reports that need attention, by fixed report ID. Reasons follow design.md §4.
_MISSING_CC_IDS = ("51004417", "51019262", "51033808")  # cost centre IFS lacks (CC-410)
_EXPIRED_CC_IDS = ("51012930", "51027145")  # cost centre expired before approval (CC-150)
_UNMAPPED_IDS = ("51008671", "51030554")  # category without GL code, unknown to IFS
_CLOSED_PERIOD_IDS = ("51000386", "51000529")  # approved in the closed previous month
_ATTENTION_IDS = frozenset(_MISSING_CC_IDS + _EXPIRED_CC_IDS + _UNMAPPED_IDS + _CLOSED_PERIOD_IDS)

UNMAPPED_CATEGORY = "Team Offsite"
# Company-card expenses not yet on any report, posted in the demo month (reconciliation data).
DEMO_CARD_SPEND = 30
_CARD_BANKS = {DEMO_POLICY_US: "vcf", DEMO_POLICY_EU: "cdf"}  # Visa / Mastercard feeds
NEW_LAB = ("CC-410", "New Lab")
CLOSED_OFFICE = ("CC-150", "Hartford Office")


def _parse_period(period: str) -> tuple[int, int]:
    try:
        year_text, month_text = period.split("-")
        year, month = int(year_text), int(month_text)
    except ValueError:
        raise ValueError(f"period must be YYYY-MM, got {period!r}") from None
    if not 1 <= month <= 12 or not 2000 <= year <= 2200:
        raise ValueError(f"period must be YYYY-MM, got {period!r}")
    return year, month


def _add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + delta
    return index // 12, index % 12 + 1


def demo_attention(period: str = DEMO_PERIOD) -> list[dict[str, str]]:
    """The reports of a demo dataset for `period` that must be held, with their reasons."""
    year, month = _parse_period(period)
    prev_year, prev_month = _add_months(year, month, -1)
    rows = (
        [(rid, f"missing-dimension:B:{NEW_LAB[0]}") for rid in _MISSING_CC_IDS]
        + [(rid, f"invalid-dimension:B:{CLOSED_OFFICE[0]}") for rid in _EXPIRED_CC_IDS]
        + [(rid, f"unmapped-category:{UNMAPPED_CATEGORY}") for rid in _UNMAPPED_IDS]
        + [(rid, f"closed-period:{prev_year}-{prev_month:02d}") for rid in _CLOSED_PERIOD_IDS]
    )
    return [{"reportID": rid, "reason": reason} for rid, reason in sorted(rows)]


DEMO_ATTENTION: list[dict[str, str]] = demo_attention()


# ---------------------------------------------------------------- the firm's master data
@dataclass(frozen=True)
class _CategoryDef:
    name: str
    gl: str
    low: int  # plausible amount range in home-currency cents
    high: int
    mcc: str
    card_ok: bool


_CATEGORIES = (
    _CategoryDef("Airfare", "6110", 15000, 150000, "4511", True),
    _CategoryDef("Lodging", "6120", 14000, 42000, "7011", True),  # per night
    _CategoryDef("Meals", "6130", 800, 12000, "5812", True),
    _CategoryDef("Ground Transport", "6140", 1200, 9500, "4121", True),
    _CategoryDef("Mileage", "6150", 500, 18000, "", False),
    _CategoryDef("Client Entertainment", "6160", 6000, 60000, "5813", True),
    _CategoryDef("Parking & Tolls", "6170", 300, 4500, "7523", True),
    _CategoryDef("Office Supplies", "6210", 500, 15000, "5943", True),
    _CategoryDef("Software", "6220", 999, 59900, "5734", True),
    _CategoryDef("Training", "6230", 9900, 199900, "8299", True),
    _CategoryDef("Telecom", "6240", 4500, 12500, "4814", True),
    _CategoryDef("Conference Fees", "6250", 29900, 249900, "7399", True),
    _CategoryDef("Books & Subscriptions", "6270", 499, 4999, "5942", True),
)
_CAT = {c.name: c for c in _CATEGORIES}
# Enabled but never given a GL code, and absent from IFS: the unmapped-category case.
_OFFSITE = _CategoryDef(UNMAPPED_CATEGORY, "", 20000, 180000, "7011", False)
# Retired categories a real policy still lists (disabled; never used).
_DISABLED_CATEGORIES = (("Gifts", "6190"), ("Relocation", "6290"))

# (code, tag name, region): region US, EU or both.
_COST_CENTRES = (
    ("CC-100", "Advisory", "US"),
    ("CC-110", "Audit & Assurance", "US"),
    ("CC-120", "Tax", "US"),
    ("CC-130", "Technology Consulting", "US"),
    ("CC-140", "Boston Office", "US"),
    (CLOSED_OFFICE[0], CLOSED_OFFICE[1], "US"),
    ("CC-200", "Marketing", "US"),
    ("CC-210", "Business Development", "US"),
    ("CC-220", "Paris Office", "EU"),
    ("CC-230", "Zürich Office", "EU"),
    ("CC-240", "Berlin Office", "EU"),
    ("CC-300", "Finance", "both"),
    ("CC-310", "People & Talent", "US"),
    ("CC-320", "IT", "both"),
    ("CC-400", "Executive", "both"),
    (NEW_LAB[0], NEW_LAB[1], "US"),
)
_CC_NAME = {code: name for code, name, _ in _COST_CENTRES}
# Head count per (policy, cost centre); 112 in the US, 38 in Europe.
_ROSTER = (
    (DEMO_POLICY_US, "CC-100", 19),
    (DEMO_POLICY_US, "CC-110", 18),
    (DEMO_POLICY_US, "CC-120", 12),
    (DEMO_POLICY_US, "CC-130", 18),
    (DEMO_POLICY_US, "CC-140", 10),
    (DEMO_POLICY_US, "CC-150", 6),
    (DEMO_POLICY_US, "CC-200", 5),
    (DEMO_POLICY_US, "CC-210", 6),
    (DEMO_POLICY_US, "CC-300", 5),
    (DEMO_POLICY_US, "CC-310", 3),
    (DEMO_POLICY_US, "CC-320", 4),
    (DEMO_POLICY_US, "CC-400", 3),
    (DEMO_POLICY_US, "CC-410", 3),
    (DEMO_POLICY_EU, "CC-220", 14),
    (DEMO_POLICY_EU, "CC-230", 12),
    (DEMO_POLICY_EU, "CC-240", 8),
    (DEMO_POLICY_EU, "CC-300", 2),
    (DEMO_POLICY_EU, "CC-400", 2),
)
_CLIENT_FACING = frozenset(
    {"CC-100", "CC-110", "CC-120", "CC-130", "CC-140", "CC-150", "CC-220", "CC-230", "CC-240"}
)
# Hartford closes on the 10th of the demo month; its people move to Boston.
_CLOSED_OFFICE_SUCCESSOR = "CC-140"
_CLOSED_OFFICE_LAST_DAY = 10


@dataclass(frozen=True)
class _ProjectDef:
    code: str
    name: str
    # Dates as seen from the reference month (DEMO_PERIOD): a world for another month moves
    # them by as many months, so every month's world has the same projects live.
    valid_from: str  # ISO date or "start:{day}" (that day of the demo month)
    valid_until: str
    enabled: bool = True


_REFERENCE_MONTH = 2026 * 12 + 11 - 1  # DEMO_PERIOD as a month index
_FOREVER_YEARS = (2020, 2099)  # "always valid" bounds stay where they are


def _shift_iso(text: str, months: int) -> date:
    """An ISO date of the reference month's world moved by `months` (a month's last day stays
    the last day; 2020-01-01 and 2099-12-31 mean "always" and do not move)."""
    day = date.fromisoformat(text)
    if months == 0 or day.year in _FOREVER_YEARS:
        return day
    last_day = day.day == calendar.monthrange(day.year, day.month)[1]
    year, month = _add_months(day.year, day.month, months)
    if last_day:
        return date(year, month, calendar.monthrange(year, month)[1])
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


_PROJECTS = (
    _ProjectDef("PRJ-0000", "Internal", "2020-01-01", "2099-12-31"),
    _ProjectDef("PRJ-1001", "Apollo", "2025-02-01", "2027-06-30"),
    _ProjectDef("PRJ-1002", "Borealis", "2025-09-15", "2027-03-31"),
    _ProjectDef("PRJ-1003", "Cobalt", "2024-11-01", "2026-12-31"),
    _ProjectDef("PRJ-1004", "Delta Harbor", "2026-01-01", "2027-12-31"),
    _ProjectDef("PRJ-1005", "Evergreen", "2025-05-01", "2027-04-30"),
    _ProjectDef("PRJ-1006", "Fjord", "2026-03-01", "2027-02-28"),
    _ProjectDef("PRJ-1007", "Granite", "2025-01-01", "2026-12-31"),
    _ProjectDef("PRJ-1008", "Helios", "2026-06-01", "2027-05-31"),
    _ProjectDef("PRJ-1009", "Lumen", "2025-10-01", "2027-09-30"),
    _ProjectDef("PRJ-1010", "Meridian", "2026-02-01", "2027-01-31"),
    _ProjectDef("PRJ-1011", "Nordlys", "2025-08-01", "2027-07-31"),
    _ProjectDef("PRJ-1012", "Orion", "2026-04-01", "2027-03-31"),
    _ProjectDef("PRJ-1013", "Zürichsee Bank", "2025-11-01", "2027-10-31"),
    # Kicks off mid-month: only reports approved from the 16th may use it.
    _ProjectDef("PRJ-1014", "Kestrel", "start:16", "2027-12-31"),
    # Finished before the demo; the policy still lists it, disabled.
    _ProjectDef("PRJ-0907", "Juniper", "2024-01-01", "2026-06-30", enabled=False),
)
_KESTREL_START_DAY = 16

_FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Ava", "Ethan", "Sophia", "Mason", "Isabella", "Lucas",
    "Mia", "Benjamin", "Charlotte", "James", "Amelia", "Daniel", "Harper", "Henry", "Evelyn",
    "Samuel", "Abigail", "David", "Grace", "Michael", "Chloé", "José", "Zoë", "Søren",
    "Jürgen", "Åsa", "Siobhán", "Ngozi", "Hiroshi", "Priya", "Mateo", "Léa", "Raphaël",
    "Anneliese", "Kwame", "Aisha", "Mei", "Rohan", "Fatima", "Tomás", "Ingrid", "Luca",
    "Camille", "Niamh", "Dmitri", "Yuki", "Aaron", "Rachel", "Marcus", "Hannah", "Victor",
    "Elena", "Patrick", "Nadia", "Oscar", "Julia",
)  # fmt: skip
_LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Martinez",
    "Wilson", "Anderson", "Taylor", "Thomas", "Moore", "Jackson", "Martin", "Lee", "Thompson",
    "White", "Harris", "Clark", "Lewis", "Walker", "Hall", "Young", "O'Brien", "O'Neill",
    "Müller", "Schneider", "Dubois", "Lefèvre", "García", "Núñez", "Nakamura", "Tanaka",
    "Kowalski", "Nowak", "Andersson", "Lindqvist", "Rossi", "Bianchi", "Okafor", "Mensah",
    "Patel", "Sharma", "Chen", "Wang", "Kim", "Park", "Fischer", "Weber", "Moreau", "Girard",
    "van der Berg", "de Vries", "Byrne", "Murphy", "Costa", "Silva", "Hoffmann",
)  # fmt: skip

# Trip destinations per policy: (city, currency).
_DESTINATIONS = {
    DEMO_POLICY_US: (
        ("New York", "USD"), ("Chicago", "USD"), ("San Francisco", "USD"), ("Boston", "USD"),
        ("Toronto", "CAD"), ("London", "GBP"), ("Zürich", "CHF"), ("Tokyo", "JPY"),
        ("Paris", "EUR"),
    ),
    DEMO_POLICY_EU: (
        ("Paris", "EUR"), ("Berlin", "EUR"), ("Amsterdam", "EUR"), ("Zürich", "CHF"),
        ("London", "GBP"), ("New York", "USD"),
    ),
}  # fmt: skip
_HOME_CITY = {DEMO_POLICY_US: "Boston", DEMO_POLICY_EU: "Paris"}

# Merchants as Expensify serves them: HTML entities and all.
_CITY_MERCHANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "Lodging": {
        "New York": ("Marriott Marquis Times Square", "The Langham, New York"),
        "Chicago": ("Hilton Chicago", "The Palmer House"),
        "San Francisco": ("Hotel Nikko San Francisco", "Hyatt Regency SF"),
        "Boston": ("Omni Parker House", "Boston Harbor Hotel"),
        "Toronto": ("Fairmont Royal York", "Chelsea Hotel Toronto"),
        "London": ("Premier Inn London City", "The Savoy"),
        "Zürich": ("Hotel Schweizerhof Zürich", "Baur au Lac"),
        "Tokyo": ("ホテルオークラ東京", "Park Hyatt Tokyo"),
        "Paris": ("Hôtel Le Marais", "Hôtel Lutetia"),
        "Berlin": ("Hotel Adlon Kempinski", "Motel One Berlin-Mitte"),
        "Amsterdam": ("Hotel V Nesplein", "Pulitzer Amsterdam"),
    },
    "Meals": {
        "New York": ("Joe's Pizza", "Katz's Delicatessen", "Pret A Manger"),
        "Chicago": ("Lou Malnati's", "Portillo's"),
        "San Francisco": ("Tartine Bakery", "Blue Bottle Coffee"),
        "Boston": ("McDonald's", "Chipotle", "Sweetgreen", "Ben &amp; Jerry's", "Dunkin'"),
        "Toronto": ("Tim Hortons", "Pai Northern Thai"),
        "London": ("Dishoom", "Pret A Manger", "Marks &amp; Spencer"),
        "Zürich": ("Café Sprüngli", "Zeughauskeller"),
        "Tokyo": ("すし銀座", "一蘭 Ichiran", "東京 Ramen Street"),
        "Paris": ("Café de Flore", "Boulangerie Poilâne", "Brasserie Lipp", "McDonald's"),
        "Berlin": ("Café Einstein", "Curry 36"),
        "Amsterdam": ("Café 't Smalle", "Foodhallen"),
    },
    "Ground Transport": {
        "New York": ("Yellow Cab NYC", "Uber", "MTA"),
        "Chicago": ("Uber", "CTA Ventra"),
        "San Francisco": ("Lyft", "BART"),
        "Boston": ("Uber", "Lyft", "MBTA"),
        "Toronto": ("Uber", "UP Express"),
        "London": ("Transport for London", "Addison Lee"),
        "Zürich": ("SBB CFF FFS", "Taxi Zürich"),
        "Tokyo": ("東京タクシー", "JR East"),
        "Paris": ("G7 Taxi", "SNCF", "RATP"),
        "Berlin": ("Deutsche Bahn", "BVG"),
        "Amsterdam": ("NS", "Uber"),
    },
}
_MERCHANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "Airfare": {
        DEMO_POLICY_US: ("Delta Air Lines", "United Airlines", "American Airlines", "JetBlue",
                         "British Airways", "SWISS", "JAL 日本航空", "Air Canada"),
        DEMO_POLICY_EU: ("Lufthansa", "Air France", "KLM", "SWISS", "British Airways",
                         "easyJet"),
    },
    "Client Entertainment": {
        DEMO_POLICY_US: ("The Capital Grille", "Nobu", "Smith &amp; Wollensky",
                         "Legal Sea Foods"),
        DEMO_POLICY_EU: ("Brasserie Lipp", "Kronenhalle", "Le Cinq", "Borchardt"),
    },
    "Parking & Tolls": {
        DEMO_POLICY_US: ("SpotHero", "E-ZPass", "LAZ Parking"),
        DEMO_POLICY_EU: ("Indigo Parking", "Q-Park", "APCOA Parking"),
    },
    "Office Supplies": {
        DEMO_POLICY_US: ("Staples", "Office Depot", "Barnes &amp; Noble", "Amazon"),
        DEMO_POLICY_EU: ("Bureau Vallée", "Muji 無印良品", "Amazon.de", "Fnac"),
    },
    "Software": {
        DEMO_POLICY_US: ("Adobe", "Atlassian", "GitHub", "JetBrains", "Figma", "Zoom"),
        DEMO_POLICY_EU: ("Adobe", "Atlassian", "JetBrains", "Miro", "DeepL"),
    },
    "Training": {
        DEMO_POLICY_US: ("Coursera", "O'Reilly Media", "LinkedIn Learning",
                         "AICPA &amp; CIMA"),
        DEMO_POLICY_EU: ("Coursera", "O'Reilly Media", "ACCA", "Udemy"),
    },
    "Telecom": {
        DEMO_POLICY_US: ("AT&amp;T", "Verizon Wireless", "T-Mobile"),
        DEMO_POLICY_EU: ("Orange", "Swisscom", "Deutsche Telekom"),
    },
    "Conference Fees": {
        DEMO_POLICY_US: ("AICPA ENGAGE", "Gartner IT Symposium/Xpo", "Web Summit"),
        DEMO_POLICY_EU: ("Money20/20 Europe", "Web Summit", "VivaTech"),
    },
    "Books & Subscriptions": {
        DEMO_POLICY_US: ("The Wall Street Journal", "Harvard Business Review",
                         "Barnes &amp; Noble"),
        DEMO_POLICY_EU: ("Financial Times", "Les Échos", "Handelsblatt"),
    },
}  # fmt: skip
_OFFSITE_MERCHANTS = ("Lakeside Lodge &amp; Retreat", "Château de Vérines")

_COMMENTS = (
    "Dinner with client team (4 attendees)",
    'Working session re "Q4 close"',
    "Team's celebration lunch",
    "Client workshop, day 2",
    "Receipt lost; card statement attached",
    "Per diem cap applies",
    "Kick-off <prep> with PMO",
)

# Expensify's conversion into the report currency: units of report currency per unit.
_FX_TO = {
    "USD": {"EUR": "1.0842", "GBP": "1.2710", "CHF": "1.1320", "JPY": "0.006650",
            "CAD": "0.7210"},
    "EUR": {"USD": "0.9223", "GBP": "1.1723", "CHF": "1.0441", "JPY": "0.006134",
            "CAD": "0.6650"},
}  # fmt: skip
# IFS rates into USD by month offset from the demo month (-2 .. +0), plus a mid-month change.
_IFS_RATES = {
    "EUR": ("1.0815", "1.0797", "1.0842", "1.0868"),
    "GBP": ("1.2655", "1.2688", "1.2710", "1.2694"),
    "CHF": ("1.1290", "1.1305", "1.1320", "1.1347"),
}
# Quoted per ConvFactor units (IFS: USD for 100 JPY), with each currency's decimals in IFS.
_IFS_FACTOR_RATES = {
    "JPY": (100, ("0.6631", "0.6642", "0.6650", "0.6668")),
    "KWD": (1, ("3.2541", "3.2560", "3.2573", "3.2588")),
}
_IFS_CURRENCIES = [
    {"CurrencyCode": "JPY", "Decimals": 0, "ConvFactor": 100},
    {"CurrencyCode": "KWD", "Decimals": 3},
]
_YEN_PER_USD = Decimal("150.38")  # Expensify's conversion of the Tokyo report's amounts


# ---------------------------------------------------------------- helpers
def _month_bounds(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _ascii_slug(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _rate_number(rate: Decimal) -> float | int:
    # JSON has no decimal type. Rates have at most 6 decimals, so the float's shortest repr
    # is the exact decimal text, and every loader here parses it back as that Decimal.
    return int(rate) if rate == rate.to_integral_value() else float(rate)


def _convert(amount: int, rate: Decimal) -> int:
    return int((Decimal(amount) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass
class _Person:
    first: str
    last: str
    email: str
    employee_id: str
    policy: str
    cost_centre: str
    role: str = "user"
    submits_to: str = ""
    card_id: str = ""
    card_number: str = ""
    travel_weight: int = 1

    @property
    def home_currency(self) -> str:
        return "USD" if self.policy == DEMO_POLICY_US else "EUR"


@dataclass
class _Draft:
    """A report before IDs are assigned (IDs follow creation order, like Expensify's)."""

    person: _Person
    status: str
    created: datetime
    submitted: datetime | None
    approved: datetime | None
    reimbursed: datetime | None
    name: str
    lines: list[dict[str, Any]]
    fixed_id: str = ""


class _Builder:
    def __init__(self, seed: int, period: str) -> None:
        self.rng = Random(seed)
        self.year, self.month = _parse_period(period)
        self.month_start, self.month_end = _month_bounds(self.year, self.month)
        prev = _add_months(self.year, self.month, -1)
        self.prev_start, self.prev_end = _month_bounds(*prev)
        self.closed_office_last_day = date(self.year, self.month, _CLOSED_OFFICE_LAST_DAY)
        self.kestrel_start = date(self.year, self.month, _KESTREL_START_DAY)
        self.shift = self.year * 12 + self.month - 1 - _REFERENCE_MONTH
        self.people: list[_Person] = []

    # ------------------------------------------------ people
    def build_people(self) -> None:
        rng = self.rng
        names: set[tuple[str, str]] = set()
        emails: set[str] = set()
        number = 1000
        for policy, cc, count in _ROSTER:
            for i in range(count):
                for _ in range(1000):  # 3600 combinations for 150 people: ends quickly
                    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
                    if (first, last) not in names:
                        break
                names.add((first, last))
                local = f"{_ascii_slug(first)}.{_ascii_slug(last)}"
                email = f"{local}@{DEMO_DOMAIN}"
                suffix = 2
                while email in emails:
                    email = f"{local}{suffix}@{DEMO_DOMAIN}"
                    suffix += 1
                emails.add(email)
                number += rng.randint(1, 7)
                person = _Person(
                    first=first,
                    last=last,
                    email=email,
                    employee_id=f"E{number}",
                    policy=policy,
                    cost_centre=cc,
                    travel_weight=4 if cc in _CLIENT_FACING else 1,
                )
                if i == 0 or rng.random() < 0.4:
                    person.card_id = str(rng.randint(10_000_000, 99_999_999))
                    person.card_number = f"485932XXXXXX{rng.randint(0, 9999):04d}"
                self.people.append(person)
        self._assign_approvers()

    def _assign_approvers(self) -> None:
        # First of each cost centre manages it; managers report to their policy's executive,
        # whose own reports go to the CFO. Finance leads administer the policies.
        managers: dict[tuple[str, str], _Person] = {}
        for p in self.people:
            managers.setdefault((p.policy, p.cost_centre), p)
        cfo = managers[(DEMO_POLICY_US, "CC-300")]
        for p in self.people:
            manager = managers[(p.policy, p.cost_centre)]
            executive = managers.get((p.policy, "CC-400"), cfo)
            if p is cfo:
                p.submits_to = managers[(DEMO_POLICY_US, "CC-400")].email
            elif p is executive:
                p.submits_to = cfo.email
            elif p is manager:
                p.submits_to = executive.email
            else:
                p.submits_to = manager.email
            if p is managers[(p.policy, "CC-300")]:
                p.role = "admin"
        # An internal auditor can read every report.
        auditor = next(p for p in self.people if p.cost_centre == "CC-300" and p.role != "admin")
        auditor.role = "auditor"

    def admin_of(self, policy: str) -> _Person:
        return next(p for p in self.people if p.policy == policy and p.role == "admin")

    # ------------------------------------------------ dates
    def approval_time(self, first: date, last: date) -> datetime:
        rng = self.rng
        span = (last - first).days
        for _ in range(20):  # prefer working days, as approvers do
            day = first + timedelta(days=rng.randint(0, span))
            if day.weekday() < 5 or rng.random() < 0.12:
                break
        return datetime(
            day.year, day.month, day.day, rng.randint(7, 19), rng.randint(0, 59), rng.randint(0, 59)
        )

    def cost_centre_on(self, person: _Person, when: date) -> str:
        if person.cost_centre == CLOSED_OFFICE[0] and when > self.closed_office_last_day:
            return _CLOSED_OFFICE_SUCCESSOR
        return person.cost_centre

    def project_for(self, person: _Person, when: date) -> _ProjectDef:
        rng = self.rng
        if person.cost_centre not in _CLIENT_FACING or rng.random() < 0.15:
            return _PROJECTS[0]
        live = [p for p in _PROJECTS[1:] if p.enabled and self._project_valid(p, when)]
        return rng.choice(live)

    def _project_valid(self, project: _ProjectDef, when: date) -> bool:
        return self.project_start(project) <= when <= self.project_end(project)

    def project_start(self, project: _ProjectDef) -> date:
        if project.valid_from.startswith("start:"):
            return date(self.year, self.month, int(project.valid_from.split(":")[1]))
        return _shift_iso(project.valid_from, self.shift)

    def project_end(self, project: _ProjectDef) -> date:
        return _shift_iso(project.valid_until, self.shift)

    # ------------------------------------------------ lines
    def amount_in(self, low: int, high: int) -> int:
        cents = self.rng.randint(low, high)
        # Hotel and airline prices end in round-ish numbers more often than not.
        return cents - cents % 5 if self.rng.random() < 0.5 else cents

    def line(
        self,
        person: _Person,
        category: _CategoryDef,
        when: date,
        tag: str,
        *,
        home_value: int | None = None,
        currency: str | None = None,
        merchant: str | None = None,
        billable_ok: bool = False,
    ) -> dict[str, Any]:
        rng = self.rng
        home = person.home_currency
        value = (
            home_value if home_value is not None else self.amount_in(category.low, category.high)
        )
        currency = currency or home
        if currency == home:
            amount, converted, rate = value, value, Decimal(1)
        else:
            jitter = Decimal(1) + Decimal(rng.randint(-60, 60)) / Decimal(10000)
            rate = (Decimal(_FX_TO[home][currency]) * jitter).quantize(Decimal("0.000001"))
            amount = int((Decimal(value) / rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))
            if currency == "JPY":  # whole yen
                amount = int((Decimal(amount) / 100).quantize(Decimal(1), ROUND_HALF_UP)) * 100
            converted = _convert(amount, rate)
        card = bool(person.card_id) and category.card_ok and rng.random() < 0.7
        line: dict[str, Any] = {
            "transactionID": "",
            "merchant": merchant or self.merchant_for(category, person, None),
            "amount": amount,
            "currency": currency,
            "convertedAmount": converted,
            "currencyConversionRate": _rate_number(rate),
            "category": category.name,
            "categoryGlCode": category.gl,
            "tag": tag,
            "created": when.isoformat(),
            "inserted": _stamp(
                datetime(
                    when.year,
                    when.month,
                    when.day,
                    rng.randint(6, 23),
                    rng.randint(0, 59),
                    rng.randint(0, 59),
                )
            ),
            "reimbursable": not card,
            "billable": billable_ok and rng.random() < 0.6,
            "comment": rng.choice(_COMMENTS) if rng.random() < 0.08 else "",
        }
        if card:
            line["cardID"] = person.card_id
            line["cardNumber"] = person.card_number
            line["mcc"] = category.mcc
        if person.policy == DEMO_POLICY_EU and currency == "EUR":
            line.update(_eu_vat(category.name, amount))
        return line

    def merchant_for(self, category: _CategoryDef, person: _Person, city: str | None) -> str:
        # Mileage lines name their distance instead (mileage_line).
        rng = self.rng
        by_city = _CITY_MERCHANTS.get(category.name)
        if by_city is not None:
            return rng.choice(by_city[city or _HOME_CITY[person.policy]])
        return rng.choice(_MERCHANTS[category.name][person.policy])

    def mileage_line(self, person: _Person, when: date, tag: str) -> dict[str, Any]:
        category = _CAT["Mileage"]
        if person.policy == DEMO_POLICY_EU:
            km = self.rng.randint(12, 420)
            merchant, value = f"{km} km @ €0.30 / km", km * 30
            units = {"count": str(km), "rate": 30, "unit": "km"}
        else:
            tenths = self.rng.randint(50, 2600)
            merchant, value = f"{tenths / 10:.1f} mi @ $0.70 / mi", tenths * 7
            units = {"count": f"{tenths / 10:.1f}", "rate": 70, "unit": "mi"}
        line = self.line(
            person, category, when, tag, home_value=value, merchant=merchant, billable_ok=True
        )
        # Expensify's distance units: the row's Quantity on an account that demands one.
        line["units"] = units
        return line

    # ------------------------------------------------ reports
    def report(
        self,
        person: _Person,
        approved: datetime | None,
        *,
        status: str,
        lines_wanted: int,
        cost_centre: str | None = None,
    ) -> _Draft:
        rng = self.rng
        anchor = approved or datetime.combine(
            self.month_end - timedelta(days=rng.randint(0, 6)), datetime.min.time()
        ) + timedelta(hours=rng.randint(8, 18))
        submitted = anchor - timedelta(minutes=rng.randint(90, 7200))
        created = submitted - timedelta(days=rng.randint(0, 12), minutes=rng.randint(0, 600))
        last_expense = submitted.date()
        when_valid = (approved or anchor).date()
        cc = cost_centre or self.cost_centre_on(person, when_valid)
        project = self.project_for(person, when_valid)
        tag = f"{_CC_NAME[cc]}:{project.name}"
        billable_ok = project.code != "PRJ-0000"

        kind = rng.choices(("trip", "local", "monthly"), (40, 40, 20))[0]
        if lines_wanted >= 20:
            kind = "trip"
        lines: list[dict[str, Any]] = []
        if kind == "trip":
            city, currency = rng.choice(_DESTINATIONS[person.policy])
            nights = max(1, min(lines_wanted // 3, rng.randint(1, 5)))
            end = last_expense - timedelta(days=rng.randint(0, 3))
            start = end - timedelta(days=nights)
            name = f"{city} client visit" if billable_ok else f"{city} trip"
            airfare = self.line(
                person,
                _CAT["Airfare"],
                start - timedelta(days=rng.randint(3, 20)),
                tag,
                billable_ok=billable_ok,
            )
            lines.append(airfare)
            nightly = self.amount_in(_CAT["Lodging"].low, _CAT["Lodging"].high)
            lines.append(
                self.line(
                    person,
                    _CAT["Lodging"],
                    end,
                    tag,
                    home_value=nightly * nights,
                    currency=currency,
                    merchant=self.merchant_for(_CAT["Lodging"], person, city),
                    billable_ok=billable_ok,
                )
            )
            trip_cats = (
                ("Meals", 6),
                ("Ground Transport", 4),
                ("Client Entertainment", 1),
                ("Parking & Tolls", 1),
            )
            while len(lines) < lines_wanted:
                cat = _CAT[rng.choices([c for c, _ in trip_cats], [w for _, w in trip_cats])[0]]
                day = start + timedelta(days=rng.randint(0, nights))
                in_city = cat.name in _CITY_MERCHANTS
                lines.append(
                    self.line(
                        person,
                        cat,
                        day,
                        tag,
                        currency=currency if in_city else None,
                        merchant=self.merchant_for(cat, person, city if in_city else None),
                        billable_ok=billable_ok,
                    )
                )
        else:
            weights = (
                {
                    "Meals": 8,
                    "Ground Transport": 5,
                    "Parking & Tolls": 3,
                    "Client Entertainment": 2,
                    "Office Supplies": 3,
                    "Mileage": 3,
                }
                if kind == "local"
                else {
                    "Telecom": 4,
                    "Software": 4,
                    "Training": 2,
                    "Conference Fees": 1,
                    "Books & Subscriptions": 3,
                    "Mileage": 2,
                    "Office Supplies": 2,
                }
            )
            name = (
                f"{self.month_start:%B} expenses"
                if kind == "local"
                else f"{self.month_start:%B} subscriptions & training"
            )
            for _ in range(lines_wanted):
                cat = _CAT[rng.choices(list(weights), list(weights.values()))[0]]
                day = last_expense - timedelta(days=rng.randint(0, 20))
                if cat.name == "Mileage":
                    lines.append(self.mileage_line(person, day, tag))
                else:
                    lines.append(self.line(person, cat, day, tag, billable_ok=billable_ok))
        self._sprinkle(lines, tag, max(12, lines_wanted))
        if rng.random() < 0.05:
            name = f'{name} — "{project.name}" engagement'
        reimbursed = None
        if (
            status == "APPROVED"
            and approved is not None
            and rng.random() < 0.04
            and any(ln["reimbursable"] for ln in lines)
        ):
            status = "REIMBURSED"
            reimbursed = approved + timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 9))
        return _Draft(
            person=person,
            status=status,
            created=created,
            submitted=None if status == "OPEN" else submitted,
            approved=approved,
            reimbursed=reimbursed,
            name=name,
            lines=sorted(lines, key=lambda ln: ln["created"]),
        )

    def _sprinkle(self, lines: list[dict[str, Any]], tag: str, max_lines: int) -> None:
        """Some lines move to the internal project; some get refunded; a few are zero."""
        rng = self.rng
        extra: list[dict[str, Any]] = []
        cost_centre, project = tag.split(":")
        for ln in lines:
            roll = rng.random()
            if (
                roll < 0.025
                and ln["category"] in _REFUNDABLE
                and len(lines) + len(extra) < max_lines
            ):
                refund = dict(ln)
                share = rng.choice((Decimal(1), Decimal("0.5"), Decimal("0.25")))
                if ln["currency"] == "JPY":
                    share = Decimal(1)  # whole yen
                refund["amount"] = -int((Decimal(ln["amount"]) * share).quantize(Decimal(1)))
                refund["convertedAmount"] = -int(
                    (Decimal(ln["convertedAmount"]) * share).quantize(Decimal(1))
                )
                refund["comment"] = rng.choice(_REFUND_COMMENTS)
                extra.append(refund)
            elif roll < 0.04 and ln["category"] in ("Meals", "Lodging", "Ground Transport"):
                ln["amount"] = 0
                ln["convertedAmount"] = 0
                ln["comment"] = rng.choice(
                    ("Complimentary breakfast", "Points redemption", "Covered by client")
                )
            elif roll < 0.09 and project != "Internal":
                ln["tag"] = f"{cost_centre}:Internal"
                ln["billable"] = False
        lines.extend(extra)


_REFUNDABLE = frozenset({"Airfare", "Lodging", "Software", "Office Supplies", "Meals"})
_REFUND_COMMENTS = (
    "Refund: fare difference",
    "Refund: cancelled booking",
    "Credit: returned item",
    "Refund: overcharge",
)


def _draft_to_report(d: _Draft, report_id: str, policy_names: dict[str, str]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "reportID": report_id,
        "policyID": d.person.policy,
        "policyName": policy_names[d.person.policy],
        "reportName": d.name,
        "accountEmail": d.person.email,
        "managerEmail": d.person.submits_to,
        "currency": d.person.home_currency,
        "status": d.status,
        "created": _stamp(d.created),
        "submitted": _stamp(d.submitted) if d.submitted else "",
        "approved": _stamp(d.approved) if d.approved else None,
        "exportLabels": [],
        "transactionList": d.lines,
    }
    engagement = _engagement_of(d.lines)
    if engagement:
        report["customField"] = {DEMO_ENGAGEMENT_FIELD: engagement}
    if d.reimbursed is not None:
        report["reimbursed"] = _stamp(d.reimbursed)
    return report


def _engagement_code(project: _ProjectDef) -> str:
    return "ENG-" + project.code.removeprefix("PRJ-")


def _engagement_of(lines: list[dict[str, Any]]) -> str:
    """The engagement of a report with billable lines: its client project's (the project tag
    level of its first billable line); "" for a report billed to no client."""
    by_name = {p.name: p for p in _PROJECTS[1:]}
    for ln in lines:
        if ln.get("billable"):
            parts = str(ln.get("tag", "")).split(":")
            project = by_name.get(parts[1]) if len(parts) > 1 else None
            if project is not None:
                return _engagement_code(project)
    return ""


# ---------------------------------------------------------------- the generator
def build_demo_dataset(
    seed: int = DEMO_SEED,
    *,
    reports: int = DEMO_REPORTS,
    period: str = DEMO_PERIOD,
    as_of: date | None = None,
    submit_and_close: bool = False,
) -> dict[str, Any]:
    """The demo world as a raw JSON-able dict (design.md §3 shape). Same arguments, same dict.

    `reports` counts the reports of `period` the sync fetches (APPROVED or REIMBURSED, the
    attention cases included); about 5% more in OPEN or SUBMITTED state come on top and must
    not be fetched. With `as_of` in the month after `period`, that month is in progress:
    in_progress_count() more reports, approved on its days before `as_of`, all postable. The
    period's reports are the same with or without them. With `submit_and_close`, a third
    policy (DEMO_POLICY_SC, Submit and Close) has DEMO_SC_REPORTS closed reports submitted in
    the period; the other reports are the same with or without it.
    """
    if reports < 20:
        raise ValueError("the demo needs at least 20 reports (9 of them need attention)")
    b = _Builder(seed, period)
    rng = b.rng
    b.build_people()
    people = b.people
    normal_people = [p for p in people if p.cost_centre != NEW_LAB[0]]
    weights = [p.travel_weight for p in normal_people]

    drafts: list[_Draft] = []
    n_normal = reports - len(_ATTENTION_IDS)
    n_long = max(1, reports // 100)
    for i in range(n_normal):
        person = rng.choices(normal_people, weights)[0]
        approved = b.approval_time(b.month_start, b.month_end)
        if i < n_long:
            wanted = rng.randint(40, 60)
        else:
            wanted = rng.choices(range(1, 13), (9, 12, 14, 13, 11, 9, 8, 6, 5, 4, 3, 2))[0]
        drafts.append(b.report(person, approved, status="APPROVED", lines_wanted=wanted))
    _force_features(b, drafts)

    # Reports still with their owners or approvers: never fetched (they include traps: a
    # line no one could post, which must not show up anywhere).
    for i in range(max(2, reports // 40) * 2):
        person = rng.choice(people)
        draft = b.report(
            person, None, status="OPEN" if i % 2 else "SUBMITTED", lines_wanted=rng.randint(1, 6)
        )
        if i < 2:
            draft.lines[0]["category"] = UNMAPPED_CATEGORY
            draft.lines[0]["categoryGlCode"] = ""
        drafts.append(draft)

    drafts.extend(_attention_drafts(b))
    # Its own random stream, so the reports are the same with or without the card spend.
    cards = _unreported_card_spend(b, Random(f"{seed}:cards"))
    drafts.extend(_in_progress_drafts(b, Random(f"{seed}:in-progress"), reports, as_of))
    closed = _closed_drafts(b, Random(f"{seed}:submit-and-close")) if submit_and_close else []
    raw = _assemble(b, drafts + closed, cards)
    tokyo_report(raw, b.month_start, b.month_end)
    if submit_and_close:
        _as_submit_and_close(raw, {d.fixed_id for d in closed})
    return raw


def _closed_drafts(b: _Builder, rng: Random) -> list[_Draft]:
    """The field team's reports: closed on submission in the period, never approved. IDs of
    their own (52…), so the other reports' IDs do not move."""
    team = [p for p in b.people if p.policy == DEMO_POLICY_US and p.cost_centre != NEW_LAB[0]]
    saved, b.rng = b.rng, rng
    try:
        drafts = []
        next_id = 52_000_000
        for _ in range(DEMO_SC_REPORTS):
            person = rng.choice(team[:20])
            draft = b.report(person, None, status="ARCHIVED", lines_wanted=rng.randint(1, 5))
            next_id += rng.randint(7, 40)
            draft.fixed_id = str(next_id)
            drafts.append(draft)
        return drafts
    finally:
        b.rng = saved


def _as_submit_and_close(raw: dict[str, Any], report_ids: set[str]) -> None:
    """Move the field team's reports into the Submit-and-Close policy, and add the policy."""
    policies = raw["expensify"]["policies"]
    us = next(p for p in policies if p["id"] == DEMO_POLICY_US)
    members = set()
    for report in raw["expensify"]["reports"]:
        if report["reportID"] in report_ids:
            report.update(policyID=DEMO_POLICY_SC, policyName=f"{DEMO_FIRM} — Field Services")
            report["approved"] = None
            members.add(report["accountEmail"])
    policies.append(
        {
            **us,
            "id": DEMO_POLICY_SC,
            "name": f"{DEMO_FIRM} — Field Services",
            "approvalMode": "OPTIONAL",
            "employees": [{**e, "submitsTo": ""} for e in us["employees"] if e["email"] in members]
            + [e for e in us["employees"] if e["role"] == "admin"],
        }
    )


def in_progress_count(reports: int, period: str, as_of: date | None) -> int:
    """How many reports of the month after `period` are approved before `as_of`: the month's
    pace, for the days gone (none on its first day, none when `as_of` is elsewhere)."""
    year, month = _parse_period(period)
    first = date(*_add_months(year, month, 1), 1)
    if as_of is None or clock.month_start(as_of) != first:
        return 0
    return reports * (as_of - first).days // calendar.monthrange(year, month)[1]


def _in_progress_drafts(b: _Builder, rng: Random, reports: int, as_of: date | None) -> list[_Draft]:
    """This month so far: plain approved reports, approved before `as_of` (its own random
    stream, so the closing month's world does not change with the day)."""
    count = in_progress_count(reports, f"{b.year:04d}-{b.month:02d}", as_of)
    if not count or as_of is None:
        return []
    first = clock.month_start(as_of)
    last = as_of - timedelta(days=1)
    normal_people = [p for p in b.people if p.cost_centre != NEW_LAB[0]]
    weights = [p.travel_weight for p in normal_people]
    saved, b.rng = b.rng, rng
    try:
        drafts = []
        for _ in range(count):
            person = rng.choices(normal_people, weights)[0]
            approved = b.approval_time(first, last)
            wanted = rng.choices(range(1, 9), (9, 12, 14, 13, 11, 9, 8, 6))[0]
            drafts.append(b.report(person, approved, status="APPROVED", lines_wanted=wanted))
        return drafts
    finally:
        b.rng = saved


def _unreported_card_spend(b: _Builder, rng: Random) -> list[dict[str, Any]]:
    """Company-card expenses imported from the card feeds but on no report yet: DEMO_CARD_SPEND
    posted in the month (a refund, an HTML-entity merchant, one without a category and one in
    a category without GL code among them), plus what the month's window must leave out (two
    posted on the next month's first day, one deleted). Amounts use the reconciliation sign:
    a purchase is negative."""
    holders = [
        p for p in b.people if p.card_id and p.cost_centre not in (NEW_LAB[0], CLOSED_OFFICE[0])
    ]
    us = [p for p in holders if p.policy == DEMO_POLICY_US]
    eu = [p for p in holders if p.policy == DEMO_POLICY_EU]
    card_categories = [c for c in _CATEGORIES if c.card_ok and c.name != "Airfare"]
    txn = 7_182_900_000_000_000_000
    out: list[dict[str, Any]] = []
    total = DEMO_CARD_SPEND + 3
    for i in range(total):
        person = rng.choice(eu if i % 3 == 2 else us)
        category = rng.choice(card_categories)
        cents = rng.randint(category.low, min(category.high, 90000))
        if i < DEMO_CARD_SPEND:
            posted = b.month_start + timedelta(days=rng.randint(1, b.month_end.day - 1))
        else:
            posted = b.month_end + timedelta(days=1)  # next month: outside the window
        sale = posted - timedelta(days=rng.randint(0, 2))
        tagged = rng.random() < 0.7
        txn += rng.randint(1, 9999)
        line: dict[str, Any] = {
            "cardID": person.card_id,
            "cardName": f"Corporate {'Visa' if person.policy == DEMO_POLICY_US else 'Mastercard'}"
            f" …{person.card_number[-4:]}",
            "bank": _CARD_BANKS[person.policy],
            "owner": person.email,
            "maskedPAN": person.card_number,
            "transactionID": str(txn),
            "reportID": 0,
            "amount": -cents,
            "currency": person.home_currency,
            "posted": posted.isoformat(),
            "created": sale.isoformat(),
            "merchant": rng.choice(
                by_city[_HOME_CITY[person.policy]]
                if (by_city := _CITY_MERCHANTS.get(category.name))
                else _MERCHANTS[category.name][person.policy]
            ),
            "category": category.name,
            "tag": f"{_CC_NAME[person.cost_centre]}:Internal" if tagged else "",
            "reimbursable": False,
            "billable": False,
        }
        out.append(line)
    # The cases a month of card spend always has; fixed positions, so a test can find them.
    out[0].update(category="", tag="", comment="Not categorised yet")
    out[1].update(category=UNMAPPED_CATEGORY, merchant=_OFFSITE_MERCHANTS[0])
    out[4].update(merchant="Barnes &amp; Noble", category="Books & Subscriptions")
    refund = out[3]
    refund.update(amount=abs(refund["amount"]) // 2, comment="Refund: returned item")
    out[-1].update(reportID=-1, posted=out[5]["posted"], comment="Deleted: duplicate import")
    return out


def _force_features(b: _Builder, drafts: list[_Draft]) -> None:
    """Make sure even a small demo has every kind of line the sync must handle."""
    rng = b.rng
    # A report that is nothing but a refund: its total is negative.
    d = drafts[-1]
    refund = max(d.lines, key=lambda ln: ln["convertedAmount"])
    refund.update(
        amount=-abs(refund["amount"]) or -1500,
        convertedAmount=-abs(refund["convertedAmount"]) or -1500,
        comment="Refund: cancelled booking",
    )
    d.lines, d.name, d.status, d.reimbursed = [refund], "Refund — cancelled trip", "APPROVED", None
    d = drafts[-2]
    person = d.person
    tag = d.lines[0]["tag"]
    when = date.fromisoformat(d.lines[0]["created"])
    sample: list[dict[str, Any]] = []
    sample.append(b.line(person, _CAT["Meals"], when, tag, merchant="McDonald's"))
    sample.append(
        b.line(
            person,
            _CAT["Meals"],
            when,
            tag,
            merchant="Café de Flore",
            currency="EUR" if person.home_currency == "USD" else "USD",
        )
    )
    sample.append(b.line(person, _CAT["Office Supplies"], when, tag, merchant="Barnes &amp; Noble"))
    sample.append(b.line(person, _CAT["Meals"], when, tag, merchant="すし銀座", currency="JPY"))
    zero = b.line(person, _CAT["Meals"], when, tag, merchant="Hotel breakfast")
    zero.update(amount=0, convertedAmount=0, comment="Complimentary breakfast")
    sample.append(zero)
    refund = b.line(person, _CAT["Software"], when, tag, merchant="Atlassian")
    refund.update(
        amount=-refund["amount"],
        convertedAmount=-refund["convertedAmount"],
        comment="Refund: overcharge",
    )
    sample.append(refund)
    if not person.card_id:
        person.card_id = str(rng.randint(10_000_000, 99_999_999))
        person.card_number = f"485932XXXXXX{rng.randint(0, 9999):04d}"
    card = b.line(person, _CAT["Telecom"], when, tag, merchant="AT&amp;T")
    card.update(
        reimbursable=False,
        cardID=person.card_id,
        cardNumber=person.card_number,
        mcc=_CAT["Telecom"].mcc,
    )
    sample.append(card)
    d.lines = sorted(sample, key=lambda ln: ln["created"])
    d.name = f"{b.month_start:%B} expenses"


def _attention_drafts(b: _Builder) -> list[_Draft]:
    rng = b.rng
    out: list[_Draft] = []
    days = b.month_end.day

    new_lab = [p for p in b.people if p.cost_centre == NEW_LAB[0]]
    for i, rid in enumerate(_MISSING_CC_IDS):
        first = b.month_start + timedelta(days=(days * i) // 3)
        last = b.month_start + timedelta(days=(days * (i + 1)) // 3 - 1)
        d = b.report(
            new_lab[i % len(new_lab)],
            b.approval_time(first, last),
            status="APPROVED",
            lines_wanted=rng.randint(2, 6),
            cost_centre=NEW_LAB[0],
        )
        d.status, d.reimbursed, d.fixed_id = "APPROVED", None, rid
        out.append(d)

    hartford = [p for p in b.people if p.cost_centre == CLOSED_OFFICE[0]]
    for i, rid in enumerate(_EXPIRED_CC_IDS):
        # Spent before the office closed, approved after: the code is no longer valid.
        first = b.closed_office_last_day + timedelta(days=2)
        approved = b.approval_time(first, b.month_end)
        d = b.report(
            hartford[i],
            approved,
            status="APPROVED",
            lines_wanted=rng.randint(2, 5),
            cost_centre=CLOSED_OFFICE[0],
        )
        for ln in d.lines:
            if ln["created"] > b.closed_office_last_day.isoformat():
                ln["created"] = (
                    b.closed_office_last_day - timedelta(days=rng.randint(0, 4))
                ).isoformat()
        d.status, d.reimbursed, d.fixed_id = "APPROVED", None, rid
        out.append(d)

    planners = [p for p in b.people if p.cost_centre in ("CC-310", "CC-240")]
    for i, rid in enumerate(_UNMAPPED_IDS):
        person = next(p for p in planners if p.policy == (DEMO_POLICY_US, DEMO_POLICY_EU)[i])
        approved = b.approval_time(b.month_start + timedelta(days=3), b.month_end)
        d = b.report(person, approved, status="APPROVED", lines_wanted=rng.randint(1, 4))
        tag = d.lines[0]["tag"]
        for j in range(rng.randint(1, 2)):
            when = date.fromisoformat(d.lines[-1]["created"])
            d.lines.append(
                b.line(person, _OFFSITE, when, tag, merchant=_OFFSITE_MERCHANTS[(i + j) % 2])
            )
        d.name = "Team offsite"
        d.status, d.reimbursed, d.fixed_id = "APPROVED", None, rid
        out.append(d)

    us_staff = [
        p
        for p in b.people
        if p.policy == DEMO_POLICY_US and p.cost_centre in ("CC-100", "CC-110", "CC-120", "CC-130")
    ]
    for i, rid in enumerate(_CLOSED_PERIOD_IDS):
        first = b.prev_end - timedelta(days=3 - i)
        approved = b.approval_time(first, first)
        d = b.report(
            rng.choice(us_staff),
            approved,
            status="APPROVED",
            lines_wanted=rng.randint(1, 5),
        )
        d.status, d.reimbursed, d.fixed_id = "APPROVED", None, rid
        out.append(d)
    return out


def _assemble(
    b: _Builder, drafts: list[_Draft], cards: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    rng = b.rng
    policy_names = {DEMO_POLICY_US: f"{DEMO_FIRM} — US", DEMO_POLICY_EU: f"{DEMO_FIRM} — Europe"}
    # Report IDs grow with creation time, as Expensify's do; the attention reports keep theirs.
    next_id = 51_000_000
    ids: dict[int, str] = {}
    for index, d in sorted(enumerate(drafts), key=lambda pair: pair[1].created):
        if d.fixed_id:
            ids[index] = d.fixed_id
            continue
        next_id += rng.randint(3, 150)
        while str(next_id) in _ATTENTION_IDS:
            next_id += 1
        ids[index] = str(next_id)
    ordered = sorted(range(len(drafts)), key=lambda i: int(ids[i]))
    txn = 7_182_300_000_000_000_000
    reports: list[dict[str, Any]] = []
    for i in ordered:
        for ln in drafts[i].lines:
            txn += rng.randint(1, 9999)
            ln["transactionID"] = str(txn)
        reports.append(_draft_to_report(drafts[i], ids[i], policy_names))

    return dataset_with_demo_logins(
        policies=[_policy(b, pid, policy_names[pid]) for pid in (DEMO_POLICY_US, DEMO_POLICY_EU)],
        reports=reports,
        companies=[_company(b)],
        card_transactions=cards or [],
    )


def dataset_with_demo_logins(
    *,
    policies: list[dict[str, Any]],
    reports: list[dict[str, Any]],
    companies: list[dict[str, Any]],
    card_transactions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A raw dataset whose two simulators accept the demo logins (the DEMO_* partner
    credentials, IFS realm and client), so `ml-console init --demo`'s config reaches it.
    Card transactions are left out unless given."""
    expensify: dict[str, Any] = {
        "credentials": [
            {
                "partnerUserID": DEMO_EXPENSIFY_USER_ID,
                "partnerUserSecret": DEMO_EXPENSIFY_SECRET,
            }
        ],
        "policies": policies,
        "reports": reports,
    }
    if card_transactions is not None:
        expensify["cardTransactions"] = card_transactions
    return {
        "expensify": expensify,
        "ifs": {
            "realm": DEMO_REALM,
            "clients": [{"client_id": DEMO_IFS_CLIENT_ID, "client_secret": DEMO_IFS_SECRET}],
            "token_lifetime_s": 3600,
            "companies": companies,
        },
    }


def tokyo_report(raw: dict[str, Any], first: date, last: date) -> str | None:
    """Move one US report of the month to the Tokyo desk (DEMO_POLICY_JP), in yen: the first,
    by ID, approved in [first, last] with 3 to 6 lines, none of them a card line. Its lines
    become whole yen at _YEN_PER_USD (Expensify's hundredths: ¥1,500 is 150000). Returns the
    report's ID (None in a world too small to have such a report). Deterministic, and no
    other report changes."""
    exp = raw["expensify"]
    reports = exp["reports"]
    chosen = next(
        (
            r
            for r in sorted(reports, key=lambda r: int(r["reportID"]))
            if r["policyID"] == DEMO_POLICY_US
            and r["status"] == "APPROVED"
            and r["reportID"] not in _ATTENTION_IDS
            and first.isoformat() <= (r["approved"] or "")[:10] <= last.isoformat()
            and 3 <= len(r["transactionList"]) <= 6
            and all(ln["reimbursable"] for ln in r["transactionList"])
        ),
        None,
    )
    if chosen is None:
        return None
    for ln in chosen["transactionList"]:
        yen = (Decimal(ln["convertedAmount"]) / 100 * _YEN_PER_USD).quantize(
            Decimal(1), ROUND_HALF_UP
        )
        ln.update(currency="JPY", amount=int(yen) * 100, convertedAmount=int(yen) * 100)
        ln["currencyConversionRate"] = 1
    chosen.update(
        policyID=DEMO_POLICY_JP,
        policyName=f"{DEMO_FIRM} — Tokyo",
        currency="JPY",
    )
    us = next(p for p in exp["policies"] if p["id"] == DEMO_POLICY_US)
    employee = next(e for e in us["employees"] if e["email"] == chosen["accountEmail"])
    tokyo = {
        **json.loads(json.dumps(us)),
        "id": DEMO_POLICY_JP,
        "name": f"{DEMO_FIRM} — Tokyo",
        "outputCurrency": "JPY",
        "employees": [dict(employee)],
    }
    exp["policies"].append(tokyo)
    return str(chosen["reportID"])


def _policy(b: _Builder, policy_id: str, name: str) -> dict[str, Any]:
    region = "US" if policy_id == DEMO_POLICY_US else "EU"
    categories = [{"name": c.name, "glCode": c.gl, "enabled": True} for c in _CATEGORIES]
    categories.append({"name": _OFFSITE.name, "glCode": "", "enabled": True})
    categories += [{"name": n, "glCode": gl, "enabled": False} for n, gl in _DISABLED_CATEGORIES]
    centres = [
        {"name": cc_name, "glCode": code, "enabled": True}
        for code, cc_name, where in _COST_CENTRES
        if where in (region, "both")
    ]
    projects = [{"name": p.name, "glCode": p.code, "enabled": p.enabled} for p in _PROJECTS]
    employees = [
        {
            "email": p.email,
            "role": p.role,
            "submitsTo": p.submits_to,
            "firstName": p.first,
            "lastName": p.last,
            "employeeID": p.employee_id,  # Custom Field 1 in Expensify
            "customField2": p.cost_centre,  # the employee's home cost centre
        }
        for p in b.people
        if p.policy == policy_id
    ]
    return {
        "id": policy_id,
        "name": name,
        "outputCurrency": "USD" if policy_id == DEMO_POLICY_US else "EUR",
        "type": "corporate",
        "owner": b.admin_of(policy_id).email,
        "role": "admin",
        "categories": categories,
        "tags": [{"name": "Cost Center", "tags": centres}, {"name": "Project", "tags": projects}],
        "employees": employees,
    }


def _company(b: _Builder) -> dict[str, Any]:
    forever = ("2020-01-01", "2099-12-31")

    def value(part: str, code: str, text: str, valid: tuple[str, str] = forever) -> dict[str, Any]:
        return {
            "CodePart": part,
            "CodePartValue": code,
            "Description": text,
            "ValidFrom": valid[0],
            "ValidUntil": valid[1],
        }

    values = [value("A", c.gl, c.name) for c in _CATEGORIES]
    values += [value("A", gl, n) for n, gl in _DISABLED_CATEGORIES]
    values += [
        value("A", "1910", "Cash at bank"),
        value("A", "2410", "Accounts payable"),
        value("A", DEMO_ACCRUED_EXPENSES_ACCOUNT, "Accrued expenses – employee reimbursements"),
        value("A", DEMO_CARD_CLEARING_ACCOUNT, "Corporate card clearing"),
        value("A", DEMO_INPUT_VAT_ACCOUNT, "Input VAT"),
        value("A", "4010", "Fee revenue"),
    ]
    for code, cc_name, _ in _COST_CENTRES:
        if code == NEW_LAB[0]:
            continue  # set up in Expensify, not yet in IFS
        until = b.closed_office_last_day.isoformat() if code == CLOSED_OFFICE[0] else forever[1]
        values.append(value("B", code, cc_name, ("2020-01-01", until)))
    for p in _PROJECTS:
        valid = (b.project_start(p).isoformat(), b.project_end(p).isoformat())
        values.append(value("C", p.code, p.name, valid))
    # Engagements (code part D, from the report field) are valid whenever the client is.
    values += [value("D", _engagement_code(p), f"{p.name} engagement") for p in _PROJECTS[1:]]

    periods = []
    for offset in (-2, -1, 0, 1):
        y, m = _add_months(b.year, b.month, offset)
        first, last = _month_bounds(y, m)
        periods.append(
            {
                "AccountingYear": y,
                "AccountingPeriod": m,
                "DateFrom": first.isoformat(),
                "DateUntil": last.isoformat(),
                "PeriodStatus": "Closed" if offset == -1 else "Open",
                "Description": f"{first:%B %Y}",
            }
        )
    rates = []
    quoted = {c: (1, series) for c, series in _IFS_RATES.items()} | _IFS_FACTOR_RATES
    for currency, (factor, series) in quoted.items():
        starts = [date(*_add_months(b.year, b.month, off), 1) for off in (-2, -1, 0)]
        starts.append(date(b.year, b.month, 16))
        for start, rate in zip(starts, series, strict=True):
            row: dict[str, Any] = {
                "CurrencyCode": currency,
                "ValidFrom": start.isoformat(),
                "CurrencyRate": _rate_number(Decimal(rate)),
                "CurrencyType": "1",
            }
            if factor != 1:
                row["ConvFactor"] = factor
            rates.append(row)
    return {
        "Company": DEMO_COMPANY,
        "Name": f"{DEMO_FIRM} LLC",
        "CurrencyCode": "USD",
        "code_part_values": values,
        "periods": periods,
        "currency_rates": rates,
        "currencies": [dict(c) for c in _IFS_CURRENCIES],
        "voucher_types": [
            {"VoucherType": DEMO_POSTING["voucher_type"], "Description": "Manual accruals"}
        ],
        "tax_codes": [
            {
                "FeeCode": code,
                "FeeRate": rate,
                "Description": text,
                "Account": DEMO_INPUT_VAT_ACCOUNT,
            }
            for code, rate, text in DEMO_TAX_CODES
        ],
    }


def demo_dataset(
    seed: int = DEMO_SEED, *, reports: int = DEMO_REPORTS, as_of: date | None = None
) -> Dataset:
    """The demo world as of a day (default: the console's today), parsed: the month before
    it closing, its own month in progress. A fresh Dataset each call (simulators change it)."""
    day = as_of or clock.today()
    period = clock.previous_period(day)
    raw = build_demo_dataset(seed, reports=reports, period=period, as_of=day, submit_and_close=True)
    return parse_dataset(raw, "demo dataset")


def dumps_dataset(raw: dict[str, Any], indent: int | None = None) -> str:
    """The dataset as JSON text; non-ASCII kept as is (UTF-8), key order as built."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return json.dumps(raw, ensure_ascii=False, indent=indent, separators=separators)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m console.sim.demo",
        description="Write the deterministic demo dataset (JSON, UTF-8) to stdout or a file.",
    )
    parser.add_argument(
        "--reports",
        type=int,
        default=DEMO_REPORTS,
        help="reports the sync fetches (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=DEMO_SEED)
    when = parser.add_mutually_exclusive_group()
    when.add_argument(
        "--as-of",
        type=clock.parse_as_of,
        help="the world as on this day: the month before closing, its own in progress "
        "(default: today, or ML_CONSOLE_AS_OF)",
    )
    when.add_argument("--period", help="YYYY-MM of the approvals (no month in progress)")
    parser.add_argument("--indent", type=int, default=None, help="pretty-print with N spaces")
    parser.add_argument("--output", "-o", help="file to write (default stdout)")
    args = parser.parse_args(argv)
    try:
        if args.period:
            raw = build_demo_dataset(args.seed, reports=args.reports, period=args.period)
        else:
            day = args.as_of or clock.today()
            period = clock.previous_period(day)
            raw = build_demo_dataset(
                args.seed, reports=args.reports, period=period, as_of=day, submit_and_close=True
            )
    except ValueError as err:
        parser.error(str(err))
    data = (dumps_dataset(raw, args.indent) + "\n").encode("utf-8")
    if args.output:
        with open(args.output, "wb") as fh:
            fh.write(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
