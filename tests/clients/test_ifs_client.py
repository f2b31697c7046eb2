"""The IFS client against the IFS simulator over loopback HTTP."""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

import pytest

from console import clock
from console.errors import AuthError, ProtocolError, ServiceError, UnknownOutcome, Unreachable
from console.ifs.client import IfsClient
from console.ifs.token import REFRESH_FRACTION

from .conftest import IFS_SECRET, N_COST_CENTRES, FakeTime, ifs_creds, running_ifs

TOKEN_PATH = "/openid-connect/token"
# A voucher is posted as one `$batch` of the voucher assistant (temporary voucher, rows,
# CreateVoucher): the path counted, and the regex a fault is set on.
POSTING = "VoucherEntryAssistantHandling.svc/$batch"
POSTING_ROUTE = r"VoucherEntryAssistantHandling\.svc/\$batch"


def client(sim, **kw) -> IfsClient:
    kw.setdefault("max_retry_s", 30.0)
    creds = kw.pop("creds", ifs_creds)
    return IfsClient(sim.url, "acme", creds, **kw)


def voucher(sim, reference: str, amount: str = "12.34") -> dict:
    # Dated on the first day of the console's current month (ifs_world's open period).
    money = Decimal(amount)
    return {
        "Company": "10",
        "VoucherType": "X",
        "VoucherDate": clock.today().replace(day=1).isoformat(),
        "ReferenceNumber": reference,
        "Text": "Report R1 / jane@example.com",
        "VoucherRowArray": [
            {
                "Account": "6110",
                "CodeB": "CC-001",
                "CurrencyCode": "USD",
                "CurrencyRate": Decimal(1),
                "CurrencyDebetAmount": money,
                "DebetAmount": money,
                "Text": "T1",
            },
            {
                "Account": "2930",
                "CurrencyCode": "USD",
                "CurrencyRate": Decimal(1),
                "CurrencyCreditAmount": money,
                "CreditAmount": money,
                "Text": "R1",
            },
        ],
    }


def stored_vouchers(sim) -> list[dict]:
    return sim.control.get("/__sim/vouchers").json()


def temp_vouchers(sim) -> list[dict]:
    return sim.control.get("/__sim/temp-vouchers").json()


# ---------------------------------------------------------------- reads and paging
def test_server_paging_is_followed_to_the_end(ifs):
    ifs.settings(server_page_size=100)
    c = client(ifs, page_size=1000)
    values = c.code_part_values("10")
    b_values = sorted(v.CodePartValue for v in values if v.CodePart == "B")
    assert b_values == [f"CC-{n:03d}" for n in range(N_COST_CENTRES)]
    assert len(values) == N_COST_CENTRES + 5
    # The accounts in one GET; code parts B..J in one `$batch` of CompanyFinanceSet's
    # arrays, whose CodeBArray part answers 100 of 230 with a nextLink: followed by two
    # GETs (100, 30). Plus the token.
    assert ifs.count(path_contains="AccountsHandling.svc/AccountSet") == 1
    assert ifs.count(path_contains="CodePartValuesHandling.svc/$batch") == 1
    assert ifs.count(path_contains="/CodeBArray") == 2
    assert c.requests_made == 5 == ifs.requests()["total"]


def test_short_page_ends_client_paging(ifs):
    c = client(ifs, page_size=60)
    values = c.code_part_values("10")
    assert len({(v.CodePart, v.CodePartValue) for v in values}) == N_COST_CENTRES + 5
    # 230 cost centres at 60 per page: 60 in the `$batch`, then GETs of 60, 60 and 50
    # (short: the end).
    assert ifs.count(path_contains="CodePartValuesHandling.svc/$batch") == 1
    assert ifs.count(path_contains="/CodeBArray") == 3


def test_page_size_is_capped_at_5000(ifs):
    ifs.settings(server_page_size=10_000)  # the server would hand out everything at once
    c = client(ifs, page_size=20_000)
    assert c.page_size == 5000
    assert len(c.code_part_values("10")) == N_COST_CENTRES + 5  # $top=20000 would answer 500
    assert ifs.count(status=500) == 0


