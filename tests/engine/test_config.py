"""Config: defaults, TOML, env overrides with their sources, problems named by key and file,
save/load round trip, and private files and folders."""

from __future__ import annotations

import os
import stat
import tomllib
from datetime import date
from pathlib import Path

import pytest

from console.config import (
    LoadedSettings,
    Settings,
    SettingsError,
    default_approved_after,
    ensure_private_dir,
    load_settings,
    render_settings,
    resolve_paths,
    save_settings,
    secure_file,
)
from console.errors import ConfigError


def _load(home: Path, text: str | None = None, **env: str) -> LoadedSettings:
    if text is not None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(text, encoding="utf-8")
    paths = resolve_paths(home, environ={})
    return load_settings(paths, environ=env)


def _problems(home: Path, text: str | None = None, **env: str) -> list[str]:
    with pytest.raises(SettingsError) as info:
        _load(home, text, **env)
    assert info.value.exit_code == 2
    return info.value.problems


def test_missing_file_gives_defaults_and_says_so(tmp_path: Path) -> None:
    loaded = _load(tmp_path / "home")
    assert loaded.exists is False
    assert loaded.settings == Settings()
    s = loaded.settings
    assert s.expensify.url == "https://integrations.expensify.com"
    # Unset: the first poll starts on the first day of the month before last, from today.
    assert s.expensify.approved_after is None
    assert default_approved_after(date(2026, 12, 4)) == date(2026, 10, 1)
    assert default_approved_after(date(2027, 1, 31)) == date(2026, 11, 1)
    assert s.ifs.page_size == 1000 and s.ifs.requests_per_minute == 900
    # IFS Cloud 21R1's own names (docs/ifs.md), the GENLED one assumed.
    sets = s.ifs.entity_sets
    assert sets.voucher_entry == "VoucherEntryAssistantHandling.svc/VoucherSet"
    assert sets.hold_vouchers == "VoucherHandling.svc/VoucherSet"
    assert sets.hold_voucher_rows == "VoucherRowsAnalysis.svc/VoucherRowSet"
    assert sets.gl_voucher_rows == "GLVoucherRowsAnalysis.svc/GenLedVoucherRowSet"
    assert sets.accounts == "AccountsHandling.svc/AccountSet"
    assert sets.code_part_values == "CodePartValuesHandling.svc/CompanyFinanceSet"
    assert sets.periods == "UserGroupPerPeriodHandling.svc/AccountingPeriodSet"
    assert sets.currency_rates == "CurrencyRatesHandling.svc/CurrencyRateSet"
    assert sets.currency_types == "CurrencyRatesHandling.svc/CurrencyTypeSet"
    assert s.ifs.user_group == "AC" and s.ifs.batch_counts_parts is False
    assert s.posting.code_part_by_tag_level == {"Cost Center": "B", "Project": "C"}
    assert s.posting.closed_period == "hold"
    assert set(loaded.sources.values()) == {"default"}
    assert "ifs.entity_sets.voucher_entry" in loaded.sources


def test_toml_values_load_and_are_attributed_to_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    loaded = _load(
        home,
        """
environment = "demo"
[expensify]
approved_after = 2026-11-01
[ifs]
url = "https://tenant.example.com/"
realm = "prod"
[ifs.entity_sets]
voucher_entry = "MyVoucherEntryHandling.svc/VoucherSet"
[posting]
company_by_policy = { "POL-US" = "10", "POL-EU" = "20" }
code_part_by_tag_level = { "Cost Center" = "b" }
closed_period = "next-open"
reversal = { "2930" = "next-period-start" }
[sync]
every = "15m"
""",
    )
    s = loaded.settings
    assert loaded.exists
    assert s.environment == "demo"
    assert s.ifs.url == "https://tenant.example.com"  # trailing slash dropped
    assert s.ifs.entity_sets.voucher_entry == "MyVoucherEntryHandling.svc/VoucherSet"
    assert s.ifs.entity_sets.periods == "UserGroupPerPeriodHandling.svc/AccountingPeriodSet"
    assert s.posting.code_part_by_tag_level == {"Cost Center": "B"}
    assert s.sync.every_s == 900.0
    # policies default to the keys of company_by_policy, and the source says so
    assert s.expensify.policies == ["POL-US", "POL-EU"]
    assert loaded.sources["expensify.policies"].startswith("default (the keys of")
    file_source = f"config.toml: {home / 'config.toml'}"
    assert loaded.sources["ifs.url"] == file_source
    assert loaded.sources["ifs.entity_sets.voucher_entry"] == file_source
    assert loaded.sources["ifs.entity_sets.periods"] == "default"
    assert loaded.sources["posting.voucher_type"] == "default"


