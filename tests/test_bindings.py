"""The bindings function_app.app declares, as the Functions host indexes them (app.get_functions())."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import function_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def functions() -> dict[str, dict]:
    app = function_app.app
    # get_functions() remembers the names it indexed and rejects them on a second call; devhost clears
    # that memory the same way before indexing, so this works whichever ran first.
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = None
    indexed = {f.get_function_name(): f for f in app.get_functions()}
    app.functions_bindings = None
    return {name: {"json": json.loads(f.get_function_json()), "func": f.get_user_function()}
            for name, f in indexed.items()}


def trigger(fn: dict) -> dict:
    [found] = [b for b in fn["json"]["bindings"] if b["type"].endswith("Trigger")]
    return found


def test_exactly_the_declared_functions(functions):
    assert set(functions) == {"submit_import", "get_import", "run_import", "poisoned_import", "sweep_imports",
                              "eventgrid_events", "registry_webhook", "sync_mirrors", "list_syncs", "run_sync",
                              "arm_import_image", "arm_operation"}
    for name, fn in functions.items():
        assert (fn["func"].__module__, fn["func"].__name__) == ("function_app", name)
        assert fn["json"]["scriptFile"] == "function_app.py"


@pytest.mark.parametrize(("name", "route", "methods", "level"), [
    ("eventgrid_events", "events", ["POST", "OPTIONS"], "ANONYMOUS"),
    ("registry_webhook", "webhooks/{provider}/{token?}", ["POST"], "ANONYMOUS")])
def test_event_routes_authenticate_by_their_own_secrets(functions, name, route, methods, level):
    t = trigger(functions[name])
    assert (t["type"], t["route"], t["methods"], t["authLevel"]) == ("httpTrigger", route, methods, level)


ARM_REGISTRY = ("subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}"
                "/providers/Microsoft.ContainerRegistry/registries/{registryName}")


@pytest.mark.parametrize(("name", "route", "methods"), [
    ("arm_import_image", ARM_REGISTRY + "/importImage", ["POST"]),
    ("arm_operation", ARM_REGISTRY + "/{operationKind}/{operationId}", ["GET"])])
def test_arm_routes_take_a_bearer_token_not_a_function_key(functions, name, route, methods):
    """ARM's own paths (an SDK with base_url=<app>/api appends them), anonymous to the host: an ARM
    client sends no function key; App Service Authentication vouches for the caller (service/armapi.py)."""
    t = trigger(functions[name])
    assert (t["type"], t["route"], t["methods"], t["authLevel"]) == ("httpTrigger", route, methods, "ANONYMOUS")


@pytest.mark.parametrize(("name", "route", "methods"), [("submit_import", "imports", ["POST"]),
                                                        ("get_import", "imports/{id}", ["GET"]),
                                                        ("list_syncs", "syncs", ["GET"]),
                                                        ("run_sync", "syncs/{rule}", ["POST"])])
def test_http_routes(functions, name, route, methods):
    t = trigger(functions[name])
    assert (t["type"], t["route"], t["methods"], t["authLevel"]) == ("httpTrigger", route, methods, "FUNCTION")
    [out] = [b for b in functions[name]["json"]["bindings"] if b["direction"] == "OUT"]
    assert (out["type"], out["name"]) == ("http", "$return")


@pytest.mark.parametrize(("name", "queue"), [("run_import", "%IMPORT_QUEUE%"),
                                             ("poisoned_import", "%IMPORT_QUEUE%-poison")])
def test_queue_triggers(functions, name, queue):
    t = trigger(functions[name])
    assert (t["type"], t["queueName"], t["connection"], t["direction"]) == (
        "queueTrigger", queue, "AzureWebJobsStorage", "IN")
    assert len(functions[name]["json"]["bindings"]) == 1  # no output bindings: the service enqueues itself


@pytest.mark.parametrize(("name", "schedule"), [("sweep_imports", "%IMPORT_TIMER_SCHEDULE%"),
                                                ("sync_mirrors", "%IMPORT_SYNC_TIMER_SCHEDULE%")])
def test_timer_trigger(functions, name, schedule):
    t = trigger(functions[name])
    assert (t["type"], t["schedule"], t["runOnStartup"], t["useMonitor"]) == (
        "timerTrigger", schedule, False, False)


def test_host_json_matches_the_app():
    # host.json allows // comments (the host strips them); this one is plain JSON.
    host = json.loads((ROOT / "host.json").read_text())
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] == function_app.MAX_DEQUEUE
    assert queues["messageEncoding"] == "base64"  # the service sends base64 messages
    assert host["extensions"]["http"]["routePrefix"] == "api"  # Location headers say /api/imports/{id}


def test_every_binding_setting_is_documented(functions):
    values = json.loads((ROOT / "local.settings.json.example").read_text())["Values"]
    used = {m for fn in functions.values() for m in re.findall(r"%([^%]+)%", json.dumps(fn["json"]))}
    used |= {trigger(fn).get("connection") for fn in functions.values()} - {None}
    assert used == {"IMPORT_QUEUE", "IMPORT_TIMER_SCHEDULE", "IMPORT_SYNC_TIMER_SCHEDULE", "AzureWebJobsStorage"}
    assert used <= set(values)
