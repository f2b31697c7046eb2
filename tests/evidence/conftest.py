"""The e2e harness's consoles (tests/e2e/conftest.py): the real command, its own home and a
throw-away keyring (keyrings.alt's plaintext file under the test's temp folder)."""

from tests.e2e.conftest import console, small_console  # noqa: F401
