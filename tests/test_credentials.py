"""Credentials from a docker config.json: auths entries, credHelpers, credsStore.

Credential helpers are tiny shell scripts on a temporary PATH speaking the docker
credential helper protocol (`get`, server URL on stdin, JSON on stdout).
"""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from importcore.auth.credentials import Credential, load_credential
from importcore.values.errors import AuthError, UsageError

SECRET = "s3cret-p@ss:with:colons"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def config(tmp_path):
    """`config(obj)` writes a config.json and returns its path."""
    def write(obj) -> Path:
        path = tmp_path / "config.json"
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
        return path
    return write


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """`helper(name, stdout, exit_code=0)` puts docker-credential-<name> on PATH; the server it was
    asked about is written to tmp_path/<name>.asked."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}")

    def make(name: str, stdout: str, exit_code: int = 0) -> Path:
        (tmp_path / f"{name}.out").write_text(stdout)
        script = bindir / f"docker-credential-{name}"
        script.write_text(
            "#!/bin/sh\n"
            f'[ "$1" = get ] || exit 3\n'
            f'cat > "{tmp_path}/{name}.asked"\n'
            f'cat "{tmp_path}/{name}.out"\n'
            f"exit {exit_code}\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return tmp_path / f"{name}.asked"
    return make


# ---------------------------------------------------------------- auths entries

ENTRIES = [
    # id, auths, registry, expected
    ("auth-base64", {"r.example.com": {"auth": b64("alice:pw")}}, "r.example.com", Credential("alice", "pw")),
    ("auth-password-with-colons", {"r.example.com": {"auth": b64(f"alice:{SECRET}")}}, "r.example.com",
     Credential("alice", SECRET)),
    ("username-password-fields", {"r.example.com": {"username": "bob", "password": "pw"}}, "r.example.com",
     Credential("bob", "pw")),
    ("auth-wins-over-fields", {"r.example.com": {"auth": b64("alice:a"), "username": "bob", "password": "b"}},
     "r.example.com", Credential("alice", "a")),
    ("identitytoken", {"r.example.com": {"identitytoken": "refresh-tok"}}, "r.example.com",
     Credential(None, "refresh-tok")),
    ("acr-login-style", {"myacr.azurecr.io": {"auth": b64("00000000-0000-0000-0000-000000000000:"),
                                              "identitytoken": "refresh-tok"}}, "myacr.azurecr.io",
     Credential(None, "refresh-tok")),
    ("registrytoken", {"r.example.com": {"registrytoken": "bearer-tok"}}, "r.example.com",
     Credential(registry_token="bearer-tok")),
    ("hub-v1-url-key", {"https://index.docker.io/v1/": {"auth": b64("hubuser:pw")}}, "docker.io",
     Credential("hubuser", "pw")),
    ("hub-index-key", {"index.docker.io": {"auth": b64("hubuser:pw")}}, "docker.io", Credential("hubuser", "pw")),
    ("hub-docker-io-key", {"docker.io": {"auth": b64("hubuser:pw")}}, "docker.io", Credential("hubuser", "pw")),
    ("hub-registry-1-key", {"https://registry-1.docker.io": {"auth": b64("hubuser:pw")}}, "docker.io",
     Credential("hubuser", "pw")),
    ("host-port-key", {"localhost:5000": {"auth": b64("u:p")}}, "localhost:5000", Credential("u", "p")),
    ("https-prefixed-key", {"https://r.example.com": {"auth": b64("u:p")}}, "r.example.com", Credential("u", "p")),
    ("https-key-with-path", {"https://r.example.com/v2/": {"auth": b64("u:p")}}, "r.example.com",
     Credential("u", "p")),
    ("http-prefixed-port-key", {"http://localhost:5000": {"auth": b64("u:p")}}, "localhost:5000",
     Credential("u", "p")),
    ("key-case", {"R.Example.COM": {"auth": b64("u:p")}}, "r.example.com", Credential("u", "p")),
    ("empty-entry-then-good-entry", {"r.example.com": {}, "https://r.example.com": {"auth": b64("u:p")}},
     "r.example.com", Credential("u", "p")),
    ("other-registries-ignored", {"a.example.com": {"auth": b64("a:a")}, "b.example.com": {"auth": b64("b:b")}},
     "b.example.com", Credential("b", "b")),
    ("auth-without-colon", {"r.example.com": {"auth": b64("justuser")}}, "r.example.com", Credential("justuser")),
    # nothing usable
    ("no-entry", {"a.example.com": {"auth": b64("u:p")}}, "r.example.com", None),
    ("port-must-match", {"localhost:5000": {"auth": b64("u:p")}}, "localhost:5001", None),
    ("bare-host-is-not-host-port", {"localhost": {"auth": b64("u:p")}}, "localhost:5000", None),
    ("hub-key-not-for-others", {"https://index.docker.io/v1/": {"auth": b64("u:p")}}, "ghcr.io", None),
    ("empty-entry", {"r.example.com": {}}, "r.example.com", None),
    ("empty-auth", {"r.example.com": {"auth": ""}}, "r.example.com", None),
    ("entry-not-object", {"r.example.com": "u:p"}, "r.example.com", None),
]


@pytest.mark.parametrize(("auths", "registry", "expected"), [e[1:] for e in ENTRIES], ids=[e[0] for e in ENTRIES])
def test_auths_entries(config, auths, registry, expected):
    assert load_credential(config({"auths": auths}), registry) == expected


@pytest.mark.parametrize(
    "obj",
    [{}, {"auths": None}, {"auths": []}, {"credHelpers": []}, {"auths": {}, "credsStore": ""}],
    ids=["empty", "auths-null", "auths-list", "helpers-list", "empty-store"],
)
def test_config_without_credentials(config, obj):
    assert load_credential(config(obj), "r.example.com") is None


def test_missing_file_is_none(tmp_path):
    assert load_credential(tmp_path / "nope.json", "r.example.com") is None
    assert load_credential(tmp_path, "r.example.com") is None  # a directory


def test_identity_token_property():
    assert Credential(None, "tok").identity_token == "tok"
    assert Credential("u", "p").identity_token is None
    assert Credential(registry_token="t").identity_token is None


# ---------------------------------------------------------------- malformed files

MALFORMED = [
    # id, file text, words in the message
    ("not-json", '{"auths": {"r.example.com": {"auth": "' + b64("u:" + SECRET) + '"}}', "cannot read"),
    ("trailing-garbage", json.dumps({"auths": {}}) + " password=" + SECRET, "cannot read"),
    ("json-list", json.dumps([{"auth": SECRET}]), "not a JSON object"),
    ("json-string", json.dumps(SECRET), "not a JSON object"),
    ("auth-not-base64", json.dumps({"auths": {"r.example.com": {"auth": SECRET + "!!"}}}), "not base64"),
    ("auth-non-ascii", json.dumps({"auths": {"r.example.com": {"auth": "p\u00e4ss" + SECRET}}}), "not base64"),
    ("auth-not-utf8", json.dumps({"auths": {"r.example.com": {"auth": base64.b64encode(b"u:\xff\xfe").decode()}}}),
     "not base64"),
    ("auth-not-string", json.dumps({"auths": {"r.example.com": {"auth": 12345}}}), "not base64"),
]


@pytest.mark.parametrize(("text", "words"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_file_names_the_file_never_the_secret(config, text, words):
    path = config(text)
    with pytest.raises(UsageError) as info:
        load_credential(path, "r.example.com")
    message = str(info.value)
    assert words in message
    assert str(path) in message
    for secret in (SECRET, b64("u:" + SECRET), "p\u00e4ss"):
        assert secret not in message
    # no chained exception (a JSONDecodeError carries the text) would reach a traceback
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_not_utf8_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'{"auths": {"r": {"password": "\xff\xfe"}}}')
    with pytest.raises(UsageError, match="cannot read registry auth file .*config.json"):
        load_credential(path, "r")


# ---------------------------------------------------------------- credential helpers

def test_cred_helper(config, helper):
    asked = helper("fake", json.dumps({"ServerURL": "r.example.com", "Username": "u", "Secret": SECRET}))
    path = config({"credHelpers": {"r.example.com": "fake"}})
    assert load_credential(path, "r.example.com") == Credential("u", SECRET)
    assert asked.read_text() == "r.example.com"


def test_cred_helper_wins_over_auths(config, helper):
    helper("fake", json.dumps({"Username": "from-helper", "Secret": "h"}))
    path = config({"credHelpers": {"r.example.com": "fake"}, "auths": {"r.example.com": {"auth": b64("a:b")}}})
    assert load_credential(path, "r.example.com") == Credential("from-helper", "h")


def test_cred_helper_token_user_is_an_identity_token(config, helper):
    helper("fake", json.dumps({"Username": "<token>", "Secret": "refresh-tok"}))
    cred = load_credential(config({"credHelpers": {"myacr.azurecr.io": "fake"}}), "myacr.azurecr.io")
    assert cred == Credential(None, "refresh-tok")
    assert cred.identity_token == "refresh-tok"


def test_cred_helper_for_docker_hub_key(config, helper):
    asked = helper("fake", json.dumps({"Username": "hub", "Secret": "pw"}))
    path = config({"credHelpers": {"https://index.docker.io/v1/": "fake"}})
    assert load_credential(path, "docker.io") == Credential("hub", "pw")
    assert asked.read_text() == "https://index.docker.io/v1/"


def test_cred_helper_for_other_registry_not_asked(config, helper):
    asked = helper("fake", json.dumps({"Username": "u", "Secret": "p"}))
    assert load_credential(config({"credHelpers": {"a.example.com": "fake"}}), "r.example.com") is None
    assert not asked.exists()


HELPER_FAILURES = [
    # id, stdout, exit code, error, words
    ("not-found", "credentials not found in native keychain", 1, AuthError, "found no credentials"),
    ("not-json", "Username=u Secret=" + SECRET, 0, AuthError, "not JSON"),
    ("json-list", json.dumps(["u", SECRET]), 0, AuthError, "not an object"),
    ("json-string", json.dumps(SECRET), 0, AuthError, "not an object"),
]


@pytest.mark.parametrize(("stdout", "code", "error", "words"), [h[1:] for h in HELPER_FAILURES],
                         ids=[h[0] for h in HELPER_FAILURES])
def test_cred_helper_failures(config, helper, stdout, code, error, words):
    helper("fake", stdout, code)
    with pytest.raises(error) as info:
        load_credential(config({"credHelpers": {"r.example.com": "fake"}}), "r.example.com")
    assert words in str(info.value)
    assert "docker-credential-fake" in str(info.value)
    assert SECRET not in str(info.value)
    # No registry answered: the error shows no HTTP status rather than a made-up one.
    assert info.value.status is None and "status" not in info.value.to_dict()


def test_cred_helper_missing(config, helper):
    helper("fake", "{}")  # sets PATH; the named helper is another one
    with pytest.raises(AuthError, match="docker-credential-absent-zz could not be run"):
        load_credential(config({"credHelpers": {"r.example.com": "absent-zz"}}), "r.example.com")


@pytest.mark.parametrize("name", ["../../bin/sh", "a b", "x;rm", ""], ids=["path", "space", "semicolon", "empty"])
def test_cred_helper_name_is_checked(config, name):
    with pytest.raises(UsageError, match="invalid credential helper name"):
        load_credential(config({"credHelpers": {"r.example.com": name}}), "r.example.com")


def test_creds_store(config, helper):
    asked = helper("store", json.dumps({"Username": "s", "Secret": "p"}))
    assert load_credential(config({"credsStore": "store"}), "r.example.com") == Credential("s", "p")
    assert asked.read_text() == "r.example.com"


def test_creds_store_for_docker_hub_asks_the_v1_url(config, helper):
    asked = helper("store", json.dumps({"Username": "s", "Secret": "p"}))
    assert load_credential(config({"credsStore": "store"}), "docker.io") == Credential("s", "p")
    assert asked.read_text() == "https://index.docker.io/v1/"


def test_auths_entry_wins_over_creds_store(config, helper):
    asked = helper("store", json.dumps({"Username": "s", "Secret": "p"}))
    path = config({"credsStore": "store", "auths": {"r.example.com": {"auth": b64("a:b")}}})
    assert load_credential(path, "r.example.com") == Credential("a", "b")
    assert not asked.exists()


@pytest.mark.parametrize(("store", "code"), [("store", 1), ("absent-zz", 0)], ids=["no-credentials", "missing"])
def test_creds_store_without_answer_is_none(config, helper, store, code):
    helper("store", "credentials not found", code)
    assert load_credential(config({"credsStore": store}), "r.example.com") is None


# ---------------------------------------------------------------- repr

@pytest.mark.parametrize(
    "cred",
    [Credential("alice", SECRET), Credential(None, SECRET), Credential(registry_token=SECRET),
     Credential("alice", SECRET, SECRET)],
    ids=["user-password", "identity-token", "registry-token", "all"],
)
def test_repr_never_shows_a_secret(cred):
    for text in (repr(cred), str(cred), f"{cred}", f"{cred!r}", repr([cred]), repr({"c": cred})):
        assert SECRET not in text
    assert cred.secrets and all(s == SECRET for s in cred.secrets)


def test_repr_shows_the_username():
    assert repr(Credential("alice", "pw")) == "Credential(username='alice', password=***)"
    assert repr(Credential()) == "Credential(username=None, password=None)"
