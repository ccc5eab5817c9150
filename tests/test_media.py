"""Manifest parsing, descriptors and platforms (OCI image-spec manifest.md, image-index.md, descriptor.md)."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importcore.values.errors import ImporterError, LimitExceeded, ManifestError, UsageError
from importcore.values.media import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    MAX_MANIFEST_BYTES,
    OCI_ARTIFACT,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    parse_manifest,
)

D = "sha256:" + "d" * 64
C = "sha256:" + "c" * 64
L1 = "sha256:" + "1" * 64
L2 = "sha256:" + "2" * 64
EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # the OCI empty descriptor: {}

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"


def desc(media_type: str, digest: str, size: int = 10, **extra) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def parse(obj: object, content_type: str | None = None):
    raw = obj if isinstance(obj, bytes) else body(obj)
    return parse_manifest(raw, content_type, D, where="src:v1")


def oci_manifest(**extra) -> dict:
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": desc(OCI_CONFIG, C, 5),
            "layers": [desc(OCI_LAYER, L1, 100), desc(OCI_LAYER, L2, 200)], **extra}


def oci_index(**extra) -> dict:
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        desc(OCI_MANIFEST, L1, 500, platform={"os": "linux", "architecture": "amd64"}),
        desc(OCI_MANIFEST, L2, 501, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
    ], **extra}


def without(d: dict, key: str) -> dict:
    return {k: v for k, v in d.items() if k != key}


# ---------------------------------------------------------------- accepted manifests

ACCEPTED = [
    # id, manifest, content type, media type, children, blob digests
    ("oci-manifest", oci_manifest(), OCI_MANIFEST, OCI_MANIFEST, 0, [C, L1, L2]),
    ("oci-index", oci_index(), OCI_INDEX, OCI_INDEX, 2, []),
    ("docker-v2", {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST, "config": desc(DOCKER_CONFIG, C),
                   "layers": [desc(DOCKER_LAYER, L1)]}, DOCKER_MANIFEST, DOCKER_MANIFEST, 0, [C, L1]),
    ("docker-list", {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [desc(DOCKER_MANIFEST, L1)]},
     DOCKER_LIST, DOCKER_LIST, 1, []),
    ("artifact-empty-config", {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.sbom",
                               "config": desc("application/vnd.oci.empty.v1+json", EMPTY, 2),
                               "layers": [desc("application/spdx+json", L1)]}, OCI_MANIFEST, OCI_MANIFEST, 0,
     [EMPTY, L1]),
    ("artifact-no-layers", {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/x.sig",
                            "config": desc("application/vnd.oci.empty.v1+json", EMPTY, 2), "layers": [],
                            "subject": desc(OCI_MANIFEST, L2)}, OCI_MANIFEST, OCI_MANIFEST, 0, [EMPTY]),
    ("oci-artifact-manifest", {"mediaType": OCI_ARTIFACT, "artifactType": "x", "blobs": [desc("x", L1)]},
     OCI_ARTIFACT, OCI_ARTIFACT, 0, [L1]),
    ("no-mediatype-manifest-structure", without(oci_manifest(), "mediaType"), None, OCI_MANIFEST, 0, [C, L1, L2]),
    ("no-mediatype-index-structure", without(oci_index(), "mediaType"), None, OCI_INDEX, 2, []),
    ("no-mediatype-header-decides", without(oci_index(), "mediaType"), OCI_INDEX, OCI_INDEX, 2, []),
    ("no-mediatype-docker-header", without(oci_manifest(), "mediaType"), DOCKER_MANIFEST, DOCKER_MANIFEST, 0,
     [C, L1, L2]),
    # a generic Content-Type says nothing; the structure decides (it used to become the media type)
    ("no-mediatype-json-header-index", without(oci_index(), "mediaType"), "application/json", OCI_INDEX, 2, []),
    ("no-mediatype-json-header-manifest", without(oci_manifest(), "mediaType"), "application/json; charset=utf-8",
     OCI_MANIFEST, 0, [C, L1, L2]),
    ("no-mediatype-text-header", without(oci_manifest(), "mediaType"), "text/plain", OCI_MANIFEST, 0, [C, L1, L2]),
    ("json-header-with-mediatype", oci_index(), "application/json", OCI_INDEX, 2, []),
    ("octet-stream-header", oci_manifest(), "application/octet-stream", OCI_MANIFEST, 0, [C, L1, L2]),
    ("header-params-and-case", oci_index(), "Application/VND.OCI.Image.Index.v1+json; charset=utf-8", OCI_INDEX, 2,
     []),
    ("no-header", oci_manifest(), None, OCI_MANIFEST, 0, [C, L1, L2]),
    ("empty-index", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}, None, OCI_INDEX, 0, []),
    ("index-null-manifests", {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": None}, None, OCI_INDEX, 0,
     []),
    ("duplicate-layers-kept", {**oci_manifest(), "layers": [desc(OCI_LAYER, L1)] * 2}, None, OCI_MANIFEST, 0,
     [C, L1, L1]),
    ("unknown-fields-ignored", oci_manifest(annotations={"a": "b"}, extra=[1, 2]), None, OCI_MANIFEST, 0,
     [C, L1, L2]),
]


@pytest.mark.parametrize(("manifest", "content_type", "media_type", "children", "blobs"),
                         [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED])
def test_parse_manifest(manifest, content_type, media_type, children, blobs):
    raw = body(manifest)
    m = parse_manifest(raw, content_type, D, where="src:v1")
    assert m.media_type == media_type
    assert m.is_index == (media_type in (OCI_INDEX, DOCKER_LIST))
    assert len(m.children) == children
    assert [b.digest for b in m.blobs] == blobs
    assert m.raw is raw  # the exact bytes are what gets pushed
    assert m.digest == D


def test_index_children_carry_platforms():
    m = parse(oci_index())
    assert [str(c.platform) for c in m.children] == ["linux/amd64", "linux/arm64/v8"]
    assert [c.digest for c in m.children] == [L1, L2]
    assert [c.size for c in m.children] == [500, 501]


def test_manifest_at_the_size_limit_is_parsed():
    raw = body(oci_manifest())
    raw = raw + b" " * (MAX_MANIFEST_BYTES - len(raw))
    assert len(raw) == MAX_MANIFEST_BYTES
    assert parse_manifest(raw, None, D, where="w").media_type == OCI_MANIFEST


# ---------------------------------------------------------------- refused manifests

REFUSED = [
    # id, manifest (object or raw bytes), content type, error class, words in the message
    ("oversize", b" " * (MAX_MANIFEST_BYTES + 1), None, LimitExceeded, "over the 4194304-byte limit"),
    ("not-json", b"{not json", None, ManifestError, "not valid JSON"),
    ("not-utf8", b"\xff\xfe{}", None, ManifestError, "not valid JSON"),
    ("empty-body", b"", None, ManifestError, "not valid JSON"),
    ("deep-nesting", b"[" * 100_000, None, ManifestError, "not valid JSON"),
    ("json-array", b"[]", None, ManifestError, "not a JSON object"),
    ("json-string", b'"manifest"', None, ManifestError, "not a JSON object"),
    ("json-null", b"null", None, ManifestError, "not a JSON object"),
    ("json-number", b"2", None, ManifestError, "not a JSON object"),
    ("mediatype-not-string", {**oci_manifest(), "mediaType": 5}, None, ManifestError, "mediaType must be a string"),
    ("header-disagrees", oci_index(), OCI_MANIFEST, ManifestError, "the registry sent Content-Type"),
    ("header-disagrees-docker", oci_manifest(), DOCKER_MANIFEST, ManifestError, "the registry sent Content-Type"),
    ("schema1-version", {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}, None, ManifestError,
     "schema 1"),
    ("schema1-header", {"schemaVersion": 1, "fsLayers": []},
     "application/vnd.docker.distribution.manifest.v1+prettyjws", ManifestError, "schema 1"),
    ("schema1-mediatype", {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v1+json"},
     None, ManifestError, "schema 1"),
    ("manifests-and-layers", {**oci_index(), "layers": [desc(OCI_LAYER, L1)]}, None, ManifestError, "ambiguous"),
    ("manifests-and-config", {**without(oci_index(), "mediaType"), "config": desc(OCI_CONFIG, C)}, None,
     ManifestError, "ambiguous"),
    # the declared type must agree with the structure ("manifest confusion")
    ("index-type-with-layers", {**without(oci_manifest(), "config"), "mediaType": OCI_INDEX}, None, ManifestError,
     "must not have 'layers'"),
    ("list-type-with-config", {"mediaType": DOCKER_LIST, "config": desc(DOCKER_CONFIG, C)}, None, ManifestError,
     "must not have"),
    ("manifest-type-with-manifests", {**oci_index(), "mediaType": DOCKER_MANIFEST}, None, ManifestError,
     "must not have 'manifests'"),
    ("header-index-body-manifest", without(oci_manifest(), "mediaType"), OCI_INDEX, ManifestError, "must not have"),
    ("header-manifest-body-index", without(oci_index(), "mediaType"), OCI_MANIFEST, ManifestError, "must not have"),
    ("unknown-type", {"schemaVersion": 2, "mediaType": "application/vnd.example+json"}, None, ManifestError,
     "unsupported manifest media type"),
    # descriptors
    ("digest-uppercase", {**oci_manifest(), "layers": [desc(OCI_LAYER, "sha256:" + "A" * 64)]}, None,
     ManifestError, "invalid digest"),
    ("digest-short", {**oci_manifest(), "layers": [desc(OCI_LAYER, "sha256:abc")]}, None, ManifestError,
     "invalid digest"),
    ("digest-path-traversal", {**oci_manifest(), "layers": [desc(OCI_LAYER, "../../etc/passwd")]}, None,
     ManifestError, "invalid digest"),
    ("digest-missing", {**oci_manifest(), "config": {"mediaType": OCI_CONFIG, "size": 1}}, None, ManifestError,
     "invalid digest"),
    ("child-digest-bad", {**oci_index(), "manifests": [desc(OCI_MANIFEST, "md5:" + "a" * 32)]}, None,
     ManifestError, "invalid digest"),
    ("size-negative", {**oci_manifest(), "layers": [desc(OCI_LAYER, L1, -1)]}, None, ManifestError, "invalid size"),
    ("size-bool", {**oci_manifest(), "layers": [desc(OCI_LAYER, L1, True)]}, None, ManifestError, "invalid size"),
    ("size-float", {**oci_manifest(), "layers": [desc(OCI_LAYER, L1, 1.5)]}, None, ManifestError, "invalid size"),
    ("size-string", {**oci_manifest(), "layers": [desc(OCI_LAYER, L1, "10")]}, None, ManifestError,
     "invalid size"),
    ("size-missing", {**oci_manifest(), "config": {"mediaType": OCI_CONFIG, "digest": C}}, None, ManifestError,
     "invalid size"),
    ("mediatype-missing", {**oci_manifest(), "layers": [{"digest": L1, "size": 1}]}, None, ManifestError,
     "no mediaType"),
    ("descriptor-not-object", {**oci_manifest(), "layers": ["sha256:x"]}, None, ManifestError, "must be an object"),
    ("config-null", {**oci_manifest(), "config": None}, None, ManifestError, "must be an object"),
    ("layers-not-list", {**oci_manifest(), "layers": {"a": 1}}, None, ManifestError, "must be a list"),
    ("manifests-not-list", {**oci_index(), "manifests": "x"}, None, ManifestError, "must be a list"),
    ("urls-not-list", {**oci_manifest(), "layers": [desc(DOCKER_FOREIGN, L1, urls="http://x")]}, None,
     ManifestError, "invalid urls"),
    ("urls-not-strings", {**oci_manifest(), "layers": [desc(DOCKER_FOREIGN, L1, urls=[1])]}, None, ManifestError,
     "invalid urls"),
]


@pytest.mark.parametrize(("manifest", "content_type", "error", "words"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_parse_manifest_refused(manifest, content_type, error, words):
    with pytest.raises(error) as info:
        parse(manifest, content_type)
    assert words in str(info.value)
    assert type(info.value) is error


def test_errors_name_where():
    with pytest.raises(ManifestError, match=r"^src:v1 layers\[1\]: "):
        parse({**oci_manifest(), "layers": [desc(OCI_LAYER, L1), desc(OCI_LAYER, L2, -5)]})


# ---------------------------------------------------------------- descriptors

@pytest.mark.parametrize(
    ("media_type", "foreign"),
    [(DOCKER_FOREIGN, True), (OCI_NONDIST, True), ("application/vnd.oci.image.layer.nondistributable.v1.tar", True),
     ("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", True), (OCI_LAYER, False),
     (DOCKER_LAYER, False), (OCI_CONFIG, False)],
    ids=["docker-foreign", "oci-nondist-gzip", "oci-nondist-tar", "oci-nondist-zstd", "oci-layer", "docker-layer",
         "config"],
)
def test_foreign_layer_detection(media_type, foreign):
    urls = ["https://mcr.microsoft.com/v2/windows/blobs/" + L1] if foreign else []
    m = parse({**oci_manifest(), "mediaType": DOCKER_MANIFEST,
               "layers": [desc(media_type, L1, 7, urls=urls)]}, DOCKER_MANIFEST)
    layer = m.blobs[-1]
    assert layer.foreign is foreign
    assert layer.urls == tuple(urls)


def test_descriptor_from_json_values():
    d = Descriptor.from_json(desc(OCI_MANIFEST, L1, 0, platform={"os": "windows", "architecture": "amd64",
                                                                 "os.version": "10.0.17763.1"}), where="w")
    assert (d.media_type, d.digest, d.size, d.urls) == (OCI_MANIFEST, L1, 0, ())
    assert d.platform == Platform("windows", "amd64")


@pytest.mark.parametrize(
    ("data", "expected"),
    [({"os": "linux", "architecture": "arm", "variant": "v7"}, Platform("linux", "arm", "v7")),
     ({"os": "linux"}, Platform("linux", "")),
     ({"os": "linux", "architecture": 5, "variant": []}, Platform("linux", "")),
     ({"architecture": "amd64"}, None), ({"os": 1}, None), ("linux/amd64", None), (None, None)],
    ids=["full", "os-only", "wrong-types", "no-os", "os-not-string", "string", "none"],
)
def test_platform_from_json(data, expected):
    assert Platform.from_json(data) == expected


# ---------------------------------------------------------------- platforms

@pytest.mark.parametrize(
    ("text", "expected"),
    [("linux/amd64", Platform("linux", "amd64")), ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
     ("Linux/AMD64", Platform("linux", "amd64")), ("windows/amd64", Platform("windows", "amd64")),
     ("linux/mips64_le/v1-x", Platform("linux", "mips64_le", "v1-x"))],
    ids=["linux-amd64", "arm64-v8", "case", "windows", "underscore-dash"],
)
def test_platform_parse(text, expected):
    assert Platform.parse(text) == expected
    assert str(Platform.parse(text)) == str(expected)


@pytest.mark.parametrize(
    "text",
    ["", "linux", "linux/", "/amd64", "linux/amd64/", "linux/amd64/v8/x", "linux amd64", "linux/am d64",
     "linux/\u0430md64", "linux/amd64;rm", None, 5],
    ids=["empty", "os-only", "empty-arch", "empty-os", "empty-variant", "four-parts", "space", "inner-space",
         "cyrillic", "punctuation", "none", "int"],
)
def test_platform_parse_invalid(text):
    with pytest.raises(UsageError, match="invalid platform"):
        Platform.parse(text)


MATCHES = [
    # id, requested, image's platform, matches
    ("same", "linux/amd64", Platform("linux", "amd64"), True),
    ("other-arch", "linux/amd64", Platform("linux", "arm64"), False),
    ("other-os", "linux/amd64", Platform("windows", "amd64"), False),
    ("arm64-is-arm64-v8", "linux/arm64", Platform("linux", "arm64", "v8"), True),
    ("arm64-v8-is-arm64", "linux/arm64/v8", Platform("linux", "arm64"), True),
    ("arm64-v8-not-v9", "linux/arm64/v8", Platform("linux", "arm64", "v9"), False),
    ("no-variant-takes-any", "linux/arm", Platform("linux", "arm", "v6"), True),
    ("variant-must-match", "linux/arm/v7", Platform("linux", "arm", "v6"), False),
    ("arm-v7-is-arm", "linux/arm/v7", Platform("linux", "arm"), True),
    ("arm-v6-is-not-arm", "linux/arm/v6", Platform("linux", "arm"), False),
    ("variant-requested-missing", "linux/riscv64/x", Platform("linux", "riscv64"), False),
    ("case-insensitive-request", "Linux/ARM64", Platform("linux", "arm64", "v8"), True),
    ("no-platform", "linux/amd64", None, False),
]


@pytest.mark.parametrize(("requested", "other", "expected"), [m[1:] for m in MATCHES], ids=[m[0] for m in MATCHES])
def test_platform_matches(requested, other, expected):
    assert Platform.parse(requested).matches(other) is expected


# ---------------------------------------------------------------- properties

_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10)
    | st.sampled_from([D, OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, OCI_LAYER]),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["mediaType", "digest", "size", "urls", "platform", "os", "architecture",
                                       "manifests", "layers", "config", "blobs", "schemaVersion"]), inner,
                      max_size=5),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), _JSONISH.map(body)),
       st.one_of(st.none(), st.sampled_from([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, "application/json", "text/x"])))
def test_parse_manifest_raises_only_importer_errors(raw, content_type):
    try:
        m = parse_manifest(raw, content_type, D, where="w")
    except ImporterError:
        return
    assert m.raw == raw
    assert not (m.children and m.blobs)
