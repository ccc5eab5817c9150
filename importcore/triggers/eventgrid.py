"""Azure Event Grid deliveries -> PushEvents (pure).

Both schemas are read, per event, from the same endpoint:

- Event Grid schema: a JSON array of `{id, topic, subject, eventType, eventTime, data, dataVersion}`;
  the subscription handshake is an array holding one `Microsoft.EventGrid.SubscriptionValidationEvent`
  (header `aeg-event-type: SubscriptionValidation`) whose `data.validationCode` must be echoed back.
- CloudEvents 1.0: one event (`application/cloudevents+json`), a batch (`application/cloudevents-batch+json`,
  an array), or binary mode (`ce-*` headers, the body is `data`). Its handshake is an HTTP OPTIONS
  request with `WebHook-Request-Origin`, answered by `cloudevents_handshake`.

`Microsoft.ContainerRegistry.ImagePushed` and `.ChartPushed` become PushEvents when their target is
tagged (ACR also raises ImagePushed for each untagged child manifest of an index: those are ignored).
Every other event type is ignored with a reason.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping

from ..values.errors import UsageError
from .events import Collector, ParsedDelivery, clean, header, load_json, obj, opt_obj, opt_str
from .webhooks import acr_push_event

__all__ = [
    "CHART_PUSHED",
    "IMAGE_PUSHED",
    "SUBSCRIPTION_VALIDATION",
    "cloudevents_handshake",
    "parse_eventgrid",
]

IMAGE_PUSHED = "Microsoft.ContainerRegistry.ImagePushed"
CHART_PUSHED = "Microsoft.ContainerRegistry.ChartPushed"
SUBSCRIPTION_VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
_PUSH_TYPES = {IMAGE_PUSHED.lower(): "push", CHART_PUSHED.lower(): "chart_push"}
# topic / source of ACR events: the registry's resource id.
_REGISTRY_ID = re.compile(r"/providers/Microsoft\.ContainerRegistry/registries/([A-Za-z0-9]{5,50})(?:/|$)",
                          re.IGNORECASE)


def parse_eventgrid(body: bytes | str, headers: Mapping[str, str] | None = None) -> ParsedDelivery:
    """An Event Grid POST (either schema, single or batch) -> push events, ignore reasons, and the
    validation code when this is Event Grid's subscription handshake."""
    out = Collector()
    validation: list[tuple[str, str | None]] = []
    if header(headers, "ce-specversion") and header(headers, "ce-type"):
        events = [_binary_cloudevent(body, headers)]
    else:
        data = load_json(body, what="event grid delivery")
        if isinstance(data, list):
            events = data
        elif isinstance(data, dict):
            events = [data]
        else:
            raise UsageError("event grid delivery: expected an array of events or one event object")
    for i, raw in enumerate(events):
        where = f"events[{i}]"
        event = obj(raw, where)
        if "specversion" in event and "eventType" not in event:
            _cloudevent(event, where, out)
        else:
            _eventgrid_event(event, where, out, validation)
    aeg_type = (header(headers, "aeg-event-type") or "").strip().lower()
    if aeg_type == "subscriptionvalidation" and not validation:
        raise UsageError("event grid delivery: aeg-event-type is SubscriptionValidation but the body holds no "
                         f"{SUBSCRIPTION_VALIDATION}")
    if len(validation) > 1:
        raise UsageError("event grid delivery: more than one subscription validation event")
    code, url = validation[0] if validation else (None, None)
    return out.result(validation_code=code, validation_url=url)


