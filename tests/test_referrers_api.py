"""The OCI 1.1 referrers API path, against a STAND-IN: tests/support/referrers_standin.py adds the
API to a real Distribution 2.8.2 (which has none; no offline registry here implements it).

Source side: referrers only the API knows (no tag-schema index) are found, every page of them, and
a single artifactType filter is passed to the registry. Target side: a registry that answers
OCI-Subject on the manifest PUT indexes the referrers itself, so no sha256-<hex> tag is written.
"""
from __future__ import annotations

import json


from importcore.cli import main
from tests.support.cosign import SPDX, push_sbom, sign_bundle, tag_of
from tests.support.images import Pusher, push_image
from tests.support.referrers_standin import ReferrersStandIn


def ok(capsys, *args: str) -> dict:
    capsys.readouterr()
    rc = main(["import", *args, "--output", "json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def test_a_source_with_the_referrers_api(capsys, local_env, source_registry, target_registry, unique_repo, key,
                                         tmp_path):
    with ReferrersStandIn(source_registry) as api, Pusher(api) as src, Pusher(target_registry) as tgt:
        image = push_image(src, unique_repo, "v1")
        sbom = push_sbom(src, unique_repo, image.descriptor(), tag_index=False)
        bundle = sign_bundle(src, unique_repo, image.descriptor(), key, tag_index=False)
        assert src.get_manifest(unique_repo, tag_of(image.digest)).status_code == 404  # only the API lists them
        source = f"{api.host}/{unique_repo}:v1"
        key_path = key.write_public(tmp_path / "cosign.pub")

        result = ok(capsys, "--source", source, "--name", target_registry.host, "--include-referrers",
                    "--verify-key", key_path)

        assert result["verified"]["signature"]["manifest"] == bundle["digest"]
        assert result["referrers"]["sourceReferrersApi"] is True
        assert result["referrers"]["found"] == 2
        assert any("last=1" in listing for listing in api.listings)  # the second page was fetched
        listed = json.loads(tgt.get_manifest(unique_repo, tag_of(image.digest)).content)["manifests"]
        assert {e["digest"] for e in listed} == {sbom["digest"], bundle["digest"]}
        for digest in (sbom["digest"], bundle["digest"]):
            assert tgt.get_manifest(unique_repo, digest).content == src.get_manifest(unique_repo, digest).content

        filtered = ok(capsys, "--source", source, "--name", target_registry.host, "--image", f"{unique_repo}-f:v1",
                      "--include-referrers", "--referrers-artifact-type", SPDX)
        assert filtered["referrers"]["found"] == 1
        assert any(f"artifactType={SPDX.replace('/', '%2F').replace('+', '%2B')}" in listing
                   for listing in api.listings)


def test_a_target_with_the_referrers_api_indexes_them_itself(capsys, local_env, source_registry, target_registry,
                                                            unique_repo, key):
    with Pusher(source_registry) as src, ReferrersStandIn(target_registry) as api, Pusher(target_registry) as tgt:
        image = push_image(src, unique_repo, "v1")
        sbom = push_sbom(src, unique_repo, image.descriptor())
        bundle = sign_bundle(src, unique_repo, image.descriptor(), key)
        args = ("--source", f"{source_registry.host}/{unique_repo}:v1", "--name", api.host, "--include-referrers")

        first = ok(capsys, *args)
        second = ok(capsys, *args)

        assert first["referrers"]["targetReferrersApi"] is True and first["referrers"]["indexTags"] == []
        assert {e["digest"] for e in api.index[(unique_repo, image.digest)]} == {sbom["digest"], bundle["digest"]}
        assert tgt.get_manifest(unique_repo, tag_of(image.digest)).status_code == 404  # no tag-schema index
        assert second["referrers"]["copied"] == 0 and second["referrers"]["indexTags"] == []
        assert second["referrers"]["targetReferrersApi"] is True  # asked, since nothing was pushed this time