def test_env_overrides_win_and_name_their_variable(tmp_path: Path) -> None:
    loaded = _load(
        tmp_path / "home",
        '[ifs]\nurl = "https://from-file.example.com"\npage_size = 200\n',
        ML_CONSOLE_IFS__URL="http://127.0.0.1:8123/",
        ML_CONSOLE_IFS__PAGE_SIZE="500",
        ML_CONSOLE_IFS__BATCH="true",
        ML_CONSOLE_IFS__ENTITY_SETS__VOUCHER_ENTRY="X.svc/VoucherSet",
        ML_CONSOLE_POSTING__COMPANY_BY_POLICY='{"P1": "10"}',
        ML_CONSOLE_EXPENSIFY__POLICIES="P1, P2",
        ML_CONSOLE_HOME="/ignored/not/a/setting",
    )
    s = loaded.settings
    assert s.ifs.url == "http://127.0.0.1:8123"
    assert s.ifs.page_size == 500
    assert s.ifs.batch is True
    assert s.ifs.entity_sets.voucher_entry == "X.svc/VoucherSet"
    assert s.posting.company_by_policy == {"P1": "10"}
    assert s.expensify.policies == ["P1", "P2"]
    assert loaded.sources["ifs.url"] == "env ML_CONSOLE_IFS__URL"
    assert loaded.sources["ifs.page_size"] == "env ML_CONSOLE_IFS__PAGE_SIZE"
    assert (
        loaded.sources["ifs.entity_sets.voucher_entry"]
        == "env ML_CONSOLE_IFS__ENTITY_SETS__VOUCHER_ENTRY"
    )
    assert loaded.sources["ifs.realm"] == "default"


def test_env_table_accepts_toml_inline_syntax(tmp_path: Path) -> None:
    loaded = _load(tmp_path / "h", ML_CONSOLE_TUI__KEYS='{ quit = "ctrl+q", "held list" = "h" }')
    assert loaded.settings.tui.keys == {"quit": "ctrl+q", "held list": "h"}


def test_unknown_key_is_named_with_the_file_and_a_suggestion(tmp_path: Path) -> None:
    home = tmp_path / "home"
    problems = _problems(home, '[posting]\nvoucher_typ = "X"\n[bogus]\na = 1\n')
    path = str(home / "config.toml")
    assert f"{path}: [posting] unknown key 'voucher_typ' (did you mean 'voucher_type'?)" in problems
    assert f"{path}: unknown section [bogus]" in problems
    assert len(problems) == 2


def test_unknown_nested_key_and_unknown_env_key_are_named(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path / "home",
        "[ifs.entity_sets]\nvoucher = 'x'\n",
        ML_CONSOLE_IFS__PAGESIZE="10",
    )
    assert any("[ifs.entity_sets] unknown key 'voucher'" in p for p in problems)
    assert "env ML_CONSOLE_IFS__PAGESIZE: [ifs] unknown key 'pagesize'" in " ".join(problems)


def test_bad_values_are_each_named_in_one_sentence(tmp_path: Path) -> None:
    home = tmp_path / "home"
    problems = _problems(
        home,
        """
[expensify]
approved_after = "last tuesday"
[ifs]
page_size = 6000
url = "http://ifs.example.com"
[posting]
closed_period = "later"
code_part_by_tag_level = { "Cost Center" = "A" }
reversal = { "2930" = "sometimes" }
[sync]
every = "soon"
recheck_held_s = 0
""",
    )
    text = "\n".join(problems)
    path = str(home / "config.toml")
    assert f"{path}: [ifs] page_size: must be at most 5000 (got 6000)" in problems
    assert "[posting] closed_period: must be 'hold' or 'next-open' (got 'later')" in text
    assert "[ifs] url:" in text and "plain http" in text
    assert "[expensify] approved_after: must be a date like 2026-10-01" in text
    assert "[posting] code_part_by_tag_level:" in text and "B to J" in text
    assert "[posting] reversal['2930']: must be" in text
    assert "[sync] every: not a duration" in text
    assert "[sync] recheck_held_s: must be at least 1 (got 0)" in text
    assert len(problems) == 8
    assert all(p.startswith(path) for p in problems)


def test_bad_env_value_blames_the_variable(tmp_path: Path) -> None:
    problems = _problems(tmp_path / "home", ML_CONSOLE_IFS__PAGE_SIZE="lots")
    assert problems == [
        "env ML_CONSOLE_IFS__PAGE_SIZE: [ifs] page_size: must be a whole number (got 'lots')"
    ]
    problems = _problems(tmp_path / "home", ML_CONSOLE_POSTING__COMPANY_BY_POLICY="{oops")
    assert problems[0].startswith("env ML_CONSOLE_POSTING__COMPANY_BY_POLICY: [posting]")


def test_plain_http_is_allowed_for_loopback_only(tmp_path: Path) -> None:
    ok = _load(tmp_path / "a", '[expensify]\nurl = "http://localhost:9000"\n')
    assert ok.settings.expensify.url == "http://localhost:9000"
    problems = _problems(tmp_path / "b", '[expensify]\nurl = "ftp://x.example.com"\n')
    assert "[expensify] url:" in problems[0]


