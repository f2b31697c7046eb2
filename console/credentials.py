"""Credential value types. The secret is a pydantic SecretStr: its repr and str are masked,
so a credential that leaks into a log line, an exception or a repr shows `**********`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import SecretStr


@dataclass(frozen=True)
class ExpensifyCredentials:
    partner_user_id: str
    partner_user_secret: SecretStr


@dataclass(frozen=True)
class IfsCredentials:
    client_id: str
    client_secret: SecretStr


# Called before each use (each Expensify request, each IFS token fetch), so a secret rotated
# in the keyring is picked up by a running process at its next request. A client that is
# refused re-reads once through the same callable before it gives up.
ExpensifyCredentialSource = Callable[[], ExpensifyCredentials]
IfsCredentialSource = Callable[[], IfsCredentials]
