"""Which hosts a user-chosen source may name, and which are spoken to over plain http.

Every name resolved here is a numeric literal or `localhost`: getaddrinfo answers those
without a network.
"""
from __future__ import annotations

import ipaddress

import pytest

from importcore.values.errors import HostNotAllowed, TransportError
from importcore.net.hostpolicy import HostPolicy, blocked_reason, split_host

BLOCKED = [
    # address, words in the reason
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("169.254.169.254", "metadata"),
    ("169.254.1.1", "link-local"),
    ("168.63.129.16", "Azure platform"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("255.255.255.255", "address"),
    ("192.0.2.1", "address"),  # TEST-NET-1
    ("198.18.0.1", "address"),  # benchmarking
    ("240.0.0.1", "address"),  # reserved
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%1", "link-local"),
    ("ff02::1", "multicast"),
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("fec0::1", "site-local"),
    ("2001:db8::1", "address"),  # documentation
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.1.2.3", "private"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:168.63.129.16", "Azure platform"),
    ("2002:7f00:1::1", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:0a00:0001::1", "private"),  # 6to4 of 10.0.0.1
    ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "address"),  # Teredo
    ("::127.0.0.1", "address"),  # IPv4-compatible (deprecated)
    ("64:ff9b::a9fe:a9fe", "address"),  # NAT64 of the metadata address
]


@pytest.mark.parametrize(("address", "words"), BLOCKED, ids=[b[0] for b in BLOCKED])
def test_blocked_reason(address, words):
    why = blocked_reason(ipaddress.ip_address(address))
    assert why is not None
    assert words in why


PUBLIC = ["20.0.0.1", "8.8.8.8", "1.1.1.1", "172.32.0.1", "100.128.0.1", "169.253.255.255", "13.107.42.14",
          "2606:4700::1", "2001:4860:4860::8888", "::ffff:20.0.0.1", "2002:1400:1::1"]


@pytest.mark.parametrize("address", PUBLIC, ids=PUBLIC)
def test_public_addresses_pass(address):
    assert blocked_reason(ipaddress.ip_address(address)) is None


# ---------------------------------------------------------------- resolve

