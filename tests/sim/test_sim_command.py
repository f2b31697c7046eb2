"""`ml-console sim` as a user runs it (a real subprocess), and the SimServers runner the other
test suites use."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from console.sim.dataset import parse_dataset
from console.sim.demo import (
    DEMO_EXPENSIFY_SECRET,
    DEMO_EXPENSIFY_USER_ID,
    DEMO_IFS_CLIENT_ID,
    DEMO_IFS_SECRET,
    DEMO_REALM,
    build_demo_dataset,
)
from tests.conftest import sim_control, small_dataset_raw

ROOT = Path(__file__).resolve().parents[2]
EXPENSIFY_PATH = "/Integration-Server/ExpensifyIntegrations"
# IFS 21R1's accounts (code part A): six in the small dataset, more than a page of five.
ACCOUNTS_PATH = "/main/ifsapplications/projection/v1/AccountsHandling.svc/AccountSet"
URL = re.compile(r"http://127\.0\.0\.1:(\d+)")


def console_command() -> list[str]:
    script = Path(sys.executable).parent / "ml-console"
    return [str(script)] if script.exists() else [sys.executable, "-m", "console.commands.main"]


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """No config, no home, no usable keyring: `sim` needs none of them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ML_CONSOLE_") or k == "ML_CONSOLE_AS_OF"  # the suite's fixed day
    }
    env["HOME"] = str(tmp_path / "no-home")
    env["XDG_CONFIG_HOME"] = str(tmp_path / "no-config")
    env["XDG_DATA_HOME"] = str(tmp_path / "no-data")
    env["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    env["PYTHONUNBUFFERED"] = "0"
    return env


class SimProcess:
    def __init__(self, args: list[str], tmp_path: Path) -> None:
        self.stderr_path = tmp_path / "sim-stderr.log"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [*console_command(), "sim", *args],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
            env=isolated_env(tmp_path),
        )

    def first_line(self, timeout_s: float = 60) -> str:
        assert self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            if not sel.select(timeout_s):
                raise AssertionError(f"no stdout line within {timeout_s} s: {self.stderr()}")
        finally:
            sel.close()
        return self.proc.stdout.readline().decode("utf-8")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout_s)
        return code, time.monotonic() - started

    def rest_of_stdout(self) -> bytes:
        out: IO[bytes] | None = self.proc.stdout
        assert out is not None and self.proc.poll() is not None
        return out.read()

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()


@pytest.fixture
def run_sim(tmp_path: Path) -> Iterator[Any]:
    started: list[SimProcess] = []

    def start(*args: str) -> SimProcess:
        p = SimProcess(list(args), tmp_path)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def expensify_get(base: str, what: dict[str, Any], secret: str = DEMO_EXPENSIFY_SECRET) -> Any:
    job = {
        "type": "get",
        "credentials": {"partnerUserID": DEMO_EXPENSIFY_USER_ID, "partnerUserSecret": secret},
        "inputSettings": what,
    }
    r = httpx.post(
        base + EXPENSIFY_PATH, data={"requestJobDescription": json.dumps(job)}, timeout=10
    )
    return r.json()


def ifs_token(base: str, realm: str = DEMO_REALM) -> httpx.Response:
    return httpx.post(
        f"{base}/auth/realms/{realm}/protocol/openid-connect/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEMO_IFS_CLIENT_ID,
            "client_secret": DEMO_IFS_SECRET,
        },
        timeout=10,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- the command
def test_sim_prints_one_json_line_serves_both_and_stops_on_sigterm(run_sim: Any) -> None:
    sim = run_sim("--fast")
    line = sim.first_line()
    assert line.endswith("\n")
    urls = json.loads(line)
    assert set(urls) == {"expensify", "ifs"}
    assert URL.fullmatch(urls["expensify"]) and URL.fullmatch(urls["ifs"])
    assert urls["expensify"] != urls["ifs"]

    policies = expensify_get(urls["expensify"], {"type": "policyList"})
    assert policies["responseCode"] == 200
    # The demo world has a Submit-and-Close workspace beside the approving ones.
    modes = {p["id"]: p["approvalMode"] for p in policies["policyList"]}
    assert modes == {"POL-US": "BASIC", "POL-EU": "BASIC", "POL-JP": "BASIC", "POL-SC": "OPTIONAL"}
    token = ifs_token(urls["ifs"])
    assert token.status_code == 200
    assert token.json()["expires_in"] == 3600 and token.json()["access_token"]

    code, took = sim.stop(signal.SIGTERM)
    assert code == 0
    assert took < 5
    assert sim.rest_of_stdout() == b""  # the URL line was all
    err = sim.stderr()
    assert EXPENSIFY_PATH in err and "openid-connect/token" in err  # access log on stderr
    assert DEMO_EXPENSIFY_SECRET not in err and DEMO_IFS_SECRET not in err


