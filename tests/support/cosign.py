"""Signatures, bundles and SBOMs in cosign's exact formats, made with `cryptography` (no cosign binary).

Independent of importcore (the formats are written out here, from cosign's specs/SIGNATURE_SPEC.md
and specs/BUNDLE_SPEC.md and cosign's sign.go), so a misreading in importcore is not repeated here.

- ``sign_tag(...)``: cosign 2.x: the payload blob and the ``sha256-<hex>.sig`` manifest, one
  simple-signing layer per signature with the base64 signature in ``dev.cosignproject.cosign/signature``.
- ``sign_bundle(...)``: cosign 3: a Sigstore bundle v0.3 (DSSE over an in-toto Statement with
  predicateType https://sigstore.dev/cosign/sign/v1, or a message signature) pushed as an OCI 1.1
  referrer, plus the ``sha256-<hex>`` referrers tag index, as cosign does on a registry without the API.
- ``push_sbom(...)``: an SBOM as an OCI 1.1 artifact with ``subject``, plus that index.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Optional

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from .images import EMPTY_DESCRIPTOR, OCI_INDEX, OCI_MANIFEST, Pusher, sha256

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SPDX = "application/spdx+json"


@dataclass
class Key:
    private: object
    kind: str = "ecdsa"

    @classmethod
    def generate(cls, kind: str = "ecdsa") -> "Key":
        if kind == "ecdsa":
            return cls(ec.generate_private_key(ec.SECP256R1()), kind)
        if kind == "rsa":
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048), kind)
        return cls(ed25519.Ed25519PrivateKey.generate(), kind)

    @property
    def public_pem(self) -> str:
        return self.private.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    @property
    def private_pem(self) -> str:
        return self.private.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()

    @property
    def fingerprint(self) -> str:
        der = self.private.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def sign(self, data: bytes) -> bytes:
        """What cosign's signers do: ECDSA-P256/SHA-256 (ASN.1), RSA PKCS#1 v1.5/SHA-256, Ed25519."""
        if self.kind == "ecdsa":
            return self.private.sign(data, ec.ECDSA(hashes.SHA256()))  # type: ignore[attr-defined]
        if self.kind == "rsa":
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[attr-defined]
        return self.private.sign(data)  # type: ignore[attr-defined]

    def write_public(self, path) -> str:
        path.write_text(self.public_pem)
        return str(path)


def tag_of(digest: str, suffix: str = "") -> str:
    algo, _, hexpart = digest.partition(":")
    return f"{algo}-{hexpart}{suffix}"


def _compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def simple_signing_payload(reference: str, digest: str) -> bytes:
    """sigstore's payload.Cosign as Go's encoding/json writes it."""
    return _compact({"critical": {"identity": {"docker-reference": reference},
                                  "image": {"docker-manifest-digest": digest},
                                  "type": "cosign container image signature"}, "optional": None})


