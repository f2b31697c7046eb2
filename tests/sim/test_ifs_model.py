"""The simulator speaks IFS's own 21R1 names, and the client asks only for those.

tests/data/ifs_21r1_names.json lists what IFS's ACCRUL model files define (extracted by
tests/data/extract_ifs_names.py); the GENLED projection is not in them and is marked assumed.
"""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal
from pathlib import Path

import httpx

from console.ifs.client import IfsClient
from console.sim import batch as sim_batch
from console.sim import ifs_model as im

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clients.conftest import ifs_creds, ifs_world, running_ifs

NAMES = json.loads((Path(__file__).parents[1] / "data" / "ifs_21r1_names.json").read_text())
PROJECTIONS = NAMES["projections"]


def _type(projection: str, name: str) -> dict:
    return PROJECTIONS[projection]["types"][name]


def test_the_model_names_only_what_ifs_defines() -> None:
    for p in im.PROJECTIONS.values():
        if p.name in im.ASSUMED:
            continue
        real = PROJECTIONS[p.name]
        for set_name, entity in p.sets.items():
            assert real["entity_sets"][set_name] == entity.name, (p.name, set_name)
        for entity in p.types:
            t = _type(p.name, entity.name)
            assert list(entity.key) == t["keys"] or set(entity.key) == set(t["keys"]), entity.name
            missing = [a for a in entity.names if a not in t["attributes"]]
            assert not missing, (p.name, entity.name, missing)
            for nav in entity.navigations:
                navigations = {**t["arrays"], **t.get("references", {})}
                assert navigations[nav.name] == nav.target, (p.name, nav.name)
        for action in p.actions:
            entity = p.sets[action.entity_set]
            assert action.name in _type(p.name, entity.name)["actions"], action


def test_metadata_and_service_document_come_from_the_model() -> None:
    with running_ifs(rate_limit_per_minute=None) as sim:
        client = IfsClient(sim.url, ifs_world()["realm"], ifs_creds)
        token = client.token.get()
        for p in im.PROJECTIONS.values():
            root = f"{sim.url}/main/ifsapplications/projection/v1/{p.name}.svc"
            headers = {"Authorization": f"Bearer {token}"}
            xml = httpx.get(root + "/$metadata", headers=headers).text
            assert xml == im.metadata(p)
            for set_name, entity in p.sets.items():
                assert (
                    f'<EntitySet Name="{set_name}" EntityType="IfsApp.{p.name}.{entity.name}"/>'
                    in xml
                )
            for a in p.actions:
                assert f'<Action Name="{p.sets[a.entity_set].name}_{a.name}" IsBound="true">' in xml
            doc = httpx.get(root + "/", headers=headers).json()
            assert [v["name"] for v in doc["value"]] == list(p.sets)
        client.close()


def _known(path: str) -> None:
    m = re.search(r"/projection/v1/(\w+)\.svc/(.*)$", path)
    assert m, path
    projection, rest = m.groups()
    if projection in im.ASSUMED:
        return
    assert projection in PROJECTIONS, path
    if rest == "$batch":
        return
    set_name = re.match(r"\w+", rest)
    assert set_name and set_name.group(0) in PROJECTIONS[projection]["entity_sets"], path


def test_every_request_the_client_sends_names_what_ifs_defines() -> None:
    with running_ifs(rate_limit_per_minute=None) as sim:
        client = IfsClient(sim.url, ifs_world()["realm"], ifs_creds)
        company = ifs_world()["companies"][0]["Company"]
        client.code_part_values(company)
        client.periods(company)
        client.currency_rates(company)
        body = {
            "Company": company, "VoucherType": "X", "VoucherDate": "2026-11-10",
            "ReferenceNumber": "EXP:1:a", "Text": "report 1",
            "VoucherRowArray": [
                {"RowNo": 1, "Account": "6110", "CurrencyCode": "USD", "CurrencyRate": Decimal(1),
                 "CurrencyDebetAmount": Decimal("5.00"), "DebetAmount": Decimal("5.00"), "Text": "d"},
                {"RowNo": 2, "Account": "2930", "CurrencyCode": "USD", "CurrencyRate": Decimal(1),
                 "CurrencyCreditAmount": Decimal("5.00"), "CreditAmount": Decimal("5.00"), "Text": "c"},
            ],
        }  # fmt: skip
        client.post_voucher(body)
        client.find_vouchers("EXP:1:a", company)
        client.vouchers_with_prefix("EXP:", company)
        client.discard_temp_vouchers("EXP:1:a", company)
        for route in sim.requests()["by_route"]:
            if "/projection/v1/" in route["path"]:
                _known(route["path"])
        # The parts inside the voucher's $batch name the assistant's set, array and action.
        wire, content_type, parts = __import__(
            "console.ifs.batch", fromlist=["x"]
        ).build_voucher_batch([body], client._wire)
        (changeset,) = sim_batch.parse_batch(wire, content_type)
        targets = [r.target for r in changeset.requests]  # type: ignore[union-attr]
        va = _type("VoucherEntryAssistantHandling", "VoucherEntry")
        assert targets[0] == "VoucherSet"
        assert all(t == "$1/VoucherPostingArray" for t in targets[1:-1])
        assert "VoucherPostingArray" in va["arrays"] and "CreateVoucher" in va["actions"]
        assert targets[-1] == "$1/IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher"
        assert changeset.requests[-1].headers["if-match"] == "$1"  # type: ignore[union-attr]
        assert parts == 4
        client.close()
