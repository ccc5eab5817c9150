"""Triggers: Event Grid and registry webhook payloads -> PushEvents -> mirror rules -> imports (pure).

No HTTP, no storage here: the Functions shell decodes a request, calls these, and encodes the answer.

    verify_eventgrid(headers, query, secrets)                      -> None | raise WebhookAuthError (values.errors)
    parse_eventgrid(body, headers)                                 -> ParsedDelivery
    cloudevents_handshake(headers)                                 -> response headers | None (OPTIONS)
    verify_webhook(provider, headers, query, body, secrets, path_token=None) -> None | raise
    parse_webhook(provider, body, headers, registry=None)          -> ParsedDelivery
    MirrorRules.from_settings(settings) / .load(path) / .match(event) -> MatchedImport | None
    MatchedImport.to_request(default_target_registry, credential)  -> ImportRequest
    dedupe_key(source, target_registry, target), target_key(...), within_window(...)
"""

from .senders import (
    DEFAULT_SECRET_HEADER, SECRET_SETTINGS, TriggerSecrets, github_signature_ok, secret_matches, verify_eventgrid,
    verify_webhook,
)
from .dedupe import dedupe_key, target_key, within_window
from .eventgrid import cloudevents_handshake, parse_eventgrid
from .events import MAX_BODY_BYTES, ParsedDelivery, PushEvent
from .rules import RULES_FILE_SETTING, MatchedImport, MirrorRule, MirrorRules
from .semver import Range, Version, parse_version
from .webhooks import PROVIDERS, parse_webhook

__all__ = [
    "DEFAULT_SECRET_HEADER",
    "MAX_BODY_BYTES",
    "PROVIDERS",
    "RULES_FILE_SETTING",
    "SECRET_SETTINGS",
    "MatchedImport",
    "MirrorRule",
    "MirrorRules",
    "ParsedDelivery",
    "PushEvent",
    "Range",
    "TriggerSecrets",
    "Version",
    "cloudevents_handshake",
    "dedupe_key",
    "github_signature_ok",
    "parse_eventgrid",
    "parse_version",
    "parse_webhook",
    "secret_matches",
    "target_key",
    "verify_eventgrid",
    "verify_webhook",
    "within_window",
]