def test_reads_are_typed_with_decimal_rates(ifs):
    c = client(ifs)
    rates = c.currency_rates("10", "EUR")
    assert [(r.CurrencyCode, r.CurrencyRate) for r in rates] == [("EUR", Decimal("1.08"))]
    assert isinstance(rates[0].CurrencyRate, Decimal)
    periods = c.periods("10")
    assert len(periods) == 3 and all(p.is_open for p in periods)
    c.check()


def test_quotes_in_filter_values_are_escaped(ifs):
    c = client(ifs)
    reference = "EXP:O'Brien:v1"
    c.post_voucher(voucher(ifs, reference))
    c.post_voucher(voucher(ifs, "EXP:other:v1"))
    found = c.find_vouchers(reference, "10")
    assert [v.ReferenceNumber for v in found] == [reference]
    assert len(found[0].VoucherRowArray) == 2
    # An injection attempt is just a reference that matches nothing.
    assert c.find_vouchers("x' or ReferenceNumber ne '") == []
    assert [v.ReferenceNumber for v in c.vouchers_with_prefix("EXP:O'", "10")] == [reference]
    assert len(c.vouchers_with_prefix("EXP:", "10")) == 2
    assert ifs.count(status=400) == 0


def test_posting_needs_no_read_first_the_etag_comes_from_the_change_set(ifs):
    """Replaces the journal template's cached ETag (an invented API): on IFS's real flow the
    ETag CreateVoucher needs is the temporary voucher's, created in the same change set and
    referred to as `If-Match: $1`. Nothing is read before posting, nothing is cached."""
    c = client(ifs)
    c.post_voucher(voucher(ifs, "EXP:R0:a"))
    assert c.requests_made == 2 == ifs.requests()["total"]  # the token and one $batch
    c.post_voucher(voucher(ifs, "EXP:R0:b"))
    assert c.requests_made == 3 == ifs.requests()["total"]
    assert ifs.count(method="GET") == 0
    assert [v["VoucherNo"] for v in stored_vouchers(ifs)] == [1, 2]


# ---------------------------------------------------------------- posting
def test_post_voucher_sends_the_temp_vouchers_etag(ifs):
    """Replaces "sends the template ETag": one `$batch` whose change set creates the
    temporary voucher, posts its rows to `$1/VoucherPostingArray` and calls CreateVoucher
    with the temporary voucher's ETag (`If-Match: $1`); the simulator requires it."""
    c = client(ifs)
    created = c.post_voucher(voucher(ifs, "EXP:R1:a"))
    assert created.VoucherNo == 1 and created.ReferenceNumber == "EXP:R1:a"
    assert [r.DebetAmount for r in created.VoucherRowArray] == [Decimal("12.34"), None]
    assert ifs.count(method="POST", path_contains=POSTING, status=200) == 1
    batch = ifs.requests()["batch"]
    assert batch["parts"] == 4 and batch["change_sets_failed"] == 0  # header, 2 rows, create
    assert set(batch["by_status"]) == {"200", "201"}  # no 428 or 412 inside
    assert temp_vouchers(ifs) == []  # CreateVoucher turned it into the voucher
    (stored,) = stored_vouchers(ifs)
    assert stored["ReferenceNumber"] == "EXP:R1:a" and stored["in_gl"] is False


def test_remove_temp_voucher_sends_the_etag_it_read(ifs):
    """The other bound action that needs an ETag: a temporary voucher left by a change set
    that broke after its rows is read (with its `@odata.etag`) and removed with it."""
    c = client(ifs)
    ifs.post("/__sim/batch-break", {"after_parts": 3})  # header and both rows, no create
    with pytest.raises(UnknownOutcome):
        c.post_voucher(voucher(ifs, "EXP:R2:a"))
    assert len(temp_vouchers(ifs)) == 1 and stored_vouchers(ifs) == []
    assert c.discard_temp_vouchers("EXP:R2:a", "10") == 1
    assert temp_vouchers(ifs) == []
    assert ifs.count(method="POST", path_contains="_RemoveTempVoucher", status=204) == 1
    assert ifs.count(status=412) == 0 and ifs.count(status=428) == 0
    c.post_voucher(voucher(ifs, "EXP:R2:a"))
    assert [v["ReferenceNumber"] for v in stored_vouchers(ifs)] == ["EXP:R2:a"]


