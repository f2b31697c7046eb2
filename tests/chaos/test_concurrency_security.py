"""Concurrency (two runs against one home) and security (no secret anywhere a run leaves
anything; https only, except loopback; no silent TLS opt-out; private files; exit 4 without a
retry loop; rotation while `--every` runs)."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.chaos.harness import (
    World,
    demo_world,
    record,
    request_counts,
    requests_total,
    sim_json,
    verify_world,
    vouchers,
)
from tests.e2e.conftest import SECRETS

ROTATED_EXP = "rotated-exp-6b2f0c9d1e8a47f3"
ROTATED_IFS = "rotated-ifs-93d1c7e0a4b54c2e"


def popen(world: World, *args: str) -> subprocess.Popen[str]:
    c = world.console
    return subprocess.Popen(
        [sys.executable, "-m", "console.commands.main", "--home", str(c.home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=c.env,
    )


# ------------------------------------------------------------------ concurrency
def test_two_auto_runs_started_together_post_once(tmp_path):
    with demo_world(tmp_path, reports=40) as world:
        world.console.auto()  # the state file exists: the race is over posting, not creation
        # New work for both, then both at once.
        import random

        from tests.chaos.test_crash import add_reports

        add_reports(world, 10, random.Random(1))
        procs = [popen(world, "--auto", "--json") for _ in range(2)]
        results = [(p, *p.communicate(timeout=120)) for p in procs]
        codes = sorted(p.returncode for p, _o, _e in results)
        for p, _out, err in results:
            if p.returncode == 6:
                assert "lock" in err.lower() and "pid" in err.lower(), err  # says who holds it
            else:
                assert p.returncode == 3, err
        posted = [json.loads(o)["posted"] for p, o, _e in results if p.returncode == 3]
        assert sum(posted) == 10, (codes, posted)  # the other waited, then found nothing to do
        verdict = verify_world(world)
        record("concurrency", "two --auto at once", runs=2, posted=sum(posted),
               duplicates=verdict.duplicates, lost=verdict.lost)  # fmt: skip
        verdict.assert_clean()


def test_second_process_posting_while_every_runs(tmp_path):
    with demo_world(tmp_path, reports=40) as world:
        loop = popen(world, "--auto", "--every", "1s")
        try:
            others = [world.console.run("--auto", "--json") for _ in range(3)]
        finally:
            loop.send_signal(signal.SIGTERM)
            _out, loop_err = loop.communicate(timeout=60)
        assert loop.returncode == 0, loop_err
        for proc in others:
            assert proc.returncode in (3, 6), proc.stderr
            if proc.returncode == 6:
                assert "lock" in proc.stderr.lower()
        verdict = verify_world(world)
        record("concurrency", "--every + second process", runs=4, posted=verdict.posted,
               duplicates=verdict.duplicates, lost=verdict.lost)  # fmt: skip
        verdict.assert_clean()


# ------------------------------------------------------------------ security
def scan_for_secrets(world: World, secrets: tuple[str, ...]) -> int:
    """Every file under the home (state, WAL, logs) and every output; returns items scanned."""
    c = world.console
    for args in (("info",), ("held", "--json"), ("audit", "export"), ("audit", "verify")):
        c.run(*args)
    items = 0
    for path in c.home.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            items += 1
            for secret in secrets:
                assert secret.encode() not in blob, f"secret in {path}"
    for text in c.outputs:
        items += 1
        for secret in secrets:
            assert secret not in text, "secret in a command's output"
    return items


def rotate_in_sims(world: World) -> None:
    """Both services accept only the rotated secrets from now on, set over HTTP as on a
    simulator run as its own process (`ml-console sim`). IFS tokens already issued stay valid
    until they expire, as Keycloak's do; they are revoked too, so the next IFS call has to
    fetch a token with the new secret."""
    from console.sim.demo import DEMO_EXPENSIFY_USER_ID, DEMO_IFS_CLIENT_ID

    exp_url, ifs_url = world.sims.expensify_url, world.sims.ifs_url
    body = {"partnerUserID": DEMO_EXPENSIFY_USER_ID, "partnerUserSecret": ROTATED_EXP}
    assert sim_json(exp_url, "/__sim/credentials", "POST", body)["active"] is True
    body = {"client_id": DEMO_IFS_CLIENT_ID, "client_secret": ROTATED_IFS}
    assert sim_json(ifs_url, "/__sim/credentials", "POST", body)["active"] is True
    sim_json(ifs_url, "/__sim/tokens/revoke", "POST", {})


def test_rotation_while_every_runs_and_no_secret_anywhere(tmp_path):
    with demo_world(tmp_path, reports=30) as world:
        c = world.console
        loop = popen(world, "--auto", "--json", "--every", "1s")
        try:
            deadline = time.monotonic() + 60
            while not vouchers(world.sims) and time.monotonic() < deadline:
                time.sleep(0.05)
            # Rotate as it happens for real: the services issue the new secrets, then the
            # operator stores them in the keyring. A cycle that falls in between may be
            # refused; it must say so plainly, lose nothing, and the next cycle must run
            # on the new secrets without a restart.
            rotate_in_sims(world)
            c.set_credentials(expensify_secret=ROTATED_EXP, ifs_secret=ROTATED_IFS)
            import random

            from tests.chaos.test_crash import add_reports

            add_reports(world, 4, random.Random(2))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if world.postable <= {v["ReferenceNumber"].split(":")[1]
                                      for v in vouchers(world.sims)}:  # fmt: skip
                    break
                time.sleep(0.1)
            time.sleep(1.5)  # one more full cycle on the new secrets
        finally:
            loop.send_signal(signal.SIGTERM)
            out, err = loop.communicate(timeout=60)
        c.outputs += [out, err]
        assert loop.returncode == 0, err
        summaries = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert len(summaries) >= 2
        assert "Traceback" not in err and "unexpected" not in err, err
        for line in err.splitlines():
            if line.startswith(("ml-console: ifs", "ml-console: expensify")):
                assert "refused" in line, err  # only the rotation window, said plainly
        assert summaries[-1]["failed"] == 0, summaries[-1]
        verdict = verify_world(world)
        verdict.assert_clean()
        scanned = scan_for_secrets(world, (*SECRETS, ROTATED_EXP, ROTATED_IFS))
        record("security", "secret scan", items=scanned, secrets_found=0, rotations=1)


def test_private_files_and_folders(tmp_path):
    with demo_world(tmp_path, reports=20) as world:
        world.console.auto()
        home = world.console.home
        for path in [home, *home.rglob("*")]:
            mode = stat.S_IMODE(path.stat().st_mode)
            if path.is_dir():
                assert mode & 0o077 == 0, f"{path} is {oct(mode)}"
            else:
                assert mode & 0o077 == 0, f"{path} is {oct(mode)}"


@pytest.mark.parametrize("service", ["expensify", "ifs"])
def test_plain_http_refused_except_loopback(tmp_path, service):
    with demo_world(tmp_path, reports=20) as world:
        cfg = world.console.home / "config.toml"
        url = world.sims.expensify_url if service == "expensify" else world.sims.ifs_url
        text = cfg.read_text()
        assert url in text
        cfg.write_text(text.replace(url, "http://sync.example.com"))  # by hand, not validated
        proc = world.console.run("--auto", "--json")
        assert proc.returncode == 2, proc.stderr
        assert "https" in proc.stderr.lower(), proc.stderr
        assert proc.stdout == ""


@pytest.mark.parametrize("key", ["verify", "verify_tls", "tls_verify", "insecure"])
def test_tls_verification_cannot_be_switched_off(tmp_path, key):
    with demo_world(tmp_path, reports=20) as world:
        cfg = world.console.home / "config.toml"
        cfg.write_text(cfg.read_text().replace("[ifs]", f"[ifs]\n{key} = false", 1))
        proc = world.console.run("--auto", "--json")
        assert proc.returncode == 2, proc.stderr
        assert key in proc.stderr


def test_wrong_ifs_secret_exit_4_without_retry_loop(tmp_path):
    with demo_world(tmp_path, reports=20) as world:
        world.console.set_credentials(ifs_secret="wrong-ifs-secret-value")
        proc = world.console.run("--auto", "--json")
        assert proc.returncode == 4, proc.stderr
        assert "ifs" in proc.stderr.lower()
        token_calls = sum(n for (m, p, _s), n in request_counts(world.sims.ifs_url).items()
                          if "token" in p)  # fmt: skip
        assert token_calls <= 3, token_calls  # one try and one keyring re-read: no loop
        assert "wrong-ifs-secret-value" not in proc.stderr + proc.stdout
        assert Path(world.console.home).exists()


@pytest.mark.parametrize("service", ["expensify", "ifs"])
def test_revoked_key_exit_4_and_nothing_posted(tmp_path, service):
    """A key revoked on the service side (over the simulator's HTTP control route, as for a
    simulator run as its own process): the run stops with exit 4, names the service, posts
    nothing and does not loop on the refusal."""
    from console.sim.demo import DEMO_EXPENSIFY_USER_ID, DEMO_IFS_CLIENT_ID

    with demo_world(tmp_path, reports=20) as world:
        url = world.sims.expensify_url if service == "expensify" else world.sims.ifs_url
        key = ("partnerUserID", DEMO_EXPENSIFY_USER_ID) if service == "expensify" else (
            "client_id", DEMO_IFS_CLIENT_ID)  # fmt: skip
        revoked = sim_json(url, "/__sim/credentials", "POST", {key[0]: key[1], "revoke": True})
        assert revoked["active"] is False
        proc = world.console.run("--auto", "--json")
        assert proc.returncode == 4, proc.stderr
        assert service in proc.stderr.lower(), proc.stderr
        assert "Traceback" not in proc.stderr
        assert vouchers(world.sims) == []
        calls = requests_total(url, path_part="token" if service == "ifs" else "Integration")
        assert calls <= 3, calls  # one try and one keyring re-read: no loop
