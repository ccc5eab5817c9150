"""Verify before promote (--verify-key) against real Distribution 2.8.2 registries.

Signatures are made in cosign's two formats by tests/support/cosign.py with `cryptography`: the
tag-based simple signing of cosign 2.x and the Sigstore bundle referrer of cosign 3. A failed check
must fail the import before any tag moves, with one line saying why; a passed one records which key
verified which signature.
"""
from __future__ import annotations

import json

import pytest

from importcore.cli import main
from tests.support.cosign import (Key, dsse_bundle, message_bundle, push_sbom, sign_bundle, sign_tag,
                                  tag_of)
from tests.support.images import push_image, push_index


def run(capsys, *args: str, output: str = "json") -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main(["import", *args, "--output", output])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def key_file(tmp_path, key: Key, name: str = "cosign.pub") -> str:
    return key.write_public(tmp_path / name)


@pytest.mark.parametrize("kind", ["ecdsa", "ed25519", "rsa"])
def test_a_signed_image_imports_and_the_result_names_the_key(capsys, local_env, tmp_path, source_registry,
                                                             target_registry, pushers, unique_repo, kind):
    src, tgt = pushers
    key = Key.generate(kind)
    image = push_image(src, unique_repo, "v1")
    sig = sign_tag(src, unique_repo, image.digest, key)
    path = key_file(tmp_path, key)

    rc, out, err = run(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                       target_registry.host, "--verify-key", path)

    assert rc == 0, err
    assert json.loads(out)["verified"] == {
        "digest": image.digest, "key": path, "keyFingerprint": key.fingerprint,
        "signature": {"format": "cosign simple signing", "manifest": sig, "tag": tag_of(image.digest, ".sig")}}
    assert tgt.get_manifest(unique_repo, "v1").content == image.raw
    assert key.public_pem not in out + err


def test_a_cosign3_bundle_referrer_verifies(capsys, local_env, tmp_path, source_registry, target_registry, pushers,
                                            unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    bundle = sign_bundle(src, unique_repo, image.descriptor(), key)

    rc, out, err = run(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                       target_registry.host, "--verify-key", key_file(tmp_path, key), output="text")

    assert rc == 0, err
    assert f"verified: sigstore bundle (dsse-envelope) signature {bundle['digest']} by key " in out
    assert key.fingerprint in out
    assert tgt.get_manifest(unique_repo, "v1").content == image.raw


def test_a_message_signature_bundle_over_the_manifest_verifies(capsys, local_env, tmp_path, source_registry,
                                                               target_registry, pushers, unique_repo, key):
    src, _ = pushers
    image = push_image(src, unique_repo, "v1")
    bundle = sign_bundle(src, unique_repo, image.descriptor(), key, bundle=message_bundle(image.raw, key))

    rc, out, err = run(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                       target_registry.host, "--verify-key", key_file(tmp_path, key))

    assert rc == 0, err
    assert json.loads(out)["verified"]["signature"] == {"format": "sigstore bundle (message-signature)",
                                                        "manifest": bundle["digest"]}


def test_any_one_key_suffices(capsys, local_env, tmp_path, source_registry, target_registry, pushers, unique_repo,
                              key):
    src, _ = pushers
    image = push_image(src, unique_repo, "v1")
    sign_tag(src, unique_repo, image.digest, Key.generate())  # someone else's signature first
    sign_tag(src, unique_repo, image.digest, key)
    other = key_file(tmp_path, Key.generate(), "other.pub")
    right = key_file(tmp_path, key, "release.pub")

    rc, out, err = run(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                       target_registry.host, "--verify-key", other, "--verify-key", right)

    assert rc == 0, err
    assert json.loads(out)["verified"]["key"] == right


def test_a_signature_on_the_index_covers_the_platform_chosen(capsys, local_env, tmp_path, source_registry,
                                                             target_registry, pushers, unique_repo, key):
    """cosign sign image:tag signs the index; --platform copies one of the manifests it names by digest."""
    src, tgt = pushers
    index = push_index(src, unique_repo, "v1")
    sign_tag(src, unique_repo, index.digest, key)

    rc, out, err = run(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                       target_registry.host, "--platform", "linux/arm64", "--verify-key", key_file(tmp_path, key))

    assert rc == 0, err
    result = json.loads(out)
    assert result["digest"] == index.children[1].digest
    assert result["verified"]["digest"] == index.digest
    assert tgt.get_manifest(unique_repo, "v1").content == index.children[1].raw


def _wrong_key(src, repo, image, key):
    sign_tag(src, repo, image.digest, Key.generate())
    return "signature 1 is not valid for any configured key"


def _other_digest(src, repo, image, key):
    other = push_image(src, repo, "other")
    sign_tag(src, repo, image.digest, key, claimed=other.digest)
    return f"signature 1 by {{key}} is over {other.digest[:19]}…, not this digest"


def _tampered_payload(src, repo, image, key):
    sign_tag(src, repo, image.digest, key, tamper=True)
    return "signature 1 is not valid for any configured key"


def _no_signature(src, repo, image, key):
    push_sbom(src, repo, image.descriptor())  # a referrer, but no signature
    return f"no {tag_of(image.digest, '.sig')} tag, no Sigstore bundle referrer"


def _bundle_over_another_digest(src, repo, image, key):
    other = push_image(src, repo, "other")
    sign_bundle(src, repo, image.descriptor(), key, bundle=dsse_bundle(image.digest, key, claimed=other.digest))
    return f"signed by {{key}}, but over {other.digest[:19]}…, not this digest"


def _an_attestation_is_not_a_signature(src, repo, image, key):
    sign_bundle(src, repo, image.descriptor(), key,
                bundle=dsse_bundle(image.digest, key, predicate_type="https://spdx.dev/Document"))
    return "signed by {key}, but an attestation (https://spdx.dev/Document), not a signature"


@pytest.mark.parametrize("case", [_wrong_key, _other_digest, _tampered_payload, _no_signature,
                                  _bundle_over_another_digest, _an_attestation_is_not_a_signature],
                         ids=lambda f: f.__name__.strip("_"))
def test_no_valid_signature_fails_before_anything_is_tagged(capsys, local_env, tmp_path, source_registry,
                                                            target_registry, pushers, unique_repo, key, case):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    path = key_file(tmp_path, key)
    why = case(src, unique_repo, image, key).format(key=path)
    source = f"{source_registry.host}/{unique_repo}:v1"

    rc, out, err = run(capsys, "--source", source, "--name", target_registry.host, "--image", f"{unique_repo}:v1",
                       "--include-referrers", "--verify-key", path)

    assert rc == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"error: {source}: no valid signature by the configured keys ({image.digest[:19]}…: ")
    assert why in lines[0]
    assert f"keys: {path} ({key.fingerprint[:19]})" in lines[0]
    assert key.public_pem.splitlines()[1] not in err
    assert tgt.tags(unique_repo) == []  # nothing tagged, not even a referrer's tag
    assert tgt.get_manifest(unique_repo, image.digest).status_code == 404  # nothing copied at all


