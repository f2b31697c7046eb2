"""deploy/systemd: the unit files parse, are hardened, and start a real command line of the
console. `systemd-analyze verify` checks them when systemd is installed (make apt)."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from console.commands.main import build_parser

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SERVICE = UNITS / "ml-console.service"
TIMER = UNITS / "ml-console.timer"
INSTALLED = "/opt/ml-console/.venv/bin/ml-console"


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: key outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_service_runs_one_auto_cycle_of_the_console():
    svc = unit(SERVICE)["Service"]
    assert svc["Type"] == ["oneshot"]
    argv = shlex.split(svc["ExecStart"][0])
    assert argv[0] == INSTALLED
    args = build_parser().parse_args(argv[1:])  # a command line the console accepts
    assert args.auto and args.command is None
    assert svc["SuccessExitStatus"] == ["3"]  # held reports: the cycle worked
    env = dict(item.split("=", 1) for item in svc["Environment"])
    assert env["ML_CONSOLE_HOME"] == "/var/lib/ml-console"
    assert env["PYTHON_KEYRING_BACKEND"] == "keyrings.alt.file.PlaintextKeyring"
    assert env["XDG_DATA_HOME"].startswith("/var/lib/ml-console/")


def test_the_service_is_hardened():
    svc = unit(SERVICE)["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "UMask": "0077",
        "CapabilityBoundingSet": "",
    }.items():
        assert svc.get(key) == [value], key
    assert svc["ReadWritePaths"] == ["/var/lib/ml-console"]
    assert svc["User"] == ["ml-console"]  # never root
    assert "@system-service" in svc["SystemCallFilter"]


def test_the_timer_starts_the_service():
    t = unit(TIMER)
    assert t["Timer"]["Unit"] == ["ml-console.service"]
    assert t["Timer"]["OnUnitActiveSec"] == ["15min"]
    assert t["Install"]["WantedBy"] == ["timers.target"]


def test_configparser_reads_them_too():
    for path in (SERVICE, TIMER):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(path)
        assert parser.sections()


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (make apt installs systemd)",
)
def test_systemd_analyze_verify_accepts_the_units(tmp_path):
    # verify checks that ExecStart exists: point it at this checkout's console.
    here = Path(sys.executable).parent / "ml-console"
    assert here.exists(), here
    (tmp_path / SERVICE.name).write_text(SERVICE.read_text().replace(INSTALLED, str(here)))
    (tmp_path / TIMER.name).write_text(TIMER.read_text())
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", SERVICE.name, TIMER.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Unknown keys are only warnings (exit 0): any output at all fails the test.
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr
    )