def cloudevents_handshake(headers: Mapping[str, str] | None,
                          allowed_origins: tuple[str, ...] | None = None) -> dict[str, str] | None:
    """CloudEvents 1.0 webhook abuse protection (OPTIONS): the response headers to send back, or None
    when the request is not a handshake (or its origin is not allowed).

    Event Grid sends `WebHook-Request-Origin: eventgrid.azure.net`; answer 200 with these headers.
    """
    origin = (header(headers, "WebHook-Request-Origin") or "").strip()
    if not origin or len(origin) > 255 or not origin.isascii() or any(c in origin for c in "\r\n,"):
        return None
    if allowed_origins is not None and origin.lower() not in {o.lower() for o in allowed_origins}:
        return None
    reply = {"WebHook-Allowed-Origin": origin}
    if header(headers, "WebHook-Request-Rate") is not None:
        reply["WebHook-Allowed-Rate"] = "*"
    return reply


# -- the two schemas ------------------------------------------------------------------------------

def _eventgrid_event(event: dict, where: str, out: Collector, validation: list) -> None:
    event_type = opt_str(event, "eventType", where)
    if event_type is None:
        raise UsageError(f"{where}: neither an Event Grid event (eventType) nor a CloudEvent (specversion)",
                         target=where)
    if event_type.lower() == SUBSCRIPTION_VALIDATION.lower():
        data = opt_obj(event, "data", where)
        code = opt_str(data, "validationCode", f"{where}.data")
        if code is None:
            raise UsageError(f"{where}.data.validationCode is required", target=f"{where}.data.validationCode")
        if len(code) > 256 or not code.isprintable():
            raise UsageError(f"{where}.data.validationCode is not a validation code",
                             target=f"{where}.data.validationCode")
        validation.append((code, clean(opt_str(data, "validationUrl", f"{where}.data"), 2048)))
        return
    _container_registry(event_type, event, opt_str(event, "topic", where), "data", where, out)


def _cloudevent(event: dict, where: str, out: Collector) -> None:
    version = event.get("specversion")
    if version != "1.0":
        raise UsageError(f"{where}.specversion: only CloudEvents 1.0 is supported, got {str(version)[:20]!r}",
                         target=f"{where}.specversion")
    event_type = opt_str(event, "type", where)
    if event_type is None:
        raise UsageError(f"{where}.type is required", target=f"{where}.type")
    if "data" not in event and "data_base64" in event:
        encoded = opt_str(event, "data_base64", where) or ""
        try:
            event = {**event, "data": load_json(base64.b64decode(encoded, validate=True), what=f"{where}.data_base64")}
        except (binascii.Error, ValueError):
            raise UsageError(f"{where}.data_base64 is not base64", target=f"{where}.data_base64") from None
    _container_registry(event_type, event, opt_str(event, "source", where), "data", where, out)


def _binary_cloudevent(body: bytes | str, headers: Mapping[str, str] | None) -> dict:
    """Binary content mode: attributes in ce-* headers, `data` is the body."""
    event: dict[str, object] = {"specversion": header(headers, "ce-specversion"), "type": header(headers, "ce-type"),
             "id": header(headers, "ce-id"), "source": header(headers, "ce-source"),
             "subject": header(headers, "ce-subject")}
    event["data"] = load_json(body, what="cloudevent data") if body else None
    return event


def _container_registry(event_type: str, event: dict, resource_id: str | None, data_key: str, where: str,
                        out: Collector) -> None:
    action = _PUSH_TYPES.get(event_type.lower())
    if action is None:
        out.ignore(where, f"event type {event_type[:100]} is not an image or chart push")
        return
    data = opt_obj(event, data_key, where)
    event_id = opt_str(event, "id", where) or opt_str(data, "id", f"{where}.{data_key}")
    push = acr_push_event(data, where=f"{where}.{data_key}", provider="eventgrid", action=action,
                          event_id=event_id, registry_fallback=_registry_from_resource_id(resource_id), out=out)
    if push is not None:
        out.events.append(push)


def _registry_from_resource_id(resource_id: str | None) -> str | None:
    """`/subscriptions/../providers/Microsoft.ContainerRegistry/registries/myacr` -> myacr.azurecr.io
    (Azure public cloud's login server; events from other clouds carry request.host)."""
    m = _REGISTRY_ID.search(resource_id or "")
    return f"{m.group(1).lower()}.azurecr.io" if m else None
