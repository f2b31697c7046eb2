"""Alerts end to end: the real `ml-console --auto` against the simulators, alerting to a local
webhook receiver and a local SMTP server (tests/ops/conftest.py), and the sending code
in-process for what a subprocess cannot show (STARTTLS, refusals to send a password)."""

from __future__ import annotations

import io
import shutil
import socket
import sqlite3
import ssl
import subprocess
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from console.alerts import Alert, Alerter, scrub, send_email
from console.config import AlertsConfig, Settings
from console.sim.demo import DEMO_EXPENSIFY_SECRET, DEMO_IFS_SECRET
from console.store import Store
from tests.e2e.conftest import sim_post
from tests.ops.conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_TOKEN,
    Mailbox,
    alerts_config,
    free_port,
    start_smtpd,
)

SECRETS = (DEMO_EXPENSIFY_SECRET, DEMO_IFS_SECRET, SMTP_PASSWORD, WEBHOOK_TOKEN)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
        assert "/services/" not in text  # no part of the webhook URL either


def closed_port() -> int:
    return free_port()  # nothing listens there once the probe socket is closed


def test_a_clean_cycle_sends_nothing(alert_console, webhook, mailbox):
    code, summary, err = alert_console.auto()
    assert code == 3, err  # 90000004 is held: attention, not failure
    assert summary["held"] == 1
    assert webhook.bodies == [] and mailbox.messages == []


def test_a_failed_cycle_alerts_on_both_channels_without_a_secret(alert_console, webhook, mailbox):
    port = closed_port()
    alert_console.write_config(ifs={"url": f"http://127.0.0.1:{port}"})
    code, _summary, err = alert_console.auto()
    assert code == 5, err  # the alert does not change the exit code
    texts = webhook.texts()
    failed = [t for t in texts if "cycle failed: exit 5" in t]
    assert len(failed) == 1, texts
    assert "unreachable" in failed[0]
    # Never a successful sync in this home: stale too, once.
    assert sum("no successful cycle" in t for t in texts) == 1
    mails = mailbox.texts()
    assert any("exit 5" in m for m in mails), mails
    assert mailbox.logins == [(SMTP_USER, SMTP_PASSWORD)] * len(mailbox.messages)
    assert all(m["To"] == "ops@small.example" for m in mailbox.messages)
    assert_no_secret(*texts, *mails)
    # The next failing cycle alerts its failure again, not the staleness.
    code, _summary, _err = alert_console.auto()
    assert code == 5
    assert sum("no successful cycle" in t for t in webhook.texts()) == 1
    assert sum("cycle failed: exit 5" in t for t in webhook.texts()) == 2


def test_revoked_credentials_alert_exit_4_and_no_secret(alert_console, webhook, mailbox):
    alert_console.set_credentials(expensify_secret="revoked-secret-value-123")
    code, _summary, err = alert_console.auto()
    assert code == 4, err
    texts = webhook.texts() + mailbox.texts()
    assert any("exit 4 (authentication refused)" in t for t in texts), texts
    assert all("revoked-secret-value-123" not in t for t in texts)
    assert_no_secret(*texts)


def test_a_voucher_ifs_refused_alerts_once(alert_console, small_sims, webhook):
    sim_post(
        small_sims.ifs_url,
        "/__sim/faults",
        {
            "route": "VoucherEntryAssistantHandling",
            "method": "POST",
            "fault": "status",
            "status": 400,
            "count": 1,
        },
    )
    code, summary, err = alert_console.auto()
    assert code == 3, err
    assert summary["failed"] == 1, summary
    refused = [t for t in webhook.texts() if "IFS refused 1 voucher" in t]
    assert len(refused) == 1, webhook.texts()
    assert "EXP:" in refused[0]  # names the voucher's reference
    code, _summary, _err = alert_console.auto()
    assert sum("IFS refused" in t for t in webhook.texts()) == 1  # not again
    assert_no_secret(*webhook.texts())


def test_a_report_held_too_long_alerts_once(alert_console, webhook):
    code, _summary, err = alert_console.auto()
    assert code == 3, err
    assert webhook.bodies == []
    # Held since long ago (the holds are stamped by the machine's clock; no waiting here).
    db = sqlite3.connect(alert_console.home / "state.sqlite3")
    db.execute("UPDATE holds SET first_held = '2026-11-01T00:00:00.000000Z'")
    db.commit()
    db.close()
    alert_console.auto()
    held = [t for t in webhook.texts() if "held longer than 72h" in t]
    assert len(held) == 1, webhook.texts()
    assert "report 90000004" in held[0] and "missing-dimension:B:CC-410" in held[0]
    alert_console.auto()
    assert sum("held longer than" in t for t in webhook.texts()) == 1


def test_alerts_check_reports_staleness_once(alert_console, webhook):
    home = alert_console.home
    with Store(home / "state.sqlite3", clock=lambda: datetime(2026, 11, 1, 8, tzinfo=UTC)) as st:
        run = st.start_run("auto", "sync")
        st.finish_run(run, {"posted": 0})
    proc = alert_console.run("alerts", "check")
    assert proc.returncode == 0, proc.stderr
    assert "stale" in proc.stdout
    texts = webhook.texts()
    assert len(texts) == 1 and "no successful cycle for more than 2.0h" in texts[0]
    assert "2026-11-01T08:00:00" in texts[0]
    proc = alert_console.run("alerts", "check")
    assert "nothing to alert" in proc.stdout
    assert len(webhook.texts()) == 1