def test_sigint_also_exits_0_and_ports_can_be_chosen(run_sim: Any) -> None:
    # A port found free can be taken by a parallel test before the sim binds it: the sim then
    # exits without a line, and the test picks two other ports (at most three tries).
    for _ in range(3):
        expensify_port, ifs_port = free_port(), free_port()
        sim = run_sim("--expensify-port", str(expensify_port), "--ifs-port", str(ifs_port))
        line = sim.first_line()
        if line:
            break
        assert "in use" in sim.stderr() or "Errno" in sim.stderr(), sim.stderr()
    urls = json.loads(line)
    assert urls == {
        "expensify": f"http://127.0.0.1:{expensify_port}",
        "ifs": f"http://127.0.0.1:{ifs_port}",
    }
    assert sim_control(urls["ifs"], "requests") == {
        "total": 0,
        "by_route": [],
        "batch": {"batches": 0, "by_status": {}, "change_sets_failed": 0, "parts": 0},
    }
    code, _ = sim.stop(signal.SIGINT)
    assert code == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(urls["ifs"] + "/__sim/requests", timeout=2)


def test_data_file_replaces_the_demo(run_sim: Any, tmp_path: Path) -> None:
    path = tmp_path / "small.json"
    path.write_text(json.dumps(small_dataset_raw(), ensure_ascii=False), encoding="utf-8")
    sim = run_sim("--data", str(path), "--fast")
    urls = json.loads(sim.first_line())
    policies = expensify_get(urls["expensify"], {"type": "policyList"})
    names = sorted(p["name"] for p in policies["policyList"])
    assert names == ["Small Co EUR", "Small Co JPY", "Small Co USD"]
    assert sim.stop()[0] == 0


@pytest.mark.parametrize(
    ("mutate", "named"),
    [
        (lambda raw: raw["expensify"]["reports"][3]["transactionList"][0].update(amount=12.5),
         "expensify.reports.3.transactionList.0.amount"),
        (lambda raw: raw["ifs"].update(companies=[{"CurrencyCode": "USD"}]),
         "ifs.companies.0.Company"),
    ],
)  # fmt: skip
def test_bad_data_file_exits_2_naming_the_key(
    run_sim: Any, tmp_path: Path, mutate: Any, named: str
) -> None:
    raw = build_demo_dataset(reports=20)
    mutate(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    sim = run_sim("--data", str(path))
    assert sim.proc.wait(60) == 2
    assert sim.rest_of_stdout() == b""
    assert named in sim.stderr()
    assert str(path) in sim.stderr()


def test_unreadable_or_non_json_data_exits_2(run_sim: Any, tmp_path: Path) -> None:
    sim = run_sim("--data", str(tmp_path / "missing.json"))
    assert sim.proc.wait(60) == 2
    assert "cannot read dataset" in sim.stderr()
    broken = tmp_path / "broken.json"
    broken.write_text('{"expensify": ', encoding="utf-8")
    sim = run_sim("--data", str(broken))
    assert sim.proc.wait(60) == 2
    assert "not JSON" in sim.stderr()


def test_port_in_use_exits_2_with_a_message(run_sim: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        sim = run_sim("--fast", "--ifs-port", str(port))
        assert sim.proc.wait(60) == 2
    assert sim.rest_of_stdout() == b""
    assert "cannot listen" in sim.stderr()


# ---------------------------------------------------------------- SimServers, the fixtures
def test_sims_fixture_serves_the_demo_over_http(sims: Any) -> None:
    assert URL.fullmatch(sims.expensify_url) and URL.fullmatch(sims.ifs_url)
    policies = expensify_get(sims.expensify_url, {"type": "policyList"})
    assert len(policies["policyList"]) == 3  # US, Europe and the Tokyo desk
    assert ifs_token(sims.ifs_url).status_code == 200
    counted = sim_control(sims.ifs_url, "/__sim/requests")
    assert counted["total"] == 1
    assert sims.ifs.requests.snapshot()["total"] == 1  # the same simulator object
    assert sims.expensify.requests.snapshot()["total"] == 1


def test_small_sims_are_fresh_per_test(small_sims: Any) -> None:
    assert sim_control(small_sims.expensify_url, "requests")["total"] == 0
    bad = expensify_get(small_sims.expensify_url, {"type": "policyList"}, secret="wrong")
    assert bad["responseCode"] != 200
    assert sim_control(small_sims.expensify_url, "requests")["total"] == 1


def test_ifs_next_link_is_an_absolute_url_on_the_served_port() -> None:
    from console.sim.ifs_app import IfsSimSettings
    from console.sim.server import SimServers

    settings = IfsSimSettings(rate_limit_per_minute=None, server_page_size=5)
    dataset = parse_dataset(small_dataset_raw())
    with SimServers(dataset, fast=True, ifs_settings=settings) as servers:
        token = ifs_token(servers.ifs_url).json()["access_token"]
        page = httpx.get(
            servers.ifs_url + ACCOUNTS_PATH,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert page.status_code == 200, page.text
        next_link = page.json()["@odata.nextLink"]
        assert next_link.startswith(servers.ifs_url + "/main/ifsapplications/")
        assert next_link.startswith(servers.ifs_url + ACCOUNTS_PATH + "?")
        second = httpx.get(next_link, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert second.status_code == 200
        accounts = [a["Account"] for a in page.json()["value"] + second.json()["value"]]
        assert sorted(accounts) == ["2930", "2940", "6110", "6120", "6130", "6240"]
        url = servers.ifs_url
    with pytest.raises(httpx.ConnectError):  # stopped means stopped
        httpx.get(url + "/__sim/requests", timeout=2)
