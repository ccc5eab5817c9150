"""Platform subsets: several --platform (API/rules "platforms") write a new index of just those platforms.

Against real Distribution registries, checked the way a user would: skopeo reads the subset index and
each child back by digest and copies the whole tree; the children are the source's bytes; the result
names both digests; a re-import is a no-op; a missing platform copies nothing. The format of the
authored index is pinned byte for byte by the pure tests at the end.
"""
from __future__ import annotations

import hashlib
import json

import pytest

from importcore.engine.request import ImportRequest
from importcore.engine.subset import select, subset_index
from importcore.net.hostpolicy import HostPolicy
from importcore.service.api import parse_import_body, request_from_summary, request_summary
from importcore.values.errors import ManifestError, NotFoundError, UsageError
from importcore.values.media import Platform, parse_manifest
from importcore.values.reference import Reference, TargetSpec
from tests.support.images import OCI_INDEX, Pusher, _odd_json, push_image, push_index, sha256
from tests.support.skopeo import skopeo_copy, skopeo_digest, skopeo_raw
from tests.test_app_e2e import import_body
from tests.test_cli_import import blob_present, error_line, run_cli, run_json

THREE = [("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "arm", "v7")]
INDEX_NOTES = {"org.opencontainers.image.source": "https://example.com/app", "org.example.über": "ünïcode"}
CHILD_NOTES = [{"org.example.build": "amd64-1"}, None, {"org.example.build": "armv7-1", "com.example.z": "a"}]


def _three(registry, repo: str, media: str = "oci", tag: str = "v1"):
    """A three-platform index with annotated entries (and, for OCI, buildkit-style attestations)."""
    with Pusher(registry) as p:
        return push_index(p, repo, tag, media=media, platforms=THREE, annotations=INDEX_NOTES,
                          child_annotations=CHILD_NOTES, attestations=media == "oci")


def _manifest_absent(registry, repo: str, ref: str) -> bool:
    with Pusher(registry) as t:
        return t.get_manifest(repo, ref).status_code == 404


# ---- the subset, end to end through the CLI ------------------------------------------------------

@pytest.mark.parametrize("media", ["oci", "docker"])
def test_two_of_three_platforms_make_a_new_index_of_the_source_children(capsys, local_env, source_registry,
                                                                       target_registry, unique_repo, media):
    idx = _three(source_registry, unique_repo, media)
    amd64, arm64, armv7 = idx.children[:3]
    src = f"{source_registry.host}/{unique_repo}:v1"
    # Asked for in the other order, arm without its variant: the new index keeps the source's order.
    res = run_json(capsys, "--source", src, "--name", target_registry.host, "--image", f"{unique_repo}:two",
                   "--platform", "linux/arm", "--platform", "linux/amd64")

    ref = f"{target_registry.host}/{unique_repo}:two"
    raw = skopeo_raw(ref)
    assert res["sourceDigest"] == idx.digest == skopeo_digest(src)
    assert res["digest"] == sha256(raw) == skopeo_digest(ref) != idx.digest
    assert res["mediaType"] == idx.media_type and res["tags"] == [f"{unique_repo}:two"]
    assert res["manifests"] == 3  # the new index and two images
    assert res["blobs"] == {"copied": len(amd64.blobs) + len(armv7.blobs), "skipped": 0, "mounted": 0}
    assert res["bytes"] == amd64.total_blob_bytes + armv7.total_blob_bytes

    written, source = json.loads(raw), json.loads(idx.raw)
    assert list(written) == ["schemaVersion", "mediaType", "manifests", "annotations"]
    assert (written["schemaVersion"], written["mediaType"]) == (2, idx.media_type)
    assert written["annotations"] == INDEX_NOTES == source["annotations"]
    # The entries are the source's descriptors as they were: mediaType, digest, size, platform, annotations.
    assert written["manifests"] == [source["manifests"][0], source["manifests"][2]]
    assert written["manifests"][1]["annotations"] == CHILD_NOTES[2]
    assert written["manifests"][1]["platform"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    # Each child, read back by digest, is the source's bytes.
    for child in (amd64, armv7):
        assert skopeo_raw(f"{target_registry.host}/{unique_repo}@{child.digest}") == child.raw
    # What was not asked for is not there: the third platform, and the attestations.
    others = [arm64, *idx.children[3:]]
    assert all(_manifest_absent(target_registry, unique_repo, c.digest) for c in others)
    with Pusher(target_registry) as t:
        assert not any(blob_present(t, unique_repo, d) for c in others for d, _ in c.blobs)
    # skopeo can copy the whole subset (every child and blob is in place) and gets the same digest.
    skopeo_copy(ref, f"{target_registry.host}/{unique_repo}/skopeo:two")
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}/skopeo:two") == res["digest"]
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}/skopeo@{armv7.digest}") == armv7.digest


def test_reimport_is_a_no_op_and_the_digest_is_the_same_whatever_the_order(capsys, local_env, source_registry,
                                                                            target_registry, unique_repo):
    idx = _three(source_registry, unique_repo)
    src = f"{source_registry.host}/{unique_repo}:v1"
    first = run_json(capsys, "--source", src, "--name", target_registry.host,
                     "--platform", "linux/amd64", "--platform", "linux/arm64")
    assert first["blobs"]["copied"] == len(idx.children[0].blobs) + len(idx.children[1].blobs)
    # NoForce again, the platforms in another order and one of them twice: the same index, nothing to do.
    again = run_json(capsys, "--source", src, "--name", target_registry.host,
                     "--platform", "linux/arm64/v8", "--platform", "linux/amd64", "--platform", "linux/amd64")
    assert again["digest"] == first["digest"] and again["sourceDigest"] == idx.digest
    assert again["blobs"] == {"copied": 0, "skipped": 0, "mounted": 0} and again["bytes"] == 0
    assert again["tags"] == [f"{unique_repo}:v1"] and again["manifests"] == 3
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == first["digest"]


def test_noforce_compares_the_target_tag_with_the_subset_digest(capsys, local_env, source_registry, target_registry,
                                                                unique_repo):
    idx = _three(source_registry, unique_repo)
    src = f"{source_registry.host}/{unique_repo}:v1"
    whole = run_json(capsys, "--source", src, "--name", target_registry.host)  # the full index, tagged v1
    assert whole["digest"] == whole["sourceDigest"] == idx.digest
    # The source digest is in the target under that tag, but a subset would write another digest: a conflict.
    rc, out, err = run_cli(capsys, "--source", src, "--name", target_registry.host,
                           "--platform", "linux/amd64", "--platform", "linux/arm64")
    assert rc == 1 and out == ""
    line = error_line(err)
    assert f"{unique_repo}:v1" in line and idx.digest in line and "--force" in line
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == idx.digest  # unchanged
    # --force writes the subset over it.
    forced = run_json(capsys, "--source", src, "--name", target_registry.host, "--force",
                      "--platform", "linux/amd64", "--platform", "linux/arm64")
    assert forced["digest"] != idx.digest and forced["sourceDigest"] == idx.digest
    assert skopeo_digest(f"{target_registry.host}/{unique_repo}:v1") == forced["digest"]
    assert [m["digest"] for m in json.loads(skopeo_raw(f"{target_registry.host}/{unique_repo}:v1"))["manifests"]] \
        == [idx.children[0].digest, idx.children[1].digest]


def test_text_output_names_both_digests(capsys, local_env, source_registry, target_registry, unique_repo):
    idx = _three(source_registry, unique_repo)
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                           target_registry.host, "--platform", "linux/amd64", "--platform", "linux/arm64")
    assert rc == 0, err
    digest = skopeo_digest(f"{target_registry.host}/{unique_repo}:v1")
    assert f"digest {digest} ({idx.media_type}, from source index {idx.digest}), 3 manifest(s)" in out


