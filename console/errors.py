"""Typed errors shared by the clients, the engine and the command line.

Messages never carry a secret: callers pass only what a person may see.
"""

from __future__ import annotations


class ConsoleError(Exception):
    """Base of every error the console raises on purpose."""

    exit_code = 1


class ConfigError(ConsoleError):
    """Bad or missing configuration (a missing credential included)."""

    exit_code = 2


class MissingCredential(ConfigError):
    pass


class KeyringUnavailable(ConfigError):
    pass


class AuthError(ConsoleError):
    """The service refused our credentials. Never retried in a loop."""

    exit_code = 4

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: authentication refused: {message}")
        self.service = service


class Unreachable(ConsoleError):
    """A service stayed unreachable (transport errors, 5xx, 429) after bounded retries."""

    exit_code = 5

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: unreachable after retries: {message}")
        self.service = service


class LockHeld(ConsoleError):
    exit_code = 6


class ProtocolError(ConsoleError):
    """The service answered something we cannot read (HTML page, broken JSON, bad file)."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: {message}")
        self.service = service


class ServiceError(ConsoleError):
    """A business/validation error answered by the service (not retryable)."""

    def __init__(self, service: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{service}: {status} {code}: {message}")
        self.service = service
        self.status = status
        self.code = code
        self.detail = message


class UnknownOutcome(ConsoleError):
    """A mutating request was sent but its outcome is unknown (dropped connection,
    timeout after send, 5xx after send). The engine must reconcile before any retry."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(f"{service}: outcome unknown: {message}")
        self.service = service