def test_a_412_is_not_chased(ifs):
    """Replaces "a second 412 is not chased": with the ETag taken inside the change set
    there is no cached ETag to read again, so a 412 (IFS says the voucher was changed by
    someone else) is an error at once: one request, nothing created."""
    c = client(ifs)
    ifs.fault(route=POSTING_ROUTE, method="POST", fault="status", status=412)
    with pytest.raises(ServiceError) as info:
        c.post_voucher(voucher(ifs, "EXP:R3:a"))
    assert info.value.status == 412
    assert ifs.count(method="POST", path_contains=POSTING) == 1
    assert stored_vouchers(ifs) == [] and temp_vouchers(ifs) == []


def test_mi_modified_error_is_retried_once(ifs):
    c = client(ifs)
    ifs.post("/__sim/next-error-code", {"code": "MI_MODIFIED_ERROR"})
    ifs.fault(route=POSTING_ROUTE, method="POST", fault="status", status=500, count=1)
    created = c.post_voucher(voucher(ifs, "EXP:R4:a"))
    assert created.ReferenceNumber == "EXP:R4:a"
    assert ifs.count(method="POST", path_contains=POSTING, status=500) == 1
    assert ifs.count(method="POST", path_contains=POSTING, status=200) == 1
    assert len(stored_vouchers(ifs)) == 1


def test_mi_modified_error_twice_is_an_error_not_a_loop(ifs):
    c = client(ifs)
    ifs.post("/__sim/next-error-code", {"code": "MI_MODIFIED_ERROR", "count": 5})
    ifs.fault(route=POSTING_ROUTE, method="POST", fault="status", status=500)
    with pytest.raises(ServiceError) as info:
        c.post_voucher(voucher(ifs, "EXP:R5:a"))
    assert info.value.code == "MI_MODIFIED_ERROR"
    assert ifs.count(method="POST", path_contains=POSTING) == 2
    assert stored_vouchers(ifs) == []


def test_dropped_connection_after_commit_is_an_unknown_outcome(ifs):
    c = client(ifs)
    reference = "EXP:R6:abc"
    ifs.fault(route=POSTING_ROUTE, method="POST", fault="drop-after", count=1)
    with pytest.raises(UnknownOutcome) as info:
        c.post_voucher(voucher(ifs, reference))
    assert "outcome unknown" in str(info.value)
    # Never retried by the client: one POST, and the voucher IFS committed is findable.
    assert ifs.count(method="POST", path_contains=POSTING) == 1
    found = c.find_vouchers(reference, "10")
    assert len(found) == 1 and len(found[0].VoucherRowArray) == 2
    assert found[0].in_gl is False
    # Nothing half-made to clear: CreateVoucher ran, the temporary voucher is gone.
    assert c.discard_temp_vouchers(reference, "10") == 0


def test_timeout_after_send_is_an_unknown_outcome(ifs):
    c = client(ifs, timeout_s=0.3)
    ifs.fault(route=POSTING_ROUTE, method="POST", fault="timeout", latency_ms=1500, count=1)
    with pytest.raises(UnknownOutcome):
        c.post_voucher(voucher(ifs, "EXP:R7:a"))
    assert ifs.count(method="POST", path_contains=POSTING) <= 1


def test_5xx_after_send_is_an_unknown_outcome_and_not_retried(ifs):
    c = client(ifs)
    ifs.fault(route=POSTING_ROUTE, method="POST", fault="status", status=503, count=1)
    with pytest.raises(UnknownOutcome):
        c.post_voucher(voucher(ifs, "EXP:R8:a"))
    assert ifs.count(method="POST", path_contains=POSTING) == 1


