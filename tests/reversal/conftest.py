from tests.e2e.conftest import small_console  # noqa: F401  (fixture re-export)
