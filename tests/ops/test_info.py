"""`ml-console info` shows where alerts go, never the credential in them: a webhook URL as
its scheme and host, a login written into a URL or an SMTP host left out."""

from __future__ import annotations

from console.commands.info import masked
from tests.e2e.conftest import make_console

HOOK = "https://hooks.slack.example/services/T0001/B0002/s3cr3tT0k3nXyZ"


def test_info_shows_the_webhook_host_and_no_token(tmp_path, small_sims) -> None:
    console = make_console(tmp_path, small_sims)
    console.write_config(
        alerts={
            "webhook_url": HOOK,
            "email_to": ["ops@example.com"],
            "smtp_host": "mailer:hunter2pass@smtp.example.com",
        }
    )
    proc = console.run("info")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "alerts.webhook_url" in out and "https://hooks.slack.example/…" in out, out
    for secret in ("s3cr3tT0k3nXyZ", "T0001", "hunter2pass", "mailer:"):
        assert secret not in out, secret
    assert "smtp.example.com" in out


def test_masked_keeps_what_is_not_a_credential() -> None:
    assert (
        masked("alerts.webhook_url", "https://h.example:8443/x?t=1") == "https://h.example:8443/…"
    )
    assert masked("alerts.webhook_url", "") == ""
    assert masked("ifs.url", "https://acme.ifs.cloud") == "https://acme.ifs.cloud"
    assert masked("ifs.url", "https://u:p@acme.ifs.cloud/x") == "https://…@acme.ifs.cloud/x"
    assert masked("alerts.smtp_host", "smtp.example.com") == "smtp.example.com"
    assert masked("alerts.smtp_port", 587) == 587
