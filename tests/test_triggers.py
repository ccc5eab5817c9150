"""Triggers (pure): each sample payload -> the push events it means; ignored events; authenticity;
malformed input is a UsageError and never anything else (property-tested)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importcore.values.errors import (
    ImporterError, LimitExceeded, UnknownProvider, UsageError, WebhookAuthError, WebhookNotConfigured,
)
from importcore.values.reference import Reference, TargetSpec
from importcore.values.settings import Settings
from importcore.triggers import (
    MAX_BODY_BYTES,
    PushEvent,
    TriggerSecrets,
    cloudevents_handshake,
    dedupe_key,
    github_signature_ok,
    parse_eventgrid,
    parse_webhook,
    secret_matches,
    target_key,
    verify_eventgrid,
    verify_webhook,
    within_window,
)

FIXTURES = Path(__file__).parent / "fixtures" / "events"


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def summary(events) -> list[tuple]:
    return [(e.provider, e.registry, e.repository, e.tag, e.digest, e.media_type, e.event_id, e.action)
            for e in events]


D_ACR_IMG = "sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5"
D_ACR_IDX = "sha256:7e4b9d3a1c2f8e6d5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4"
D_ACR_CHART = "sha256:7f060075264b5ba7c14c23672698152ae6a3ebac1c47916e4efe19cd624d5fab"
D_DIST_IDX = "sha256:de4c24cd2fc23460624877e07ac0913267127369f451961513bdcc54ba682e09"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
CONTOSO = "contosoregistry.azurecr.io"

IMAGE_PUSHED = ("eventgrid", CONTOSO, "aci-helloworld", "v1", D_ACR_IMG, DOCKER_V2,
                "831e1650-001e-001b-66ab-eeb76e069631", "push")
INDEX_PUSHED = ("eventgrid", CONTOSO, "team/app", "v1.2.3", D_ACR_IDX, OCI_INDEX,
                "0b5f1d4e-6a7c-4b8d-9e0f-1a2b3c4d5e02", "push")
DIST_PUSHED = ("distribution", "127.0.0.1:35765", "team/app", "v1.2.3", D_DIST_IDX, OCI_INDEX,
               "6de1edb1-8c8e-48d5-8ab7-795be9549c39", "push")


# -- Event Grid -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fixture, expected", [
    ("eventgrid_imagepushed.json", [IMAGE_PUSHED]),
    ("cloudevents_imagepushed.json", [IMAGE_PUSHED]),
    # ChartPushed carries no request.host: the registry comes from the topic's resource id
    ("eventgrid_chartpushed.json", [("eventgrid", CONTOSO, "repo", "mychart-1.0.0.tgz", D_ACR_CHART,
                                     "application/vnd.acr.helm.chart", "ea3a9c28-5b17-40f6-a500-3f02b6829277",
                                     "chart_push")]),
    # ACR raises ImagePushed for the untagged children too: only the tagged index imports
    ("eventgrid_batch_multiarch.json", [INDEX_PUSHED]),
    ("cloudevents_batch.json", [
        ("eventgrid", CONTOSO, "team/app", "v1.2.3", D_ACR_IDX, OCI_INDEX, "1a7e6c04-63a5-4c0b-9d7e-2f3a4b5c6d01",
         "push"),
        ("eventgrid", CONTOSO, "repo", "mychart-1.0.0.tgz", D_ACR_CHART, "application/vnd.acr.helm.chart",
         "1a7e6c04-63a5-4c0b-9d7e-2f3a4b5c6d02", "chart_push")]),
    ("eventgrid_imagedeleted.json", []),
])
def test_eventgrid_fixtures_map_to_push_events(fixture, expected):
    result = parse_eventgrid(body(fixture), {"aeg-event-type": "Notification"})
    assert summary(result.events) == expected
    assert result.validation_code is None


@pytest.mark.parametrize("fixture, reasons", [
    ("eventgrid_imagedeleted.json", ["ImageDeleted is not an image or chart push"]),
    ("eventgrid_batch_multiarch.json", ["untagged manifest in team/app", "Microsoft.Storage.BlobCreated is not"]),
    ("cloudevents_batch.json", ["ImageDeleted is not an image or chart push"]),
])
def test_eventgrid_ignored_events_say_why(fixture, reasons):
    ignored = parse_eventgrid(body(fixture)).ignored
    assert len(ignored) == len(reasons)
    for line, reason in zip(ignored, reasons):
        assert reason in line


def test_eventgrid_subscription_validation_returns_the_code():
    result = parse_eventgrid(body("eventgrid_validation.json"), {"aeg-event-type": "SubscriptionValidation"})
    assert result.validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert result.validation_url.startswith("https://rp-eastus2.eventgrid.azure.net:553/")
    assert result.events == () and result.ignored == ()


def test_eventgrid_validation_header_without_a_validation_event_is_a_usage_error():
    with pytest.raises(UsageError, match="SubscriptionValidation"):
        parse_eventgrid(body("eventgrid_imagepushed.json"), {"Aeg-Event-Type": "SubscriptionValidation"})


def test_eventgrid_validation_event_without_code_is_a_usage_error():
    event = json.loads(body("eventgrid_validation.json"))
    del event[0]["data"]["validationCode"]
    with pytest.raises(UsageError, match="validationCode"):
        parse_eventgrid(json.dumps(event).encode())


def test_cloudevents_binary_mode():
    data = json.loads(body("cloudevents_imagepushed.json"))
    headers = {"ce-specversion": "1.0", "ce-type": data["type"], "ce-id": data["id"], "ce-source": data["source"],
               "Content-Type": "application/json"}
    result = parse_eventgrid(json.dumps(data["data"]).encode(), headers)
    assert summary(result.events) == [IMAGE_PUSHED]


def test_cloudevents_data_base64():
    data = json.loads(body("cloudevents_imagepushed.json"))
    data["data_base64"] = base64.b64encode(json.dumps(data.pop("data")).encode()).decode()
    assert summary(parse_eventgrid(json.dumps(data).encode()).events) == [IMAGE_PUSHED]


def test_cloudevents_other_spec_versions_are_refused():
    data = json.loads(body("cloudevents_imagepushed.json"))
    data["specversion"] = "0.3"
    with pytest.raises(UsageError, match="CloudEvents 1.0"):
        parse_eventgrid(json.dumps(data).encode())


def test_cloudevents_handshake():
    assert cloudevents_handshake({"WebHook-Request-Origin": "eventgrid.azure.net"}) == {
        "WebHook-Allowed-Origin": "eventgrid.azure.net"}
    assert cloudevents_handshake({"webhook-request-origin": "eventgrid.azure.net", "WebHook-Request-Rate": "120"}) == {
        "WebHook-Allowed-Origin": "eventgrid.azure.net", "WebHook-Allowed-Rate": "*"}
    assert cloudevents_handshake({}) is None
    assert cloudevents_handshake({"WebHook-Request-Origin": "evil\r\nSet-Cookie: x"}) is None
    assert cloudevents_handshake({"WebHook-Request-Origin": "other.example"}, ("eventgrid.azure.net",)) is None


def test_eventgrid_registry_from_request_host_wins_over_topic():
    events = json.loads(body("eventgrid_imagepushed.json"))
    events[0]["data"]["request"]["host"] = "contosoregistry.azurecr.cn"
    assert parse_eventgrid(json.dumps(events).encode()).events[0].registry == "contosoregistry.azurecr.cn"


def test_eventgrid_push_without_any_registry_host_is_a_usage_error():
    events = json.loads(body("eventgrid_chartpushed.json"))
    events[0]["topic"] = "/subscriptions/x/resourceGroups/y/providers/Microsoft.Storage/storageAccounts/z"
    with pytest.raises(UsageError, match="request.host"):
        parse_eventgrid(json.dumps(events).encode())


# -- webhooks -------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider, fixture, kwargs, expected", [
    ("distribution", "distribution_push_tagged.json", {}, [DIST_PUSHED]),
    # the registry's own notifications for a 2-platform push: 6 blobs, 2 untagged children, 1 tagged index
    ("distribution", "distribution_multiarch_push.json", {}, [DIST_PUSHED]),
    ("distribution", "distribution_blob_push.json", {}, []),
    ("distribution", "distribution_child_manifest.json", {}, []),
    ("distribution", "distribution_pull_and_delete.json", {}, []),
    ("acr", "acr_push.json", {}, [("acr", "myregistry.azurecr.io", "hello-world", "v1",
                                  "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d", DOCKER_V2,
                                  "cb8c3971-9adc-488b-bdd8-43cbb4974ff5", "push")]),
    ("acr", "acr_chart_push.json", {"registry": "myregistry.azurecr.io"},
     [("acr", "myregistry.azurecr.io", "repo", "wordpress-5.4.0.tgz",
       "sha256:2b86ca2c1e1e9bcf3b8d0fc0c1b3a9ee4b6fdb1d5c2a5c0d61a9c4b4a4e1e5f7", "application/vnd.acr.helm.chart",
       "6356e9e0-627f-4fed-a1b0-d9059b5143ac", "chart_push")]),
    ("acr", "acr_delete.json", {}, []),
    ("dockerhub", "dockerhub_push.json", {}, [("dockerhub", "docker.io", "svendowideit/testhook", "latest", None, None,
                                               None, "push")]),
    ("harbor", "harbor_push_artifact.json", {}, [
        ("harbor", "harbor.example.com", "library/alpine", "3.18",
         "sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4", None, None, "push")]),
    ("harbor", "harbor_cloudevents_push.json", {}, [
        ("harbor", "harbor.example.com:8443", "project01/app", "v2.1.0",
         "sha256:dde8e930c7b6a490f728e66292bc9bce42efc9bbb5278bae40e4f30f6e00fe8c", None,
         "4b2f89a6-548d-4c12-9993-a1f5790b97d2", "push")]),
    ("harbor", "harbor_pull_artifact.json", {}, []),
    ("github", "github_registry_package_published.json", {}, [
        ("github", "ghcr.io", "octo-org/hello-world", "v1.2.3",
         "sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498", OCI_INDEX, None, "push")]),
    ("github", "github_registry_package_untagged.json", {}, []),
])
def test_webhook_fixtures_map_to_push_events(provider, fixture, kwargs, expected):
    result = parse_webhook(provider, body(fixture), {}, **kwargs)
    assert summary(result.events) == expected
    if not expected:
        assert result.ignored, "an ignored delivery must say why"


def test_distribution_multiarch_ignores_each_blob_and_child_with_a_reason():
    ignored = parse_webhook("distribution", body("distribution_multiarch_push.json")).ignored
    assert sum("blob push" in line for line in ignored) == 6
    assert sum("untagged manifest" in line for line in ignored) == 2


def test_distribution_host_falls_back_to_the_target_url():
    envelope = json.loads(body("distribution_push_tagged.json"))
    del envelope["events"][0]["request"]
    envelope["events"][0]["target"]["url"] = envelope["events"][0]["target"]["url"].replace(
        "http://127.0.0.1:35765", "https://user:pw@registry.example.com")
    assert parse_webhook("distribution", json.dumps(envelope)).events[0].registry == "registry.example.com"


def test_distribution_needs_the_envelope():
    with pytest.raises(UsageError, match="envelope"):
        parse_webhook("distribution", b'{"id": "x"}')


def test_acr_chart_push_without_a_registry_is_a_usage_error():
    with pytest.raises(UsageError, match="request.host"):
        parse_webhook("acr", body("acr_chart_push.json"))


def test_dockerhub_events_need_resolution():
    event = parse_webhook("dockerhub", body("dockerhub_push.json")).events[0]
    assert event.digest is None and event.reference == Reference("docker.io", "svendowideit/testhook", "latest")


def test_github_ping_and_other_events_are_ignored():
    assert parse_webhook("github", body("github_ping.json"), {"X-GitHub-Event": "ping"}).events == ()
    pkg = body("github_registry_package_published.json")
    assert parse_webhook("github", pkg, {"X-GitHub-Event": "push"}).events == ()
    updated = json.loads(pkg)
    updated["action"] = "updated"
    assert parse_webhook("github", json.dumps(updated), {"X-GitHub-Event": "registry_package"}).events == ()
    npm = json.loads(pkg)
    npm["registry_package"]["package_type"] = "npm"
    assert parse_webhook("github", json.dumps(npm)).events == ()


def test_github_event_id_is_the_delivery_id_and_ghes_registry_can_be_given():
    result = parse_webhook("github", body("github_registry_package_published.json"),
                           {"x-github-event": "registry_package", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab"},
                           registry="containers.ghes.example.com")
    event = result.events[0]
    assert event.event_id == "72d3162e-cc78-11e3-81ab"
    assert event.registry == "containers.ghes.example.com"


def test_github_package_event_and_uppercase_owner():
    data = json.loads(body("github_registry_package_published.json"))
    data["package"] = data.pop("registry_package")
    data["package"]["owner"]["login"] = "Octo-Org"
    event = parse_webhook("github", json.dumps(data), {"X-GitHub-Event": "package"}).events[0]
    assert event.repository == "octo-org/hello-world"


def test_harbor_resource_without_tag_is_ignored_and_several_resources_are_several_events():
    data = json.loads(body("harbor_push_artifact.json"))
    res = data["event_data"]["resources"][0]
    data["event_data"]["resources"] = [dict(res, tag="3.18.4"), dict(res, tag=""), dict(res, tag="3")]
    result = parse_webhook("harbor", json.dumps(data))
    assert [e.tag for e in result.events] == ["3.18.4", "3"]
    assert len(result.ignored) == 1


def test_unknown_provider():
    with pytest.raises(UnknownProvider) as info:
        parse_webhook("gitlab", b"{}")
    assert isinstance(info.value, UsageError) and info.value.code == "UnknownProvider"


@pytest.mark.parametrize("provider, payload, match", [
    ("acr", {"action": "push", "target": {"repository": "a", "tag": "v1", "digest": "sha256:abc"},
             "request": {"host": "x.azurecr.io"}}, "digest"),
    ("acr", {"action": "push", "target": {"repository": "UPPER", "tag": "v1"}, "request": {"host": "x.azurecr.io"}},
     "lowercase"),
    ("acr", {"action": "push", "target": {"repository": "a", "tag": "-bad"}, "request": {"host": "x.azurecr.io"}},
     "tag"),
    ("acr", {"action": "push", "target": {"repository": "a", "tag": "v1"}, "request": {"host": "registry"}},
     "fully qualified"),
    ("acr", {"action": "push", "target": {"repository": "a", "tag": "v1"}, "request": {"host": "h.io:99999"}},
     "registry"),
    ("acr", {"action": "push", "target": {"repository": 7, "tag": "v1"}}, "repository: expected a string"),
    ("acr", {"action": "push", "target": "x"}, "target: expected a JSON object"),
    ("distribution", {"events": {"a": 1}}, "events: expected an array"),
    ("distribution", {"events": [1]}, r"events\[0\]: expected a JSON object"),
    ("dockerhub", {"push_data": {"tag": "v1"}}, "repo_name is required"),
    ("harbor", {"type": "PUSH_ARTIFACT", "event_data": {"resources": [{"tag": "v1"}],
                                                        "repository": {"repo_full_name": "p/r"}}}, "resource_url"),
    ("github", {"action": "published", "registry_package": {
        "name": "x", "package_type": "CONTAINER", "owner": {"login": "o"},
        "package_version": {"container_metadata": {"tag": {"name": "v1", "digest": "sha256:1"}}}}}, "digest"),
])
def test_malformed_payloads_are_usage_errors_naming_the_field(provider, payload, match):
    with pytest.raises(UsageError, match=match):
        parse_webhook(provider, json.dumps(payload))


@pytest.mark.parametrize("raw", [b"", b"   ", b"not json", b"{", b"\xff\xfe\x00", b'{"a": NaN', b"[" * 100_000,
                                 b'"just a string"', b"42", b"null", "{\"events\": [\"\ud800\"]}".encode(
                                     "utf-8", "surrogatepass")])
@pytest.mark.parametrize("provider", ["distribution", "acr", "dockerhub", "harbor", "github", "eventgrid"])
def test_malformed_json_is_a_usage_error(provider, raw):
    with pytest.raises(UsageError):
        if provider == "eventgrid":
            parse_eventgrid(raw)
        else:
            parse_webhook(provider, raw)


def test_oversized_body_is_refused():
    big = b'{"events": [], "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    with pytest.raises(LimitExceeded):
        parse_webhook("distribution", big)
    with pytest.raises(LimitExceeded):
        parse_eventgrid(big)


def test_push_event_values():
    event = PushEvent.build(registry="Index.Docker.IO", repository="nginx", tag="1.25", digest=None,
                            media_type=None, provider="dockerhub")
    assert (event.registry, event.repository) == ("docker.io", "library/nginx")
    assert str(event) == "dockerhub push docker.io/library/nginx:1.25"


# -- property tests: parsers raise ImporterError subclasses and nothing else -------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
_KEYS = ["events", "action", "target", "tag", "digest", "repository", "request", "host", "url", "mediaType",
         "eventType", "data", "specversion", "type", "validationCode", "topic", "source", "push_data",
         "repo_name", "event_data", "resources", "resource_url", "repo_full_name", "registry_package",
         "package_version", "container_metadata", "name", "owner", "login", "package_type", "data_base64"]
_shaped = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) |
    st.sampled_from(["push", "chart_push", "PUSH_ARTIFACT", "published", "1.0", "CONTAINER", "v1",
                     "sha256:" + "a" * 64, "127.0.0.1:5000", "Microsoft.ContainerRegistry.ImagePushed",
                     "Microsoft.EventGrid.SubscriptionValidationEvent", "harbor.artifact.pushed", "a/b",
                     "application/vnd.oci.image.index.v1+json", "registry.example.com/a/b:v1"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(_KEYS), children, max_size=6),
    max_leaves=30,
)
_headers = st.dictionaries(
    st.sampled_from(["aeg-event-type", "ce-specversion", "ce-type", "X-GitHub-Event", "X-GitHub-Delivery",
                     "X-Harbor-Event-Id", "Content-Type"]),
    st.sampled_from(["SubscriptionValidation", "Notification", "1.0", "registry_package", "package", "ping",
                     "Microsoft.ContainerRegistry.ImagePushed", "", "x"]), max_size=3)
_PROVIDERS = ["distribution", "acr", "dockerhub", "harbor", "github", "eventgrid"]


def _parse_any(provider: str, raw: bytes, headers: dict) -> None:
    try:
        if provider == "eventgrid":
            parse_eventgrid(raw, headers)
        else:
            parse_webhook(provider, raw, headers, registry=None)
    except ImporterError:
        pass  # anything else propagates and fails the test


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(provider=st.sampled_from(_PROVIDERS), raw=st.binary(max_size=300), headers=_headers)
def test_property_random_bytes_raise_only_importer_errors(provider, raw, headers):
    _parse_any(provider, raw, headers)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(provider=st.sampled_from(_PROVIDERS), value=_json | _shaped, headers=_headers)
def test_property_random_json_raises_only_importer_errors(provider, value, headers):
    _parse_any(provider, json.dumps(value).encode(), headers)


def _mutate(value, path: list, replacement):
    if not path:
        return replacement
    head, *rest = path
    if isinstance(value, dict) and value:
        key = sorted(value)[head % len(value)]
        return {**value, key: _mutate(value[key], rest, replacement)}
    if isinstance(value, list) and value:
        i = head % len(value)
        return value[:i] + [_mutate(value[i], rest, replacement)] + value[i + 1:]
    return replacement


_FIXTURE_FILES = sorted(p.name for p in FIXTURES.glob("*.json"))


def _provider_of(name: str) -> str:
    prefix = name.split("_", 1)[0]
    return "eventgrid" if prefix in ("eventgrid", "cloudevents") else prefix


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(_FIXTURE_FILES), path=st.lists(st.integers(0, 50), max_size=6),
       replacement=_shaped, headers=_headers)
def test_property_mutated_fixtures_raise_only_importer_errors(name, path, replacement, headers):
    mutated = _mutate(json.loads(body(name)), path, replacement)
    _parse_any(_provider_of(name), json.dumps(mutated).encode(), headers)


def test_every_fixture_is_exercised():
    mapped = {f for f in _FIXTURE_FILES if f.startswith(("eventgrid", "cloudevents", "distribution", "acr",
                                                          "dockerhub", "harbor", "github"))}
    assert mapped == set(_FIXTURE_FILES)


# -- authenticity ---------------------------------------------------------------------------------

SECRET = "0123456789abcdef-webhook-secret"
SECRETS = TriggerSecrets(github=SECRET, harbor=SECRET, acr=SECRET, distribution=SECRET, dockerhub=SECRET,
                         eventgrid=SECRET)


def _gh_sig(payload: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def test_github_signature():
    payload = body("github_registry_package_published.json")
    verify_webhook("github", {"X-Hub-Signature-256": _gh_sig(payload)}, {}, payload, SECRETS)
    verify_webhook("GitHub", {"x-hub-signature-256": _gh_sig(payload)}, None, payload, SECRETS)
    assert github_signature_ok(payload, _gh_sig(payload), SECRET)


@pytest.mark.parametrize("headers", [
    {},
    {"X-Hub-Signature-256": ""},
    {"X-Hub-Signature-256": "sha256=" + "0" * 64},
    {"X-Hub-Signature-256": "sha1=" + "0" * 40},
    {"X-Hub-Signature": "sha1=whatever"},
    {"X-Hub-Signature-256": "sha256=\u00e9\u00e9"},  # non-ASCII must not raise TypeError from compare_digest
])
def test_github_bad_or_missing_signature(headers):
    with pytest.raises(WebhookAuthError):
        verify_webhook("github", headers, {}, b"{}", SECRETS)


def test_github_signature_over_another_body_or_with_another_secret_fails():
    payload = body("github_registry_package_published.json")
    with pytest.raises(WebhookAuthError):
        verify_webhook("github", {"X-Hub-Signature-256": _gh_sig(payload)}, {}, payload + b" ", SECRETS)
    with pytest.raises(WebhookAuthError):
        verify_webhook("github", {"X-Hub-Signature-256": _gh_sig(payload, "another-secret-value!")}, {}, payload,
                       SECRETS)


@pytest.mark.parametrize("provider", ["harbor", "acr", "distribution"])
@pytest.mark.parametrize("headers", [
    {"X-Webhook-Secret": SECRET},
    {"x-webhook-secret": SECRET},
    {"Authorization": SECRET},  # Harbor's "Auth Header" is sent verbatim
    {"Authorization": f"Bearer {SECRET}"},
])
def test_shared_secret_header_accepted(provider, headers):
    verify_webhook(provider, headers, {}, b"{}", SECRETS)


@pytest.mark.parametrize("provider", ["harbor", "acr", "distribution"])
@pytest.mark.parametrize("headers", [
    {}, {"X-Webhook-Secret": ""}, {"X-Webhook-Secret": SECRET + "x"}, {"X-Webhook-Secret": SECRET[:-1]},
    {"Authorization": f"Basic {SECRET}"}, {"X-Other": SECRET}, {"X-Webhook-Secret": "\u2603"},
])
def test_shared_secret_header_refused(provider, headers):
    with pytest.raises(WebhookAuthError):
        verify_webhook(provider, headers, {"token": SECRET}, b"{}", SECRETS)  # a query token does not count


def test_secret_header_name_is_configurable():
    secrets = TriggerSecrets.from_settings(Settings.from_env({"IMPORT_WEBHOOK_SECRET_ACR": SECRET,
                                                              "IMPORT_WEBHOOK_SECRET_HEADER": "X-Acr-Key"}))
    verify_webhook("acr", {"X-Acr-Key": SECRET}, {}, b"{}", secrets)
    with pytest.raises(WebhookAuthError):
        verify_webhook("acr", {"X-Webhook-Secret": SECRET}, {}, b"{}", secrets)


def test_dockerhub_path_token():
    verify_webhook("dockerhub", {}, {}, b"{}", SECRETS, path_token=SECRET)
    verify_webhook("dockerhub", {}, {"token": SECRET}, b"{}", SECRETS)
    for token in ("", "wrong", SECRET.upper()):
        with pytest.raises(WebhookAuthError):
            verify_webhook("dockerhub", {}, {}, b"{}", SECRETS, path_token=token)
    with pytest.raises(WebhookAuthError):
        verify_webhook("dockerhub", {"X-Webhook-Secret": SECRET}, {}, b"{}", SECRETS)


def test_eventgrid_secret_query_or_header():
    verify_eventgrid({}, {"token": SECRET}, SECRETS)
    verify_eventgrid({"X-Webhook-Secret": SECRET}, {}, SECRETS)
    for headers, query in [({}, {}), ({}, {"token": "nope"}), ({"X-Webhook-Secret": "nope"}, {"code": SECRET}),
                           ({"aeg-sas-key": SECRET}, {})]:
        with pytest.raises(WebhookAuthError):
            verify_eventgrid(headers, query, SECRETS)


def test_unconfigured_provider_is_refused():
    with pytest.raises(WebhookNotConfigured, match="IMPORT_WEBHOOK_SECRET_HARBOR"):
        verify_webhook("harbor", {"Authorization": ""}, {}, b"{}", TriggerSecrets())
    with pytest.raises(WebhookNotConfigured, match="IMPORT_EVENTGRID_SECRET"):
        verify_eventgrid({}, {"token": ""}, TriggerSecrets())
    assert issubclass(WebhookNotConfigured, WebhookAuthError)


def test_verify_unknown_provider():
    with pytest.raises(UnknownProvider):
        verify_webhook("quay", {}, {}, b"{}", SECRETS)


def test_trigger_secrets_from_settings():
    env = {"IMPORT_WEBHOOK_SECRET_GITHUB": SECRET, "IMPORT_EVENTGRID_SECRET": SECRET + "-eg"}
    app_settings = Settings.from_env(env)
    secrets = TriggerSecrets.from_settings(app_settings)
    assert secrets.github == SECRET and secrets.eventgrid == SECRET + "-eg" and secrets.harbor is None
    assert SECRET not in repr(secrets) and "github" in repr(secrets)
    assert SECRET not in repr(app_settings)
    with pytest.raises(UsageError, match="IMPORT_WEBHOOK_SECRET_DOCKERHUB"):
        TriggerSecrets.from_settings(Settings.from_env({"IMPORT_WEBHOOK_SECRET_DOCKERHUB": "short"}))
    with pytest.raises(UsageError, match="IMPORT_WEBHOOK_SECRET_HEADER"):
        TriggerSecrets.from_settings(Settings.from_env({"IMPORT_WEBHOOK_SECRET_HEADER": "Bad Header: x"}))


def test_secret_matches_is_exact():
    assert secret_matches("abc", "abc") and secret_matches(b"abc", "abc")
    assert not secret_matches(None, "abc") and not secret_matches("abc", "") and not secret_matches("abd", "abc")


@settings(max_examples=200, deadline=None)
@given(presented=st.text(max_size=40), secret=st.text(min_size=1, max_size=40))
def test_property_secret_matches_never_raises(presented, secret):
    assert secret_matches(presented, secret) == (presented == secret)


# -- de-duplication -------------------------------------------------------------------------------

def test_dedupe_key():
    src = Reference("registry.example.com", "team/app", "v1", "sha256:" + "a" * 64)
    target = TargetSpec("mirror/team/app", "v1")
    key = dedupe_key(src, "target.azurecr.io", target)
    assert len(key) == 64 and all(c in "0123456789abcdef" for c in key)
    assert key == dedupe_key(replace(src, tag="latest"), "TARGET.azurecr.io", target)  # same bytes, same place
    assert key != dedupe_key(src, "target.azurecr.io", TargetSpec("mirror/team/app", "v2"))
    assert key != dedupe_key(src, "other.azurecr.io", target)
    assert key != dedupe_key(Reference("registry.example.com", "team/app", "v1", "sha256:" + "b" * 64),
                             "target.azurecr.io", target)
    by_tag = Reference("docker.io", "library/nginx", "1.25")
    assert dedupe_key(by_tag, "t.io", target) != dedupe_key(replace(by_tag, tag="1.26"), "t.io", target)


def test_target_key_ignores_the_source():
    target = TargetSpec("mirror/app", "v1")
    assert target_key("t.azurecr.io", target) == target_key("T.azurecr.io", target)
    assert target_key("t.azurecr.io", target) != target_key("t.azurecr.io", TargetSpec("mirror/app", "v2"))
    assert target_key("t.azurecr.io", target) != dedupe_key(Reference("a.io", "b", "v1"), "t.azurecr.io", target)


def test_within_window():
    t0 = datetime(2024, 5, 6, 18, 0, tzinfo=timezone.utc)
    assert within_window(t0, t0 + timedelta(minutes=9), timedelta(minutes=10))
    assert not within_window(t0, t0 + timedelta(minutes=10), timedelta(minutes=10))
    assert within_window(t0, t0 - timedelta(seconds=5), timedelta(minutes=10))  # clock skew: still a duplicate
    assert within_window(t0.replace(tzinfo=None), t0 + timedelta(minutes=1), timedelta(minutes=10))  # naive = UTC
    assert not within_window(t0, t0, timedelta(0))  # window 0: de-duplication off


def test_dedupe_window_setting():
    assert Settings.from_env({}).dedupe_window_seconds == 600
    assert Settings.from_env({"IMPORT_DEDUPE_WINDOW_SECONDS": "30"}).dedupe_window_seconds == 30
    assert Settings.from_env({"IMPORT_DEDUPE_WINDOW_SECONDS": "0"}).dedupe_window_seconds == 0  # off
    for bad in ("x", "-1"):
        with pytest.raises(UsageError, match="IMPORT_DEDUPE_WINDOW_SECONDS"):
            Settings.from_env({"IMPORT_DEDUPE_WINDOW_SECONDS": bad})


# -- the curl examples in docs/events.md are real deliveries --------------------------------------

def test_docs_curl_examples_parse():
    text = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text()
    found = {}
    for m in re.finditer(r"curl -sS \"\$APP/api/(events|webhooks/(\w+))(?:(?!curl ).)*?-d '(\{.*?\}|\[.*?\])'",
                         text, re.S):
        kind = m.group(2) or "eventgrid"
        payload = m.group(3).encode()
        result = parse_eventgrid(payload) if kind == "eventgrid" else parse_webhook(kind, payload)
        assert result.events or result.validation_code, kind
        found[kind] = found.get(kind, 0) + 1
    assert {"eventgrid", "distribution", "acr", "dockerhub", "harbor"} <= set(found)
    gh = re.search(r"body='(\{.*?\})'\n", text).group(1).encode()
    assert parse_webhook("github", gh, {"X-GitHub-Event": "registry_package"}).events