@pytest.mark.parametrize("platforms, named", [
    (["linux/amd64", "linux/s390x", "windows/amd64"], "platforms linux/s390x, windows/amd64"),
    (["linux/amd64", "unknown/unknown"], "platform unknown/unknown"),  # attestations are never picked
    (["unknown/unknown"], "platform unknown/unknown"),
])
def test_a_platform_the_index_lacks_fails_naming_it_and_copies_nothing(capsys, local_env, source_registry,
                                                                       target_registry, unique_repo, platforms,
                                                                       named):
    idx = _three(source_registry, unique_repo)
    flags = [arg for p in platforms for arg in ("--platform", p)]
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1",
                           "--name", target_registry.host, *flags)
    assert rc == 1 and out == ""
    line = error_line(err)
    assert f"no manifest for {named} (the index offers: linux/amd64, linux/arm/v7, linux/arm64/v8)" in line
    assert _manifest_absent(target_registry, unique_repo, "v1")
    assert all(_manifest_absent(target_registry, unique_repo, c.digest) for c in idx.children)
    with Pusher(target_registry) as t:
        assert not any(blob_present(t, unique_repo, d) for d, _ in idx.blobs)


def test_several_platforms_of_a_single_image_is_a_clear_error(capsys, local_env, source_registry, target_registry,
                                                              unique_repo):
    with Pusher(source_registry) as p:
        image = push_image(p, unique_repo, "v1")
    rc, out, err = run_cli(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name",
                           target_registry.host, "--platform", "linux/amd64", "--platform", "linux/arm64")
    assert rc == 2 and out == ""
    line = error_line(err)
    assert "is a single image" in line and "linux/amd64, linux/arm64" in line and "not an index" in line
    assert _manifest_absent(target_registry, unique_repo, "v1")
    with Pusher(target_registry) as t:
        assert not any(blob_present(t, unique_repo, d) for d, _ in image.blobs)


