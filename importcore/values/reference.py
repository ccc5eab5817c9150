"""Image references, parsed once at the edge into frozen values.

Grammar: github.com/distribution/reference (reference.go / regexp.go); Docker Hub
normalisation as in its normalize.go: `hello-world` -> `docker.io/library/hello-world`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

__all__ = ["DOCKER_HUB", "Reference", "TargetSpec", "api_host", "parse_digest", "parse_registry", "parse_target"]

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*", re.ASCII)
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::(?P<port>[0-9]{{1,5}}))?", re.ASCII
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}", re.ASCII)
_MAX_NAME = 255


def api_host(registry: str) -> str:
    """Where the registry's API is spoken (Docker Hub's is not docker.io itself)."""
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def parse_digest(value: object, *, what: str = "digest") -> str:
    """Validate `algorithm:hex` (of any input: JSON hands us anything) before it is used in a URL or a hash."""
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise UsageError(f"invalid {what} {_show(value)}: expected sha256: followed by 64 lowercase hex digits")
    return value


def parse_registry(value: str) -> str:
    """A registry host[:port]; a bare name without a dot is an ACR name (`myacr` -> myacr.azurecr.io)."""
    host = value.strip().lower()
    for prefix in ("https://", "http://"):
        if host.startswith(prefix):
            host = host[len(prefix):]
    host = host.rstrip("/")
    if not _valid_host(host):
        raise UsageError(f"invalid registry {_show(value)}: {_HOST_RULE}")
    if "." not in host and ":" not in host and host != "localhost":
        host = f"{host}.azurecr.io"  # az acr import --name takes the registry's short name
    return _canonical_registry(host)


_HOST_RULE = "expected a host name with an optional :port (1-65535)"


def _valid_host(host: str) -> bool:
    # The grammar allows any digits after ':'; a port outside 1-65535 can only fail later, less clearly.
    m = _DOMAIN.fullmatch(host)
    return m is not None and (m.group("port") is None or 0 < int(m.group("port")) <= 65535)


def _canonical_registry(host: str) -> str:
    return DOCKER_HUB if host in _HUB_ALIASES else host


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "...'"


def _split_domain(name: str) -> tuple[str | None, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return None, name


@dataclass(frozen=True, slots=True)
class Reference:
    """registry + repository + optional tag + optional digest (the digest wins when both are set)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str, *, default_registry: str | None = DOCKER_HUB) -> Reference:
        if not isinstance(text, str) or not text:
            raise UsageError("invalid reference: it is empty")
        if not text.isascii() or any(c.isspace() for c in text):
            raise UsageError(f"invalid reference {_show(text)}: only printable ASCII without spaces is allowed")
        rest, at, digest = text.partition("@")
        if at:  # `name@` with nothing after it is not `name`
            try:
                parse_digest(digest)
            except UsageError as exc:
                raise UsageError(f"{exc.message} (in reference {_show(text)})") from None
        name, tag = rest, None
        colon = rest.rfind(":")
        if colon > rest.rfind("/"):
            name, tag = rest[:colon], rest[colon + 1:]
            if not _TAG.fullmatch(tag):
                raise UsageError(
                    f"invalid tag {_show(tag)} in {_show(text)}: up to 128 of letters, digits, '_', '.', '-', "
                    "not starting with '.' or '-'"
                )
        domain, path = _split_domain(name)
        if domain is None:
            if default_registry is None:
                raise UsageError(f"invalid reference {_show(text)}: it must start with a registry host")
            domain = default_registry.lower()
        elif not _valid_host(domain):
            raise UsageError(f"invalid registry {_show(domain)} in {_show(text)}: {_HOST_RULE}")
        elif _split_domain(f"{domain.lower()}/_")[0] is not None:
            # Hosts are case-insensitive; but `Foo/bar` names host `Foo` only because of its case
            # (normalize.go), and lowercased it would read back as a Docker Hub path.
            domain = domain.lower()
        domain = _canonical_registry(domain)
        if domain == DOCKER_HUB and path and "/" not in path:
            path = f"library/{path}"
        _check_repository(path, text)
        return cls(domain, path, tag or None, digest or None)

    @property
    def api_host(self) -> str:
        return api_host(self.registry)

    @property
    def ref(self) -> str:
        """What to put after /manifests/: the digest if known, else the tag (default `latest`)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        out = f"{self.registry}/{self.repository}"
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def _check_repository(path: str, text: str) -> None:
    if not path:
        raise UsageError(f"invalid reference {_show(text)}: the repository is empty")
    if path != path.lower() and _REPOSITORY.fullmatch(path.lower()):
        raise UsageError(f"invalid repository {_show(path)}: repository names must be lowercase")
    if not _REPOSITORY.fullmatch(path):
        raise UsageError(
            f"invalid repository {_show(path)} in {_show(text)}: path components are lowercase letters and "
            "digits separated by '.', '_', '__' or '-', joined by '/'"
        )
    if len(path) > _MAX_NAME:
        raise UsageError(f"invalid repository in {_show(text)}: longer than {_MAX_NAME} characters")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One target in the target registry: a repository and a tag (None = untagged, by digest only)."""

    repository: str
    tag: str | None

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


def parse_target(text: str, *, default_tag: str | None, untagged: bool = False) -> TargetSpec:
    """`--image repo[:tag]` (tag defaults to the source's) or `--repository repo` (untagged)."""
    if not isinstance(text, str) or not text:
        raise UsageError("invalid target: it is empty")
    if "@" in text:
        raise UsageError(f"invalid target {_show(text)}: a target is repo[:tag], not a digest")
    if not text.isascii():
        raise UsageError(f"invalid target {_show(text)}: only ASCII is allowed")
    name, tag = text, None
    colon = text.rfind(":")
    if colon > text.rfind("/"):
        if untagged:
            raise UsageError(f"invalid repository {_show(text)}: an untagged target takes no tag")
        name, tag = text[:colon], text[colon + 1:]
        if not _TAG.fullmatch(tag):
            raise UsageError(f"invalid tag {_show(tag)} in target {_show(text)}")
    _check_repository(name, text)
    return TargetSpec(name, None if untagged else (tag or default_tag or "latest"))
