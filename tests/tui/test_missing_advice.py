"""`p` on a group that is still held says what clears that kind of hold: a closed period or an
all-zero report is not a value IFS lacks, and re-checking or remapping would not help."""

from __future__ import annotations

import pytest

from screens.missing import still_held_advice


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("closed-period", "reopen it"),
        ("zero-amount", "exclude it with `x`"),
        ("too-many-lines", "split it"),
        ("duplicate-transaction", "--confirm-duplicate"),
        ("missing-dimension", "remap it with `m`"),
    ],
)
def test_the_advice_fits_the_hold(kind: str, says: str) -> None:
    advice = still_held_advice(kind)
    assert advice.startswith("This group is still held: ")
    assert says in advice
    if kind != "missing-dimension":
        assert "IFS does not have the value" not in advice
