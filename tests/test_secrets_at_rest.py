"""A source password given to POST /api/imports is never in the queue message, the table row, the
status answer or the logs, and yet the worker can use it."""
from __future__ import annotations

import base64
import json
import logging

import pytest
from cryptography.fernet import Fernet

from tests.conftest import ALICE
from tests.support.images import Pusher, push_image
from tests.support.skopeo import skopeo_digest

NO_WORKER = {"AzureWebJobs.run_import.Disabled": "true"}
LOGGERS = ("", "importcore", "azure", "azure.core.pipeline.policies.http_logging_policy", "httpx", "httpcore",
           "urllib3")


def secret_forms(user: str, password: str) -> list[str]:
    """The password as it could leak: plain, base64 alone, and inside a Basic authorization header."""
    return [password, base64.b64encode(password.encode()).decode().rstrip("="),
            base64.b64encode(f"{user}:{password}".encode()).decode().rstrip("=")]


def assert_absent(text: str, forms: list[str], where: str) -> None:
    for form in forms:
        assert form not in text, f"{where} contains the password (as {form!r})"


@pytest.fixture
def debug_logs(caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def test_password_is_used_but_never_stored_or_logged(debug_logs, app_host_factory, htpasswd_registry,
                                                     target_registry, unique_repo):
    user, password = ALICE
    forms = secret_forms(user, password)
    # Started after caplog is at DEBUG: the whole run is captured. No queue worker yet, so the
    # message can be read as stored.
    submitter = app_host_factory(**NO_WORKER)
    with Pusher(htpasswd_registry, user, password) as p:
        pushed = push_image(p, unique_repo, "1")
    body = {"source": {"registryUri": htpasswd_registry.host, "sourceImage": f"{unique_repo}:1",
                       "credentials": {"username": user, "password": password}},
            "targetTags": [f"{unique_repo}:1"], "mode": "NoForce"}

    r = submitter.post_import(body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert_absent(r.text, forms, "the 202 answer")

    # The raw queue message: base64 of exactly {"v":1,"jobId":...}.
    [raw_message] = submitter.peek()
    assert json.loads(base64.b64decode(raw_message)) == {"v": 1, "jobId": job_id}
    assert_absent(raw_message, forms, "the raw queue message")
    submitter.host.stop()

    # The same deployment with its queue worker: the host receives the message, as in Azure.
    app = app_host_factory(**{k: submitter.env[k] for k in ("IMPORT_QUEUE", "IMPORT_JOBS_TABLE",
                                                             "IMPORT_CREDENTIAL_KEY")})
    done = app.wait_for(job_id)
    assert done["status"] == "Succeeded", done
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:1") == pushed.digest

    # The raw table entity, every property.
    entity = app.table_client().get_entity("import", job_id)
    for name, value in entity.items():
        assert_absent(f"{name}={value}", forms, f"table property {name}")
    # The credential is there (the worker needed it), sealed with the deployment's key.
    opened = json.loads(Fernet(app.env["IMPORT_CREDENTIAL_KEY"].encode()).decrypt(entity["credential"].encode()))
    assert opened == {"username": user, "password": password}

    status = app.http.get(f"/api/imports/{job_id}")
    assert status.status_code == 200
    assert_absent(status.text, forms, "GET status")
    assert "credential" not in status.text.lower()

    app.host.run_timer("sweep_imports")
    app.host.stop()  # flush everything the host logs on the way out, too
    assert "DEBUG" in {r.levelname for r in debug_logs.records}  # the capture really was at DEBUG
    assert any(r.name.startswith("azure") for r in debug_logs.records)  # and saw the storage SDK
    assert_absent(debug_logs.text, forms, "the captured logs")
    for record in debug_logs.records:
        assert_absent(repr(record.args), forms, f"log record args of {record.name}")


def test_wrong_password_fails_without_retry_or_leak(debug_logs, app_host_factory, htpasswd_registry, unique_repo):
    user, password = ALICE[0], "not-" + ALICE[1]
    forms = secret_forms(user, password)
    app = app_host_factory()
    with Pusher(htpasswd_registry, *ALICE) as p:
        push_image(p, unique_repo, "1")
    body = {"source": {"registryUri": htpasswd_registry.host, "sourceImage": f"{unique_repo}:1",
                       "credentials": {"username": user, "password": password}}, "targetTags": [f"{unique_repo}:1"]}

    job = app.wait_for(app.post_import(body).json()["id"])

    assert (job["status"], job["attempts"]) == ("Failed", 1)
    assert job["error"]["code"] == "Unauthorized" and job["error"]["retryable"] is False
    assert_absent(json.dumps(job), forms, "the failed job")
    assert_absent(debug_logs.text, forms, "the captured logs")


def test_credentials_are_refused_without_a_key(app_host_factory, htpasswd_registry):
    app = app_host_factory(IMPORT_CREDENTIAL_KEY="", **NO_WORKER)
    body = {"source": {"registryUri": htpasswd_registry.host, "sourceImage": "x/y:1",
                       "credentials": {"username": "alice", "password": "pw"}}}
    r = app.post_import(body)
    assert r.status_code == 400
    assert r.json()["error"]["target"] == "source.credentials"
    assert app.peek() == [] and app.entities() == []
