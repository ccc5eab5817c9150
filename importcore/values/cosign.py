"""Cosign's signature formats and the public keys that check them (pure: bytes in, verdicts out).

The field names are the specs', not guesses:

- Tag-based simple signing (cosign 2.x default; cosign specs/SIGNATURE_SPEC.md): the signatures of
  digest `sha256:<hex>` are layers of the manifest tagged `sha256-<hex>.sig`, media type
  `application/vnd.dev.cosign.simplesigning.v1+json`, each with its base64 signature in the layer
  annotation `dev.cosignproject.cosign/signature`. The layer's blob is the signed payload, the
  containers-signature "simple signing" JSON whose `critical.image.docker-manifest-digest` names the
  image and whose `critical.type` is `cosign container image signature`.
- The Sigstore bundle (cosign 3 default; cosign specs/BUNDLE_SPEC.md) stored as an OCI 1.1 referrer:
  artifactType `application/vnd.dev.sigstore.bundle.v0.3+json`, one layer holding the bundle JSON.
  The bundle is protobuf-specs' `Bundle` in protojson (lowerCamelCase): `mediaType`,
  `verificationMaterial`, and one of `messageSignature` {`messageDigest` {`algorithm`, `digest`},
  `signature`} or `dsseEnvelope` {`payload`, `payloadType`, `signatures` [{`sig`, `keyid`}]}; bytes
  are base64. `cosign sign` (v3) writes a DSSE envelope over an in-toto Statement whose predicateType
  is `https://sigstore.dev/cosign/sign/v1` and whose subject's digest is the image's
  (cosign cmd/cosign/cli/sign/sign.go signDigestBundle).

Signatures are checked with `cryptography`: ECDSA (P-256 with SHA-256, cosign's default; P-384 and
P-521 with their own hash or SHA-256), RSA PKCS#1 v1.5 with SHA-256 (what sigstore's LoadVerifier
uses for RSA keys), Ed25519. DSSE signs the pre-authentication encoding, not the payload
(secure-systems-lab/dsse protocol.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from .errors import BadSignature, UsageError

__all__ = [
    "BUNDLE_MEDIA_TYPES",
    "BUNDLE_V03",
    "Bundle",
    "COSIGN_SIGN_PREDICATE",
    "IN_TOTO",
    "MAX_SIGNED_BYTES",
    "PublicKey",
    "SIGNATURE_ANNOTATION",
    "SIMPLE_SIGNING",
    "load_public_key",
    "pae",
    "parse_bundle",
    "signature_tag",
    "simple_signing_digest",
    "statement_subjects",
]

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIMPLE_SIGNING_TYPE = "cosign container image signature"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
# The same bundle, named the older way or an older version (cosign cmd/cosign/cli/bundle/upgrade.go).
BUNDLE_MEDIA_TYPES = frozenset({
    BUNDLE_V03,
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
})
IN_TOTO = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_TYPES = frozenset({"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"})
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
MAX_SIGNED_BYTES = 1024 * 1024  # a payload or a bundle is a few KiB; a larger one is not read
MIN_RSA_BITS = 2048


# ---- keys --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PublicKey:
    """A trusted public key: `name` (a file, a keyRef, `verify.keys[0]`) and `fingerprint`
    (sha256 of its DER SubjectPublicKeyInfo) are what results and errors show, never the PEM."""

    name: str
    fingerprint: str
    key: object = field(repr=False, compare=False)

    @property
    def kind(self) -> str:
        if isinstance(self.key, ec.EllipticCurvePublicKey):
            return f"ECDSA {self.key.curve.name}"
        if isinstance(self.key, rsa.RSAPublicKey):
            return f"RSA {self.key.key_size}"
        return "Ed25519"

    def verify(self, signature: bytes, message: bytes) -> bool:
        """Does `signature` over `message` verify with this key, in a scheme cosign signs with?"""
        key = self.key
        try:
            if isinstance(key, ec.EllipticCurvePublicKey):
                for algorithm in _ec_hashes(key):
                    try:
                        key.verify(signature, message, ec.ECDSA(algorithm))
                        return True
                    except InvalidSignature:
                        continue
                return False
            if isinstance(key, rsa.RSAPublicKey):
                key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
                return True
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
                return True
        except (InvalidSignature, ValueError):
            return False
        return False

    def to_dict(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "type": self.kind}


def _ec_hashes(key: ec.EllipticCurvePublicKey) -> tuple[hashes.HashAlgorithm, ...]:
    # cosign 2.x verifies every key with SHA-256; sigstore's default verifiers pick the curve's own.
    own = {"secp384r1": hashes.SHA384(), "secp521r1": hashes.SHA512()}.get(key.curve.name)
    return (hashes.SHA256(),) if own is None else (own, hashes.SHA256())


def load_public_key(pem: str | bytes, *, name: str, target: str | None = None) -> PublicKey:
    """Parse a PEM public key (cosign.pub); UsageError naming `name` otherwise. The PEM itself is
    never put in a message."""
    data = pem.encode() if isinstance(pem, str) else pem
    head = data[:200]
    if b"PRIVATE KEY" in head:
        raise UsageError(f"verification key {name} is a private key; give the public key (cosign.pub)", target=target)
    if b"CERTIFICATE" in head and b"PUBLIC KEY" not in head:
        raise UsageError(f"verification key {name} is a certificate; give the public key (keyless certificates are "
                         "not supported)", target=target)
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError(f"verification key {name} is not a PEM public key (-----BEGIN PUBLIC KEY-----)",
                         target=target) from None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
            raise UsageError(f"verification key {name}: curve {key.curve.name} is not supported "
                             "(P-256, P-384, P-521)", target=target)
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise UsageError(f"verification key {name}: RSA keys need at least {MIN_RSA_BITS} bits, this one has "
                             f"{key.key_size}", target=target)
    elif not isinstance(key, ed25519.Ed25519PublicKey):
        raise UsageError(f"verification key {name}: {type(key).__name__} keys are not supported "
                         "(ECDSA, RSA, Ed25519)", target=target)
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(name, "sha256:" + hashlib.sha256(der).hexdigest(), key)


# ---- where signatures live ---------------------------------------------------------------------

def signature_tag(digest: str, suffix: str = ".sig") -> str:
    """cosign's tag for what it attaches to `digest`: sha256:abc -> sha256-abc.sig (.att, .sbom);
    with suffix "" the OCI referrers tag schema's tag (distribution-spec v1.1)."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}{suffix}"


