"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) with a key from IMPORT_CREDENTIAL_KEY.

In Azure the key is an app setting backed by a Key Vault reference, so the table alone never
reveals a source password; without a key, requests that carry credentials are refused.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken

from ..auth import Credential
from ..values.errors import ImporterError, UsageError

__all__ = ["SecretBox"]


class SecretBox:
    def __init__(self, key: str | None) -> None:
        try:
            self._fernet = Fernet(key.encode()) if key else None
        except ValueError:
            raise UsageError("setting IMPORT_CREDENTIAL_KEY is not a valid Fernet key (32 url-safe base64 bytes)",
                             target="IMPORT_CREDENTIAL_KEY") from None

    @property
    def available(self) -> bool:
        return self._fernet is not None

    def seal(self, data: dict) -> str:
        if self._fernet is None:
            raise UsageError("this deployment cannot store credentials: IMPORT_CREDENTIAL_KEY is not set",
                             target="source.credentials")
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def open(self, token: str | None) -> dict | None:
        if not token:
            return None
        if self._fernet is None:
            raise ImporterError("stored credentials cannot be read: IMPORT_CREDENTIAL_KEY is not set")
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise ImporterError("stored credentials cannot be read: IMPORT_CREDENTIAL_KEY changed") from None

    def seal_credential(self, credential: Credential | None) -> str | None:
        if credential is None:
            return None
        return self.seal({"username": credential.username, "password": credential.password})

    def open_credential(self, token: str | None) -> Credential | None:
        data = self.open(token)
        return Credential(data.get("username"), data.get("password")) if data else None
