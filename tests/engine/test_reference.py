"""One encoder and one parser for every ReferenceNumber the console writes (design.md §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from console import reference
from console.reference import REFERENCE_MAX, Reference, ReferenceTooLong

AWKWARD_IDS = ["JH16", "JH16:1", "a/b 'c' d", "Ünïcødé-報告", "x:card", "1:12345678", "::"]


@pytest.mark.parametrize("rid", AWKWARD_IDS)
def test_every_kind_round_trips_awkward_report_ids(rid):
    version = "0badcafe"
    acc = reference.accrual(rid, version)
    assert reference.parse(acc) == Reference("accrual", report_id=rid, version=version)
    assert reference.report_of(acc) == rid
    for card_only in (False, True):
        rev = reference.reversal(rid, version, card_only=card_only)
        parsed = reference.parse(rev)
        assert parsed == Reference("reversal", rid, version, card_only=card_only)
        assert parsed is not None and parsed.accrual.encode() == acc
        assert reference.report_of(rev) is None  # only accruals name a posted report


def test_a_report_id_that_is_a_prefix_of_another_is_not_confused_with_it():
    # Splitting at the first colon once linked JH16 to JH16:1's voucher.
    assert reference.report_of(reference.accrual("JH16:1", "0000abcd")) == "JH16:1"
    assert reference.report_of(reference.accrual("JH16", "0000abcd")) == "JH16"


def test_card_references_round_trip():
    for kind in ("card-accrual", "card-reversal"):
        ref = Reference(kind, period="2026-11", company="10:X")
        assert reference.parse(ref.encode()) == ref
    assert reference.card_accrual("2026-11", "10") == "CARD:2026-11:10"
    assert reference.card_reversal("2026-11", "10") == "CARD-REV:2026-11:10"


@pytest.mark.parametrize(
    "text", ["", None, "MAN-2026-11-0042", "EXP:", "EXP:R1", "EXP::0badcafe", "EXP:R1:nothex!",
             "REV:R1:card", "CARD:11-2026:10", "CARD:2026-11:"]
)  # fmt: skip
def test_other_text_is_not_ours(text):
    assert reference.parse(text) is None


def test_a_reference_too_long_for_ifs_is_refused_never_cut():
    longest = "R" * reference.max_report_id_length()
    assert reference.fits(longest)
    assert len(reference.reversal(longest, "0badcafe", card_only=True)) == REFERENCE_MAX
    too_long = longest + "9"
    assert not reference.fits(too_long)
    with pytest.raises(ReferenceTooLong, match="at most 50"):
        reference.reversal(too_long, "0badcafe", card_only=True)
    # 50 characters leave 32 for the ID once `REV:` and `:{version}:card` are around it:
    # twice the 16 digits of a real Expensify report ID.
    assert reference.max_report_id_length() == 32


@given(st.text(min_size=1, max_size=reference.max_report_id_length()))
def test_any_report_id_that_fits_round_trips(rid):
    version = "12345678"
    assert reference.report_of(reference.accrual(rid, version)) == rid
    rev = reference.parse(reference.reversal(rid, version, card_only=True))
    assert rev is not None and rev.report_id == rid and rev.card_only
