"""The needs list (console/ifs/needs.py) and what the client really sends cannot drift apart.

Every request the IFS client sends while a real cycle posts the small world's vouchers, and
while it looks vouchers up (hold table and GL), reads headers for adopt, posts a `$batch` of
vouchers and removes a temporary voucher a broken change set left behind, is recorded on the
wire. Every projection, entity set, key, filtered, ordered or selected attribute, body field,
navigation and bound action in those requests must be in the list `ml-console ifs check`
proves; what the client reads back (its models' fields) must be too; and every name in the
list must be one IFS's 21R1 model defines, with a type the list accepts (the assumed GL
projection aside)."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest

from console import clock, money
from console.errors import UnknownOutcome
from console.ifs import needs as nd
from console.ifs.client import PROJECTION_ROOT, IfsEntitySets, forget_metadata
from console.ifs.models import AccountingPeriod, CodePartValue, CurrencyRate, Voucher, VoucherRow
from console.ifs.preflight import ENUM_OR_TEXT, ProjectionNeed
from console.sim import batch as sim_batch
from tests.close.helpers import engine_on
from tests.conftest import sim_control

NAMES = json.loads((Path(__file__).parents[1] / "data" / "ifs_21r1_names.json").read_text())
_WORDS = {"eq", "ne", "gt", "ge", "lt", "le", "and", "or", "not", "startswith", "contains"}
_WORDS |= {"true", "false", "null", "asc", "desc"}
_SEGMENT = re.compile(r"^([\w.$]+?)(?:\((.*)\))?$")


class Used:
    """What the client's requests name, per (projection, entity-set path)."""

    def __init__(self) -> None:
        self.attributes: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.navigations: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.actions: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.requests = 0

    def take(self, request: httpx.Request) -> None:
        path = urlsplit(str(request.url)).path
        if PROJECTION_ROOT not in path:
            return  # the token endpoint
        self.requests += 1
        projection, _, rest = path.split(PROJECTION_ROOT, 1)[1].partition(".svc/")
        if rest == "$batch":
            items = sim_batch.parse_batch(request.content, request.headers["content-type"])
            for item in items:
                parts = item.requests if isinstance(item, sim_batch.ChangeSet) else [item]
                created: dict[str, str] = {}  # Content-ID -> the set it created
                for part in parts:
                    set_path = self.target(projection, part.target, part.body, created)
                    if part.content_id and set_path:
                        created[part.content_id] = set_path
            return
        query = urlsplit(str(request.url)).query
        self.target(projection, unquote(rest) + ("?" + query if query else ""), request.content)

    def target(
        self, projection: str, target: str, body: bytes, created: dict[str, str] | None = None
    ) -> str:
        """Record one request `target` (relative to the service root); the set path it
        addresses."""
        path, _, query = target.partition("?")
        set_path = ""
        for segment in unquote(path).split("/"):
            if segment.startswith("$") and segment != "$metadata" and created is not None:
                set_path = created[segment[1:]]
                continue
            m = _SEGMENT.match(segment)
            assert m, segment
            name, keys = m.groups()
            if name.startswith("IfsApp."):
                self.actions[(projection, set_path)].add(name.rsplit(".", 1)[1])
                continue
            if set_path:
                self.navigations[(projection, set_path)].add(name)
                set_path = f"{set_path}/{name}"
            else:
                set_path = name
            for pair in re.split(r",(?=\w+=)", keys or ""):
                if pair:
                    self.attributes[(projection, set_path)].add(pair.split("=", 1)[0])
        for option, value in parse_qsl(query):
            self.attributes[(projection, set_path)] |= _names(option, value)
        if body.strip() and body.strip() != b"{}":
            data = money.loads(body)
            self.attributes[(projection, set_path)] |= set(data)
        return set_path


def _names(option: str, value: str) -> set[str]:
    if option == "$filter":
        text = re.sub(r"'(?:[^']|'')*'", "", value)
        return {w for w in re.findall(r"[A-Za-z_]\w*", text) if w.lower() not in _WORDS}
    if option in ("$orderby", "$select"):
        return {item.split()[0] for item in value.split(",") if item.strip()}
    return set()


def _needs_by_path() -> dict[tuple[str, str], tuple[ProjectionNeed, Any]]:
    out = {}
    for need in nd.tenant_needs():
        for es in need.entity_sets:
            out[(need.projection, es.entity_set)] = (need, es)
    return out


@pytest.fixture
def used(small_sims: Any, tmp_path: Path) -> Used:
    """The requests of a posting cycle and of every lookup, as the client sent them."""
    forget_metadata()
    engine = engine_on(small_sims, tmp_path / "console")
    seen = Used()
    engine.ifs._http.event_hooks["request"].append(seen.take)
    try:
        summary = engine.run_cycle()
        assert summary.posted == 3
        ifs = engine.ifs
        ifs.company_currency("10")
        reference = summary.plan.vouchers[0].reference_number  # type: ignore[union-attr]
        day = clock.today()
        ifs.vouchers_dated("10", "EXP:", day - timedelta(days=60), day)
        ifs.vouchers_with_prefix("EXP:", "10")
        sim_control(small_sims.ifs_url, "update-gl", "POST")
        assert ifs.find_vouchers(reference, "10"), "not found in the GL"
        body = {
            "Company": "10",
            "VoucherType": "X",
            "VoucherDate": day.isoformat(),
            "ReferenceNumber": "EXP:needs:1",
            "Text": "needs",
            "VoucherRowArray": [
                {
                    "RowNo": 1,
                    "Account": "6110",
                    "CodeB": "CC-100",
                    "CodeC": "PRJ-1001",
                    "CurrencyCode": "USD",
                    "CurrencyRate": Decimal(1),
                    "CurrencyDebetAmount": Decimal("5.00"),
                    "DebetAmount": Decimal("5.00"),
                    "Quantity": Decimal(1),
                    "Text": "d",
                },
                {
                    "RowNo": 2,
                    "Account": "2930",
                    "CurrencyCode": "USD",
                    "CurrencyRate": Decimal(1),
                    "CurrencyCreditAmount": Decimal("5.00"),
                    "CreditAmount": Decimal("5.00"),
                    "Text": "c",
                },
            ],
        }
        assert [r.outcome for r in ifs.post_vouchers_batch([body])] == ["posted"]
        # A change set broken after the temporary voucher and a row: one is left behind.
        sim_control(small_sims.ifs_url, "batch-break", "POST", {"after_parts": 2})
        with pytest.raises(UnknownOutcome):
            ifs.post_voucher({**body, "ReferenceNumber": "EXP:needs:2"})
        assert ifs.discard_temp_vouchers("EXP:needs:2", "10") == 1
    finally:
        engine.close()
    return seen


