"""`ml-console serve`: the console in a browser (textual-serve), for a colleague or an auditor.

Each browser session starts its own `ml-console` TUI process (same home, config and keyring as
this command) and streams it over a WebSocket. On 127.0.0.1 (the default) only this machine
can reach it. Binding to any other address needs a token (`--token TOKEN`, `--token auto` to
generate one, or env ML_CONSOLE_SERVE_TOKEN) and prints a warning: whoever has the token
works the console as this operator, posting included, and the connection is plain HTTP
(put a TLS reverse proxy in front).

The token is taken once from `?token=` on the page's URL and then kept in an HttpOnly,
SameSite=Strict cookie; the WebSocket and downloads need it. The WebSocket also checks the
Origin header against the served address, on loopback too, so a web page in the operator's
browser cannot drive the console (cross-site WebSocket hijacking).

Exit codes: 0 stopped by SIGINT/SIGTERM, 2 usage (a non-loopback address without a token).
"""

from __future__ import annotations

import argparse
import hmac
import os
import secrets
import shlex
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

from console.exitcodes import ExitCode
from console.http import is_loopback_host

TOKEN_ENV = "ML_CONSOLE_SERVE_TOKEN"
COOKIE = "ml_console_token"
DEFAULT_PORT = 8566


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def console_command() -> str:
    """The TUI, as the shell command textual-serve starts per session (same interpreter;
    the home, config and as-of date travel in the environment, set by main)."""
    return f"{shlex.quote(sys.executable)} -m console.commands.main"


def resolve_token(raw: str | None) -> tuple[str | None, bool]:
    """(token, generated). `auto` makes a random one; the environment variable is read and
    removed, so the TUI processes started per session never see it."""
    env = os.environ.pop(TOKEN_ENV, "").strip()
    value = (raw or env or "").strip()
    if value == "auto":
        return secrets.token_urlsafe(24), True
    return (value or None), False


def build_server(host: str, port: int, token: str | None, public_url: str | None = None) -> Any:
    """A textual_serve Server for the console, with the token and Origin checks."""
    from aiohttp import web
    from textual_serve.server import Server

    shown_host = host if not host.startswith("0.0.0.0") and host != "::" else socket.getfqdn()
    if ":" in shown_host and not shown_host.startswith("["):
        shown_host = f"[{shown_host}]"
    base = (public_url or f"http://{shown_host}:{port}").rstrip("/")
    allowed_origin = urlsplit(base).netloc.lower()

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith("/static/"):
            return await handler(request)
        if path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and urlsplit(origin).netloc.lower() != allowed_origin:
                raise web.HTTPForbidden(text="cross-origin WebSocket refused")
        if token is None:
            return await handler(request)
        given = request.query.get("token") or request.cookies.get(COOKIE) or ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise web.HTTPUnauthorized(
                text="ml-console serve: a token is required (open the URL with ?token=...)"
            )
        response = await handler(request)
        if request.query.get("token"):
            response.set_cookie(
                COOKIE, token, httponly=True, samesite="Strict", secure=base.startswith("https")
            )
        return response

    class ConsoleServer(Server):
        async def _make_app(self) -> web.Application:
            app: web.Application = await super()._make_app()
            app.middlewares.append(guard)
            return app

        async def on_startup(self, app: web.Application) -> None:
            print(f"ml-console: serving the console on {base}/", file=sys.stderr, flush=True)

    return ConsoleServer(console_command(), host=host, port=port, title="ml-console",
                         public_url=base)  # fmt: skip


def run_serve_command(args: argparse.Namespace, *, stderr: TextIO | None = None) -> int:
    err = stderr or sys.stderr
    host: str = args.host
    token, generated = resolve_token(getattr(args, "token", None))
    if not is_loopback_host(host) and token is None:
        print(
            f"ml-console: serve: binding to {host} opens the console beyond this machine; it "
            "needs a token: --token TOKEN, --token auto, or env "
            f"{TOKEN_ENV} (or keep the default --host 127.0.0.1)",
            file=err,
        )
        return int(ExitCode.USAGE)
    port = int(args.port) if args.port else free_port(host)
    if not is_loopback_host(host):
        print(
            f"ml-console: WARNING: serving on {host}:{port}, reachable from other machines. "
            "Anyone with the token works this console as you, posting to IFS included. The "
            "connection is plain HTTP: put a TLS reverse proxy in front (--public-url "
            "https://...) and keep the token secret.",
            file=err,
            flush=True,
        )
    server = build_server(host, port, token, getattr(args, "public_url", None))
    if generated:
        print(
            f"ml-console: open {server.public_url}/?token={token}",
            file=err,
            flush=True,
        )
    server.serve()
    return int(ExitCode.OK)