def test_business_error_is_a_service_error(ifs):
    """IFS refuses an unbalanced voucher at CreateVoucher: the change set is rolled back,
    so neither a voucher nor the temporary voucher and rows made before it remain."""
    c = client(ifs)
    bad = voucher(ifs, "EXP:R9:a")
    bad["VoucherRowArray"][1]["CreditAmount"] = Decimal("12.00")
    with pytest.raises(ServiceError) as info:
        c.post_voucher(bad)
    assert info.value.status == 400 and "balance" in str(info.value).lower()
    assert info.value.code == "VOUCHER_NOT_BALANCED"
    assert ifs.count(method="POST", path_contains=POSTING) == 1
    assert stored_vouchers(ifs) == [] and temp_vouchers(ifs) == []


# ---------------------------------------------------------------- transient failures
def test_transient_read_failures_are_retried(ifs):
    t = FakeTime()
    c = client(ifs, clock=t.clock, sleep=t.sleep)
    ifs.fault(route="PeriodSet", fault="status", status=503, count=2)
    ifs.fault(route="PeriodSet", fault="drop-before", count=1)
    assert len(c.periods("10")) == 3
    assert ifs.count(path_contains="PeriodSet") == 4
    assert len(t.slept) == 3


def test_retries_are_bounded(ifs):
    t = FakeTime()
    c = client(ifs, clock=t.clock, sleep=t.sleep, max_retry_s=60)
    ifs.fault(route="PeriodSet", fault="status", status=503)
    with pytest.raises(Unreachable, match="HTTP 503"):
        c.periods("10")
    assert ifs.count(path_contains="PeriodSet") <= 6
    assert sum(t.slept) <= 60


def test_retry_after_is_honoured(ifs):
    t = FakeTime()
    c = client(ifs, clock=t.clock, sleep=t.sleep)
    ifs.fault(route="PeriodSet", fault="status", status=429, retry_after=7, count=1)
    assert len(c.periods("10")) == 3
    assert 7 in t.slept
    assert ifs.count(path_contains="PeriodSet", status=429) == 1


def test_retry_after_beyond_the_budget_gives_up_at_once(ifs):
    t = FakeTime()
    c = client(ifs, clock=t.clock, sleep=t.sleep, max_retry_s=30)
    ifs.fault(route="PeriodSet", fault="status", status=429, retry_after=600)
    with pytest.raises(Unreachable, match="429"):
        c.periods("10")
    assert ifs.count(path_contains="PeriodSet") == 1
    assert t.slept == []


@pytest.mark.parametrize(
    ("fault", "says"),
    [("html", "HTML page titled '502 Bad Gateway'"), ("malformed-json", "not valid JSON")],
)
def test_unreadable_bodies_are_clear_protocol_errors(ifs, fault, says):
    c = client(ifs)
    ifs.fault(route="PeriodSet", fault=fault)
    with pytest.raises(ProtocolError, match=says) as info:
        c.periods("10")
    assert str(info.value).startswith("ifs: ")
    assert "Bearer" not in str(info.value)


def test_html_answer_to_a_post_is_an_unknown_outcome(ifs):
    c = client(ifs)
    ifs.fault(route=POSTING_ROUTE, method="POST", fault="html", count=1)
    with pytest.raises(UnknownOutcome, match="HTTP 502"):
        c.post_voucher(voucher(ifs, "EXP:R10:a"))


# ---------------------------------------------------------------- rate limit
def test_steady_state_under_the_limit_sees_no_429():
    t = FakeTime()
    with running_ifs(clock=t.clock, rate_limit_per_minute=30) as sim:
        c = client(sim, requests_per_minute=25, clock=t.clock, sleep=t.sleep)
        start = t.clock()
        for _ in range(45):
            c.periods("10")  # two requests: the periods, their user-group status in a $batch
        assert sim.count(status=429) == 0
        assert sim.requests()["total"] == 91 == c.requests_made
        # 91 requests at 25 a minute need three full windows of waiting.
        assert t.clock() - start >= 180
        assert 0 < c.limiter.budget_in_use() <= 1


