"""`ml-console ifs check` and the check before posting, end to end: the real command against
the IFS simulator over loopback, with a tenant that differs from IFS's 21R1 model the ways a
real one may (a projection renamed by a release, an attribute or action missing from its
model, a projection the client's user is not granted: the simulator's drift settings,
docs/simulators.md)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from console.ifs.client import forget_metadata
from console.ifs.needs import projections, tenant_needs
from console.ifs.preflight import TenantDrift
from tests.close.helpers import engine_on
from tests.conftest import SMALL_ATTENTION, sim_control
from tests.e2e.conftest import SECRETS, Console

KEYS = [n.config_key for n in tenant_needs()]
PROJECTIONS = projections(tenant_needs())
RENAMED = "VoucherEntryAssistantV2Handling"


def drift_at(ifs_url: str, **settings: Any) -> None:
    sim_control(ifs_url, "settings", "POST", settings)


def drift(console: Console, **settings: Any) -> None:
    drift_at(console.ifs_url, **settings)


def check(console: Console, *extra: str) -> tuple[int, str, str]:
    proc = console.run("ifs", "check", *extra)
    for secret in SECRETS:
        assert secret not in proc.stdout + proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def ifs_posts(console: Console) -> int:
    """POSTs the IFS simulator answered on the projections (vouchers, removals, batches)."""
    snap = sim_control(console.ifs_url, "requests")
    return sum(
        r["count"]
        for r in snap["by_route"]
        if r["method"] == "POST" and "/projection/v1/" in r["path"]
    )


def test_a_tenant_that_serves_everything_checks_clean(small_console: Console) -> None:
    code, out, err = check(small_console)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"IFS Cloud {small_console.ifs_url} (realm demo)"
    for key in KEYS:
        assert any(line.split()[:2] == ["ok", key] for line in lines[1:]), (key, out)
    assert "GLVoucherRowsAnalysis.svc/GenLedVoucherRowSet  (assumed name: confirmed here)" in out
    assert "the tenant serves everything the console uses (9 entity sets" in err
    # The service document and $metadata of each projection, and the token: nothing more.
    snap = sim_control(small_console.ifs_url, "requests")
    assert snap["total"] == 1 + 2 * len(PROJECTIONS)


def test_a_renamed_projection_names_its_config_key_until_it_is_set(
    small_console: Console,
) -> None:
    drift(small_console, projection_names={"VoucherEntryAssistantHandling": RENAMED})
    code, out, err = check(small_console)
    assert code == 2, err
    differing = [line for line in out.splitlines() if line.strip().startswith("DIFFERS")]
    assert [line.split()[1] for line in differing] == ["ifs.entity_sets.voucher_entry"]
    assert (
        "VoucherEntryAssistantHandling: missing-projection VoucherEntryAssistantHandling.svc/"
        in out
    )
    assert "set ifs.entity_sets.voucher_entry." in out
    assert "1 of 9 entity sets differ" in err

    small_console.write_config(ifs={"entity_sets": {"voucher_entry": f"{RENAMED}.svc/VoucherSet"}})
    code, out, err = check(small_console)
    assert code == 0, out + err
    assert "ok       ifs.entity_sets.voucher_entry" in out and f"{RENAMED}.svc/VoucherSet" in out
    # And the console posts through the renamed projection: its actions follow the name.
    code, summary, err = small_console.auto()
    assert code == 3, err
    assert summary["posted"] == 3 and summary["held_reports"] == SMALL_ATTENTION


def test_a_missing_action_and_attribute_are_named(small_console: Console) -> None:
    drift(
        small_console,
        metadata_omit=[
            "VoucherEntryAssistantHandling/VoucherEntry_CreateVoucher",
            "VoucherRowsAnalysis/VoucherRow.ReferenceNumber",
        ],
    )
    code, out, err = check(small_console)
    assert code == 2, err
    assert (
        "VoucherEntryAssistantHandling: missing-action "
        "IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher: expected a bound "
        "action on VoucherEntry (found VoucherEntry_RemoveTempVoucher)." in out
    )
    assert (
        "VoucherRowsAnalysis: missing-attribute VoucherRow.ReferenceNumber: expected "
        "Edm.String. Check the tenant's API Explorer and set ifs.entity_sets.hold_voucher_rows."
        in out
    )
    assert "2 of 9 entity sets differ" in err


def test_a_forbidden_projection_is_a_finding_in_json(small_console: Console) -> None:
    drift(small_console, forbidden_projections=["GLVoucherRowsAnalysis"])
    code, out, err = check(small_console, "--json")
    assert code == 2, err
    result = json.loads(out)  # stdout is the JSON alone
    assert set(result) == {"ok", "url", "realm", "requests", "projections"}
    assert result["ok"] is False and result["url"] == small_console.ifs_url
    assert result["realm"] == "demo"
    # The forbidden projection answers its service document and is not asked again.
    assert result["requests"] == 1 + 2 * len(PROJECTIONS) - 1
    entries = {p["config_key"]: p for p in result["projections"]}
    assert list(entries) == KEYS
    for entry in entries.values():
        assert set(entry) == {
            "projection", "config_key", "entity_set", "assumed", "why", "ok", "findings"
        }  # fmt: skip
    gl = entries.pop("ifs.entity_sets.gl_voucher_rows")
    assert gl["entity_set"] == "GLVoucherRowsAnalysis.svc/GenLedVoucherRowSet"
    assert gl["assumed"] is True and gl["ok"] is False
    [finding] = gl["findings"]
    assert finding["kind"] == "forbidden" and finding["found"] == "HTTP 403"
    assert finding["config_key"] == "ifs.entity_sets.gl_voucher_rows"
    assert "permission set" in finding["advice"]
    assert all(e["ok"] and e["findings"] == [] for e in entries.values())


def test_refused_credentials_are_exit_4_not_a_finding(small_console: Console) -> None:
    from console.sim.demo import DEMO_IFS_CLIENT_ID

    sim_control(
        small_console.ifs_url,
        "credentials",
        "POST",
        {"client_id": DEMO_IFS_CLIENT_ID, "revoke": True},
    )
    code, out, err = check(small_console)
    assert code == 4 and out == "", err
    assert "authentication refused" in err


def test_credentials_check_includes_the_tenant_check(small_console: Console) -> None:
    proc = small_console.run("credentials", "check", "ifs")
    assert proc.returncode == 0, proc.stderr
    assert "the tenant serves all 9 entity sets the console uses" in proc.stdout
    drift(small_console, hidden_projections=["AccountsHandling"])
    proc = small_console.run("credentials", "check", "ifs")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    [line] = proc.stdout.splitlines()
    assert line.startswith("ifs: differs: the tenant does not serve what the console uses: ")
    assert "AccountsHandling: missing-projection" in line and "ml-console ifs check" in line


def test_a_cycle_against_a_drifted_tenant_posts_nothing_and_says_why(
    small_console: Console,
) -> None:
    drift(
        small_console,
        metadata_omit=["VoucherEntryAssistantHandling/VoucherEntry_CreateVoucher"],
    )
    code, summary, err = small_console.auto()
    assert code == 2, err
    assert summary == {}  # a failed cycle prints no summary
    [line] = [ln for ln in err.splitlines() if ln.startswith("ml-console: ifs:")]
    assert line.startswith(
        "ml-console: ifs: nothing was posted: the tenant does not serve what the console uses: "
        "VoucherEntryAssistantHandling: missing-action "
        "IfsApp.VoucherEntryAssistantHandling.VoucherEntry_CreateVoucher"
    )
    assert line.endswith("Run `ml-console ifs check` for every difference.")
    assert sim_control(small_console.ifs_url, "vouchers") == []
    assert sim_control(small_console.ifs_url, "temp-vouchers") == []
    assert ifs_posts(small_console) == 0
    # Nothing was recorded as about to be sent.
    db = sqlite3.connect(small_console.home / "state.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM audit_events WHERE type='intent'").fetchone()[0] == 0
    db.close()

    drift(small_console, metadata_omit=[])
    code, summary, err = small_console.auto()
    assert code == 3, err
    assert summary["posted"] == 3
    # The check before posting read each projection's $metadata once, nothing else.
    snap = sim_control(small_console.ifs_url, "requests")
    metadata = [r for r in snap["by_route"] if r["path"].endswith("/$metadata")]
    assert sum(r["count"] for r in metadata) == 2 * len(PROJECTIONS)  # two processes
    assert not [r for r in snap["by_route"] if r["path"].endswith(".svc/")]


def _metadata_reads(url: str) -> int:
    snap = sim_control(url, "requests")
    return sum(r["count"] for r in snap["by_route"] if r["path"].endswith("/$metadata"))


def test_the_check_before_posting_runs_once_per_process(small_sims: Any, tmp_path: Path) -> None:
    """In one process (the TUI, `--every`): a dry run posts nothing and checks nothing; the
    first posting cycle reads each projection's $metadata; later cycles and engines read
    none, but a projection that differed is read again until it matches."""
    forget_metadata()
    url = small_sims.ifs_url
    first = engine_on(small_sims, tmp_path / "first")
    try:
        first.run_cycle(dry_run=True)
        assert _metadata_reads(url) == 0
        drift_at(
            url, metadata_omit=["VoucherEntryAssistantHandling/VoucherEntry_RemoveTempVoucher"]
        )
        with pytest.raises(TenantDrift) as raised:
            first.run_cycle()
        assert [f.kind for f in raised.value.report.findings] == ["missing-action"]
        assert first.status().services["ifs"].state == "error"
        assert _metadata_reads(url) == len(PROJECTIONS)
        drift_at(url, metadata_omit=[])
        summary = first.run_cycle()
        assert summary.posted == 3
        assert _metadata_reads(url) == len(PROJECTIONS) + 1  # only the one that differed
    finally:
        first.close()
    second = engine_on(small_sims, tmp_path / "second")  # a new engine, as `--every` opens
    try:
        second.run_cycle()
        assert _metadata_reads(url) == len(PROJECTIONS) + 1
    finally:
        second.close()