def test_broken_toml_names_the_file_and_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    problems = _problems(home, "[ifs]\nurl = \n")
    assert problems[0].startswith(f"{home / 'config.toml'}: not valid TOML")
    assert "line 2" in problems[0]


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "environment": "demo",
            "expensify": {"approved_after": date(2026, 11, 2), "limit_10s": 3},
            "ifs": {"url": "http://127.0.0.1:5001", "realm": "r1", "tenant_name": 'ACME "EU"'},
            "posting": {
                "company_by_policy": {"POL-US": "10", "policy with space": "20"},
                "reversal": {"2930": "on-reimbursement"},
            },
            "operator": {"name": "Ann \\ O'Neil\tx"},
            "sync": {"every": "1h", "auto_replay": True},
            "tui": {"keys": {"quit": "ctrl+q"}},
        }
    )
    path = tmp_path / "new" / "config.toml"
    save_settings(settings, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    loaded = load_settings(resolve_paths(config=path, environ={}), environ={})
    assert loaded.settings == settings
    # derived policies stay derived: adding a policy to company_by_policy later extends them
    text = path.read_text()
    assert "# policies" in text
    assert "[ifs.entity_sets]" in text
    tomllib.loads(text)  # valid TOML


def test_explicit_policies_are_kept_on_save(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"expensify": {"policies": ["ONLY"]}, "posting": {"company_by_policy": {"A": "1"}}}
    )
    path = tmp_path / "config.toml"
    save_settings(settings, path)
    assert tomllib.loads(path.read_text())["expensify"]["policies"] == ["ONLY"]


def test_default_render_is_loadable_and_equal_to_defaults() -> None:
    assert Settings.model_validate(tomllib.loads(render_settings(Settings()))) == Settings()


def test_paths_under_home_and_config_override(tmp_path: Path) -> None:
    home = tmp_path / "home"
    paths = resolve_paths(environ={"ML_CONSOLE_HOME": str(home)})
    assert paths.home == home
    assert paths.config_file == home / "config.toml"
    assert paths.state_file == home / "state.sqlite3"
    assert paths.log_dir == home / "logs"
    assert paths.log_file.parent == home / "logs"
    other = tmp_path / "elsewhere.toml"
    paths = resolve_paths(environ={"ML_CONSOLE_HOME": str(home), "ML_CONSOLE_CONFIG": str(other)})
    assert paths.config_file == other and paths.state_file == home / "state.sqlite3"
    # an explicit argument (--home) beats the environment
    assert resolve_paths(tmp_path / "h2", environ={"ML_CONSOLE_HOME": str(home)}).home == (
        tmp_path / "h2"
    )


def test_paths_without_home_use_the_platform_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    paths = resolve_paths(environ={})
    assert paths.home is None
    assert paths.config_file == tmp_path / "cfg" / "ml-console" / "config.toml"
    assert paths.state_file == tmp_path / "data" / "ml-console" / "state.sqlite3"
    assert str(paths.log_dir).startswith(str(tmp_path))


def test_private_dirs_and_files(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        nested = ensure_private_dir(tmp_path / "a" / "b" / "c")
        for folder in (tmp_path / "a", tmp_path / "a" / "b", nested):
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        loose = tmp_path / "loose"
        loose.mkdir(mode=0o755)
        os.chmod(loose, 0o755)
        ensure_private_dir(loose)
        assert stat.S_IMODE(loose.stat().st_mode) == 0o700
        f = secure_file(nested / "state.sqlite3")
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        os.chmod(f, 0o644)
        secure_file(f)
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        paths = resolve_paths(tmp_path / "home", environ={})
        paths.ensure_dirs()
        for folder in (paths.home, paths.state_file.parent, paths.log_dir):
            assert folder is not None
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        os.umask(old)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError):
        ensure_private_dir(tmp_path / "file")


def test_assignment_is_validated_for_the_setup_screen() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.ifs.page_size = 0


def test_derived_policies_follow_company_by_policy_edited_before_save(tmp_path: Path) -> None:
    settings = Settings.model_validate({"posting": {"company_by_policy": {"A": "1"}}})
    assert settings.expensify.policies == ["A"]
    settings.posting.company_by_policy = {"A": "1", "B": "2"}  # a setup screen adds a policy
    path = tmp_path / "config.toml"
    save_settings(settings, path)
    reloaded = load_settings(resolve_paths(config=path, environ={}), environ={}).settings
    assert reloaded.expensify.policies == ["A", "B"]


def test_the_workspace_time_zone_is_an_iana_name(tmp_path: Path) -> None:
    loaded = _load(tmp_path / "ok", '[expensify]\ntimezone = "Europe/Berlin"\n')
    assert loaded.settings.expensify.timezone == "Europe/Berlin"
    problems = _problems(tmp_path / "bad", '[expensify]\ntimezone = "CEST+1"\n')
    assert len(problems) == 1 and "[expensify] timezone: not a time zone: 'CEST+1'" in problems[0]
