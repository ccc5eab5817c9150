"""Test infrastructure: real registries, a token server, content pushers and skopeo wrappers.

Everything here talks plain HTTP to processes on free 127.0.0.1 ports; nothing uses the
product code (importcore), so the tests can trust it as an independent reference.
"""
