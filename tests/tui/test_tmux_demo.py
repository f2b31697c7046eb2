"""The real `ml-console demo` in a real terminal (tmux): five screens and out with `q`."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TITLES = {
    "1": "Pending reports",
    "2": "Mapping — Expensify coding",
    "3": "Missing dimensions — the hold queue",
    "4": "Dry run — the exact plan",
    "5": "Audit trail",
}


def _capture(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
    ).stdout


def _wait_for(session: str, text: str, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    screen = ""
    while time.monotonic() < deadline:  # bounded: polls the pane until the text shows
        screen = _capture(session)
        if text in screen or "Traceback" in screen:
            return screen
        time.sleep(0.2)
    return screen


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (make apt)")
def test_demo_in_tmux_through_five_screens(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("ml-console")
    if not exe.exists():
        pytest.skip(f"{exe} is not installed (pip install -e .)")
    session = f"mlc-{uuid.uuid4().hex[:8]}"
    env = (
        f"HOME={tmp_path} XDG_DATA_HOME={tmp_path}/xdg TERM=xterm-256color "
        f"PYTHON_KEYRING_BACKEND=keyrings.alt.file.PlaintextKeyring"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48",
         f"cd {ROOT} && env {env} {exe} demo; echo ML-CONSOLE-EXIT=$?; sleep 30"],
        check=True,
    )  # fmt: skip
    try:
        first = _wait_for(session, TITLES["1"])
        assert "Traceback" not in first, first
        assert TITLES["1"] in first, first
        for key, title in TITLES.items():
            subprocess.run(["tmux", "send-keys", "-t", session, key], check=True)
            screen = _wait_for(session, title)
            assert "Traceback" not in screen, screen
            assert title in screen, f"{title!r} not on screen after {key}:\n{screen}"
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 30
        screen = _capture(session)
        while TITLES["5"] in screen and time.monotonic() < deadline:
            time.sleep(0.2)
            screen = _capture(session)
        assert TITLES["5"] not in screen, "the app did not quit on q"
        screen = _wait_for(session, "ML-CONSOLE-EXIT=")
        assert "Traceback" not in screen, screen
        assert "ML-CONSOLE-EXIT=0" in screen, screen
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