def test_an_alert_that_cannot_be_sent_never_fails_the_cycle(tmp_path, small_sims):
    from tests.e2e.conftest import make_console

    console = make_console(tmp_path, small_sims)
    dead = closed_port()
    console.write_config(
        ifs={"url": f"http://127.0.0.1:{dead}"},  # unreachable IFS: the cycle fails, exit 5
        alerts={
            "webhook_url": f"http://127.0.0.1:{dead}/services/{WEBHOOK_TOKEN}",
            "email_to": ["ops@small.example"],
            "smtp_host": "127.0.0.1",
            "smtp_port": dead,
            "smtp_starttls": False,
        },
    )
    code, _summary, err = console.auto()
    assert code == 5, err
    assert "alert not sent (cycle-failed): webhook http://127.0.0.1" in err
    assert "alert not sent (cycle-failed): smtp 127.0.0.1" in err
    assert "Traceback" not in err
    assert_no_secret(err)


def test_alerts_test_command(alert_console, webhook, mailbox):
    proc = alert_console.run("alerts", "test")
    assert proc.returncode == 0, proc.stderr
    assert "sent on: webhook, email" in proc.stdout
    assert webhook.texts() == ["ml-console: test alert\nIf you read this, alerts reach you."]
    assert len(mailbox.messages) == 1
    assert mailbox.messages[0]["Subject"] == "ml-console: test alert"


# ------------------------------------------------------------------ in-process
def test_scrub_removes_secrets_and_url_user_info():
    text = "failed: https://bob:hunter22@ifs.example/x token s3cr3t-value and s3cr3t-value"
    out = scrub(text, ["s3cr3t-value", "abc"])  # too short to scrub safely: left alone
    assert "s3cr3t-value" not in out and "hunter22" not in out and "bob" not in out
    assert "https://[redacted]@ifs.example/x" in out


def test_alerter_scrubs_every_secret_it_knows(webhook):
    class Secrets:
        def expensify(self):
            raise RuntimeError("not needed")

        def ifs(self):
            from console.credentials import IfsCredentials

            return IfsCredentials(client_id="id", client_secret=SecretStr("ifs-secret-0042"))

        def smtp(self):
            return None

    cfg = AlertsConfig(webhook_url=webhook.url)
    err = io.StringIO()
    failed = Alerter(cfg, Secrets(), err).send(
        [Alert("cycle-failed", "boom ifs-secret-0042", (f"url {webhook.url}",))]
    )
    assert failed == 0
    assert webhook.texts() == ["ml-console: boom [redacted]\nurl [redacted]"]


def test_config_rejects_bad_alert_settings():
    with pytest.raises(ValueError, match="email_to is set but smtp_host is not"):
        Settings.model_validate({"alerts": {"email_to": ["a@b.example"]}})
    with pytest.raises(ValueError, match="must be an http"):
        Settings.model_validate({"alerts": {"webhook_url": "ftp://x.example/hook"}})
    with pytest.raises(ValueError, match="not a duration"):
        Settings.model_validate({"alerts": {"stale_after": "soon"}})
    with pytest.raises(ValueError, match="not an e-mail address"):
        Settings.model_validate({"alerts": {"email_to": ["nobody"], "smtp_host": "h"}})
    assert not Settings().alerts.enabled
    assert Settings().alerts.stale_after_s == 7200


def test_a_password_goes_only_over_tls_off_loopback(monkeypatch):
    calls: list[str] = []

    class FakeSMTP:
        def __init__(self, host, port, timeout):
            calls.append(f"connect {host}")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def ehlo(self):
            calls.append("ehlo")

        def login(self, user, password):
            calls.append("login")

        def send_message(self, message):
            calls.append("send")

    monkeypatch.setattr("console.alerts.smtplib.SMTP", FakeSMTP)
    cfg = AlertsConfig(email_to=["ops@x.example"], smtp_host="mail.x.example", smtp_starttls=False)
    with pytest.raises(Exception, match="a password is sent only over TLS"):
        send_email(cfg, "s", "t", ("u", "p"))
    assert "login" not in calls and "send" not in calls
    send_email(cfg, "s", "t", None)  # no login: plain delivery is allowed
    assert calls[-1] == "send"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
def test_starttls_then_login_against_a_local_smtp_server(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    box = Mailbox("127.0.0.1", free_port())
    controller = start_smtpd(
        box, tls_context=server_ctx, require_starttls=True, auth_require_tls=True
    )
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        cfg = AlertsConfig(
            email_to=["ops@x.example"],
            email_from="ml@x.example",
            smtp_host="127.0.0.1",
            smtp_port=box.port,
            smtp_starttls=True,
        )
        send_email(cfg, "subject", "body text", (SMTP_USER, SMTP_PASSWORD), tls_context=client_ctx)
        # Without STARTTLS the server refuses (it requires it): said, not raised past send.
        plain = cfg.model_copy(update={"smtp_starttls": False})
        err = io.StringIO()
        secrets = type("S", (), {"smtp": lambda self: None})()
        assert Alerter(plain, secrets, err).send([Alert("test", "x")]) == 1
        assert "alert not sent (test): smtp 127.0.0.1" in err.getvalue()
    finally:
        controller.stop()
    assert box.logins == [(SMTP_USER, SMTP_PASSWORD)]
    assert len(box.messages) == 1 and box.messages[0]["Subject"] == "subject"
    assert "body text" in box.messages[0].get_body(("plain",)).get_content()


def test_cursor_state_survives_in_the_store(tmp_path):
    from console.alerts import HELD_ALERTED, held_alerts

    with Store(tmp_path / "s.sqlite3") as st:
        assert held_alerts(st, 1.0, datetime(2026, 11, 30, tzinfo=UTC)) == []
        assert st.cursor(HELD_ALERTED) is None
    assert socket  # imported for free_port's users
    _ = alerts_config
