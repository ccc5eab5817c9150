"""importcore: copy container images and OCI artifacts between registries (the engine behind the app)."""

from .values.version import __version__

__all__ = ["__version__"]
