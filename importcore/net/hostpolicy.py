"""Which hosts we may talk to, and over which scheme.

A source registry is a URL a caller chose: without this check it could point the importer at
the metadata service (169.254.169.254), the Azure wire server (168.63.129.16) or anything on
the VNet. The check runs on resolved addresses, and transport.py connects to the very address
that was checked, so DNS rebinding between check and connect does not help.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from ..values.errors import HostNotAllowed, TransportError

__all__ = ["HostPolicy", "blocked_reason", "split_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SPECIAL: tuple[tuple[str, str], ...] = (
    ("168.63.129.16/32", "the Azure platform address"),
    ("169.254.169.254/32", "the cloud metadata address"),
    ("100.64.0.0/10", "a carrier-grade NAT address"),
    ("0.0.0.0/8", "an unspecified address"),
)
_SPECIAL_NETS = tuple((ipaddress.ip_network(net), why) for net, why in _SPECIAL)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why this address is off limits for a user-chosen URL, or None if it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if mapped is not None:
            return blocked_reason(mapped)
    for net, why in _SPECIAL_NETS:
        if ip.version == net.version and ip in net:
            return why
    checks = (
        (ip.is_unspecified, "an unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (ip.version == 6 and ip.is_site_local, "a site-local address"),  # fec0::/10: deprecated, still private
        (not ip.is_global, "a non-public address"),
    )
    for hit, why in checks:
        if hit:
            return why
    return None


def split_host(hostport: str) -> tuple[str, int | None]:
    """'host:port' / '[v6]:port' / 'host' -> (host, port)."""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, int(port) if port.isdigit() else None
    return hostport, None


def _matches(entry: str, host: str, port: int | None) -> bool:
    """A list entry is host, host:port, or a CIDR (matched against literal addresses)."""
    if "/" in entry:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    e_host, e_port = split_host(entry)
    return e_host.lower() == host.lower() and (e_port is None or e_port == port)


@dataclass(frozen=True, slots=True)
class HostPolicy:
    plain_http: tuple[str, ...] = ()
    allowed_private: tuple[str, ...] = ()
    trusted: tuple[str, ...] = ()  # the operator's target registry: never second-guessed

    def scheme(self, registry: str) -> str:
        host, port = split_host(registry)
        return "http" if any(_matches(e, host, port) for e in self.plain_http) else "https"

    def _listed(self, host: str, port: int | None) -> bool:
        entries = self.allowed_private + self.trusted
        return any(_matches(e, host, port) for e in entries)

    def resolve(self, host: str, port: int) -> list[str]:
        """Addresses we may connect to for host:port, checked; raises HostNotAllowed."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise TransportError(f"cannot resolve host {host}: {exc.strerror or exc}") from None
        except UnicodeError as exc:  # a label IDNA cannot encode (too long, empty)
            raise TransportError(f"cannot resolve host {host}: {exc}") from None
        # An IP family's sockaddr starts with the address as text (other families' do not, and a
        # SOCK_STREAM lookup of a host name returns none of those).
        addresses = list(dict.fromkeys(info[4][0] for info in infos if isinstance(info[4][0], str)))
        if self._listed(host, port):
            return addresses
        allowed = []
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%")[0])
            why = blocked_reason(ip)
            if why is None or any(_matches(e, address, port) for e in self.allowed_private):
                allowed.append(address)
                continue
            # Name the exact entry to add: entries are port-specific, and "127.0.0.1" alone would
            # also admit every other service on that host (a realm or redirect to another port).
            entry = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise HostNotAllowed(
                f"host {host} resolves to {why} ({address}); add {entry} to IMPORT_ALLOWED_PRIVATE_HOSTS to allow it",
                target=host,
            )
        return allowed

    def check(self, registry: str) -> None:
        """Validation-time check of a registry host[:port] (connect time checks again)."""
        host, port = split_host(registry)
        self.resolve(host, port or (80 if self.scheme(registry) == "http" else 443))
