"""Referrers and verification through the HTTP API and the mirror rules: the request fields, the job
record that carries them to the worker, and the function app end to end (devhost, Azurite, real
Distribution registries): a verified import records its key, an unsigned one fails with
SignatureVerificationFailed and nothing tagged.
"""
from __future__ import annotations

import json

import pytest

from importcore.net.hostpolicy import HostPolicy
from importcore.service.api import parse_import_body, request_from_summary, request_summary
from importcore.triggers import MirrorRules, PushEvent
from importcore.values.errors import UsageError
from tests.support.cosign import SPDX, Key, push_sbom, sign_bundle, sign_tag, tag_of
from tests.support.images import Pusher, push_image

POLICY = HostPolicy(plain_http=("127.0.0.1",), allowed_private=("127.0.0.1",), trusted=())
SOURCE = {"registryUri": "127.0.0.1:5000", "sourceImage": "team/app:1.0"}


def parse(body: dict, key_names=("release",)):
    return parse_import_body(json.dumps(body).encode(), target_registry="mirror.azurecr.io", policy=POLICY,
                             key_names=key_names)


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate()


def test_the_api_body_carries_referrers_and_keys_to_the_worker(key):
    request = parse({"source": SOURCE, "includeReferrers": True, "referrersArtifactTypes": [SPDX],
                     "verify": {"keys": [key.public_pem], "keyRefs": ["release"]}})

    assert request.include_referrers and request.referrer_types == (SPDX,)
    assert request.verify_keys == (("verify.keys[0]", key.public_pem),) and request.verify_key_refs == ("release",)
    assert request_from_summary(request_summary(request), None) == request  # what the worker runs


def test_a_plain_body_stores_no_supply_chain_fields():
    summary = request_summary(parse({"source": SOURCE}))
    assert not {"includeReferrers", "referrersArtifactTypes", "verify"} & set(summary)


@pytest.mark.parametrize("body, target, says", [
    ({"verify": {"keys": ["-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"]}}, "verify.keys[0]",
     "verification key verify.keys[0] is not a PEM public key"),
    ({"verify": {"keyRefs": ["nope"]}}, "verify.keyRefs[0]", "'nope' is not a key this app holds"),
    ({"verify": {}}, "verify", "verify needs at least one of keys or keyRefs"),
    ({"verify": {"key": ["x"]}}, "verify.key", "unknown field"),
    ({"verify": ["x"]}, "verify", "verify must be an object"),
    ({"referrersArtifactTypes": [SPDX]}, "referrersArtifactTypes", "needs referrers included"),
    ({"includeReferrers": "yes"}, "includeReferrers", "includeReferrers must be a bool"),
], ids=["bad-pem", "unknown-ref", "empty", "unknown-field", "not-object", "types-alone", "not-bool"])
def test_bad_fields_are_named(body, target, says):
    with pytest.raises(UsageError) as caught:
        parse({"source": SOURCE, **body})
    assert caught.value.target == target
    assert says in caught.value.message


def test_a_private_key_in_the_body_is_refused_and_not_echoed(key):
    with pytest.raises(UsageError) as caught:
        parse({"source": SOURCE, "verify": {"keys": [key.private_pem]}})
    assert caught.value.message == "verification key verify.keys[0] is a private key; give the public key (cosign.pub)"


def _event() -> PushEvent:
    return PushEvent.build(registry="registry.example.com", repository="team/app", tag="1.0",
                           digest="sha256:" + "d" * 64, media_type=None, provider="distribution")


def test_a_rule_carries_referrers_and_verification(key):
    rules = MirrorRules.from_data({"version": 1, "rules": [{
        "registry": "registry.example.com", "repository": "team/*", "referrers": True,
        "referrersArtifactTypes": [SPDX], "verify": {"keyRefs": ["release"], "keys": [key.public_pem]}}]},
        source="test", key_names=["release"])

    request = rules.match(_event()).to_request("mirror.azurecr.io")

    assert request.include_referrers and request.referrer_types == (SPDX,)
    assert request.verify_key_refs == ("release",)
    assert request.verify_keys == (("rules[0].verify.keys[0]", key.public_pem),)
    polled = rules.rules[0].matched_import(_event()).to_request("mirror.azurecr.io")  # what a sync pass enqueues
    assert polled == request


