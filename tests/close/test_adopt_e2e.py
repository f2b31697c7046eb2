"""`ml-console adopt` end to end: vouchers IFS already holds (from an earlier installation, by
EXP: reference, and from a manual process, by the matching rule) are linked, and the next
`--auto` cycle posts none of them again and labels them."""

from __future__ import annotations

import json
from collections import Counter

from tests.close.helpers import planned_vouchers, post_by_hand
from tests.close.test_close_e2e import fast_console, ifs_vouchers
from tests.conftest import sim_control


def test_adopt_links_existing_vouchers_and_the_sync_never_reposts_them(tmp_path, small_sims):
    planned = planned_vouchers(small_sims, tmp_path / "before", ["90000001", "90000002"])
    # An earlier installation posted 90000001 with our reference.
    earlier = post_by_hand(small_sims, tmp_path, planned["90000001"].to_ifs_body())
    # A manual process booked 90000002: its own reference, the employee in the text only.
    manual_body = planned["90000002"].to_ifs_body()
    manual_body["ReferenceNumber"] = "MAN-2026-11-0042"
    manual_body["Text"] = "Manual accrual ana.lee@small.example"
    for row in manual_body["VoucherRowArray"]:
        row["Text"] = "manual accrual"
    manual = post_by_hand(small_sims, tmp_path, manual_body)

    console = fast_console(tmp_path, small_sims)
    dry = console.run("adopt", "--json")
    assert dry.returncode == 0, dry.stderr
    proposal = json.loads(dry.stdout)
    assert proposal["confirmed"] is False and proposal["recorded"] == 0
    links = {lk["reportID"]: lk for lk in proposal["links"]}
    assert set(links) == {"90000001", "90000002"}
    assert links["90000001"]["how"] == "reference" and links["90000001"]["voucher"] == earlier
    assert links["90000002"]["how"] == "rule" and links["90000002"]["voucher"] == manual
    assert "employee" in links["90000002"]["why"]

    text = console.run("adopt")  # the dry run again, as a person reads it; still nothing kept
    assert text.returncode == 0 and "Dry run: nothing recorded" in text.stdout
    done = console.run("adopt", "--confirm", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["recorded"] == 2

    code, summary, err = console.auto()
    assert code == 3, err  # 90000004 is held
    assert [v["reportID"] for v in summary["vouchers"]] == ["90000003"]
    per_report = Counter(
        v["ReferenceNumber"].split(":")[1] if v["ReferenceNumber"].startswith("EXP:") else "manual"
        for v in ifs_vouchers(small_sims)
    )
    assert per_report == {"90000001": 1, "90000003": 1, "manual": 1}
    labels = {r["reportID"]: r["labels"] for r in sim_control(small_sims.expensify_url, "reports")}
    assert "ml-console" in labels["90000001"] and "ml-console" in labels["90000002"]

    # A second cycle and a second adopt change nothing.
    code, again, err = console.auto()
    assert again["posted"] == 0 and len(ifs_vouchers(small_sims)) == 3
    rerun = json.loads(console.run("adopt", "--json").stdout)
    assert rerun["links"] == [] and set(rerun["already_linked"]) >= {"90000001", "90000002"}

    # The month ties out, the manual voucher read back from IFS under its own reference.
    close = console.run("close", "--period", "2026-11", "--json")
    assert close.returncode == 0, close.stderr
    reports = {r["reportID"]: r for r in json.loads(close.stdout)["reports"]}
    assert reports["90000002"]["disposition"] == "posted"
    assert reports["90000002"]["vouchers"] == [manual]
    events = console.run("audit", "export").stdout.splitlines()
    adopted = [json.loads(e) for e in events if '"adopted"' in e]
    assert sorted(e["report_id"] for e in adopted) == ["90000001", "90000002"]