# ---- simple signing ----------------------------------------------------------------------------

def simple_signing_digest(payload: bytes) -> str:
    """The image digest a simple-signing payload vouches for; BadSignature if it is not one."""
    data = _json(payload, "the simple-signing payload")
    critical = data.get("critical")
    if not isinstance(critical, dict):
        raise BadSignature("the payload has no 'critical' section")
    if critical.get("type") != SIMPLE_SIGNING_TYPE:
        raise BadSignature(f"the payload's critical.type is {_short(critical.get('type'))}, not "
                           f"{SIMPLE_SIGNING_TYPE!r}")
    image = critical.get("image")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(digest, str) or not digest:
        raise BadSignature("the payload has no critical.image.docker-manifest-digest")
    return digest


# ---- Sigstore bundles --------------------------------------------------------------------------

@dataclass(frozen=True)
class Bundle:
    media_type: str
    content: str  # "message-signature" | "dsse-envelope" (BUNDLE_SPEC.md's names)
    signatures: tuple[bytes, ...]
    message_digest: tuple[str, bytes] | None = None  # (algorithm, raw digest) of a message signature
    payload_type: str = ""  # DSSE
    payload: bytes = b""  # DSSE


def parse_bundle(raw: bytes) -> Bundle:
    """A Sigstore bundle's JSON -> what a key check needs; BadSignature names what is wrong."""
    data = _json(raw, "the bundle")
    media_type = data.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise BadSignature(f"the bundle's mediaType is {_short(media_type)}, not a Sigstore bundle")
    if "messageSignature" in data and "dsseEnvelope" in data:
        raise BadSignature("the bundle has both messageSignature and dsseEnvelope")
    if isinstance(data.get("messageSignature"), dict):
        signed = data["messageSignature"]
        digest = signed.get("messageDigest")
        if not isinstance(digest, dict):
            raise BadSignature("the bundle's messageSignature has no messageDigest")
        return Bundle(media_type, "message-signature", (_b64(signed.get("signature"), "messageSignature.signature"),),
                      message_digest=(str(digest.get("algorithm")), _b64(digest.get("digest"), "messageDigest.digest")))
    if isinstance(data.get("dsseEnvelope"), dict):
        envelope = data["dsseEnvelope"]
        payload_type = envelope.get("payloadType")
        if not isinstance(payload_type, str):
            raise BadSignature("the bundle's dsseEnvelope has no payloadType")
        entries = envelope.get("signatures")
        if not isinstance(entries, list) or not entries:
            raise BadSignature("the bundle's dsseEnvelope has no signatures")
        sigs = tuple(_b64(e.get("sig") if isinstance(e, dict) else None, "dsseEnvelope.signatures[].sig")
                     for e in entries[:16])
        return Bundle(media_type, "dsse-envelope", sigs, payload_type=payload_type,
                      payload=_b64(envelope.get("payload"), "dsseEnvelope.payload"))
    raise BadSignature("the bundle holds neither a messageSignature nor a dsseEnvelope")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what a DSSE signature signs."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement_subjects(payload: bytes) -> tuple[str, list[str]]:
    """(predicateType, the subjects' sha256 digests as `sha256:<hex>`) of an in-toto Statement."""
    data = _json(payload, "the DSSE payload")
    if data.get("_type") not in IN_TOTO_STATEMENT_TYPES:
        raise BadSignature(f"the DSSE payload is not an in-toto Statement (_type {_short(data.get('_type'))})")
    subjects = data.get("subject")
    if not isinstance(subjects, list):
        raise BadSignature("the in-toto Statement has no subject list")
    digests = []
    for subject in subjects:
        hexpart = subject.get("digest", {}).get("sha256") if isinstance(subject, dict) and \
            isinstance(subject.get("digest"), dict) else None
        if isinstance(hexpart, str):
            digests.append(f"sha256:{hexpart.lower()}")
    predicate_type = data.get("predicateType")
    return (predicate_type if isinstance(predicate_type, str) else ""), digests


# ---- helpers -----------------------------------------------------------------------------------

def _json(raw: bytes, what: str) -> dict:
    if len(raw) > MAX_SIGNED_BYTES:
        raise BadSignature(f"{what} is over {MAX_SIGNED_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadSignature(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise BadSignature(f"{what} is not a JSON object")
    return data


def _b64(value: object, what: str) -> bytes:
    """protojson writes bytes as standard base64 and reads the URL-safe alphabet too."""
    if not isinstance(value, str) or not value:
        raise BadSignature(f"{what} is missing")
    text = value.strip()
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature(f"{what} is not base64") from None


def _short(value: object) -> str:
    return repr(value)[:60]