def test_one_platform_asked_twice_is_that_image_and_the_result_names_the_source(capsys, local_env, source_registry,
                                                                                target_registry, unique_repo):
    idx = _three(source_registry, unique_repo, "docker")
    arm64 = idx.children[1]
    res = run_json(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                   "--platform", "linux/arm64", "--platform", "linux/arm64")
    assert (res["digest"], res["sourceDigest"], res["mediaType"]) == (arm64.digest, idx.digest, arm64.media_type)
    assert res["manifests"] == 1
    assert skopeo_raw(f"{target_registry.host}/{unique_repo}:v1") == arm64.raw


def test_bad_repeated_platform_is_a_usage_error(capsys, local_env, target_registry):
    rc, out, err = run_cli(capsys, "--source", "127.0.0.1:5999/ok:v1", "--name", target_registry.host,
                           "--platform", "linux/amd64", "--platform", "linux")
    assert rc == 2 and out == ""
    assert "--platform: invalid platform 'linux'" in error_line(err)


# ---- through the HTTP API on the local functions host ---------------------------------------------

def test_api_platforms_writes_the_subset_and_the_job_result_names_both_digests(app_host, source_registry,
                                                                               target_registry, unique_repo):
    idx = _three(source_registry, unique_repo)
    target_ref = f"{unique_repo}/copy:v1"
    body = import_body(source_registry, f"{unique_repo}:v1", target_ref,
                       platforms=["linux/arm64", "linux/amd64", "linux/arm64"])
    r = app_host.post_import(body)
    assert r.status_code == 202, r.text
    done = app_host.wait_for(r.json()["id"])
    assert done["status"] == "Succeeded", done
    result = done["result"]
    raw = skopeo_raw(f"{target_registry.host}/{target_ref}")
    assert result["sourceDigest"] == idx.digest and result["digest"] == sha256(raw) != idx.digest
    assert [m["digest"] for m in json.loads(raw)["manifests"]] == [idx.children[0].digest, idx.children[1].digest]
    assert result["manifests"] == 3 and result["tags"] == [target_ref]

    again = app_host.wait_for(app_host.post_import(body).json()["id"])  # NoForce, the same subset: nothing to do
    assert again["status"] == "Succeeded", again
    assert again["result"]["digest"] == result["digest"] and again["result"]["blobs"]["copied"] == 0


