"""Chaos suites: set the figures profile ("chaos" under `-m chaos`, else "ci") and a run id,
so each pytest run starts its profile's figures afresh (pytest-xdist workers share the id)."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.chaos.harness import PROFILE_ENV, RUN_ENV


def pytest_configure(config: pytest.Config) -> None:
    markexpr = str(config.getoption("markexpr", "") or "")
    chaos = "chaos" in markexpr and "not chaos" not in markexpr
    os.environ[PROFILE_ENV] = "chaos" if chaos else "ci"
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or os.environ.get(RUN_ENV)
    os.environ[RUN_ENV] = run or uuid.uuid4().hex