def test_a_private_key_is_refused_without_echoing_it(capsys, local_env, tmp_path, source_registry, target_registry,
                                                     unique_repo, key):
    secret = tmp_path / "cosign.key"
    secret.write_text(key.private_pem)

    rc, out, err = run(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                       target_registry.host, "--verify-key", str(secret))

    assert rc == 2
    assert err.strip() == f"error: verification key {secret} is a private key; give the public key (cosign.pub)"


def test_verified_and_referrers_together(capsys, local_env, tmp_path, source_registry, target_registry, pushers,
                                         unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    bundle = sign_bundle(src, unique_repo, image.descriptor(), key)

    rc, out, err = run(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                       target_registry.host, "--verify-key", key_file(tmp_path, key), "--include-referrers")

    assert rc == 0, err
    result = json.loads(out)
    assert result["verified"]["signature"]["manifest"] == bundle["digest"]
    assert result["referrers"]["copied"] == 1
    assert tgt.get_manifest(unique_repo, bundle["digest"]).content == src.get_manifest(unique_repo,
                                                                                         bundle["digest"]).content


def test_a_platform_subset_is_covered_by_the_source_index_signature(capsys, local_env, tmp_path, source_registry,
                                                                    target_registry, pushers, unique_repo, key):
    """Several --platform write a new index nobody signed: the signed source index names every child copied."""
    src, _ = pushers
    index = push_index(src, unique_repo, "v1", platforms=[("linux", "amd64", None), ("linux", "arm64", "v8"),
                                                          ("linux", "s390x", None)])
    sign_tag(src, unique_repo, index.digest, key)

    rc, out, err = run(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                       target_registry.host, "--platform", "linux/amd64", "--platform", "linux/arm64",
                       "--verify-key", key_file(tmp_path, key))

    assert rc == 0, err
    result = json.loads(out)
    assert result["sourceDigest"] == index.digest != result["digest"]
    assert result["verified"]["digest"] == index.digest
