"""console.close.tie_out on hand-made inputs: every disposition, and the equation per key."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from console.close import (
    ApprovedReport,
    CloseInputs,
    ClosePeriod,
    CompanyWindow,
    ExpectedLine,
    LocalState,
    tie_out,
)
from console.ifs.models import Voucher, VoucherRow

NOV = ClosePeriod(2026, 11)
WINDOW = {"10": CompanyWindow("10", "USD", date(2026, 11, 1), date(2026, 11, 30), True)}
D = Decimal


def report(rid: str, amount: str, day: int = 5, currency: str = "USD", rate: str = "1"):
    return ApprovedReport(
        report_id=rid,
        employee="a@x.example",
        report_name="r",
        company="10",
        currency=currency,
        company_currency="USD",
        approved=date(2026, 11, day),
        lines=(ExpectedLine(f"t{rid}", "6110", "CC-100", D(amount)),),
        rate=D(rate),
    )


def voucher(rid: str, amount: str, no: int, period: int = 11, rate: str = "1", cur: str = "USD"):
    acc = (D(amount) * D(rate)).quantize(D("0.01"))
    return Voucher(
        Company="10",
        VoucherType="X",
        VoucherNo=no,
        AccountingYear=2026,
        AccountingPeriod=period,
        VoucherDate=date(2026, period, 5),
        ReferenceNumber=f"EXP:{rid}:abcd{no:04d}",
        VoucherRowArray=[
            VoucherRow(Account="6110", CodeB="CC-100", CurrencyCode=cur, CurrencyRate=D(rate),
                       CurrencyDebetAmount=D(amount), DebetAmount=acc, Text=f"t{rid}"),
            VoucherRow(Account="2930", CurrencyCode=cur, CurrencyRate=D(rate),
                       CurrencyCreditAmount=D(amount), CreditAmount=acc),
        ],
    )  # fmt: skip


def posted(rid: str, no: int, approved: str = "2026-11-05") -> LocalState:
    return LocalState(rid, "posted", approved=approved, posted_vouchers=(f"10/X/2026/{no}",))


def run(approved, vouchers, local):
    return tie_out(
        CloseInputs(
            period=NOV,
            windows=WINDOW,
            approved=approved,
            vouchers=vouchers,
            local={s.report_id: s for s in local},
            credit_accounts=frozenset({"2930", "2940"}),
        )
    )


def test_every_explained_disposition_balances_per_key():
    tie = run(
        [
            report("1", "100.00"),
            report("2", "40.00"),  # held
            report("3", "7.50"),  # excluded
            report("4", "12.00"),  # posted into December (closed-period move)
            report("5", "0"),  # nothing to post
            report("6", "50.00", currency="EUR", rate="1.10"),
        ],
        [
            voucher("1", "100.00", 1),
            voucher("4", "12.00", 4, period=12),
            voucher("6", "50.00", 6, rate="1.10", cur="EUR"),
            voucher("9", "30.00", 9),  # approved in October, moved into November
        ],
        [
            posted("1", 1),
            LocalState("2", "held", reason="missing-dimension:B:CC-410"),
            LocalState("3", "excluded", exclusion_reason="duplicate claim"),
            posted("4", 4),
            LocalState("5", "ready"),
            posted("6", 6),
            posted("9", 9, approved="2026-10-30"),
        ],
    )
    by_id = {r.report_id: r for r in tie.reports}
    assert {k: v.disposition for k, v in by_id.items()} == {
        "1": "posted",
        "2": "held",
        "3": "excluded",
        "4": "moved-out",
        "5": "nothing",
        "6": "posted",
        "9": "moved-in",
    }
    assert by_id["3"].reason == "duplicate claim"
    assert "2026-12" in by_id["4"].reason
    assert tie.balanced, [(r.account, r.difference) for r in tie.rows]
    [row] = tie.rows
    a = row.amounts
    assert a["approved"] == D("100.00") + D("40.00") + D("7.50") + D("12.00") + D("55.00")
    assert a["in_ifs"] == D("100.00") + D("55.00") + D("30.00")
    assert (a["held"], a["excluded"], a["moved_out"], a["moved_in"]) == (
        D("40.00"),
        D("7.50"),
        D("12.00"),
        D("30.00"),
    )
    [eur] = tie.currencies
    assert eur.currency == "EUR" and eur.amounts["approved"] == D("50.00")


def test_unexplained_items_are_each_named():
    tie = run(
        [
            report("1", "100.00"),  # posted twice
            report("2", "40.00"),  # held here, but someone posted it by hand
            report("3", "10.00"),  # ready, never posted
            report("4", "20.00"),  # recorded as posted, voucher missing in IFS
            report("5", "25.00"),  # IFS holds another amount
        ],
        [
            voucher("1", "100.00", 1),
            voucher("1", "100.00", 2),
            voucher("2", "40.00", 3),
            voucher("5", "24.00", 5),
            voucher("77", "5.00", 7),  # unknown report
        ],
        [
            LocalState("1", "posted", posted_vouchers=("10/X/2026/1",)),
            LocalState("2", "held", reason="missing-dimension:B:CC-410"),
            LocalState("3", "ready"),
            posted("4", 40),
            posted("5", 5),
        ],
    )
    reasons = {r.report_id: r.reason for r in tie.unexplained}
    assert set(reasons) == {"1", "2", "3", "4", "5", "77"}
    assert "2 vouchers" in reasons["1"]
    assert "not posted or adopted by this console" in reasons["2"]
    assert "status ready" in reasons["3"]
    assert "no voucher for it in IFS" in reasons["4"]
    assert "25.00 USD" in reasons["5"] and "24.00 USD" in reasons["5"]
    assert "does not know" in reasons["77"]
    assert not tie.balanced
    assert tie.totals()[("10", "USD")]["diff"] == (
        D("195.00") - (D("200.00") + D("40.00") + D("24.00") + D("5.00"))
    )


def test_period_parsing():
    assert ClosePeriod.parse("2026-11") == NOV and NOV.label == "2026-11"
    assert ClosePeriod(2026, 2).calendar_month() == (date(2026, 2, 1), date(2026, 2, 28))
    for bad in ("2026/11", "26-11", "2026-00", "november"):
        try:
            ClosePeriod.parse(bad)
        except ValueError:
            continue
        raise AssertionError(bad)


def test_a_reference_ifs_holds_twice_is_named_by_the_tie_out():
    """Two installations posting at the same instant: the same ReferenceNumber on two
    vouchers. The tie-out names it (JSON `heldTwice`); the amounts show it unexplained too."""
    first = voucher("R1", "10.00", 1)
    again = first.model_copy(update={"VoucherNo": 2})
    tie = run([report("R1", "10.00")], [first, again, voucher("R2", "5.00", 3)], [posted("R1", 1)])
    assert tie.held_twice == {"EXP:R1:abcd0001": ("10/X/2026/1", "10/X/2026/2")}
    assert tie.to_json()["heldTwice"] == {"EXP:R1:abcd0001": ["10/X/2026/1", "10/X/2026/2"]}
    assert not tie.balanced
    alone = run([report("R1", "10.00")], [first], [posted("R1", 1)])
    assert alone.held_twice == {} and alone.balanced
