"""Local receivers for the alert tests: a webhook (http.server on loopback) and an SMTP server
(aiosmtpd on loopback, a login accepted without TLS because it is loopback), and a console
on the small world whose [alerts] point at both."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.e2e.conftest import Console, make_console

SMTP_USER = "alerts@small.example"
SMTP_PASSWORD = "smtp-pass-5e3f9a1c7b"
WEBHOOK_TOKEN = "T0000/B1111/XyZsecretwebhooktoken"


@dataclass
class Webhook:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200

    def texts(self) -> list[str]:
        return [b.get("text", "") for b in self.bodies]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            hook.bodies.append({"_path": self.path, **json.loads(raw)})
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/services/{WEBHOOK_TOKEN}"
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    def texts(self) -> list[str]:
        out = []
        for m in self.messages:
            body = m.get_body(("plain",))
            out.append(f"Subject: {m['Subject']}\n{body.get_content() if body else ''}")
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_smtpd(box: Mailbox, **controller_kwargs: Any) -> Any:
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any):
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            box.logins.append((user, password))
            return AuthResult(success=(user, password) == (SMTP_USER, SMTP_PASSWORD))
        return AuthResult(success=False)

    kwargs: dict[str, Any] = {
        "hostname": "127.0.0.1",
        "port": box.port,
        "authenticator": authenticator,
        "auth_require_tls": False,
    }
    kwargs.update(controller_kwargs)
    controller = Controller(Handler(), **kwargs)
    controller.start()
    return controller


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox("127.0.0.1", free_port())
    controller = start_smtpd(box)
    try:
        yield box
    finally:
        controller.stop()


def alerts_config(webhook: Webhook | None, mailbox: Mailbox | None, **extra: Any) -> dict:
    cfg: dict[str, Any] = {}
    if webhook is not None:
        cfg["webhook_url"] = webhook.url
    if mailbox is not None:
        cfg.update(
            email_to=["ops@small.example"],
            email_from="ml-console@small.example",
            smtp_host=mailbox.host,
            smtp_port=mailbox.port,
            smtp_starttls=False,
        )
    cfg.update(extra)
    return cfg


@pytest.fixture
def alert_console(tmp_path, small_sims, webhook, mailbox) -> Console:
    """The small world's console, alerting to both local receivers, SMTP login in the keyring."""
    console = make_console(tmp_path, small_sims)
    cfg = alerts_config(webhook, mailbox)
    console.write_config(alerts=cfg)
    # write_config starts from the defaults each time: keep [alerts] on the console.
    plain = console.write_config

    def write_config(**overrides: Any) -> None:
        plain(**{"alerts": dict(cfg), **overrides})

    console.write_config = write_config  # type: ignore[method-assign]
    proc = console.run(
        "alerts", "smtp-login", "--user", SMTP_USER, "--secret-stdin", input=SMTP_PASSWORD + "\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert SMTP_PASSWORD not in proc.stdout + proc.stderr
    return console