def test_every_name_the_client_sends_is_in_the_needs_list(used: Used) -> None:
    assert used.requests > 10
    known = _needs_by_path()
    for key, names in used.attributes.items():
        assert key in known, f"{key} is used but no need covers it"
        _need, es = known[key]
        assert names <= set(es.attributes), (key, sorted(names - set(es.attributes)))
    for key, navs in used.navigations.items():
        assert navs <= set(known[key][1].navigations), (key, navs)
    for key, actions in used.actions.items():
        assert actions <= set(known[key][1].actions), (key, actions)
    # The cycle and the lookups used every projection the list names, and both actions.
    assert {p for p, _ in used.attributes} == set(nd.projections(nd.tenant_needs()))
    assert used.actions[("VoucherEntryAssistantHandling", "VoucherSet")] == set(nd.VOUCHER_ACTIONS)


def test_what_the_client_reads_back_is_in_the_needs_list() -> None:
    row_fields = set(VoucherRow.model_fields)
    assert row_fields <= set(nd.VOUCHER_ROW_READ)
    assert row_fields <= set(nd.VOUCHER_POSTING)
    header = set(Voucher.model_fields) - {"VoucherRowArray", "in_gl", "Text"}
    assert header <= set(nd.VOUCHER_ROW_READ)  # a voucher is read back from its rows
    assert header - {"VoucherNo", "ReferenceNumber"} <= set(nd.VOUCHER_ENTRY)
    assert {"VoucherText2"} <= set(nd.HOLD_VOUCHER)  # the header text, for adopt
    value = set(CodePartValue.model_fields) - {"CodePart", "CodePartValue", "demands"}
    assert value <= set(nd.ACCOUNT)
    account_only = {"ReqQuantity", "ReqText", "TaxCodeMandatory", "TaxHandlingValue"}
    assert all(value - account_only <= set(nd.code_part_value(c)) for c in "BJ")
    assert set(AccountingPeriod.model_fields) - {"PeriodStatus"} <= set(nd.PERIOD)
    assert "PeriodStatus" in nd.USER_GROUP_PERIOD
    expanded = {"CurrencyRounding", "RefCurrencyRounding"}  # from CurrencyCodeRef
    assert set(CurrencyRate.model_fields) - {"Inverted"} - expanded <= set(nd.CURRENCY_RATE)
    assert {"Inverted", "TypeDefault", "RefCurrencyCode"} <= set(nd.CURRENCY_TYPE)
    assert "CurrencyRounding" in nd.CURRENCY_CODE


_IFS_TYPES = {
    "text": {"Text"},
    "number": {"Number"},
    "date": {"Date", "Timestamp"},
    "boolean": {"Boolean"},
    ENUM_OR_TEXT: {"Enumeration", "Text"},
}


def test_every_need_is_a_name_ifs_21r1_defines() -> None:
    projections = NAMES["projections"]
    for need in nd.tenant_needs():
        if need.assumed:
            assert need.projection not in projections  # GENLED's: not in ACCRUL's files
            continue
        model = projections[need.projection]
        for es in need.entity_sets:
            set_name, *navs = es.entity_set.split("/")
            type_name = model["entity_sets"][set_name]
            for nav in navs:
                t = model["types"][type_name]
                type_name = {**t["arrays"], **t.get("references", {})}[nav]
            t = model["types"][type_name]
            for attr, family in es.attributes.items():
                ifs_type = t["attributes"].get(attr)
                assert ifs_type is not None, (need.projection, type_name, attr)
                assert ifs_type.split("(")[0] in _IFS_TYPES[family], (type_name, attr, ifs_type)
            for nav in es.navigations:
                assert nav in t["arrays"] or nav in t.get("references", {}), (type_name, nav)
            for action in es.actions:
                entity, _, name = action.partition("_")
                assert entity == type_name and name in t["actions"], action


def test_a_renamed_entity_set_is_looked_for_where_the_client_sends() -> None:
    renamed = IfsEntitySets(
        currency_rates="CurrencyRates2Handling.svc/RateSet",
        voucher_entry="VoucherEntryAssistantV2Handling.svc/VoucherSet",
    )
    needs = {n.config_key: n for n in nd.tenant_needs(renamed)}
    rates = needs["ifs.entity_sets.currency_rates"]
    assert rates.projection == "CurrencyRates2Handling"
    assert [es.entity_set for es in rates.entity_sets] == ["RateSet", "RateSet/CurrencyCodeRef"]
    # The rate types keep their own projection: one need, one config key each.
    assert needs["ifs.entity_sets.currency_types"].projection == "CurrencyRatesHandling"
    entry = needs["ifs.entity_sets.voucher_entry"]
    assert entry.namespace == "IfsApp.VoucherEntryAssistantV2Handling"
    assert len(nd.projections(list(needs.values()))) == 9
