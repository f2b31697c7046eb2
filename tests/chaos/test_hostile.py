"""Hostile and malformed input, injected through the Expensify simulator (POST /__sim/reports):
each bad report is held with a reason and stays visible (`held --json`), every other report is
posted exactly once, nothing crashes (exit 3, never 1).

Texts that are hostile but well-formed (OData injection, Rich markup, ANSI escapes, control
characters, strings at IFS field limits) must not break anything: the report posts, or is held
with a clear reason. Structurally bad reports (missing or mistyped fields, absurd or fractional
amounts, unknown currencies, tags that are injection strings) must be held.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.chaos.harness import World, record, report_of, sim_json, vouchers, world_from
from tests.conftest import small_dataset_raw

INJECTIONS = ["' or 1 eq 1", "%27", "x' or '1' eq '1", "$filter=Company eq '10'", "')&$top=1"]
MARKUP = ["[bold red]PAID[/]", "[link=file:///etc/passwd]x[/link]", "\x1b[2J\x1b[31mRED\x1b[0m"]
CONTROL = ["a\x00b", "tab\tnew\nline\rcr", "bell\x07", "\u202eevil\u202c", "zero\u200bwidth"]
_ids = itertools.count(1)


def base_report(rid: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "reportID": rid,
        "policyID": "POL-US",
        "reportName": f"Hostile {rid}",
        "accountEmail": "ana.lee@small.example",
        "currency": "USD",
        "status": "APPROVED",
        "created": "2026-11-01 09:00:00",
        "submitted": "2026-11-02 10:00:00",
        # Approved now: later cycles poll from a day before the last poll.
        "approved": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "exportLabels": [],
        "transactionList": lines,
    }


def line(n: int, **over: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "transactionID": f"88{next(_ids):012d}{n:04d}",
        "merchant": "Plain Merchant",
        "amount": 1234,
        "currency": "USD",
        "convertedAmount": 1234,
        "category": "Meals",
        "categoryGlCode": "6130",
        "tag": "Advisory:Apollo",
        "created": "2026-11-03",
        "reimbursable": True,
        "billable": False,
        "comment": "",
    }
    out.update(over)
    return {k: v for k, v in out.items() if v is not _DROP}


_DROP = object()
MUST_HOLD = "hold"
MUST_POST = "post"
EITHER = "either"
IGNORED = "ignored"


def catalogue() -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, expectation, report) — one of each hostile shape."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    n = itertools.count(92000000)

    def add(kind: str, expect: str, lines: list[dict[str, Any]], **over: Any) -> None:
        rep = base_report(str(next(n)), lines)
        rep.update(over)
        out.append((kind, expect, {k: v for k, v in rep.items() if v is not _DROP}))

    for text in INJECTIONS:
        add("odata-injection merchant", MUST_POST, [line(1, merchant=text)])
        add("odata-injection tag", MUST_HOLD, [line(1, tag=f"Advisory:{text}")])
    for text in MARKUP:
        add("markup merchant", MUST_POST, [line(1, merchant=text, comment=text)])
    for text in CONTROL:
        add("control characters", EITHER, [line(1, merchant=text)], reportName=text)
    add("refund total", MUST_POST, [line(1, amount=-5000, convertedAmount=-5000)])
    add("absurd amount", MUST_HOLD, [line(1, amount=10**22, convertedAmount=10**22)])
    add("absurd negative amount", MUST_HOLD, [line(1, amount=-(10**22), convertedAmount=-(10**22))])
    add("unknown currency", MUST_HOLD, [line(1)], currency="XQZ")
    add("missing currency", MUST_HOLD, [line(1)], currency="")
    add("no lines", MUST_HOLD, [])
    # Reports of policies not configured are not this console's: the export never returns them.
    add("missing policy", IGNORED, [line(1)], policyID="")
    add("unknown policy", IGNORED, [line(1)], policyID="POL-' or 1 eq 1")
    add("missing category", MUST_HOLD, [line(1, category="", categoryGlCode="")])
    add("garbage line date", EITHER, [line(1, created="yesterday-ish")])
    add("garbage approval date", MUST_HOLD, [line(1)], approved="not a date")
    dup = line(1)
    add("duplicate transaction IDs", EITHER, [dup, {**dup, "amount": 99, "convertedAmount": 99}])
    add("IFS field-length limit", EITHER, [line(1, merchant="M" * 2000, comment="C" * 2000)],
        reportName="R" * 1000)  # fmt: skip
    add("10,000-line report", EITHER, [line(i, amount=1 + i % 97, convertedAmount=1 + i % 97)
                                        for i in range(10_000)])  # fmt: skip
    return out


def inject(world: World, reports: list[dict[str, Any]]) -> None:
    for rep in reports:
        sim_json(world.sims.expensify_url, "/__sim/reports", "POST", rep)


def judge(world: World, cases: list[tuple[str, str, dict[str, Any]]]) -> Counter[str]:
    """Run a cycle and check every case; returns outcome counts."""
    code, _summary, err = world.console.auto()
    assert code == 3, f"exit {code}: {err[-2000:]}"
    assert "Traceback" not in err
    held_proc = world.console.run("held", "--json")
    assert held_proc.returncode in (0, 3), held_proc.stderr
    held = {h["reportID"]: h for h in json.loads(held_proc.stdout)}
    in_ifs = Counter(report_of(v) for v in vouchers(world.sims))
    outcomes: Counter[str] = Counter()
    for kind, expect, rep in cases:
        rid = rep["reportID"]
        assert in_ifs[rid] <= 1, f"{kind}: posted {in_ifs[rid]} times"
        posted, is_held = in_ifs[rid] == 1, rid in held
        if expect == IGNORED:
            assert not posted and not is_held, f"{kind} ({rid}) is not ours"
            outcomes["ignored"] += 1
            continue
        assert posted != is_held, f"{kind} ({rid}): posted={posted} held={is_held}"
        if is_held:
            reason = held[rid].get("reason") or ""
            assert reason and ":" in reason, f"{kind}: held without a clear reason: {held[rid]}"
        if expect == MUST_POST:
            assert posted, f"{kind} ({rid}) should post, held: {held.get(rid)}"
        if expect == MUST_HOLD:
            assert is_held, f"{kind} ({rid}) should be held, but was posted"
        outcomes["posted" if posted else "held"] += 1
    # The ordinary reports of the small world are unaffected.
    for rid in ("90000001", "90000002", "90000003"):
        assert in_ifs[rid] == 1, rid
    assert "90000004" in held
    return outcomes


def test_catalogue_of_hostile_reports(tmp_path):
    cases = catalogue()
    with world_from(tmp_path, small_dataset_raw()) as world:
        inject(world, [c[2] for c in cases])
        outcomes = judge(world, cases)
        record("hostile", "catalogue", inputs=len(cases), posted=outcomes["posted"],
               held=outcomes["held"], crashes=0)  # fmt: skip
        # Hostile text reaches IFS literally: injection strings are data, not query syntax.
        texts = {r.get("Text", "") for v in vouchers(world.sims) for r in v["VoucherRowArray"]}
        assert any("' or 1 eq 1" in t for t in texts)
        assert world.console.run("audit", "verify").returncode == 0


HOSTILE_TEXT = st.one_of(
    st.sampled_from(INJECTIONS + MARKUP + CONTROL),
    st.text(min_size=0, max_size=60),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=100, max_size=300),
)
# The simulator serves only schema-valid reports (amounts are ints): the hostility is in
# values, not types. Amount fields get huge ints, text fields hostile or empty text.
AMOUNT = st.integers(min_value=-(10**20), max_value=10**20)
TEXT_FIELDS = ["currency", "category", "tag", "created", "merchant"]


@st.composite
def hostile_report(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    rid = str(93000000 + next(_ids))
    lines = [line(i, merchant=draw(HOSTILE_TEXT), comment=draw(HOSTILE_TEXT))
             for i in range(draw(st.integers(1, 4)))]  # fmt: skip
    expect = EITHER
    if draw(st.booleans()):  # break one field of one line
        if draw(st.booleans()):
            lines[0]["amount"] = lines[0]["convertedAmount"] = draw(AMOUNT)
        else:
            lines[0][draw(st.sampled_from(TEXT_FIELDS))] = draw(HOSTILE_TEXT)
    return ("hypothesis", expect, base_report(rid, lines))


def _hypothesis_run(tmp_path, examples: int) -> None:
    tried = Counter[str]()
    with world_from(tmp_path, small_dataset_raw()) as world:

        @settings(max_examples=examples, deadline=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate],  # each example is a real cycle
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(st.lists(hostile_report(), min_size=1, max_size=8))
        def batch(cases: list[tuple[str, str, dict[str, Any]]]) -> None:
            inject(world, [c[2] for c in cases])
            tried.update(judge(world, copy.deepcopy(cases)))
            tried["inputs"] += len(cases)

        batch()
    record("hostile", "hypothesis", inputs=tried["inputs"], posted=tried["posted"],
           held=tried["held"], crashes=0)  # fmt: skip


def test_hypothesis_hostile_batches(tmp_path):
    _hypothesis_run(tmp_path, examples=4)


@pytest.mark.chaos
@pytest.mark.timeout(3600)
def test_hypothesis_hostile_batches_long(tmp_path):
    _hypothesis_run(tmp_path, examples=150)