def test_api_platforms_missing_one_fails_the_job_naming_it(app_host, source_registry, target_registry, unique_repo):
    _three(source_registry, unique_repo)
    body = import_body(source_registry, f"{unique_repo}:v1", f"{unique_repo}:v1",
                       platforms=["linux/amd64", "linux/ppc64le"])
    done = app_host.wait_for(app_host.post_import(body).json()["id"])
    assert done["status"] == "Failed" and done["attempts"] == 1 and done["result"] is None
    assert done["error"]["code"] == "NotFound" and done["error"]["target"] == "platforms"
    assert "no manifest for platform linux/ppc64le" in done["error"]["message"]
    assert _manifest_absent(target_registry, unique_repo, "v1")


# ---- the request's platforms (pure) ---------------------------------------------------------------

_POLICY = HostPolicy(plain_http=("127.0.0.1",), allowed_private=("127.0.0.1",))


def _parse(**extra) -> ImportRequest:
    body = {"source": {"registryUri": "127.0.0.1:5999", "sourceImage": "team/app:1.0"}, **extra}
    return parse_import_body(json.dumps(body).encode(), target_registry="127.0.0.1:5998", policy=_POLICY)


def test_api_body_platform_and_platforms():
    assert _parse().platforms == ()
    assert _parse(platform="linux/amd64").platforms == (Platform("linux", "amd64"),)
    assert _parse(platform="").platforms == ()  # as before: an empty platform is no platform
    two = _parse(platforms=["linux/arm64", "linux/amd64", "linux/arm64"])
    assert two.platforms == (Platform("linux", "arm64"), Platform("linux", "amd64"))  # duplicates collapse
    summary = request_summary(two)
    assert summary["platforms"] == ["linux/arm64", "linux/amd64"] and "platform" not in summary
    assert request_from_summary(summary, None).platforms == two.platforms
    assert request_summary(_parse())["platforms"] is None
    legacy = {**request_summary(_parse()), "platform": "linux/arm/v7"}  # a record written before "platforms"
    del legacy["platforms"]
    assert request_from_summary(legacy, None).platforms == (Platform("linux", "arm", "v7"),)


@pytest.mark.parametrize("extra, target, text", [
    ({"platform": "linux/amd64", "platforms": ["linux/arm64"]}, "platforms", "give platform or platforms, not both"),
    ({"platforms": []}, "platforms", "platforms is empty"),
    ({"platforms": "linux/amd64"}, "platforms", "platforms must be a list"),
    ({"platforms": ["linux/amd64", "linux"]}, "platforms[1]", "platforms[1]: invalid platform 'linux'"),
    ({"platforms": ["linux/amd64", 7]}, "platforms[1]", "platforms[1] must be a string"),
    ({"platforms": [f"linux/arch{i}" for i in range(51)]}, "platforms", "at most 50"),
])
def test_api_body_bad_platforms_name_the_field(extra, target, text):
    with pytest.raises(UsageError) as caught:
        _parse(**extra)
    assert caught.value.target == target and text in caught.value.message


def test_request_collapses_duplicate_platforms_in_order():
    amd, arm = Platform("linux", "amd64"), Platform("linux", "arm64")
    request = ImportRequest(Reference("r.example", "a", "1"), (TargetSpec("a", "1"),), "t.example",
                            platforms=(arm, amd, arm, amd))
    assert request.platforms == (arm, amd)


# ---- the subset index's format (pure) -------------------------------------------------------------

D = {i: "sha256:" + str(i) * 64 for i in range(1, 6)}


def _index(body: dict, media_type: str | None = OCI_INDEX):
    raw = _odd_json(body)
    return parse_manifest(raw, media_type, sha256(raw), where="src")


