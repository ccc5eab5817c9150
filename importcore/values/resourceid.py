"""An Azure resource ID of a container registry, checked part by part (a value: no Azure call)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UsageError

__all__ = ["RegistryResourceId", "parse_resource_id"]

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII | re.IGNORECASE)
# Resource group names: 1-90 of letters, digits, _ - . ( ), not ending in a period (ARM naming rules).
_GROUP = re.compile(r"[\w.()-]{0,89}[\w()-]", re.ASCII)
_REGISTRY = re.compile(r"[A-Za-z0-9]{5,50}", re.ASCII)
_SHAPE = "/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ContainerRegistry/registries/<name>"


@dataclass(frozen=True, slots=True)
class RegistryResourceId:
    subscription: str
    resource_group: str
    name: str

    def __str__(self) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.ContainerRegistry/registries/{self.name}")


def parse_resource_id(text: str, *, target: str = "source.resourceId") -> RegistryResourceId:
    """Check the shape of a registry's resource ID; errors say which part is wrong."""
    def bad(why: str) -> UsageError:
        return UsageError(f"invalid registry resource ID {text!r}: {why}", target=target)

    if not isinstance(text, str) or not text.strip():
        raise UsageError("the registry resource ID is empty", target=target)
    if not text.isascii() or any(c.isspace() for c in text.strip()):
        raise bad("it must be ASCII without spaces")
    parts = text.strip().rstrip("/").split("/")
    # ARM compares the fixed segments case-insensitively; so do we.
    labels = {1: "subscriptions", 3: "resourcegroups", 5: "providers"}
    if parts[0] != "" or any(len(parts) > i and parts[i].lower() != label for i, label in labels.items()):
        raise bad(f"it must look like {_SHAPE}")
    if len(parts) > 7 and f"{parts[6]}/{parts[7]}".lower() != "microsoft.containerregistry/registries":
        raise bad(f"it names a {parts[6]}/{parts[7]} resource, not a container registry "
                  "(Microsoft.ContainerRegistry/registries)")
    if len(parts) < 9 or not all(parts[1:9]):
        raise bad(f"it is incomplete; expected {_SHAPE}")
    if len(parts) > 9:
        raise bad(f"it points below a registry (.../{'/'.join(parts[9:])}); give the registry's own ID")
    subscription, group, name = parts[2], parts[4], parts[8]
    if not _GUID.fullmatch(subscription):
        raise bad(f"the subscription id {subscription!r} is not a GUID")
    if not _GROUP.fullmatch(group):
        raise bad(f"the resource group {group!r} is not a valid name (1-90 letters, digits, _-.() "
                  "not ending in '.')")
    if not _REGISTRY.fullmatch(name):
        raise bad(f"the registry name {name!r} must be 5-50 letters and digits")
    return RegistryResourceId(subscription.lower(), group, name)
