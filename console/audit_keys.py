"""The audit signing key: an Ed25519 key pair whose private half lives in the OS keyring.

Keyring service `ml-console` (console/secrets.py's service and backend), entry
`audit-signing-key`, holding JSON `{"algorithm": "Ed25519", "private_key": base64 of the raw
32-byte seed}`. Created on first need (the first checkpoint, or `ml-console audit key`), read
once per process; never written to the config, the state file, a log or the audit trail.
Only the public key and its fingerprint leave the keyring (`ml-console audit key`, each
checkpoint's `key` field, evidence bundles).

What it proves: whoever can write the state file but cannot read the keyring cannot forge a
checkpoint, so a rewritten chain shows as mis-signed. Whoever can read the keyring (the OS
user the console runs as) can sign anything; auditors anchor trust in the public key
fingerprint they were handed, and in bundles exported earlier.
"""

from __future__ import annotations

import base64
import json
import threading

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError

from console import evidence_check
from console.errors import ConfigError, KeyringUnavailable
from console.secrets import KEYRING_SERVICE, active_backend, backend_name, check_usable

KEY_ENTRY = "audit-signing-key"
ALGORITHM = "Ed25519"


class AuditKeys:
    """The signing key in one keyring backend (the configured one unless given)."""

    def __init__(
        self, backend: KeyringBackend | None = None, service: str = KEYRING_SERVICE
    ) -> None:
        self._backend = backend
        self.service = service
        self._private: Ed25519PrivateKey | None = None
        self._lock = threading.Lock()

    def backend(self) -> KeyringBackend:
        if self._backend is None:
            backend, origin = active_backend()
            check_usable(backend, origin)
            self._backend = backend
        return self._backend

    # ------------------------------------------------------------------ reading
    def private_key(self, *, create: bool = True) -> Ed25519PrivateKey | None:
        """The signing key; created and stored on first need when `create`."""
        with self._lock:
            if self._private is None:
                self._private = self._read()
                if self._private is None and create:
                    self._private = self._create()
            return self._private

    def public_key(self, *, create: bool = False) -> Ed25519PublicKey | None:
        private = self.private_key(create=create)
        return None if private is None else private.public_key()

    def sign(self, message: bytes) -> tuple[bytes, str]:
        """(signature, key fingerprint)."""
        private = self.private_key(create=True)
        assert private is not None
        return private.sign(message), evidence_check.fingerprint(private.public_key())

    def _raw(self) -> str | None:
        try:
            return self.backend().get_password(self.service, KEY_ENTRY)
        except (KeyringError, OSError) as exc:
            raise KeyringUnavailable(
                f"the keyring backend {backend_name(self.backend())} could not read the audit "
                f"signing key ({type(exc).__name__})"
            ) from None

    def _read(self) -> Ed25519PrivateKey | None:
        raw = self._raw()
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if data.get("algorithm") != ALGORITHM:
                raise ValueError
            seed = base64.b64decode(str(data["private_key"]), validate=True)
            return Ed25519PrivateKey.from_private_bytes(seed)
        except (ValueError, KeyError, TypeError, AttributeError):
            # Never quote the entry: it is a secret.
            raise ConfigError(
                f"the keyring entry {self.service}/{KEY_ENTRY} does not hold an Ed25519 audit "
                "signing key in the form ml-console writes; checkpoints cannot be signed "
                "until it is repaired (delete the entry to start a new key: older checkpoints "
                "then verify only with the old public key)"
            ) from None

    def _create(self) -> Ed25519PrivateKey:
        key = Ed25519PrivateKey.generate()
        seed = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        payload = json.dumps(
            {"algorithm": ALGORITHM, "private_key": base64.b64encode(seed).decode("ascii")}
        )
        try:
            self.backend().set_password(self.service, KEY_ENTRY, payload)
        except (KeyringError, OSError) as exc:
            raise KeyringUnavailable(
                f"the keyring backend {backend_name(self.backend())} could not store the "
                f"audit signing key ({type(exc).__name__})"
            ) from None
        # Another process may have stored its own key at the same moment: use what stuck.
        stored = self._read()
        if stored is None:
            raise KeyringUnavailable(
                f"the keyring backend {backend_name(self.backend())} accepted the audit "
                "signing key but did not keep it"
            )
        return stored