def sign_tag(pusher: Pusher, repo: str, digest: str, key: Key, *, claimed: Optional[str] = None,
             payload: Optional[bytes] = None, tamper: bool = False) -> str:
    """Add one signature of `digest` to ``sha256-<hex>.sig`` (appending a layer, as cosign does
    when an image is signed again). ``claimed``: the digest the payload names (another one: a
    signature over another digest). ``tamper``: push a payload other than the signed one."""
    signed = payload if payload is not None else simple_signing_payload(repo, claimed or digest)
    stored = signed
    if tamper:  # a signature taken from another image's payload, the payload edited to name this one
        signed = simple_signing_payload(repo, sha256(os.urandom(16)))
        stored = simple_signing_payload(repo, digest)
    signature = base64.b64encode(key.sign(signed)).decode()
    layer = pusher.blob(repo, stored, SIMPLE_SIGNING)
    layer["annotations"] = {SIGNATURE_ANNOTATION: signature}
    tag = tag_of(digest, ".sig")
    existing = pusher.get_manifest(repo, tag)
    layers = json.loads(existing.content)["layers"] if existing.status_code == 200 else []
    layers.append(layer)
    config = _compact({"architecture": "", "created": "0001-01-01T00:00:00Z", "history": [{"created": "0001-01-01T00:00:00Z"}],
                       "os": "", "rootfs": {"type": "layers", "diff_ids": [entry["digest"] for entry in layers]},
                       "config": {}})
    cfg = pusher.blob(repo, config, OCI_CONFIG)
    body = _compact({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": layers})
    return pusher.manifest(repo, tag, body, OCI_MANIFEST)


def pae(payload_type: str, payload: bytes) -> bytes:
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def dsse_bundle(digest: str, key: Key, *, claimed: Optional[str] = None, predicate_type: str = SIGN_PREDICATE,
                name: str = "") -> bytes:
    """A bundle as cosign 3's `sign` makes it (protojson field names)."""
    statement = _compact({"_type": "https://in-toto.io/Statement/v1",
                          "subject": [{"name": name, "digest": {"sha256": (claimed or digest).split(":")[1]}}],
                          "predicateType": predicate_type, "predicate": {}})
    signature = key.sign(pae(IN_TOTO, statement))
    return _compact({"mediaType": BUNDLE_V03,
                     "verificationMaterial": {"publicKey": {"hint": base64.b64encode(os.urandom(8)).decode()},
                                              "tlogEntries": []},
                     "dsseEnvelope": {"payload": base64.b64encode(statement).decode(), "payloadType": IN_TOTO,
                                      "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}]}})


def message_bundle(manifest_raw: bytes, key: Key) -> bytes:
    """A messageSignature bundle over the manifest's bytes (cosign sign-blob's shape)."""
    return _compact({"mediaType": BUNDLE_V03, "verificationMaterial": {"publicKey": {"hint": ""}},
                     "messageSignature": {"messageDigest": {"algorithm": "SHA2_256",
                                                            "digest": base64.b64encode(hashlib.sha256(manifest_raw).digest()).decode()},
                                          "signature": base64.b64encode(key.sign(manifest_raw)).decode()}})


def push_referrer(pusher: Pusher, repo: str, subject: dict, *, artifact_type: str, data: bytes,
                  layer_type: Optional[str] = None, annotations: Optional[dict] = None,
                  tag_index: bool = True) -> dict:
    """An OCI 1.1 artifact referring to `subject` (a descriptor dict); its descriptor is returned.
    ``tag_index``: also list it in the ``sha256-<hex>`` referrers tag index (what a client must do on
    a registry without the referrers API, as Distribution 2.8)."""
    empty = pusher.blob(repo, b"{}", "application/vnd.oci.empty.v1+json")
    assert empty == EMPTY_DESCRIPTOR
    layer = pusher.blob(repo, data, layer_type or artifact_type)
    body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type, "config": empty,
            "layers": [layer], "subject": {k: subject[k] for k in ("mediaType", "digest", "size")}}
    if annotations:
        body["annotations"] = annotations
    raw = _compact(body)
    digest = pusher.manifest(repo, sha256(raw), raw, OCI_MANIFEST)
    descriptor = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw), "artifactType": artifact_type}
    if annotations:
        descriptor["annotations"] = annotations
    if tag_index:
        add_to_tag_index(pusher, repo, subject["digest"], descriptor)
    return descriptor


def add_to_tag_index(pusher: Pusher, repo: str, subject_digest: str, descriptor: dict) -> str:
    tag = tag_of(subject_digest)
    existing = pusher.get_manifest(repo, tag)
    index = json.loads(existing.content) if existing.status_code == 200 else \
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    index["manifests"].append(descriptor)
    return pusher.manifest(repo, tag, _compact(index), OCI_INDEX)


def sign_bundle(pusher: Pusher, repo: str, subject: dict, key: Key, *, bundle: Optional[bytes] = None,
                tag_index: bool = True, **kw) -> dict:
    """cosign 3's signature: the bundle referrer (and the tag index on a registry without the API)."""
    data = bundle if bundle is not None else dsse_bundle(subject["digest"], key, **kw)
    return push_referrer(pusher, repo, subject, artifact_type=BUNDLE_V03, data=data, tag_index=tag_index,
                         annotations={"dev.sigstore.bundle.content": "dsse-envelope",
                                      "dev.sigstore.bundle.predicateType": SIGN_PREDICATE,
                                      "org.opencontainers.image.created": "2025-01-01T00:00:00Z"})


def push_sbom(pusher: Pusher, repo: str, subject: dict, *, tag_index: bool = True) -> dict:
    sbom = _compact({"spdxVersion": "SPDX-2.3", "name": repo, "nonce": os.urandom(8).hex()})
    return push_referrer(pusher, repo, subject, artifact_type=SPDX, data=sbom, tag_index=tag_index,
                         annotations={"org.opencontainers.image.created": "2025-01-01T00:00:00Z"})


def attach_tag(pusher: Pusher, repo: str, digest: str, suffix: str, *, layer_type: str, data: bytes) -> str:
    """cosign 2.x's `attest` (.att, a DSSE envelope layer) and `attach sbom` (.sbom) tags."""
    layer = pusher.blob(repo, data, layer_type)
    config = _compact({"architecture": "", "created": "0001-01-01T00:00:00Z", "os": "",
                       "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}, "config": {}})
    body = _compact({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": pusher.blob(repo, config, OCI_CONFIG),
                     "layers": [layer]})
    return pusher.manifest(repo, tag_of(digest, suffix), body, OCI_MANIFEST)