def test_subset_index_is_the_documented_compact_json_byte_for_byte():
    source = _index({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"size": 11, "digest": D[1], "mediaType": "application/vnd.oci.image.manifest.v1+json",
             "platform": {"os": "linux", "architecture": "amd64"}, "annotations": {"b": "2", "a": "ü"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[2], "size": 12,
             "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[3], "size": 13,
             "platform": {"architecture": "s390x", "os": "linux"}, "urls": ["https://x.example/m"]},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[4], "size": 14,
             "platform": {"architecture": "unknown", "os": "unknown"},
             "annotations": {"vnd.docker.reference.digest": D[1], "vnd.docker.reference.type": "attestation-manifest"}},
        ],
        "annotations": {"org.example.z": "1", "org.example.a": "2"},
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[5], "size": 1},
    })
    picked = select(source, [Platform("linux", "s390x"), Platform("linux", "amd64")], where="src")
    assert picked == [0, 2]  # the source's order
    subset = subset_index(source, picked, where="src")
    expected = (
        '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":['
        '{"size":11,"digest":"' + D[1] + '","mediaType":"application/vnd.oci.image.manifest.v1+json",'
        '"platform":{"os":"linux","architecture":"amd64"},"annotations":{"b":"2","a":"ü"}},'
        '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"' + D[3] + '","size":13,'
        '"platform":{"architecture":"s390x","os":"linux"},"urls":["https://x.example/m"]}],'
        '"annotations":{"org.example.z":"1","org.example.a":"2"}}'
    ).encode()
    assert subset.raw == expected
    assert subset.digest == "sha256:" + hashlib.sha256(expected).hexdigest()
    assert subset.media_type == OCI_INDEX and [c.digest for c in subset.children] == [D[1], D[3]]
    assert subset_index(source, [2, 0, 2], where="src").raw == expected  # deterministic, each entry once


def test_subset_of_a_docker_list_without_annotations_stays_a_docker_list():
    docker_list = "application/vnd.docker.distribution.manifest.list.v2+json"
    entry = {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 5}
    source = _index({"schemaVersion": 2, "mediaType": docker_list, "manifests": [
        {**entry, "digest": D[1], "platform": {"architecture": "amd64", "os": "linux"}},
        {**entry, "digest": D[2], "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}},
        {**entry, "digest": D[3], "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
    ]}, docker_list)
    # As a single --platform matches: a variant picks that variant; no variant, the first of that arch.
    assert select(source, [Platform("linux", "arm"), Platform("linux", "amd64")], where="src") == [0, 1]
    picked = select(source, [Platform("linux", "arm", "v7"), Platform("linux", "amd64")], where="src")
    assert picked == [0, 2]
    subset = subset_index(source, picked, where="src")
    assert list(json.loads(subset.raw)) == ["schemaVersion", "mediaType", "manifests"]
    assert subset.media_type == json.loads(subset.raw)["mediaType"] == docker_list


def test_select_never_picks_attestations_and_names_what_is_missing():
    source = _index({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[1], "size": 1,
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[2], "size": 1,
         "platform": {"architecture": "amd64", "os": "linux"},  # an attestation that claims a real platform
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": D[3], "size": 1,
         "platform": {"architecture": "unknown", "os": "unknown"}},
    ]}, None)
    assert select(source, [Platform("linux", "amd64")], where="src") == [0]
    with pytest.raises(NotFoundError) as caught:
        select(source, [Platform("unknown", "unknown"), Platform("linux", "arm64")], where="src")
    assert caught.value.message == ("src: no manifest for platforms unknown/unknown, linux/arm64 "
                                    "(the index offers: linux/amd64)")
    assert caught.value.target == "platforms"
    subset = subset_index(source, [0], where="src")  # the source had no mediaType: the subset names its type
    assert json.loads(subset.raw)["mediaType"] == OCI_INDEX


def test_subset_refuses_a_value_strict_json_cannot_hold():
    raw = ('{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"'
           + D[1] + '","size":1,"platform":{"os":"linux","architecture":"amd64"},"x":NaN}]}').encode()
    source = parse_manifest(raw, OCI_INDEX, sha256(raw), where="src")
    with pytest.raises(ManifestError, match="no strict JSON"):
        subset_index(source, [0], where="src")
