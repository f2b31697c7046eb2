"""`ml-console serve`: the console in a browser. The real command is started as a subprocess
on loopback; its page is fetched over HTTP, its guards (token off loopback, Origin on the
WebSocket) are checked, and a real headless Chromium opens it, switches screens by keys and
takes a screenshot."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Console, make_console
from tests.ops.conftest import free_port

READY = "ml-console: serving the console on "


@contextlib.contextmanager
def serving(console: Console, *args: str, timeout: float = 60) -> Iterator[tuple[str, list[str]]]:
    """Run `ml-console serve ARGS` until the block ends; yields (base URL, stderr lines)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.commands.main", "--home", str(console.home), "serve",
         *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=console.env,
    )  # fmt: skip
    lines: list[str] = []
    ready: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if line.startswith(READY):
                ready.put(line[len(READY) :].strip().rstrip("/"))

    threading.Thread(target=read, daemon=True).start()
    try:
        try:
            base = ready.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"serve did not start: {''.join(lines)}") from None
        yield base, lines
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def served_console(tmp_path, small_sims) -> Console:
    console = make_console(tmp_path, small_sims)
    code, _summary, err = console.auto()  # something in the audit trail to show
    assert code == 3, err
    return console


def test_serve_answers_its_page_on_loopback(served_console):
    port = free_port()
    with serving(served_console, "--port", str(port)) as (base, _lines):
        assert base == f"http://127.0.0.1:{port}"
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200
        assert f"ws://127.0.0.1:{port}/ws" in page.text
        assert "ml-console" in page.text
        assert httpx.get(base + "/static/js/textual.js", timeout=10).status_code == 200
        # A web page elsewhere must not drive the console through the operator's browser.
        hijack = httpx.get(
            base + "/ws",
            headers={"Origin": "http://evil.example", "Connection": "Upgrade",
                     "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
            timeout=10,
        )  # fmt: skip
        assert hijack.status_code == 403


def test_binding_beyond_loopback_needs_a_token_and_warns(served_console):
    proc = served_console.run("serve", "--host", "0.0.0.0", "--port", "0")
    assert proc.returncode == 2
    assert "needs a token" in proc.stderr
    token = "tok-" + "x" * 20
    port = free_port()
    with serving(
        served_console, "--host", "0.0.0.0", "--port", str(port), "--token", token,
        "--public-url", f"http://127.0.0.1:{port}",
    ) as (base, lines):  # fmt: skip
        assert any("WARNING: serving on 0.0.0.0" in line for line in lines)
        assert httpx.get(base + "/", timeout=10).status_code == 401
        assert httpx.get(base + "/?token=wrong", timeout=10).status_code == 401
        page = httpx.get(base + f"/?token={token}", timeout=10)
        assert page.status_code == 200
        assert page.cookies.get("ml_console_token") == token
        with httpx.Client(cookies={"ml_console_token": token}) as client:
            assert client.get(base + "/", timeout=10).status_code == 200


def test_auto_token_is_printed_once_for_the_operator(served_console):
    with serving(served_console, "--port", str(free_port()), "--token", "auto") as (base, lines):
        opened = [line for line in lines if "ml-console: open " in line]
        assert len(opened) == 1
        url = opened[0].split("ml-console: open ", 1)[1].strip()
        assert httpx.get(base + "/", timeout=10).status_code == 401
        assert httpx.get(url, timeout=10).status_code == 200


# ------------------------------------------------------------------ a real browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

# Every byte the console sends to the browser, as text, kept in the page (DOM) too: xterm.js
# draws on a canvas, so the screen's text is read from what reached the terminal.
RECORDER = """
(() => {
  const Native = window.WebSocket;
  window.__mlText = "";
  const decoder = new TextDecoder();
  window.WebSocket = function (url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    ws.addEventListener("message", (event) => {
      if (event.data instanceof ArrayBuffer) {
        window.__mlText += decoder.decode(event.data, {stream: true});
      } else if (typeof event.data === "string") {
        window.__mlText += event.data;
      }
    });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""


def png_facts(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the decoded pixels) of a PNG, stdlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    pos, idat = 8, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    pixels = zlib.decompress(idat)
    return width, height, len(set(pixels))


def wait_for(driver, predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    text = driver.execute_script("return window.__mlText || ''")
    raise AssertionError(f"timed out waiting for {what}; the terminal got: {text[-2000:]!r}")


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (make apt installs them)",
)
def test_a_real_browser_opens_the_console_switches_screens_and_screenshots(
    served_console, tmp_path
):
    pytest.importorskip("selenium", reason="selenium is in the dev extras")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(arg)
    port = free_port()
    with serving(served_console, "--port", str(port)) as (base, _lines):
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
            driver.get(base + "/")

            def text() -> str:
                return str(driver.execute_script("return window.__mlText || ''"))

            wait_for(driver, lambda: "Pending" in text(), 90, "the console's first screen")
            assert "Audit trail" not in text()
            terminal = driver.find_element(By.ID, "terminal")
            terminal.click()
            ActionChains(driver).send_keys("5").perform()
            wait_for(driver, lambda: "Audit trail" in text(), 60, "the Audit screen after '5'")
            wait_for(driver, lambda: "run-finished" in text(), 30, "the audit events")
            # Keep what reached the terminal in the page, so the DOM says what was shown.
            driver.execute_script(
                "const p = document.createElement('pre'); p.id = 'ml-text';"
                "p.style.display = 'none'; p.textContent = window.__mlText;"
                "document.body.appendChild(p);"
            )
            assert "Audit trail" in driver.page_source
            shot = tmp_path / "console-in-a-browser.png"
            assert driver.save_screenshot(str(shot))
        finally:
            driver.quit()
    width, height, distinct = png_facts(shot)
    assert shot.stat().st_size > 10_000
    assert width >= 800 and height >= 500
    assert distinct > 20  # a drawn console, not a blank page
    # `ML_CONSOLE_SCREENSHOT=docs/img/serve-in-a-browser.png pytest …` refreshes the README's.
    keep = os.environ.get("ML_CONSOLE_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
