"""Events into imports: Event Grid and registry webhooks -> mirror rules -> (deduplicated) jobs.

Every accepted delivery is answered before any copy starts: the work is only recorded and enqueued.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace

from ..values.errors import ImporterError, UnknownProvider, UsageError, WebhookAuthError
from ..triggers import (
    MirrorRules, ParsedDelivery, TriggerSecrets, cloudevents_handshake, parse_eventgrid, parse_webhook,
    verify_eventgrid, verify_webhook,
)
from .api import Reply, error_reply

__all__ = ["EventIntake"]

log = logging.getLogger("importcore.service")


class EventIntake:
    def __init__(self, service, *, rules: MirrorRules | None = None, secrets: TriggerSecrets | None = None) -> None:
        self.service = service
        self.rules = rules if rules is not None else MirrorRules.from_settings(
            service.settings, key_names=[name for name, _ in service.settings.verify_keys])
        self.secrets = secrets or TriggerSecrets.from_settings(service.settings)

    def handshake(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        """CloudEvents 1.0 abuse protection (OPTIONS): echo the origin we accept deliveries from.

        The handshake subscribes the endpoint, so it needs the Event Grid secret as a delivery does
        (`?token=` is on the handshake's URL too): wrong or missing -> 401, no Allowed-Origin."""
        try:
            verify_eventgrid(headers, query, self.secrets)
        except ImporterError as exc:
            return _refusal(exc)
        allowed = cloudevents_handshake(headers)
        if allowed is None:
            return error_reply(400, "InvalidRequest", "WebHook-Request-Origin header is required", "headers")
        return Reply(200, {}, tuple(allowed.items()))

    def eventgrid(self, body: bytes, headers: Mapping[str, str], query: Mapping[str, str]) -> Reply:
        try:
            verify_eventgrid(headers, query, self.secrets)
            delivery = parse_eventgrid(body, headers)
        except ImporterError as exc:
            return _refusal(exc)
        if delivery.validation_code is not None:
            return Reply(200, {"validationResponse": delivery.validation_code})
        return self._import(delivery)

    def webhook(self, provider: str, body: bytes, headers: Mapping[str, str], query: Mapping[str, str],
                path_token: str | None) -> Reply:
        try:
            verify_webhook(provider, headers, query, body, self.secrets, path_token=path_token)
            delivery = parse_webhook(provider, body, headers, registry=query.get("registry") or None)
        except ImporterError as exc:
            return _refusal(exc)
        return self._import(delivery)

    def _import(self, delivery: ParsedDelivery) -> Reply:
        jobs, ignored = [], list(delivery.ignored)
        for event in delivery.events:
            try:
                matched = self.rules.match(event)
            except UsageError as exc:
                # The rule rendered an invalid target: our configuration, not the sender's fault.
                log.error("mirror rules: %s", exc.message)
                ignored.append(f"{event.repository}:{event.tag}: {exc.message}")
                continue
            if matched is None:
                log.debug("event %s/%s:%s matches no mirror rule", event.registry, event.repository, event.tag)
                ignored.append(f"{event.registry}/{event.repository}:{event.tag}: no matching rule")
                continue
            target_registry = self.service.settings.target_registry
            request = matched.to_request(target_registry)
            if matched.credential:
                request = replace(request, credential_ref=matched.credential)
            job, created = self.service.create_job(request, dedupe=matched.dedupe_key(target_registry))
            jobs.append({"id": job.id, "status": job.status, "duplicate": not created,
                         "source": job.request["source"], "targets": job.request["targets"]})
        return Reply(200, {"jobs": jobs, "ignored": len(ignored)})


def _refusal(exc: ImporterError) -> Reply:
    if isinstance(exc, UnknownProvider):
        return error_reply(404, exc.code, exc.message, exc.target)
    if isinstance(exc, WebhookAuthError):
        return error_reply(401, exc.code, exc.message)
    if isinstance(exc, UsageError):
        return error_reply(400, exc.code, exc.message, exc.target)
    return error_reply(413 if exc.code == "LimitExceeded" else 400, exc.code, exc.message, exc.target)
