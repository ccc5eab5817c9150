"""Sources by ACR resource ID through the CLI and the HTTP API: ARM (a stand-in) names the login server."""

from __future__ import annotations

import json
import time

import pytest
from azure.core.credentials import AccessToken

import importcore.engine.runner as runner
from importcore.values.errors import UsageError
from importcore.net.hostpolicy import HostPolicy
from importcore.service.api import parse_import_body
from tests.support.armstub import ArmStub
from tests.support.images import Pusher, push_index
from tests.support.skopeo import skopeo_digest
from tests.test_cli_import import error_line, run_cli, run_json

SUB = "00000000-1111-2222-3333-444444444444"
RID = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/sourceacr"


class Identity:
    def __init__(self, token: str) -> None:
        self.token, self.scopes = token, []

    def get_token(self, *scopes, **kw):
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


@pytest.fixture
def arm(monkeypatch, local_env, source_registry):
    with ArmStub() as stub:
        stub.tokens["arm-token"] = "app"
        stub.add_registry(RID, source_registry.host, readers=("app",))
        identity = Identity("arm-token")
        monkeypatch.setattr(runner, "_identity", lambda client_id: identity)  # the app's managed identity
        monkeypatch.setenv("IMPORT_ARM_ENDPOINT", stub.url)
        yield stub


def test_cli_registry_resource_id_resolves_the_login_server(arm, capsys, source_registry, target_registry,
                                                            unique_repo):
    with Pusher(source_registry) as p:
        pushed = push_index(p, unique_repo, "v1")
    out = run_json(capsys, "--registry", RID, "--source", f"{unique_repo}:v1", "--name", target_registry.host)
    assert out["digest"] == pushed.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == pushed.digest
    assert arm.requests and arm.requests[-1]["api_version"] == "2023-07-01"


def test_cli_unknown_resource_id_is_a_clear_error(arm, capsys, target_registry):
    other = RID.replace("sourceacr", "missingacr")
    rc, _, err = run_cli(capsys, "--registry", other, "--source", "a:b", "--name", target_registry.host)
    assert rc == 1 and "missingacr" in error_line(err)


@pytest.mark.parametrize("source,target", [
    ({"resourceId": "/subscriptions/x", "sourceImage": "a:b"}, "source.resourceId"),
    ({"resourceId": RID, "sourceImage": "other.io/a:b"}, "source.sourceImage"),
    ({"resourceId": RID, "registryUri": "myacr.azurecr.io", "sourceImage": "a:b"}, "source.resourceId"),
])
def test_api_resource_id_validation(source, target):
    with pytest.raises(UsageError) as err:
        parse_import_body(json.dumps({"source": source}).encode(), target_registry="t.azurecr.io",
                          policy=HostPolicy())
    assert err.value.target == target


def test_api_resource_id_is_kept_for_the_worker():
    request = parse_import_body(json.dumps({"source": {"resourceId": RID, "sourceImage": "team/app:1"},
                                            "targetTags": ["app:1"]}).encode(),
                                target_registry="t.azurecr.io", policy=HostPolicy())
    assert request.source_resource_id == RID and request.source.repository == "team/app"
