"""Registry authentication: credentials, challenges, and the token flow as an httpx.Auth."""

from .challenge import Challenge, parse_challenges
from .credentials import Credential, load_credential
from .flow import RegistryAuth, scopes_for

__all__ = ["Challenge", "Credential", "RegistryAuth", "load_credential", "parse_challenges", "scopes_for"]
