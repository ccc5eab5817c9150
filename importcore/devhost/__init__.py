"""A local stand-in for the Azure Functions host, since Core Tools cannot be installed here.

It runs a FunctionApp's registered functions (HTTP routes, queue triggers with host.json's batch,
visibility and poison rules, NCRONTAB timers) against Azure Storage or Azurite. Like the CLI it is a
shell around importcore, so it may import azure.functions; the rest of importcore must not.
"""
from .cli import run, serve
from .host import DevHost

__all__ = ["DevHost", "run", "serve"]
