"""Image references: the distribution/reference grammar, Docker Hub normalisation, targets, registries.

Cases follow github.com/distribution/reference (reference_test.go, normalize_test.go) where
our rules are the same; where they differ on purpose (only sha256/sha512, lowercase hex) the
case says so.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importcore.values.errors import ImporterError, UsageError
from importcore.values.reference import DOCKER_HUB, Reference, TargetSpec, parse_digest, parse_registry, parse_target

D = "sha256:" + "0123456789abcdef" * 4
D512 = "sha512:" + "ab" * 64


# ---------------------------------------------------------------- valid references

VALID = [
    # text, registry, repository, tag, digest
    ("hello-world", "docker.io", "library/hello-world", None, None),
    ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
    ("bitnami/redis", "docker.io", "bitnami/redis", None, None),
    ("docker.io/hello", "docker.io", "library/hello", None, None),
    ("docker.io/library/alpine:3", "docker.io", "library/alpine", "3", None),
    ("index.docker.io/x/y", "docker.io", "x/y", None, None),
    ("index.docker.io/alpine", "docker.io", "library/alpine", None, None),
    ("registry-1.docker.io/library/busybox:1", "docker.io", "library/busybox", "1", None),
    ("Docker.IO/foo", "docker.io", "library/foo", None, None),
    ("myacr.azurecr.io/team/app:v1", "myacr.azurecr.io", "team/app", "v1", None),
    ("MyACR.AzureCR.io/app", "myacr.azurecr.io", "app", None, None),
    ("localhost/foo", "localhost", "foo", None, None),
    ("localhost:5000/foo/bar:tag", "localhost:5000", "foo/bar", "tag", None),
    ("LOCALHOST/foo", "localhost", "foo", None, None),
    ("example:5000/foo", "example:5000", "foo", None, None),
    ("127.0.0.1:5000/foo", "127.0.0.1:5000", "foo", None, None),
    ("[::1]/foo", "[::1]", "foo", None, None),
    ("[::1]:5000/foo:v1", "[::1]:5000", "foo", "v1", None),
    ("[2001:db8::1]:443/a/b", "[2001:db8::1]:443", "a/b", None, None),
    ("my-registry.example.com:65535/x", "my-registry.example.com:65535", "x", None, None),
    ("a.b.c.d.e/f/g/h/i/j", "a.b.c.d.e", "f/g/h/i/j", None, None),
    # separators: '.', '_', '__', '-', any run of '-'
    ("x/a.b/c_d/e__f/g-h/i--j/k---l", "docker.io", "x/a.b/c_d/e__f/g-h/i--j/k---l", None, None),
    ("a.b/c", "a.b", "c", None, None),  # a dot in the first component makes it a host
    ("x/a0.b1_c2__d3-e4", "docker.io", "x/a0.b1_c2__d3-e4", None, None),
    ("0/1", "docker.io", "0/1", None, None),
    # an uppercase first component is a host (normalize.go); its case is kept so str() reads back
    ("Foo/bar", "Foo", "bar", None, None),
    # tags
    ("foo:latest", "docker.io", "library/foo", "latest", None),
    ("foo:_x", "docker.io", "library/foo", "_x", None),
    ("foo:V1.2-RC_3", "docker.io", "library/foo", "V1.2-RC_3", None),
    ("foo:" + "t" * 128, "docker.io", "library/foo", "t" * 128, None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # no '/': 5000 is a tag (as in Docker)
    # digests
    (f"foo@{D}", "docker.io", "library/foo", None, D),
    (f"foo:v1@{D}", "docker.io", "library/foo", "v1", D),
    (f"localhost:5000/foo:v1@{D}", "localhost:5000", "foo", "v1", D),
    (f"ghcr.io/o/r@{D512}", "ghcr.io", "o/r", None, D512),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), VALID, ids=[v[0][:60] for v in VALID])
def test_valid_reference(text, registry, repository, tag, digest):
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "api_host", "ref_part", "shown"),
    [
        ("hello-world", "registry-1.docker.io", "latest", "docker.io/library/hello-world"),
        ("index.docker.io/x/y:1", "registry-1.docker.io", "1", "docker.io/x/y:1"),
        (f"ghcr.io/o/r:1@{D}", "ghcr.io", D, f"ghcr.io/o/r:1@{D}"),
        ("localhost:5000/x", "localhost:5000", "latest", "localhost:5000/x"),
    ],
    ids=["hub-official", "hub-legacy-host", "digest-wins", "local-port"],
)
def test_api_host_ref_and_str(text, api_host, ref_part, shown):
    ref = Reference.parse(text)
    assert ref.api_host == api_host
    assert ref.ref == ref_part
    assert str(ref) == shown


def test_hub_constant():
    ref = Reference.parse("hello-world")
    assert ref.registry == DOCKER_HUB
    assert ref.tag is None and ref.ref == "latest"


def test_default_registry_none_requires_a_host():
    with pytest.raises(UsageError, match="must start with a registry host"):
        Reference.parse("foo/bar", default_registry=None)
    assert Reference.parse("example.com/foo", default_registry=None).registry == "example.com"


def test_other_default_registry_does_not_add_library():
    ref = Reference.parse("foo", default_registry="myacr.azurecr.io")
    assert (ref.registry, ref.repository) == ("myacr.azurecr.io", "foo")


def test_path_of_255_is_the_limit():
    path = "a/" + "b" * 253
    assert len(path) == 255
    assert Reference.parse(f"example.com/{path}").repository == path
    with pytest.raises(UsageError, match="longer than 255"):
        Reference.parse(f"example.com/{path}b")


# ---------------------------------------------------------------- invalid references

INVALID = [
    # id, text, words the message must contain
    ("empty", "", "empty"),
    ("space", "foo bar", "without spaces"),
    ("tab", "foo\tbar", "without spaces"),
    ("newline", "foo\n", "without spaces"),
    ("cyrillic-a", "\u0430lpine", "ASCII"),
    ("cyrillic-in-path", "docker.io/library/ubunt\u0443", "ASCII"),
    ("fullwidth-slash", "a\uff0fb", "ASCII"),
    ("uppercase-repo", "Ubuntu", "repository names must be lowercase"),
    ("uppercase-path", "example.com/Foo/bar", "repository names must be lowercase"),
    ("uppercase-hub-user", "docker.io/User/app", "repository names must be lowercase"),
    ("double-slash", "a//b", "invalid repository"),
    ("trailing-slash", "example.com/a/", "invalid repository"),
    ("leading-slash", "/a", "invalid repository"),
    ("only-host", "example.com/", "repository is empty"),
    ("triple-underscore", "a___b", "invalid repository"),
    ("double-dot", "a..b", "invalid repository"),
    ("dash-underscore", "a-_b", "invalid repository"),
    ("leading-separator", "_a", "invalid repository"),
    ("trailing-dash", "a-", "invalid repository"),
    ("path-too-long", "example.com/" + "a" * 256, "longer than 255"),
    ("hub-path-too-long", "a" * 250, "longer than 255"),  # library/ makes it 258
    ("empty-tag", "foo:", "invalid tag"),
    ("tag-dot", "foo:.v1", "invalid tag"),
    ("tag-dash", "foo:-v1", "invalid tag"),
    ("tag-129", "foo:" + "t" * 129, "invalid tag"),
    ("tag-plus", "foo:v1+x", "invalid tag"),
    ("empty-port", "example.com:/foo", "invalid registry"),
    ("alpha-port", "example.com:http/foo", "invalid registry"),
    ("port-6-digits", "localhost:123456/foo", "invalid registry"),
    ("port-too-big", "localhost:65536/foo", "1-65535"),
    ("port-zero", "localhost:0/foo", "1-65535"),
    ("host-underscore", "exa_mple.com/foo", "invalid registry"),
    ("host-leading-dash", "-a.com/foo", "invalid registry"),
    ("host-empty-label", "a..com/foo", "invalid registry"),
    ("ipv6-unclosed", "[::1/foo", "invalid registry"),
    ("ipv6-bad-char", "[::g]/foo", "invalid registry"),
    ("ipv6-no-path", "[::1]:5000", "invalid"),
    ("digest-empty", "foo@", "invalid digest"),
    ("digest-uppercase-hex", "foo@sha256:" + "A" * 64, "invalid digest"),
    ("digest-short", "foo@sha256:" + "a" * 63, "invalid digest"),
    ("digest-long", "foo@sha256:" + "a" * 65, "invalid digest"),
    ("digest-md5", "foo@md5:" + "a" * 32, "invalid digest"),
    ("digest-no-algorithm", "foo@" + "a" * 64, "invalid digest"),
    ("digest-twice", f"foo@{D}@{D}", "invalid digest"),
    ("tag-after-digest", f"foo@{D}:v1", "invalid digest"),
    ("only-digest", f"@{D}", "empty"),
    ("only-tag", ":v1", "invalid"),
]


@pytest.mark.parametrize(("text", "words"), [(t, w) for _, t, w in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_reference(text, words):
    with pytest.raises(UsageError) as info:
        Reference.parse(text)
    assert words in str(info.value)
    assert info.value.code == "InvalidRequest"


@pytest.mark.parametrize("value", [None, 42, b"foo"], ids=["none", "int", "bytes"])
def test_reference_non_string(value):
    with pytest.raises(UsageError, match="empty"):
        Reference.parse(value)


def test_error_message_truncates_long_input():
    with pytest.raises(UsageError) as info:
        Reference.parse("A" * 5000)
    assert len(str(info.value)) < 400


# ---------------------------------------------------------------- parse_digest

@pytest.mark.parametrize("value", [D, D512], ids=["sha256", "sha512"])
def test_parse_digest_valid(value):
    assert parse_digest(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "sha256:", "sha256:" + "A" * 64, "SHA256:" + "a" * 64, "sha256:" + "g" * 64, "sha256:" + "a" * 63,
     "sha384:" + "a" * 96, " " + D, D + "\n", None, 7],
    ids=["empty", "no-hex", "uppercase-hex", "uppercase-algo", "non-hex", "short", "sha384", "lead-space",
         "trailing-newline", "none", "int"],
)
def test_parse_digest_invalid(value):
    with pytest.raises(UsageError, match="invalid layer digest"):
        parse_digest(value, what="layer digest")


# ---------------------------------------------------------------- parse_target

TARGETS = [
    # id, text, default_tag, untagged, expected
    ("untagged-gets-default", "app", "v1", False, TargetSpec("app", "v1")),
    ("no-default-means-latest", "app", None, False, TargetSpec("app", "latest")),
    ("own-tag-wins", "team/app:v2", "v1", False, TargetSpec("team/app", "v2")),
    ("nested", "a/b/c/d:x", None, False, TargetSpec("a/b/c/d", "x")),
    ("separators", "a.b_c__d-e--f", None, False, TargetSpec("a.b_c__d-e--f", "latest")),
    ("untagged-repository", "team/app", "v1", True, TargetSpec("team/app", None)),
]


@pytest.mark.parametrize(("text", "default_tag", "untagged", "expected"), [t[1:] for t in TARGETS],
                         ids=[t[0] for t in TARGETS])
def test_parse_target(text, default_tag, untagged, expected):
    assert parse_target(text, default_tag=default_tag, untagged=untagged) == expected


@pytest.mark.parametrize(
    ("spec", "shown"),
    [(TargetSpec("a/b", "v1"), "a/b:v1"), (TargetSpec("a/b", None), "a/b")],
    ids=["tagged", "untagged"],
)
def test_target_str(spec, shown):
    assert str(spec) == shown


BAD_TARGETS = [
    # id, text, untagged, words
    ("empty", "", False, "empty"),
    ("digest", f"app@{D}", False, "not a digest"),
    ("tag-and-digest", f"app:v1@{D}", False, "not a digest"),
    ("untagged-with-tag", "app:v1", True, "takes no tag"),
    ("uppercase", "Team/app", False, "repository names must be lowercase"),
    ("non-ascii", "\u0430pp", False, "ASCII"),
    ("space", "my app", False, "invalid repository"),
    ("double-slash", "a//b", False, "invalid repository"),
    ("trailing-slash", "a/", False, "invalid repository"),
    ("empty-tag", "app:", False, "invalid tag"),
    ("bad-tag", "app:.x", False, "invalid tag"),
    ("long-tag", "app:" + "t" * 129, False, "invalid tag"),
    ("empty-repo", ":v1", False, "empty"),
    ("host-port", "localhost:5000/app", False, "invalid repository"),
    ("too-long", "a" * 256, False, "longer than 255"),
]


@pytest.mark.parametrize(("text", "untagged", "words"), [b[1:] for b in BAD_TARGETS], ids=[b[0] for b in BAD_TARGETS])
def test_parse_target_invalid(text, untagged, words):
    with pytest.raises(UsageError) as info:
        parse_target(text, default_tag="v1", untagged=untagged)
    assert words in str(info.value)


def test_parse_target_non_string():
    with pytest.raises(UsageError, match="empty"):
        parse_target(None, default_tag=None)


# ---------------------------------------------------------------- parse_registry

REGISTRIES = [
    ("myacr", "myacr.azurecr.io"),
    ("MyACR", "myacr.azurecr.io"),
    ("  myacr  ", "myacr.azurecr.io"),
    ("myacr.azurecr.io", "myacr.azurecr.io"),
    ("https://myacr.azurecr.io", "myacr.azurecr.io"),
    ("https://myacr.azurecr.io/", "myacr.azurecr.io"),
    ("HTTPS://MyAcr.AzureCR.io", "myacr.azurecr.io"),
    ("http://localhost:5000", "localhost:5000"),
    ("localhost", "localhost"),
    ("localhost:5000", "localhost:5000"),
    ("registry:5000", "registry:5000"),
    ("[::1]:5000", "[::1]:5000"),
    ("127.0.0.1", "127.0.0.1"),
    ("docker.io", "docker.io"),
    ("index.docker.io", "docker.io"),
    ("registry-1.docker.io", "docker.io"),
    ("https://registry-1.docker.io", "docker.io"),
    ("ghcr.io", "ghcr.io"),
]


@pytest.mark.parametrize(("value", "expected"), REGISTRIES, ids=[r[0].strip() or "blank" for r in REGISTRIES])
def test_parse_registry(value, expected):
    assert parse_registry(value) == expected


@pytest.mark.parametrize(
    "value",
    ["", "   ", "https://", "a b", "myacr.azurecr.io/path", "ex_ample.com", "host:", "host:port", "a:b:c",
     "localhost:65536", "localhost:0", "\u0430cr", "-acr"],
    ids=["empty", "blank", "scheme-only", "space", "path", "underscore", "empty-port", "alpha-port", "two-colons",
         "port-too-big", "port-zero", "cyrillic", "leading-dash"],
)
def test_parse_registry_invalid(value):
    with pytest.raises(UsageError, match="invalid registry"):
        parse_registry(value)


# ---------------------------------------------------------------- properties

_REF_ALPHABET = st.sampled_from(list("abcAB019.-_/:@[]") + ["sha256:" + "a" * 64, "docker.io/", "localhost:5000/"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_REF_ALPHABET, max_size=12).map("".join)))
def test_reference_parse_raises_only_importer_errors(text):
    try:
        ref = Reference.parse(text)
    except ImporterError:
        return
    assert Reference.parse(str(ref)) == ref


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(_REF_ALPHABET, max_size=12).map("".join)), st.booleans())
def test_parse_target_raises_only_importer_errors(text, untagged):
    try:
        spec = parse_target(text, default_tag="v1", untagged=untagged)
    except ImporterError:
        return
    assert parse_target(str(spec), default_tag="other", untagged=untagged) == spec


_ALNUM = st.text("abz09", min_size=1, max_size=4)
_SEP = st.sampled_from([".", "_", "__", "-", "--", "---"])
_COMPONENT = st.builds(lambda first, rest: first + "".join(s + a for s, a in rest),
                       _ALNUM, st.lists(st.tuples(_SEP, _ALNUM), max_size=3))
_HOST = st.sampled_from(["user/", "example.com/", "localhost/", "localhost:5000/", "[::1]:5000/", "Reg/",
                         "index.docker.io/", "docker.io/"])
_TAGS = st.one_of(st.none(), st.builds(str.__add__, st.text("aZ9_", min_size=1, max_size=1),
                                         st.text("aZ9_.-", max_size=20)))
_DIGESTS = st.one_of(st.none(), st.just(D))


@settings(max_examples=200, deadline=None)
@given(_HOST, st.lists(_COMPONENT, min_size=1, max_size=4), _TAGS, _DIGESTS)
def test_valid_grammar_parses_and_round_trips(host, components, tag, digest):
    text = host + "/".join(components) + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = Reference.parse(text)
    assert ref.tag == tag and ref.digest == digest
    assert ref.repository.endswith("/".join(components))
    assert Reference.parse(str(ref)) == ref
