"""WWW-Authenticate parsing (RFC 7235 section 4.1; the Docker token spec's Bearer challenge)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importcore.auth.challenge import Challenge, parse_challenges

HUB = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
       'scope="repository:library/alpine:pull"')

CASES = [
    # id, header, expected [(scheme, params)]
    ("docker-hub", HUB,
     [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                  "scope": "repository:library/alpine:pull"})]),
    ("comma-inside-quoted-scope", 'Bearer realm="https://r/t",service="reg",scope="repository:a:pull,push"',
     [("bearer", {"realm": "https://r/t", "service": "reg", "scope": "repository:a:pull,push"})]),
    ("two-scopes-space-separated", 'Bearer realm="r",scope="repository:a:pull repository:b:pull,push"',
     [("bearer", {"realm": "r", "scope": "repository:a:pull repository:b:pull,push"})]),
    ("insufficient-scope", 'Bearer realm="r",error="insufficient_scope",scope="repository:a:push"',
     [("bearer", {"realm": "r", "error": "insufficient_scope", "scope": "repository:a:push"})]),
    ("basic", 'Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ("basic-charset", 'Basic realm="r", charset="UTF-8"', [("basic", {"realm": "r", "charset": "UTF-8"})]),
    ("basic-bare", "Basic", [("basic", {})]),
    ("two-challenges", 'Bearer realm="https://a/t",service="s", Basic realm="b"',
     [("bearer", {"realm": "https://a/t", "service": "s"}), ("basic", {"realm": "b"})]),
    ("basic-then-bearer", 'Basic realm="a" , Bearer realm="b",scope="x:y:pull,push"',
     [("basic", {"realm": "a"}), ("bearer", {"realm": "b", "scope": "x:y:pull,push"})]),
    ("scheme-without-params-first", 'Negotiate, Basic realm="r"', [("negotiate", {}), ("basic", {"realm": "r"})]),
    ("escaped-quote", r'Bearer realm="a\"b",service="c\\d"', [("bearer", {"realm": 'a"b', "service": "c\\d"})]),
    ("escaped-ordinary-char", r'Basic realm="\a\b"', [("basic", {"realm": "ab"})]),
    ("unquoted-tokens", "Bearer service=registry.example.com,error=invalid_token",
     [("bearer", {"service": "registry.example.com", "error": "invalid_token"})]),
    ("unquoted-then-quoted", 'Bearer service=reg,realm="https://a/t"',
     [("bearer", {"service": "reg", "realm": "https://a/t"})]),
    ("token-with-padding", "Bearer nonce=abc==,realm=\"r\"", [("bearer", {"nonce": "abc==", "realm": "r"})]),
    ("case-insensitive-names", 'BEARER REALM="x",Service="y"', [("bearer", {"realm": "x", "service": "y"})]),
    ("value-case-kept", 'Bearer realm="HTTPS://Auth/Token"', [("bearer", {"realm": "HTTPS://Auth/Token"})]),
    ("whitespace-around-equals", 'Bearer realm = "x" , service = "y"', [("bearer", {"realm": "x", "service": "y"})]),
    ("leading-whitespace-and-commas", '  ,, Bearer realm="x"', [("bearer", {"realm": "x"})]),
    ("empty-quoted", 'Bearer realm=""', [("bearer", {"realm": ""})]),
    ("empty", "", []),
    ("none", None, []),
    ("only-commas", " , , ", []),
]


@pytest.mark.parametrize(("header", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_challenges(header, expected):
    assert [(c.scheme, c.params) for c in parse_challenges(header)] == expected


GARBAGE = [
    ("quotes", '"""'),
    ("equals", "=,=,="),
    ("unterminated-quote", 'Bearer realm="https://a/t'),
    ("unquoted-url", "Bearer realm=https://a/t,service=reg"),
    ("token68", "Negotiate YIIB4wYGKwYBBQUCoIIB1zCCAdOgGDAW=="),
    ("control-chars", "Bearer \x00\x01realm=\"x\""),
    ("non-ascii", "Bearer realm=\"\u00e9\u4e2d\""),
    ("huge", "Bearer " + "a=b," * 10000),
    ("backslash-at-end", 'Bearer realm="abc\\'),
]


@pytest.mark.parametrize("header", [g[1] for g in GARBAGE], ids=[g[0] for g in GARBAGE])
def test_garbage_never_raises(header):
    challenges = parse_challenges(header)
    assert isinstance(challenges, list)
    assert all(isinstance(c, Challenge) for c in challenges)


def test_unquoted_url_realm_is_not_taken():
    # RFC 7235: an unquoted value is a token, and '/' and ':' are not token characters.
    [challenge] = parse_challenges("Bearer realm=https://a/t")
    assert challenge.scheme == "bearer"
    assert challenge.realm is None


def test_non_ascii_inside_quotes_is_kept():
    [challenge] = parse_challenges('Basic realm="caf\u00e9"')
    assert challenge.realm == "caf\u00e9"


def test_realm_property():
    [bearer] = parse_challenges(HUB)
    assert bearer.realm == "https://auth.docker.io/token"
    assert Challenge("basic").realm is None


def test_overlong_header_is_cut_not_raised():
    header = 'Bearer realm="r",' + "x" * 20000 + '="y"'
    challenges = parse_challenges(header)
    assert (challenges[0].scheme, challenges[0].realm) == ("bearer", "r")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200),
                 st.lists(st.sampled_from(['Bearer', 'Basic', ' ', ',', '=', '"', '\\', 'realm', 'x', '"a,b"']),
                          max_size=20).map("".join)))
def test_parse_challenges_never_raises(header):
    for challenge in parse_challenges(header):
        assert challenge.scheme == challenge.scheme.lower()
        assert all(isinstance(v, str) for v in challenge.params.values())