@pytest.mark.parametrize("field, value, where, says", [
    ("verify", {"keyRefs": ["nope"]}, "rules[0].verify.keyRefs[0]", "'nope' is not a key this app holds"),
    ("verify", {"keys": ["not a key"]}, "rules[0].verify.keys[0]", "is not a PEM public key"),
    ("referrers", "yes", "rules[0].referrers", "expected true or false"),
    ("referrersArtifactTypes", [SPDX], "rules[0].referrersArtifactTypes", "needs referrers included"),
])
def test_a_bad_rule_field_is_named_when_the_file_is_loaded(field, value, where, says):
    with pytest.raises(UsageError) as caught:
        MirrorRules.from_data({"version": 1, "rules": [{"registry": "r.example.com", "repository": "a/*",
                                                         field: value}]}, source="rules.json", key_names=["release"])
    assert caught.value.message.startswith(f"mirror rules file rules.json: {where}: ")
    assert says in caught.value.message


# ---- the function app, end to end ----------------------------------------------------------------

@pytest.fixture
def signing_app(app_host_factory, tmp_path, key):
    path = tmp_path / "release.pub"
    path.write_text(key.public_pem)
    return app_host_factory(IMPORT_VERIFY_KEYS=json.dumps({"release": str(path)}))


def body(registry, image: str, tag: str, **extra) -> dict:
    return {"source": {"registryUri": registry.host, "sourceImage": image}, "targetTags": [tag], **extra}


def test_a_verified_import_records_its_key_and_brings_its_referrers(signing_app, source_registry, target_registry,
                                                                     unique_repo, key):
    with Pusher(source_registry) as src:
        image = push_image(src, unique_repo, "v1")
        sbom = push_sbom(src, unique_repo, image.descriptor())
        bundle = sign_bundle(src, unique_repo, image.descriptor(), key)

    r = signing_app.post_import(body(source_registry, f"{unique_repo}:v1", f"{unique_repo}:v1", includeReferrers=True,
                                     verify={"keyRefs": ["release"]}))
    assert r.status_code == 202, r.text
    done = signing_app.wait_for(r.json()["id"])

    assert done["status"] == "Succeeded", done
    assert done["result"]["verified"] == {"digest": image.digest, "key": "release", "keyFingerprint": key.fingerprint,
                                          "signature": {"format": "sigstore bundle (dsse-envelope)",
                                                        "manifest": bundle["digest"]}}
    assert done["result"]["referrers"]["copied"] == 2
    with Pusher(target_registry) as tgt:
        assert tgt.get_manifest(unique_repo, "v1").content == image.raw
        listed = json.loads(tgt.get_manifest(unique_repo, tag_of(image.digest)).content)["manifests"]
    assert {e["digest"] for e in listed} == {sbom["digest"], bundle["digest"]}
    assert "PUBLIC KEY" not in json.dumps(done)


def test_an_unsigned_import_fails_with_signature_verification_failed(signing_app, source_registry, target_registry,
                                                                    unique_repo, key):
    with Pusher(source_registry) as src:
        image = push_image(src, unique_repo, "v1")
        sign_tag(src, unique_repo, image.digest, Key.generate())  # signed, by someone else

    r = signing_app.post_import(body(source_registry, f"{unique_repo}:v1", f"{unique_repo}:v1",
                                     verify={"keys": [key.public_pem]}))
    assert r.status_code == 202, r.text
    done = signing_app.wait_for(r.json()["id"])

    assert done["status"] == "Failed" and done["attempts"] == 1
    error = done["error"]
    assert error["code"] == "SignatureVerificationFailed" and error["retryable"] is False
    assert error["message"].startswith(f"{source_registry.host}/{unique_repo}:v1: no valid signature by the "
                                       "configured keys (")
    assert "keys: verify.keys[0] (" in error["message"]
    with Pusher(target_registry) as tgt:
        assert tgt.tags(unique_repo) == []
    assert "PUBLIC KEY" not in json.dumps(done)


def test_an_unknown_key_ref_is_a_400(signing_app, source_registry, unique_repo):
    r = signing_app.post_import(body(source_registry, f"{unique_repo}:v1", f"{unique_repo}:v1",
                                     verify={"keyRefs": ["staging"]}))
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["code"], error["target"]) == ("InvalidRequest", "verify.keyRefs[0]")
    assert error["message"] == ("verify.keyRefs[0]: 'staging' is not a key this app holds (IMPORT_VERIFY_KEYS "
                                "names: release)")