def test_without_the_limiter_the_tenant_answers_429_and_the_client_waits():
    t = FakeTime()
    with running_ifs(clock=t.clock, rate_limit_per_minute=10) as sim:
        c = client(sim, requests_per_minute=1000, clock=t.clock, sleep=t.sleep, max_retry_s=120)
        for _ in range(15):
            c.periods("10")
        assert sim.count(status=429) >= 1
        assert sim.count(path_contains="PeriodSet", status=200) == 15
        assert any(s >= 1 for s in t.slept)


# ---------------------------------------------------------------- tokens
def test_token_refresh_schedule_is_50_of_60_minutes():
    t = FakeTime()
    with running_ifs(clock=t.clock) as sim:
        c = client(sim, clock=t.clock, sleep=t.sleep)
        assert c.token.seconds_to_refresh() is None
        c.periods("10")
        assert c.token.seconds_to_refresh() == pytest.approx(3000)
        assert REFRESH_FRACTION * 3600 == pytest.approx(3000)
        t.advance(49 * 60)
        c.periods("10")
        assert sim.count(path_contains=TOKEN_PATH) == 1
        assert c.token.seconds_to_refresh() == pytest.approx(60)
        t.advance(61)
        c.periods("10")
        assert sim.count(path_contains=TOKEN_PATH) == 2
        assert c.token.seconds_to_refresh() == pytest.approx(3000)
        assert sim.count(status=401) == 0  # proactive: never ran into an expired token


def test_revoked_token_is_refreshed_once_on_401(ifs):
    c = client(ifs)
    c.periods("10")
    ifs.post("/__sim/tokens/revoke", {})
    c.periods("10")
    assert ifs.count(path_contains=TOKEN_PATH) == 2
    assert ifs.count(status=401) == 1


def test_many_threads_share_one_token_refresh(ifs):
    c = client(ifs, concurrency=8)
    errors: list[BaseException] = []

    def burst() -> None:
        barrier = threading.Barrier(8)

        def work() -> None:
            try:
                barrier.wait(timeout=5)
                c.periods("10")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=20)

    burst()  # first token: one fetch for eight threads
    assert ifs.count(path_contains=TOKEN_PATH) == 1
    ifs.post("/__sim/tokens/revoke", {})
    burst()  # all eight get 401 with the same token: still one refresh
    assert not errors
    assert ifs.count(path_contains=TOKEN_PATH) == 2
    assert ifs.count(path_contains="PeriodSet", status=200) == 16


def test_refused_client_is_an_auth_error_without_a_loop(ifs, caplog):
    caplog.set_level(logging.DEBUG)
    reads = []

    def wrong():
        reads.append(1)
        return ifs_creds("wrong-Secret-123")

    c = client(ifs, creds=wrong)
    with pytest.raises(AuthError) as info:
        c.periods("10")
    assert info.value.exit_code == 4
    assert ifs.count(path_contains=TOKEN_PATH) == 1  # same credentials: not re-sent
    assert len(reads) == 2  # read, then re-read once
    assert ifs.count(path_contains="PeriodSet") == 0
    for text in (str(info.value), repr(info.value), repr(c), repr(c.token), caplog.text):
        assert "wrong-Secret-123" not in text and IFS_SECRET not in text


def test_rotated_secret_is_picked_up_on_the_one_reread(ifs):
    secrets = iter(["stale-secret", IFS_SECRET])
    c = client(ifs, creds=lambda: ifs_creds(next(secrets)))
    assert len(c.periods("10")) == 3
    assert ifs.count(path_contains=TOKEN_PATH, status=401) == 1
    assert ifs.count(path_contains=TOKEN_PATH, status=200) == 1


def test_secrets_stay_out_of_reprs_and_errors(ifs):
    creds = ifs_creds()
    assert IFS_SECRET not in repr(creds) and IFS_SECRET not in str(creds)
    c = client(ifs)
    c.periods("10")
    token = c.token.get()
    ifs.fault(route="PeriodSet", fault="status", status=400)
    with pytest.raises(ServiceError) as info:
        c.periods("10")
    for text in (str(info.value), repr(c), repr(c.token), repr(c.limiter)):
        assert token not in text and IFS_SECRET not in text
