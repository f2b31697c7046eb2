"""Setup: first run writes config.toml and puts the credentials in the keyring; later the same
screen rotates secrets. "Test connection" checks both services with what is typed, before
anything is saved, and says precisely what failed. Secrets are masked and never shown back."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import SecretStr
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static

from console.credentials import ExpensifyCredentials, IfsCredentials
from screens.base import console_app
from screens.keys import bindings
from screens.literal import literal
from screens.theme import GREY, ORANGE, SKY, VERMILLION

if TYPE_CHECKING:
    from console.secrets import SecretStore


class FormSecrets:
    """The credentials as typed (falling back to the keyring for a secret left empty), shaped
    like SecretStore for the core's connection checks."""

    def __init__(self, form: dict[str, str], stored: SecretStore | None) -> None:
        self.form = form
        self.stored = stored
        self.expensify_source = self.expensify
        self.ifs_source = self.ifs

    def expensify(self) -> ExpensifyCredentials:
        secret = self.form["expensify_secret"]
        if not secret and self.stored is not None and self.stored.has("expensify"):
            return replace(self.stored.expensify(), partner_user_id=self.form["expensify_user"])
        return ExpensifyCredentials(self.form["expensify_user"], SecretStr(secret))

    def ifs(self) -> IfsCredentials:
        secret = self.form["ifs_secret"]
        if not secret and self.stored is not None and self.stored.has("ifs"):
            return replace(self.stored.ifs(), client_id=self.form["ifs_client"])
        return IfsCredentials(self.form["ifs_client"], SecretStr(secret))


def parse_pairs(text: str) -> dict[str, str]:
    """`POL-US=10, POL-EU=20` → {"POL-US": "10", "POL-EU": "20"}."""
    out: dict[str, str] = {}
    for part in text.replace(";", ",").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip() and value.strip():
            out[key.strip()] = value.strip()
    return out


FIELDS = [
    ("environment", "Environment name (shown in the header: demo, tenant name)", False),
    ("expensify_url", "Expensify URL", False),
    ("expensify_user", "Expensify partnerUserID", False),
    ("expensify_secret", "Expensify partnerUserSecret (empty: keep the stored one)", True),
    ("ifs_url", "IFS Cloud tenant URL", False),
    ("ifs_realm", "IFS realm", False),
    ("ifs_client", "IFS OAuth2 client id", False),
    ("ifs_secret", "IFS client secret (empty: keep the stored one)", True),
    ("companies", "Policy → IFS company (POL-US=10, POL-EU=20)", False),
]


