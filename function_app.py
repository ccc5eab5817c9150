"""The Azure Functions app (Python v2 model): thin handlers over importcore.service.

Each handler decodes its input, calls the service, encodes the result. The queue and the timer
schedules are bound to Settings' values (IMPORT_QUEUE, IMPORT_TIMER_SCHEDULE, IMPORT_SYNC_TIMER_SCHEDULE,
each with a default), not to %SETTING% expressions: the worker indexes this module with the app
settings in its environment, so the defaults README.md documents hold for the host exactly as for
the service.
"""

from __future__ import annotations

import json
import logging
from functools import cache

import azure.functions as func

from importcore.observe import telemetry
from importcore.service import ImportService, Reply
from importcore.values.settings import Settings

SETTINGS = Settings.from_env()  # what the bindings below are indexed with
telemetry.configure(SETTINGS.applicationinsights_connection_string)  # Azure Monitor only when it is set
telemetry.install_job_filter()  # every log line of an import names its job
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
MAX_DEQUEUE = 5  # keep equal to host.json extensions.queues.maxDequeueCount


@cache
def service() -> ImportService:
    """The service, built on first use from the settings then: a local host exports its own (the
    local-host marker among them) only when it starts, after it indexed this module."""
    return ImportService(Settings.from_env())


def _http(reply: Reply) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(reply.body), status_code=reply.status, headers=dict(reply.headers),
                             mimetype="application/json")


@app.route(route="imports", methods=["POST"])
def submit_import(req: func.HttpRequest) -> func.HttpResponse:
    return _http(service().submit(req.get_body()))


@app.route(route="imports/{id}", methods=["GET"])
def get_import(req: func.HttpRequest) -> func.HttpResponse:
    return _http(service().status(req.route_params.get("id", "")))


@app.queue_trigger(arg_name="msg", queue_name=SETTINGS.queue_name, connection="AzureWebJobsStorage")
def run_import(msg: func.QueueMessage) -> None:
    outcome = service().process_message(msg.get_body().decode("utf-8", "replace"),
                                        dequeue_count=msg.dequeue_count or 1, max_dequeue=MAX_DEQUEUE)
    logging.info("import message %s: %s", msg.id, outcome)


@app.queue_trigger(arg_name="msg", queue_name=f"{SETTINGS.queue_name}-poison", connection="AzureWebJobsStorage")
def poisoned_import(msg: func.QueueMessage) -> None:
    service().poisoned(msg.get_body().decode("utf-8", "replace"))


@app.timer_trigger(arg_name="timer", schedule=SETTINGS.timer_schedule, run_on_startup=False, use_monitor=False)
def sweep_imports(timer: func.TimerRequest) -> None:
    service().sweep()


# Scheduled sync (docs/sync.md): the timer only enqueues imports of what changed upstream; the
# queue trigger above copies them. Each rule runs on its own schedule; this timer is how often that
# is looked at.
@app.timer_trigger(arg_name="timer", schedule=SETTINGS.sync_timer_schedule, run_on_startup=False,
                   use_monitor=False)
def sync_mirrors(timer: func.TimerRequest) -> None:
    service().syncs.tick()


@app.route(route="syncs", methods=["GET"])
def list_syncs(req: func.HttpRequest) -> func.HttpResponse:
    return _http(service().syncs.list())


@app.route(route="syncs/{rule}", methods=["POST"])
def run_sync(req: func.HttpRequest) -> func.HttpResponse:
    return _http(service().syncs.run_now(req.route_params.get("rule", "")))


# Events and webhooks carry their own authenticity (a secret or a signature per sender, checked in
# importcore.triggers), so they need no function key: registries cannot always add one.
@app.route(route="events", methods=["POST", "OPTIONS"], auth_level=func.AuthLevel.ANONYMOUS)
def eventgrid_events(req: func.HttpRequest) -> func.HttpResponse:
    intake = service().intake
    if req.method == "OPTIONS":
        return _http(intake.handshake(dict(req.headers), dict(req.params)))
    return _http(intake.eventgrid(req.get_body(), dict(req.headers), dict(req.params)))


@app.route(route="webhooks/{provider}/{token?}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def registry_webhook(req: func.HttpRequest) -> func.HttpResponse:
    return _http(service().intake.webhook(req.route_params.get("provider", ""), req.get_body(), dict(req.headers),
                                          dict(req.params), req.route_params.get("token")))


# ACR's ImportImage as ARM serves it, for Azure SDKs pointed here (base_url="https://<app>/api"). An ARM
# client sends an Entra ID bearer token, not a function key: App Service Authentication checks it and
# the service refuses any caller it did not authenticate (importcore/service/armapi.py).
ARM_REGISTRY = ("subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
                "/providers/Microsoft.ContainerRegistry/registries/{registryName}")


@app.route(route=ARM_REGISTRY + "/importImage", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def arm_import_image(req: func.HttpRequest) -> func.HttpResponse:
    return _http(service().arm.import_image(req.url, dict(req.route_params), dict(req.params), dict(req.headers),
                                            req.get_body()))


@app.route(route=ARM_REGISTRY + "/{operationKind}/{operationId}", methods=["GET"],
           auth_level=func.AuthLevel.ANONYMOUS)
def arm_operation(req: func.HttpRequest) -> func.HttpResponse:
    return _http(service().arm.operation(req.url, dict(req.route_params), dict(req.params), dict(req.headers)))
