"""The bindings function_app.app declares, as the Functions host indexes them (app.get_functions())."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import function_app
from importcore.values.settings import Settings
from tests.support.functionapp import index_function_app
from tests.test_settings_consistency import readme_settings

ROOT = Path(__file__).resolve().parent.parent


BOUND_SETTINGS = ("IMPORT_QUEUE", "IMPORT_TIMER_SCHEDULE", "IMPORT_SYNC_TIMER_SCHEDULE")


def indexed(env: dict[str, str]) -> dict[str, dict]:
    """function_app's functions as the worker indexes them with these app settings (the others unset)."""
    app = index_function_app(env, unset=[s for s in BOUND_SETTINGS if s not in env]).app
    # get_functions() remembers the names it indexed and rejects them on a second call; devhost clears
    # that memory the same way before indexing, so this works whichever ran first.
    if getattr(app, "functions_bindings", None):
        app.functions_bindings = None
    found = {f.get_function_name(): f for f in app.get_functions()}
    app.functions_bindings = None
    return {name: {"json": json.loads(f.get_function_json()), "func": f.get_user_function()}
            for name, f in found.items()}


@pytest.fixture(scope="module")
def functions() -> dict[str, dict]:
    """Indexed with none of the settings the bindings use: their documented defaults apply."""
    return indexed({})


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


@pytest.mark.parametrize(("name", "queue"), [("run_import", "imports"), ("poisoned_import", "imports-poison")])
def test_queue_triggers(functions, name, queue):
    t = trigger(functions[name])
    assert (t["type"], t["queueName"], t["connection"], t["direction"]) == (
        "queueTrigger", queue, "AzureWebJobsStorage", "IN")
    assert len(functions[name]["json"]["bindings"]) == 1  # no output bindings: the service enqueues itself


@pytest.mark.parametrize("name", ["sweep_imports", "sync_mirrors"])
def test_timer_trigger(functions, name):
    t = trigger(functions[name])
    assert (t["type"], t["schedule"], t["runOnStartup"], t["useMonitor"]) == (
        "timerTrigger", "0 */1 * * * *", False, False)


def test_the_bindings_follow_the_settings():
    custom = indexed({"IMPORT_QUEUE": "jobs-x", "IMPORT_TIMER_SCHEDULE": "0 */5 * * * *",
                      "IMPORT_SYNC_TIMER_SCHEDULE": "30 */2 * * * *"})
    assert trigger(custom["run_import"])["queueName"] == "jobs-x"
    assert trigger(custom["poisoned_import"])["queueName"] == "jobs-x-poison"
    assert trigger(custom["sweep_imports"])["schedule"] == "0 */5 * * * *"
    assert trigger(custom["sync_mirrors"])["schedule"] == "30 */2 * * * *"


def test_the_bindings_hold_the_readme_defaults(functions):
    """No %SETTING% expression the host would refuse to resolve when that (optional) setting is unset:
    the bindings carry Settings' values, which are the README's defaults."""
    assert not re.findall(r"%([^%]+)%", json.dumps([fn["json"] for fn in functions.values()]))
    table = readme_settings()
    assert trigger(functions["run_import"])["queueName"] == table["IMPORT_QUEUE"] == Settings().queue_name
    assert trigger(functions["poisoned_import"])["queueName"] == f"{table['IMPORT_QUEUE']}-poison"
    assert trigger(functions["sweep_imports"])["schedule"] == table["IMPORT_TIMER_SCHEDULE"] \
        == Settings().timer_schedule
    assert trigger(functions["sync_mirrors"])["schedule"] == table["IMPORT_SYNC_TIMER_SCHEDULE"] \
        == Settings().sync_timer_schedule
    connections = {trigger(fn).get("connection") for fn in functions.values()} - {None}
    assert connections == {"AzureWebJobsStorage"} and table["AzureWebJobsStorage"] == "—"  # required, no default


def test_host_json_matches_the_app():
    # host.json allows // comments (the host strips them); this one is plain JSON.
    host = json.loads((ROOT / "host.json").read_text())
    queues = host["extensions"]["queues"]
    assert queues["maxDequeueCount"] == function_app.MAX_DEQUEUE
    assert queues["messageEncoding"] == "base64"  # the service sends base64 messages
    assert host["extensions"]["http"]["routePrefix"] == "api"  # Location headers say /api/imports/{id}
