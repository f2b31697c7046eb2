"""The voucher assistant's flow on the simulator: If-Match on CreateVoucher, a temporary
voucher left by a broken change set, and vouchers that moved to the GL."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from console.errors import UnknownOutcome
from console.ifs.client import IfsClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clients.conftest import ifs_creds, ifs_world, running_ifs

CO = ifs_world()["companies"][0]["Company"]


def _body(ref: str) -> dict:
    return {
        "Company": CO, "VoucherType": "X", "VoucherDate": "2026-11-10",
        "ReferenceNumber": ref, "Text": "report",
        "VoucherRowArray": [
            {"RowNo": 1, "Account": "6110", "CurrencyCode": "USD", "CurrencyRate": Decimal(1),
             "CurrencyDebetAmount": Decimal("5.00"), "DebetAmount": Decimal("5.00"), "Text": "d"},
            {"RowNo": 2, "Account": "2930", "CurrencyCode": "USD", "CurrencyRate": Decimal(1),
             "CurrencyCreditAmount": Decimal("5.00"), "CreditAmount": Decimal("5.00"), "Text": "c"},
        ],
    }  # fmt: skip


def test_create_voucher_needs_the_current_etag() -> None:
    with running_ifs(rate_limit_per_minute=None) as sim:
        client = IfsClient(sim.url, ifs_world()["realm"], ifs_creds)
        h = {"Authorization": f"Bearer {client.token.get()}"}
        root = f"{sim.url}/main/ifsapplications/projection/v1/VoucherEntryAssistantHandling.svc"
        temp = httpx.post(root + "/VoucherSet", headers=h, json={"Company": CO, "VoucherType": "X",
                          "VoucherDate": "2026-11-10"})  # fmt: skip
        assert temp.status_code == 201
        entity = temp.headers["location"].split(".svc/")[1]
        for row in _body("EXP:9:a")["VoucherRowArray"]:
            r = httpx.post(f"{root}/{entity}/VoucherPostingArray", headers=h,
                           content=__import__("console.money", fromlist=["x"]).dumps(row),
                           )  # fmt: skip
            assert r.status_code == 400  # no Content-Type: IFS refuses to read it
            r = httpx.post(f"{root}/{entity}/VoucherPostingArray", headers=h, json=
                           {k: (str(v) if isinstance(v, Decimal) else v) for k, v in row.items()}
                           | {k: float(v) for k, v in row.items() if isinstance(v, Decimal)})  # fmt: skip
            assert r.status_code == 201, r.text
        action = f"{root}/{entity}/IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher"
        missing = httpx.post(action, headers=h, json={})
        assert missing.status_code == 428
        assert missing.json()["error"]["code"] == "ODP_MISSING_PRECONDITION"
        stale = httpx.post(action, headers={**h, "If-Match": 'W/"c3RhbGU="'}, json={})
        assert stale.status_code == 412
        assert stale.json()["error"]["code"] == "ODP_PRECONDITION_FAILED"
        assert httpx.get(sim.url + "/__sim/vouchers").json() == []
        ok = httpx.post(action, headers={**h, "If-Match": temp.headers["etag"]}, json={})
        assert ok.status_code == 200 and ok.json()["value"] == 1
        assert httpx.get(sim.url + "/__sim/temp-vouchers").json() == []
        client.close()


@pytest.mark.parametrize(
    "after_parts", [1, 2, 3], ids=["after-header", "after-a-row", "after-rows"]
)
def test_a_broken_change_set_leaves_a_temp_voucher_that_is_removed(after_parts: int) -> None:
    with running_ifs(rate_limit_per_minute=None) as sim:
        client = IfsClient(sim.url, ifs_world()["realm"], ifs_creds)
        httpx.post(sim.url + "/__sim/batch-break", json={"after_parts": after_parts})
        with pytest.raises(UnknownOutcome):
            client.post_voucher(_body("EXP:7:a"))
        temps = httpx.get(sim.url + "/__sim/temp-vouchers").json()
        assert len(temps) == 1 and len(temps[0]["VoucherPostingArray"]) == after_parts - 1
        # What the ledger does after an unknown outcome: look up, then clear what is left.
        assert client.find_vouchers("EXP:7:a", CO) == []
        # A header without rows carries no reference and can never be created (IFS refuses a
        # voucher without rows): it is left; one with rows is removed.
        removed = client.discard_temp_vouchers("EXP:7:a", CO)
        assert removed == (0 if after_parts == 1 else 1)
        left = httpx.get(sim.url + "/__sim/temp-vouchers").json()
        assert all(not t["VoucherPostingArray"] for t in left)
        client.post_voucher(_body("EXP:7:a"))
        vouchers = httpx.get(sim.url + "/__sim/vouchers").json()
        assert [v["ReferenceNumber"] for v in vouchers] == ["EXP:7:a"]
        client.close()


def test_vouchers_updated_to_the_gl_are_still_found() -> None:
    with running_ifs(rate_limit_per_minute=None) as sim:
        client = IfsClient(sim.url, ifs_world()["realm"], ifs_creds)
        posted = client.post_voucher(_body("EXP:8:a"))
        assert httpx.post(sim.url + "/__sim/update-gl").json() == {"updated": 1}
        (found,) = client.find_vouchers("EXP:8:a", CO)
        assert found.in_gl and found.VoucherNo == posted.VoucherNo
        from datetime import date

        (dated,) = client.vouchers_dated(CO, "EXP:", date(2026, 11, 1), date(2026, 11, 30))
        assert dated.in_gl and dated.ReferenceNumber == "EXP:8:a"
        (listed,) = httpx.get(sim.url + "/__sim/vouchers").json()
        assert listed["in_gl"] is True and listed["VoucherStatus"] == "Approved"
        client.close()
