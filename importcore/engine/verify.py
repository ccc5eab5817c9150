"""Verify before promote: the source digest must carry a valid cosign signature by a configured key.

Which digest: the one that lands as the import's top manifest. For a multi-arch import that is the
index (what `cosign sign image:tag` signs); its children need no signatures of their own, since the
signed index names each of them by digest. With --platform it is the chosen image manifest, and a
signature on the index it was chosen from counts too (for the same reason). Sign what you pull: the
source is resolved to a digest once, that digest is verified, and the very same bytes (fetched by
digest, hashed) are what gets copied, so a tag moved in between cannot slip an unsigned image in.

Either of cosign's formats counts (values/cosign.py has the details):
- `sha256-<hex>.sig`: a simple-signing layer whose signature verifies over its payload with a key,
  and whose payload's critical.image.docker-manifest-digest is the digest;
- a Sigstore bundle referrer (cosign 3): a DSSE envelope over an in-toto Statement with predicateType
  https://sigstore.dev/cosign/sign/v1 naming the digest as a subject, or a message signature over the
  manifest's bytes; its signature must verify with a key.

Keys are trusted out of band, as with `cosign verify --key`: certificates, Rekor entries and RFC 3161
timestamps in a signature are neither needed nor checked. Keyless (Fulcio) signatures are not
supported: they would need a trusted root this app does not hold.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from ..values.cosign import (
    BUNDLE_MEDIA_TYPES, BUNDLE_V03, COSIGN_SIGN_PREDICATE, IN_TOTO, MAX_SIGNED_BYTES, SIGNATURE_ANNOTATION,
    SIMPLE_SIGNING, Bundle, PublicKey, pae, parse_bundle, signature_tag, simple_signing_digest,
    statement_subjects,
)
from ..values.errors import BadSignature, ImporterError, NotFoundError, SignatureVerificationFailed
from ..values.media import Manifest
from ..values.reference import Reference
from ..registry.client import RegistryClient
from .plan import Plan
from .referrers import ReferrerLister

__all__ = ["Verified", "VerifyPolicy", "require_signature"]

MAX_BUNDLES = 16  # bundle referrers looked at per digest
MAX_SIG_LAYERS = 32  # signatures looked at in one .sig manifest


@dataclass(frozen=True)
class VerifyPolicy:
    keys: tuple[PublicKey, ...]  # any one suffices


@dataclass(frozen=True)
class Verified:
    """Which key verified which signature over which digest (recorded in the result)."""

    digest: str
    key: PublicKey
    format: str  # "cosign simple signing" | "sigstore bundle (dsse-envelope|message-signature)"
    manifest: str  # digest of the signature's manifest in the source
    tag: str | None = None  # sha256-<hex>.sig for the tag-based format

    def to_dict(self) -> dict:
        signature = {"format": self.format, "manifest": self.manifest}
        if self.tag:
            signature["tag"] = self.tag
        return {"digest": self.digest, "key": self.key.name, "keyFingerprint": self.key.fingerprint,
                "signature": signature}


def require_signature(source: RegistryClient, plan: Plan, policy: VerifyPolicy) -> Verified:
    """The first valid signature by one of the keys over the import's digest (see the module
    docstring), or SignatureVerificationFailed saying what was found and why none counted."""
    repo = plan.source.repository
    candidates: list[Manifest | None] = [plan.top]
    if plan.source.digest and plan.source.digest != plan.top.digest:
        candidates.append(None)  # the index the platform's manifest was chosen from, fetched if needed
    lister = ReferrerLister(source, repo)
    why: list[str] = []
    for candidate in candidates:
        digest = candidate.digest if candidate is not None else plan.source.digest or ""
        loaded: list[Manifest] = [candidate] if candidate is not None else []

        def message() -> bytes:
            if not loaded:
                loaded.append(source.manifest_get(repo, digest))
            return loaded[0].raw

        reasons: list[str] = []
        found = _simple_signing(source, repo, digest, policy, reasons) or \
            _bundles(source, lister, repo, digest, message, policy, reasons)
        if found is not None:
            return found
        label = "the index it was chosen from" if candidate is None else _short(digest)
        why.append(f"{label}: {', '.join(reasons)}")
    shown = Reference(plan.source.registry, plan.source.repository, plan.source.tag,
                      None if plan.source.tag else plan.source.digest)
    names = ", ".join(f"{k.name} ({k.fingerprint[:19]})" for k in policy.keys)
    raise SignatureVerificationFailed(f"{shown}: no valid signature by the configured keys ({'; '.join(why)}; "
                                      f"keys: {names})", target="verify")


def _simple_signing(source: RegistryClient, repo: str, digest: str, policy: VerifyPolicy,
                    reasons: list[str]) -> Verified | None:
    tag = signature_tag(digest, ".sig")
    lister = ReferrerLister(source, repo)
    manifest = lister.attachment(digest, ".sig")
    if manifest is None:
        reasons.append(f"no {tag} tag")
        return None
    layers = [b for b in manifest.blobs[1:] if b.media_type == SIMPLE_SIGNING][:MAX_SIG_LAYERS]
    if not layers:
        reasons.append(f"{tag} holds no simple-signing layer")
        return None
    problems: list[str] = []
    for i, layer in enumerate(layers):
        encoded = layer.annotation(SIGNATURE_ANNOTATION)
        if not encoded:
            problems.append(f"signature {i + 1} has no {SIGNATURE_ANNOTATION} annotation")
            continue
        try:
            signature = _b64(encoded)
            payload = source.blob_read(repo, layer.digest, max_bytes=MAX_SIGNED_BYTES)
        except BadSignature as exc:
            problems.append(f"signature {i + 1}: {exc}")
            continue
        except ImporterError as exc:
            problems.append(f"signature {i + 1}: its payload could not be read ({exc.code})")
            continue
        key = next((k for k in policy.keys if k.verify(signature, payload)), None)
        if key is None:
            problems.append(f"signature {i + 1} is not valid for any configured key")
            continue
        try:
            signed = simple_signing_digest(payload)
        except BadSignature as exc:
            problems.append(f"signature {i + 1} by {key.name}: {exc}")
            continue
        if signed != digest:
            problems.append(f"signature {i + 1} by {key.name} is over {_short(signed)}, not this digest")
            continue
        return Verified(digest, key, "cosign simple signing", manifest.digest, tag)
    reasons.append(f"{tag}: {len(layers)} signature(s), none valid ({'; '.join(problems)})")
    return None


def _bundles(source: RegistryClient, lister: ReferrerLister, repo: str, digest: str, message: Callable[[], bytes],
             policy: VerifyPolicy, reasons: list[str]) -> Verified | None:
    listed, _ = lister.referrers(digest, artifact_type=BUNDLE_V03)
    listed = [d for d in listed if d.artifact_type in BUNDLE_MEDIA_TYPES or d.artifact_type is None][:MAX_BUNDLES]
    problems: list[str] = []
    seen = 0
    for desc in listed:
        try:
            manifest = source.manifest_get(repo, desc.digest)
        except NotFoundError:
            continue
        if manifest.subject != digest or manifest.type_for_referrers not in BUNDLE_MEDIA_TYPES:
            continue
        layer = next((b for b in manifest.blobs[1:] if b.media_type in BUNDLE_MEDIA_TYPES), None)
        if layer is None:
            continue
        seen += 1
        where = f"bundle {_short(manifest.digest)}"
        try:
            bundle = parse_bundle(source.blob_read(repo, layer.digest, max_bytes=MAX_SIGNED_BYTES))
            key = _bundle_key(bundle, digest, message, policy)
        except BadSignature as exc:
            problems.append(f"{where}: {exc}")
            continue
        except ImporterError as exc:
            problems.append(f"{where}: could not be read ({exc.code})")
            continue
        return Verified(digest, key, f"sigstore bundle ({bundle.content})", manifest.digest)
    if not seen:
        reasons.append("no Sigstore bundle referrer")
    else:
        reasons.append(f"{seen} Sigstore bundle(s), none valid ({'; '.join(problems)})")
    return None


def _bundle_key(bundle: Bundle, digest: str, message: Callable[[], bytes], policy: VerifyPolicy) -> PublicKey:
    """The key that verifies `bundle` as a signature of `digest`; BadSignature says why not."""
    if bundle.content == "message-signature":
        algorithm, raw = bundle.message_digest or ("", b"")
        if algorithm != "SHA2_256":
            raise BadSignature(f"message digest algorithm {algorithm[:20]!r} is not SHA2_256")
        if "sha256:" + raw.hex() != digest:
            raise BadSignature(f"a message signature over {_short('sha256:' + raw.hex())}, not this digest")
        signed = message()
        key = next((k for k in policy.keys if k.verify(bundle.signatures[0], signed)), None)
        if key is None:
            raise BadSignature("its signature is not valid for any configured key")
        return key
    if bundle.payload_type != IN_TOTO:
        raise BadSignature(f"DSSE payloadType {bundle.payload_type[:60]!r} is not {IN_TOTO}")
    encoded = pae(bundle.payload_type, bundle.payload)
    key = next((k for k in policy.keys for sig in bundle.signatures if k.verify(sig, encoded)), None)
    if key is None:
        raise BadSignature("its signature is not valid for any configured key")
    predicate_type, subjects = statement_subjects(bundle.payload)
    if predicate_type != COSIGN_SIGN_PREDICATE:
        raise BadSignature(f"signed by {key.name}, but an attestation ({predicate_type[:80]}), not a signature "
                           f"({COSIGN_SIGN_PREDICATE})")
    if digest not in subjects:
        shown = ", ".join(_short(s) for s in subjects[:3]) or "nothing"
        raise BadSignature(f"signed by {key.name}, but over {shown}, not this digest")
    return key


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadSignature(f"its {SIGNATURE_ANNOTATION} annotation is not base64") from None


def _short(digest: str) -> str:
    return digest[:19] + "…" if len(digest) > 19 else digest