class SetupScreen(Screen[bool]):
    HELP = (
        "Connection settings and credentials. Test connection (ctrl+t) checks both services "
        "with what is typed, without saving. Save (ctrl+s) writes config.toml and stores the "
        "secrets in the OS keyring; an empty secret field keeps the stored secret, so rotating "
        "one secret means typing only that one."
    )

    BINDINGS: ClassVar[list[BindingType]] = bindings("setup")

    def __init__(self, *, first_run: bool = False) -> None:
        super().__init__()
        self.first_run = first_run
        self.loaded: Any = None
        self.secrets: Any = None
        self.secrets_error = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            title = "First run: connect ml-console" if self.first_run else "Setup and credentials"
            yield Label(Text(title, style=f"bold {SKY}"), classes="screen-title")
            yield Static("", id="setup-where", classes="hint")
            for name, label, password in FIELDS:
                yield Label(label, classes="field-label")
                yield Input(id=f"f-{name}", password=password)
            with Horizontal(id="setup-buttons"):
                yield Button("Test connection (ctrl+t)", id="setup-test")
                yield Button("Save (ctrl+s)", id="setup-save", variant="primary")
                yield Button("Cancel (esc)", id="setup-cancel")
            yield Static("", id="check-result")
        yield Footer()

    def on_mount(self) -> None:
        app = console_app(self)
        app.run_core(self._load, on_done=self._fill, label="reading config")

    def _load(self) -> tuple[Any, Any, str]:
        from console.config import load_settings

        loaded = load_settings()
        try:
            from console.secrets import SecretStore

            secrets: Any = SecretStore()
            error = ""
        except Exception as exc:
            secrets, error = None, str(exc)
        return loaded, secrets, error

    def _fill(self, result: tuple[Any, Any, str]) -> None:
        self.loaded, self.secrets, self.secrets_error = result
        s = self.loaded.settings
        values = {
            "environment": s.environment or s.ifs.tenant_name,
            "expensify_url": s.expensify.url,
            "ifs_url": s.ifs.url,
            "ifs_realm": s.ifs.realm,
            "companies": ", ".join(f"{k}={v}" for k, v in s.posting.company_by_policy.items()),
        }
        if self.secrets is not None:
            values["expensify_user"] = self.secrets.identity("expensify") or ""
            values["ifs_client"] = self.secrets.identity("ifs") or ""
        for name, value in values.items():
            self.query_one(f"#f-{name}", Input).value = str(value)
        where = Text(f"config file: {self.loaded.paths.config_file}", style=GREY)
        if self.secrets is not None:
            where.append(f"\nkeyring: {self.secrets.describe_backend()}", style=GREY)
            for service in ("expensify", "ifs"):
                stored = self.secrets.has(service)
                where.append(f"\n{service} secret: ", style=GREY)
                where.append("stored" if stored else "not set", style=SKY if stored else ORANGE)
        else:
            where.append("\nkeyring unusable: ", style=f"bold {VERMILLION}")
            where.append_text(literal(self.secrets_error, 400))
        self.query_one("#setup-where", Static).update(where)
        self.query_one("#f-expensify_user", Input).focus()

    def form(self) -> dict[str, str]:
        return {name: self.query_one(f"#f-{name}", Input).value.strip() for name, _, _ in FIELDS}

    def _settings_from_form(self) -> Any:
        from console.config import Settings

        form = self.form()
        data = self.loaded.settings.model_dump()
        data["environment"] = form["environment"]
        data["expensify"]["url"] = form["expensify_url"]
        data["ifs"]["url"] = form["ifs_url"]
        data["ifs"]["realm"] = form["ifs_realm"]
        data["posting"]["company_by_policy"] = parse_pairs(form["companies"])
        if self.loaded.settings.policies_are_derived:
            data["expensify"]["policies"] = []
        return Settings.model_validate(data)

    @on(Button.Pressed, "#setup-test")
    def action_test(self) -> None:
        if self.loaded is None:
            return
        try:
            settings = self._settings_from_form()
        except Exception as exc:
            self._result(Text(f"✖ {exc}", style=VERMILLION))
            return
        self._result(Text("testing both services…", style=GREY))
        loaded = replace(self.loaded, settings=settings, exists=True)
        secrets = FormSecrets(self.form(), self.secrets)
        app = console_app(self)
        app.run_core(test_connections, loaded, secrets, on_done=self._tested, label="test")

    def _tested(self, results: list[tuple[int, str]]) -> None:
        out = Text()
        for code, line in results:
            ok = code == 0
            out.append("✔ " if ok else "✖ ", style=f"bold {SKY if ok else VERMILLION}")
            out.append_text(literal(line, 300))
            out.append("\n")
        self._result(out)

    def _result(self, text: Text) -> None:
        self.query_one("#check-result", Static).update(text)

    @on(Button.Pressed, "#setup-save")
    def action_save(self) -> None:
        if self.loaded is None:
            return
        form = self.form()
        try:
            settings = self._settings_from_form()
        except Exception as exc:
            self._result(Text(f"✖ not saved: {exc}", style=VERMILLION))
            return
        if self.secrets is None:
            self._result(Text(f"✖ not saved: {self.secrets_error}", style=VERMILLION))
            return
        for service, user, secret in (
            ("expensify", "expensify_user", "expensify_secret"),
            ("ifs", "ifs_client", "ifs_secret"),
        ):
            if not form[user]:
                self._result(Text(f"✖ not saved: the {service} id is empty", style=VERMILLION))
                return
            if not form[secret] and not self.secrets.has(service):
                self._result(
                    Text(f"✖ not saved: the {service} secret is not set yet", style=VERMILLION)
                )
                return
        app = console_app(self)
        app.run_core(
            save_setup,
            self.loaded.paths.config_file,
            settings,
            self.secrets,
            form,
            on_done=self._saved,
            label="saving setup",
        )

    def _saved(self, settings: Any) -> None:
        # Typed secrets leave the form as soon as they are stored.
        for name, _, password in FIELDS:
            if password:
                self.query_one(f"#f-{name}", Input).value = ""
        app = console_app(self)
        app.settings = settings
        app.apply_keymap()
        self.app.notify("Setup saved: config written, secrets in the keyring.")
        if app.engine is None:
            from screens.opener import engine_opener

            app.open_engine(engine_opener())
        self.dismiss(True)

    def action_cancel(self) -> None:
        app = console_app(self)
        if self.first_run and app.engine is None:
            self.app.notify(
                "The console needs a config and credentials; q quits.", severity="warning"
            )
        self.dismiss(False)


def test_connections(loaded: Any, secrets: Any) -> list[tuple[int, str]]:
    """Both services' connection checks, as `ml-console credentials check` runs them."""
    from console.flows import connections

    return [
        connections.check_expensify(loaded, secrets),
        connections.check_ifs(loaded, secrets),
    ]


def save_setup(path: Any, settings: Any, secrets: Any, form: dict[str, str]) -> Any:
    from console.config import save_settings

    save_settings(settings, path)
    if form["expensify_secret"]:
        secrets.set_expensify(form["expensify_user"], form["expensify_secret"])
    elif secrets.identity("expensify") != form["expensify_user"]:
        secrets.rotate_expensify(secrets.expensify().partner_user_secret, form["expensify_user"])
    if form["ifs_secret"]:
        secrets.set_ifs(form["ifs_client"], form["ifs_secret"])
    elif secrets.identity("ifs") != form["ifs_client"]:
        secrets.rotate_ifs(secrets.ifs().client_secret, form["ifs_client"])
    return settings