TRICKS = [
    # host as typed; each resolves to loopback or unspecified
    ("2130706433", "127.0.0.1"),  # decimal
    ("0x7f.1", "127.0.0.1"),  # hex + short form
    ("0x7f000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),  # octal
    ("0177.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),  # short form
    ("127.0.0.1", "127.0.0.1"),
    ("localhost", None),
    ("::1", "::1"),
    ("0", "0.0.0.0"),
    ("::ffff:127.0.0.1", None),
]


@pytest.mark.parametrize(("host", "address"), TRICKS, ids=[t[0] for t in TRICKS])
def test_resolve_refuses_numeric_tricks(host, address):
    with pytest.raises(HostNotAllowed) as info:
        HostPolicy().resolve(host, 443)
    message = str(info.value)
    assert f"host {host} resolves to" in message
    assert "IMPORT_ALLOWED_PRIVATE_HOSTS" in message
    if address:
        assert f"({address})" in message
    assert info.value.target == host
    assert info.value.code == "HostNotAllowed"


def test_resolve_public_literal():
    assert HostPolicy().resolve("20.0.0.1", 443) == ["20.0.0.1"]
    assert HostPolicy().resolve("2606:4700::1", 443) == ["2606:4700::1"]


def test_resolve_unresolvable_is_a_transport_error():
    with pytest.raises(TransportError, match="cannot resolve host"):
        HostPolicy().resolve("no-such-host.invalid", 443)


def test_a_name_idna_cannot_encode_is_a_transport_error_too():
    """A label of more than 63 characters fails in the IDNA codec (UnicodeError), before any lookup."""
    with pytest.raises(TransportError, match="cannot resolve host .*label empty or too long"):
        HostPolicy().resolve("a" * 64 + ".example", 443)


ALLOWED = [
    # id, policy, host, port
    ("host-any-port", HostPolicy(allowed_private=("localhost",)), "localhost", 5000),
    ("host-case", HostPolicy(allowed_private=("LocalHost",)), "localhost", 5000),
    ("host-port-exact", HostPolicy(allowed_private=("localhost:5000",)), "localhost", 5000),
    ("ip", HostPolicy(allowed_private=("127.0.0.1",)), "127.0.0.1", 443),
    ("ip-port", HostPolicy(allowed_private=("127.0.0.1:5000",)), "127.0.0.1", 5000),
    ("v6-bracket-port", HostPolicy(allowed_private=("[::1]:5000",)), "::1", 5000),
    ("v6-bare", HostPolicy(allowed_private=("::1",)), "::1", 443),
    ("cidr", HostPolicy(allowed_private=("127.0.0.0/8",)), "127.0.0.1", 443),
    ("cidr-for-resolved-name", HostPolicy(allowed_private=("127.0.0.0/8",)), "127.1", 443),
    ("cidr-non-strict", HostPolicy(allowed_private=("127.0.0.1/8",)), "127.0.0.1", 443),
    ("cidr-v6", HostPolicy(allowed_private=("::1/128",)), "::1", 443),
    ("trusted", HostPolicy(trusted=("localhost:5000",)), "localhost", 5000),
    ("trusted-host", HostPolicy(trusted=("127.0.0.1",)), "127.0.0.1", 8443),
    # an address entry covers any name that resolves to it (the check runs on addresses)
    ("ip-entry-covers-resolved-name", HostPolicy(allowed_private=("127.0.0.1",)), "2130706433", 443),
    ("one-of-many", HostPolicy(allowed_private=("10.0.0.0/8", "localhost:6000", "127.0.0.1")), "127.0.0.1", 80),
]


@pytest.mark.parametrize(("policy", "host", "port"), [a[1:] for a in ALLOWED], ids=[a[0] for a in ALLOWED])
def test_allow_list_admits(policy, host, port):
    addresses = policy.resolve(host, port)
    assert addresses
    assert all(blocked_reason(ipaddress.ip_address(a)) for a in addresses)  # private, and still allowed


NOT_ALLOWED = [
    ("other-port", HostPolicy(allowed_private=("localhost:5000",)), "localhost", 5001),
    ("other-host", HostPolicy(allowed_private=("myregistry.local",)), "127.0.0.1", 443),
    ("other-cidr", HostPolicy(allowed_private=("10.0.0.0/8",)), "127.0.0.1", 443),
    ("bad-cidr-ignored", HostPolicy(allowed_private=("not/a-cidr",)), "127.0.0.1", 443),
    ("trusted-other-port", HostPolicy(trusted=("localhost:5000",)), "localhost", 5001),
    ("plain-http-is-not-an-allow", HostPolicy(plain_http=("localhost",)), "localhost", 5000),
]


@pytest.mark.parametrize(("policy", "host", "port"), [n[1:] for n in NOT_ALLOWED], ids=[n[0] for n in NOT_ALLOWED])
def test_allow_list_refuses_others(policy, host, port):
    with pytest.raises(HostNotAllowed):
        policy.resolve(host, port)


@pytest.mark.parametrize(
    ("policy", "registry"),
    [(HostPolicy(allowed_private=("localhost",)), "localhost:5000"),
     (HostPolicy(allowed_private=("localhost:8080",), plain_http=("localhost:8080",)), "localhost:8080"),
     (HostPolicy(), "20.0.0.1"), (HostPolicy(trusted=("[::1]:5000",)), "[::1]:5000")],
    ids=["allowed", "plain-http-port-80-default-not-used", "public", "v6-trusted"],
)
def test_check_passes(policy, registry):
    policy.check(registry)


def test_check_uses_the_scheme_default_port():
    # http default port 80, https 443: an entry with a port only covers that port
    HostPolicy(allowed_private=("localhost:80",), plain_http=("localhost",)).check("localhost")
    with pytest.raises(HostNotAllowed):
        HostPolicy(allowed_private=("localhost:80",)).check("localhost")
    HostPolicy(allowed_private=("localhost:443",)).check("localhost")


@pytest.mark.parametrize("registry", ["localhost:5000", "127.0.0.1", "[::1]:5000", "0x7f.1", "169.254.169.254"],
                         ids=["localhost", "loopback", "v6", "hex", "metadata"])
def test_check_refuses(registry):
    with pytest.raises(HostNotAllowed):
        HostPolicy().check(registry)


# ---------------------------------------------------------------- scheme and split_host

SCHEMES = [
    # id, plain_http, registry, scheme
    ("default-https", (), "localhost:5000", "https"),
    ("bare-host-any-port", ("localhost",), "localhost:5000", "http"),
    ("bare-host-no-port", ("localhost",), "localhost", "http"),
    ("host-port-exact", ("localhost:5000",), "localhost:5000", "http"),
    ("host-port-other-port", ("localhost:5000",), "localhost:5001", "https"),
    ("host-port-no-port", ("localhost:5000",), "localhost", "https"),
    ("other-host", ("registry.local",), "localhost:5000", "https"),
    ("case", ("Registry.Local:5000",), "registry.local:5000", "http"),
    ("v6", ("[::1]:5000",), "[::1]:5000", "http"),
    ("v6-bare-entry", ("::1",), "[::1]:5000", "http"),
    ("cidr", ("127.0.0.0/8",), "127.0.0.1:5000", "http"),
    ("cidr-does-not-match-names", ("127.0.0.0/8",), "localhost:5000", "https"),
    ("suffix-is-not-a-match", ("host",), "myhost:5000", "https"),
]


@pytest.mark.parametrize(("plain_http", "registry", "scheme"), [s[1:] for s in SCHEMES], ids=[s[0] for s in SCHEMES])
def test_scheme(plain_http, registry, scheme):
    assert HostPolicy(plain_http=plain_http).scheme(registry) == scheme


SPLITS = [
    ("host", ("host", None)),
    ("host:5000", ("host", 5000)),
    ("10.0.0.1:443", ("10.0.0.1", 443)),
    ("[::1]", ("::1", None)),
    ("[::1]:5000", ("::1", 5000)),
    ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
    ("::1", ("::1", None)),
    ("2001:db8::1", ("2001:db8::1", None)),
    ("host:", ("host", None)),
    ("host:http", ("host", None)),
    ("[::1]:x", ("::1", None)),
]


@pytest.mark.parametrize(("hostport", "expected"), SPLITS, ids=[s[0] for s in SPLITS])
def test_split_host(hostport, expected):
    assert split_host(hostport) == expected
