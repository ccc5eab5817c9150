"""The Entra ID identity the app acts as: a managed identity in Azure, `az login` on a laptop.

azure-identity is imported only when a credential is built, so the CLI's plain registry imports
never pay for it. Its errors become AuthError here, once, so nothing below the shell needs to
know azure.core's exception types.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from ..values.errors import AuthError
from .acr import AccessToken, TokenCredential, jwt_expiry

__all__ = ["StaticTokenCredential", "app_identity", "build_credential"]

if TYPE_CHECKING:  # azure-core is imported at run time only once a credential is built
    from azure.core.credentials import TokenCredential as AzureTokenCredential


class _Checked:
    """A TokenCredential whose failures are AuthErrors naming the identity and the audience."""

    def __init__(self, inner: AzureTokenCredential, describe: str) -> None:
        self._inner = inner
        self._describe = describe

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            token = self._inner.get_token(*scopes, **kwargs)
        except ClientAuthenticationError as exc:  # CredentialUnavailableError is one too
            first = str(getattr(exc, "message", None) or exc).strip().splitlines()
            reason = first[0][:300] if first else exc.__class__.__name__
            raise AuthError(f"could not get an Entra ID token for {' '.join(scopes)} as {self._describe}: {reason}") \
                from None
        return AccessToken(token.token, int(token.expires_on))

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close:
            close()

    def __repr__(self) -> str:
        return f"<credential {self._describe}>"


def build_credential(client_id: str | None = None) -> TokenCredential:
    """ManagedIdentityCredential(client_id) for a user-assigned identity (IMPORT_MANAGED_IDENTITY_CLIENT_ID),
    else DefaultAzureCredential: the system-assigned identity, or the chain's environment, workload
    identity and az login."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if client_id:
        # Straight to the managed identity endpoint: no chain to walk, no surprise from env variables.
        return _Checked(ManagedIdentityCredential(client_id=client_id),
                        f"the user-assigned managed identity {client_id}")
    return _Checked(DefaultAzureCredential(exclude_interactive_browser_credential=True),
                    "DefaultAzureCredential (system-assigned managed identity, environment, or az login)")


@functools.cache
def app_identity(client_id: str | None = None) -> TokenCredential:
    """The app's own identity, one per process: storage, ACR and ARM share its token cache."""
    return build_credential(client_id)


class StaticTokenCredential:
    """An Entra ID access token someone handed us (az acr import's password-as-token for an ACR in
    another tenant: `az account get-access-token --resource https://containerregistry.azure.net`)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        expires = jwt_expiry(self._token)
        if expires is None:
            raise AuthError("the given password is not an Entra ID access token (not a JWT with exp)")
        return AccessToken(self._token, int(expires))

    def __repr__(self) -> str:
        return "StaticTokenCredential(***)"
