"""`ml-console demo`: the console on both simulators, with a throw-away home and keyring.

The demo starts the simulators on loopback over the bundled demo dataset (or `--data FILE`),
with their realistic limits on (Expensify 5 per 10 s and 20 per 60 s, IFS 1000 per minute:
the clients pace themselves, so one cycle never meets a 429). Everything it writes lives in a
temporary home (or `--keep DIR`): config.toml pointing at the simulators, the state file, logs,
and the keyring. The keyring is the demo's explicit choice of keyrings.alt's plaintext file
backend inside that home: the demo credentials open only the local simulators.

`--auto` runs one cycle (`--json` prints the summary) and exits with `--auto`'s exit code;
without it the TUI opens (looked up by name: the core never imports `screens`).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from console.errors import ConsoleError
from console.exitcodes import ExitCode

DEMO_KEYRING_BACKEND = "keyrings.alt.file.PlaintextKeyring"


@contextlib.contextmanager
def _demo_home(keep: str | None) -> Iterator[Path]:
    if keep:
        home = Path(keep).expanduser().absolute()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(home, 0o700)
        yield home
        return
    home = Path(tempfile.mkdtemp(prefix="ml-console-demo-"))
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _posting_for(dataset: Any) -> dict[str, Any]:
    """DEMO_POSTING for the demo world; for another dataset, its policies mapped to its IFS
    company (when it has exactly one) with the demo's accounts and tag levels."""
    from console.sim.demo import DEMO_POSTING

    policies = [p.id for p in dataset.expensify.policies]
    if set(policies) <= set(DEMO_POSTING["company_by_policy"]):
        return dict(DEMO_POSTING)
    companies = [c.Company for c in dataset.ifs.companies]
    posting = dict(DEMO_POSTING)
    if companies:
        posting["company_by_policy"] = {p: companies[0] for p in policies}
    posting["currency_by_company"] = {c.Company: c.CurrencyCode for c in dataset.ifs.companies}
    levels: dict[str, str] = {}
    for policy in dataset.expensify.policies:
        for i, level in enumerate(policy.tags[:9]):
            levels.setdefault(level.name, "BCDEFGHIJ"[i])
    if levels:
        posting["code_part_by_tag_level"] = levels
    return posting


def _approved_after(dataset: Any) -> date:
    """Where the demo's first poll starts: the first day of the month of its earliest
    approval (the closed month's reports included), else config's own default."""
    from console import clock
    from console.config import default_approved_after

    days = []
    for r in dataset.expensify.reports:
        with contextlib.suppress(ValueError, TypeError):
            days.append(date.fromisoformat(str(r.approved)[:10]))
    return clock.month_start(min(days)) if days else default_approved_after(clock.today())


def prepare_demo_home(home: Path, dataset: Any, expensify_url: str, ifs_url: str) -> None:
    """Point this process at `home`: environment, config.toml, keyring and credentials."""
    from console.config import Settings, ensure_private_dir, resolve_paths, save_settings
    from console.sim.demo import DEMO_EXPORT_LABEL

    ensure_private_dir(home)
    os.environ["ML_CONSOLE_HOME"] = str(home)
    os.environ.pop("ML_CONSOLE_CONFIG", None)
    os.environ["PYTHON_KEYRING_BACKEND"] = DEMO_KEYRING_BACKEND
    keyring_dir = ensure_private_dir(home / "keyring")
    os.environ["XDG_DATA_HOME"] = str(keyring_dir)
    settings = Settings.model_validate(
        {
            "environment": "demo",
            "expensify": {
                "url": expensify_url,
                "export_label": DEMO_EXPORT_LABEL,
                "approved_after": _approved_after(dataset),
            },
            "ifs": {"url": ifs_url, "realm": dataset.ifs.realm, "tenant_name": "IFS simulator"},
            "posting": _posting_for(dataset),
        }
    )
    paths = resolve_paths(home)
    paths.ensure_dirs()
    save_settings(settings, paths.config_file)

    # keyring reads PYTHON_KEYRING_BACKEND when first used, which is here.
    from console.secrets import SecretStore

    secrets = SecretStore()
    exp = dataset.expensify.credentials
    ifs = dataset.ifs.clients
    if exp:
        secrets.set_expensify(exp[0].partnerUserID, exp[0].partnerUserSecret)
    if ifs:
        secrets.set_ifs(ifs[0].client_id, ifs[0].client_secret)


def run_demo_command(args: argparse.Namespace) -> int:
    from console.sim.dataset import DatasetError, load_dataset
    from console.sim.demo import demo_dataset
    from console.sim.server import SimServers

    try:
        dataset = load_dataset(args.data) if getattr(args, "data", None) else demo_dataset()
    except DatasetError as exc:
        print(f"ml-console: {exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
    auto = bool(getattr(args, "demo_auto", False))
    with _demo_home(getattr(args, "keep", None)) as home, SimServers(dataset) as sims:
        try:
            prepare_demo_home(home, dataset, sims.expensify_url, sims.ifs_url)
        except ConsoleError as exc:
            print(f"ml-console: demo set-up failed: {exc}", file=sys.stderr)
            return int(ExitCode.USAGE)
        print(
            f"ml-console: demo on simulators: Expensify {sims.expensify_url}, "
            f"IFS {sims.ifs_url}; home {home}",
            file=sys.stderr,
        )
        cycle_args = argparse.Namespace(
            dry_run=bool(getattr(args, "demo_dry_run", False)),
            json=bool(getattr(args, "demo_json", False)),
            every=None,
        )
        if auto:
            from console.commands.auto import run_auto_command

            return run_auto_command(cycle_args)
        try:
            app_module = importlib.import_module("screens.startup")
            run_tui = app_module.run_tui
        except (ImportError, AttributeError) as exc:
            print(
                f"ml-console: the TUI is not available ({exc}); running one headless cycle",
                file=sys.stderr,
            )
            from console.commands.auto import run_auto_command

            return run_auto_command(cycle_args)
        return int(run_tui(args))
