"""values/cosign.py (pure): keys, cosign's simple-signing payload, Sigstore bundles and DSSE, with
signatures made by `cryptography` the way cosign's signers make them."""
from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from importcore.values.cosign import (load_public_key, pae, parse_bundle, signature_tag, simple_signing_digest,
                                      statement_subjects)
from importcore.values.errors import BadSignature, UsageError
from tests.support.cosign import Key, dsse_bundle, message_bundle, simple_signing_payload

DIGEST = "sha256:" + "ab" * 32


def pem(public) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.mark.parametrize("kind", ["ecdsa", "rsa", "ed25519"])
def test_each_key_type_verifies_its_own_signatures_only(kind):
    key, other = Key.generate(kind), Key.generate(kind)
    public = load_public_key(key.public_pem, name="k")
    assert public.fingerprint == key.fingerprint
    assert public.verify(key.sign(b"payload"), b"payload")
    assert not public.verify(key.sign(b"payload"), b"payload!")
    assert not public.verify(other.sign(b"payload"), b"payload")
    assert not public.verify(b"\x00" * 8, b"payload")


def test_p384_with_its_own_hash_or_sha256():
    private = ec.generate_private_key(ec.SECP384R1())
    public = load_public_key(pem(private.public_key()), name="p384")
    assert public.verify(private.sign(b"m", ec.ECDSA(hashes.SHA384())), b"m")
    assert public.verify(private.sign(b"m", ec.ECDSA(hashes.SHA256())), b"m")  # cosign 2.x


@pytest.mark.parametrize("make, says", [
    (lambda: pem(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()), "at least 2048 bits"),
    (lambda: pem(ec.generate_private_key(ec.SECP256K1()).public_key()), "curve secp256k1 is not supported"),
    (lambda: Key.generate().private_pem, "is a private key"),
    (lambda: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "is a certificate"),
    (lambda: "hello", "is not a PEM public key"),
])
def test_unusable_keys_are_refused_by_name(make, says):
    text = make()
    with pytest.raises(UsageError) as caught:
        load_public_key(text, name="release.pub", target="--verify-key")
    assert says in caught.value.message and "release.pub" in caught.value.message
    assert text not in caught.value.message


def test_simple_signing_payload():
    assert simple_signing_digest(simple_signing_payload("r/app", DIGEST)) == DIGEST
    with pytest.raises(BadSignature, match="critical.type"):
        simple_signing_digest(json.dumps({"critical": {"type": "atomic container signature",
                                                       "image": {"docker-manifest-digest": DIGEST}}}).encode())
    with pytest.raises(BadSignature, match="no critical.image.docker-manifest-digest"):
        simple_signing_digest(json.dumps({"critical": {"type": "cosign container image signature"}}).encode())
    with pytest.raises(BadSignature, match="not JSON"):
        simple_signing_digest(b"\xff")


def test_bundles():
    key = Key.generate()
    dsse = parse_bundle(dsse_bundle(DIGEST, key))
    assert dsse.content == "dsse-envelope" and dsse.payload_type == "application/vnd.in-toto+json"
    assert load_public_key(key.public_pem, name="k").verify(dsse.signatures[0], pae(dsse.payload_type, dsse.payload))
    assert statement_subjects(dsse.payload) == ("https://sigstore.dev/cosign/sign/v1", [DIGEST])
    message = parse_bundle(message_bundle(b"{}", key))
    assert message.content == "message-signature" and message.message_digest[0] == "SHA2_256"
    urlsafe = json.loads(message_bundle(b"{}", key))
    urlsafe["messageSignature"]["signature"] = base64.urlsafe_b64encode(message.signatures[0]).decode().rstrip("=")
    assert parse_bundle(json.dumps(urlsafe).encode()).signatures == message.signatures  # protojson reads both
    for broken, says in ((b'{"mediaType": "x"}', "not a Sigstore bundle"),
                         (json.dumps({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}).encode(),
                          "neither a messageSignature nor a dsseEnvelope")):
        with pytest.raises(BadSignature, match=says):
            parse_bundle(broken)


def test_dsse_pae_and_tags():
    assert pae("t", b"ab") == b"DSSEv1 1 t 2 ab"  # secure-systems-lab/dsse protocol.md
    assert signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"
    assert signature_tag(DIGEST, "") == "sha256-" + "ab" * 32
