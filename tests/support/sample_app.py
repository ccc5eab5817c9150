"""A tiny FunctionApp for devhost tests (independent of the product's function_app.py)."""
from __future__ import annotations

import os
import threading
import time

import azure.functions as func
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# What the functions saw; tests read these and call reset() between hosts.
processed: list[str] = []  # queue bodies handled successfully
attempts: list[tuple[str, int]] = []  # (body, dequeue_count) of every queue invocation
timer_runs: list[bool] = []  # past_due of every timer invocation
_lock = threading.Lock()


def reset() -> None:
    """Forget every recorded invocation."""
    with _lock:
        processed.clear()
        attempts.clear()
        timer_runs.clear()


@app.route(route="items", methods=["POST"])
def post_item(req: func.HttpRequest) -> func.HttpResponse:
    """Enqueue the body, base64-encoded as the Functions host expects."""
    client = QueueClient.from_connection_string(
        os.environ["AzureWebJobsStorage"], os.environ["SAMPLE_QUEUE"], message_encode_policy=TextBase64EncodePolicy())
    with client:
        client.send_message(req.get_body().decode("utf-8"))
    return func.HttpResponse(status_code=202)


@app.route(route="items/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def get_item(req: func.HttpRequest) -> func.HttpResponse:
    """Echo the route parameter (async, to exercise the host's event loop)."""
    return func.HttpResponse(f'{{"id": "{req.route_params["id"]}"}}', mimetype="application/json")


@app.route(route="boom", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def boom(req: func.HttpRequest) -> func.HttpResponse:
    """Fail, to check the host answers 500 without leaking the exception."""
    raise RuntimeError("internal detail that must not reach the client")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_QUEUE%", connection="AzureWebJobsStorage")
def process_item(msg: func.QueueMessage) -> None:
    """Record the body; "fail" raises, "sleep:N" takes N seconds first."""
    body = msg.get_body().decode("utf-8")
    with _lock:
        attempts.append((body, msg.dequeue_count))
    if body == "fail":
        raise RuntimeError("asked to fail")
    if body.startswith("sleep:"):
        time.sleep(float(body.split(":", 1)[1]))
    with _lock:
        processed.append(body)


@app.timer_trigger(schedule="%SAMPLE_SCHEDULE%", arg_name="timer")
def tick(timer: func.TimerRequest) -> None:
    """Count runs."""
    with _lock:
        timer_runs.append(timer.past_due)
