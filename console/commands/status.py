"""`ml-console status [--json]`: is the scheduled sync healthy? For operators and monitors.

Reads only the state file (no keyring, no network): the last cycle (its mode, outcome and
age), the last successful sync and its age, held and failed counts by reason, and the oldest
wait (the report held longest). Exit 0 when a sync succeeded within `alerts.stale_after`
(default 2h), 8 (ExitCode.STALE) when none did (or none ever ran), 2 on a configuration
error, 7 (ExitCode.DAMAGED_STATE) when the state file is damaged. Ages are measured on the
machine's clock, like the records they compare (see console/alerts.py); "today" is the
console's (an as-of date when set).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from console.errors import ConsoleError
from console.exitcodes import ExitCode


def run_status_command(
    args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    from console.alerts import health
    from console.config import load_settings
    from console.store import Store

    try:
        loaded = load_settings()
        stale_after_s = loaded.settings.alerts.stale_after_s
        state_file = loaded.paths.state_file
        if state_file.exists():
            with Store(state_file) as store:
                result = health(store, stale_after_s)
        else:
            result = None
    except ConsoleError as exc:
        from console.commands.auto import exit_code_for

        print(f"ml-console: {exc}", file=err)
        return int(exit_code_for(exc))
    if result is None:
        # Nothing synced here yet: a monitor must see that as stale, not as healthy.
        data = {"stale": True, "last_cycle": None, "last_success": None, "state_file": None}
        if getattr(args, "status_json", False):
            out.write(json.dumps(data) + "\n")
        else:
            out.write(f"no state file at {state_file}: nothing has been synced here\n")
        return int(ExitCode.STALE)
    if getattr(args, "status_json", False):
        out.write(json.dumps(result.to_json(), default=str) + "\n")
    else:
        from console.textsafe import visible_text

        out.write(visible_text(result.render_text()))
    out.flush()
    return int(ExitCode.STALE if result.stale else ExitCode.OK)
