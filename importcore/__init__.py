"""importcore: copy container images and OCI artifacts between registries (the engine behind the app)."""

__version__ = "0.1.0"
