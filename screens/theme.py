"""The console's theme: Okabe–Ito colours (distinguishable with the common colour-vision
deficiencies) and a symbol plus a word for every status, so colour is never the only signal."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.theme import Theme

# Okabe & Ito, "Color Universal Design" palette.
BLUE = "#0072B2"
SKY = "#56B4E9"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
YELLOW = "#F0E442"
GREEN = "#009E73"
PURPLE = "#CC79A7"
GREY = "#9a9a9a"

CONSOLE_THEME = Theme(
    name="ml-console",
    primary=SKY,
    secondary=BLUE,
    accent=ORANGE,
    warning=ORANGE,
    error=VERMILLION,
    success=SKY,
    foreground="#e6e6e6",
    background="#121417",
    surface="#1b1e23",
    panel="#23272e",
    dark=True,
)


@dataclass(frozen=True)
class StatusLook:
    symbol: str
    word: str
    colour: str
    bold: bool = False

    def text(self, detail: str = "") -> Text:
        label = f"{self.symbol} {self.word}"
        out = Text(label, style=f"{'bold ' if self.bold else ''}{self.colour}")
        if detail:
            out.append(" " + detail, style=self.colour)
        return out


STATUS: dict[str, StatusLook] = {
    "ready": StatusLook("✔", "ready", SKY),
    "pending": StatusLook("◌", "new", GREY),
    "held": StatusLook("⏸", "held", ORANGE, bold=True),
    "posting": StatusLook("↻", "posting", YELLOW),
    "failed": StatusLook("✖", "failed", VERMILLION, bold=True),
    "posted": StatusLook("●", "posted", BLUE),
    "excluded": StatusLook("⊘", "excluded", GREY),
    "unknown": StatusLook("?", "unknown", PURPLE, bold=True),
    # validation states of a line or a code part value
    "ok": StatusLook("✔", "ok", SKY),
    "missing": StatusLook("✖", "missing", VERMILLION, bold=True),
    "invalid": StatusLook("⚠", "invalid", ORANGE, bold=True),
    "checking": StatusLook("…", "checking", GREY),
    # connection states
    "connected": StatusLook("●", "up", SKY),
    "down": StatusLook("✖", "down", VERMILLION, bold=True),
    "auth": StatusLook("⚠", "auth refused", ORANGE, bold=True),
    "idle": StatusLook("○", "not yet", GREY),
}


def status_look(status: str | None) -> StatusLook:
    key = (status or "unknown").strip().lower()
    if key in STATUS:
        return STATUS[key]
    for name, look in STATUS.items():
        if key.startswith(name):
            return look
    return StatusLook("?", key or "unknown", PURPLE, bold=True)


def status_text(status: str | None, detail: str = "") -> Text:
    return status_look(status).text(detail)
