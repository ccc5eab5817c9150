"""--include-referrers against real Distribution 2.8.2 registries (no referrers API: the tag schema path).

Signatures (cosign 2.x `.sig` tags, cosign 3 bundle referrers) and SBOMs (OCI 1.1 artifacts with
`subject`) are made in cosign's formats by tests/support/cosign.py; what is checked is what a user
checks: the same bytes under the same digests in the target, and the target's referrers index
listing them (so `cosign verify` / `oras discover` find them there).
"""
from __future__ import annotations

import json


from importcore.cli import main
from tests.support.cosign import (BUNDLE_V03, SIMPLE_SIGNING, SPDX, Key, add_to_tag_index, attach_tag, push_referrer,
                                  push_sbom, sign_bundle, sign_tag, tag_of)
from tests.support.faultproxy import FaultProxy
from tests.support.images import Pusher, push_image, push_index


def run(capsys, *args: str) -> tuple[int, dict | None, str]:
    capsys.readouterr()
    try:
        rc = main(["import", *args, "--output", "json"])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def ok(capsys, *args: str) -> dict:
    rc, result, err = run(capsys, *args)
    assert rc == 0, err
    assert result is not None
    return result


def raw(pusher: Pusher, repo: str, ref: str) -> bytes | None:
    r = pusher.get_manifest(repo, ref)
    return r.content if r.status_code == 200 else None


def index_digests(pusher: Pusher, repo: str, subject: str) -> list[str]:
    body = raw(pusher, repo, tag_of(subject))
    return [] if body is None else [m["digest"] for m in json.loads(body)["manifests"]]


def test_signatures_and_sbom_travel_with_the_image(capsys, local_env, source_registry, target_registry, pushers,
                                                   unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    sbom = push_sbom(src, unique_repo, image.descriptor())
    bundle = sign_bundle(src, unique_repo, image.descriptor(), key)
    sig = sign_tag(src, unique_repo, image.digest, key)

    result = ok(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                "--image", "mirror/app:v1", "--include-referrers")

    assert raw(tgt, "mirror/app", "v1") == image.raw
    for digest in (sbom["digest"], bundle["digest"], sig):
        assert raw(tgt, "mirror/app", digest) == raw(src, unique_repo, digest)  # byte for byte, same digest
    assert raw(tgt, "mirror/app", tag_of(image.digest, ".sig")) == raw(src, unique_repo, tag_of(image.digest, ".sig"))
    for digest in (sbom["digest"], bundle["digest"], sig):  # every blob under them too
        for blob in json.loads(raw(src, unique_repo, digest))["layers"]:
            assert tgt.get_blob("mirror/app", blob["digest"]).content == src.get_blob(unique_repo, blob["digest"]).content
    # Distribution has no referrers API: the target's sha256-<hex> index lists the OCI 1.1 referrers,
    # with their artifactType and annotations (distribution-spec v1.1 referrers tag schema).
    entries = json.loads(raw(tgt, "mirror/app", tag_of(image.digest)))["manifests"]
    assert {e["digest"]: e["artifactType"] for e in entries} == {sbom["digest"]: SPDX, bundle["digest"]: BUNDLE_V03}
    assert all(e["annotations"] for e in entries)
    assert result["referrers"]["found"] == 3 and result["referrers"]["copied"] == 3
    assert result["referrers"]["sourceReferrersApi"] is False and result["referrers"]["targetReferrersApi"] is False
    assert result["referrers"]["tags"] == [f"mirror/app:{tag_of(image.digest, '.sig')}"]


def test_referrers_are_not_copied_unless_asked(capsys, local_env, source_registry, target_registry, pushers,
                                               unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    push_sbom(src, unique_repo, image.descriptor())
    sign_tag(src, unique_repo, image.digest, key)

    result = ok(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host)

    assert "referrers" not in result
    assert raw(tgt, unique_repo, "v1") == image.raw
    assert raw(tgt, unique_repo, tag_of(image.digest)) is None
    assert raw(tgt, unique_repo, tag_of(image.digest, ".sig")) is None


def test_referrers_of_every_child_of_an_index(capsys, local_env, source_registry, target_registry, pushers,
                                              unique_repo, key):
    """cosign sign --recursive signs the index and each platform's manifest; an SBOM per platform."""
    src, tgt = pushers
    index = push_index(src, unique_repo, "v1")
    sign_tag(src, unique_repo, index.digest, key)
    arm = index.children[1]
    sign_tag(src, unique_repo, arm.digest, key)
    sbom = push_sbom(src, unique_repo, arm.descriptor())

    result = ok(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                "--include-referrers")

    for digest in (index.digest, arm.digest):
        assert raw(tgt, unique_repo, tag_of(digest, ".sig")) == raw(src, unique_repo, tag_of(digest, ".sig"))
    assert index_digests(tgt, unique_repo, arm.digest) == [sbom["digest"]]
    assert raw(tgt, unique_repo, "v1") == index.raw
    assert result["referrers"]["copied"] == 3


def test_referrers_of_referrers_are_copied(capsys, local_env, source_registry, target_registry, pushers, unique_repo,
                                           key):
    """A signature on an SBOM: cosign's .sig tag of the SBOM's digest and a bundle whose subject is the SBOM."""
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    sbom = push_sbom(src, unique_repo, image.descriptor())
    sbom_sig = sign_tag(src, unique_repo, sbom["digest"], key)
    sbom_bundle = sign_bundle(src, unique_repo, sbom, key)

    result = ok(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                "--include-referrers")

    assert index_digests(tgt, unique_repo, image.digest) == [sbom["digest"]]
    assert index_digests(tgt, unique_repo, sbom["digest"]) == [sbom_bundle["digest"]]
    assert raw(tgt, unique_repo, tag_of(sbom["digest"], ".sig")) == raw(src, unique_repo, sbom_sig)
    assert result["referrers"]["found"] == 3


def test_artifact_type_filter(capsys, local_env, source_registry, target_registry, pushers, unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    sbom = push_sbom(src, unique_repo, image.descriptor())
    bundle = sign_bundle(src, unique_repo, image.descriptor(), key)
    sign_tag(src, unique_repo, image.digest, key)
    source = f"{source_registry.host}/{unique_repo}:v1"

    only_sbom = ok(capsys, "--source", source, "--name", target_registry.host, "--image", f"{unique_repo}-a:v1",
                   "--include-referrers", "--referrers-artifact-type", SPDX)
    assert index_digests(tgt, f"{unique_repo}-a", image.digest) == [sbom["digest"]]
    assert raw(tgt, f"{unique_repo}-a", tag_of(image.digest, ".sig")) is None
    assert raw(tgt, f"{unique_repo}-a", bundle["digest"]) is None
    assert only_sbom["referrers"]["found"] == 1

    signatures = ok(capsys, "--source", source, "--name", target_registry.host, "--image", f"{unique_repo}-b:v1",
                    "--include-referrers", "--referrers-artifact-type", BUNDLE_V03,
                    "--referrers-artifact-type", SIMPLE_SIGNING)
    assert index_digests(tgt, f"{unique_repo}-b", image.digest) == [bundle["digest"]]
    assert raw(tgt, f"{unique_repo}-b", tag_of(image.digest, ".sig")) is not None
    assert raw(tgt, f"{unique_repo}-b", sbom["digest"]) is None
    assert signatures["referrers"]["found"] == 2

    rc, _, err = run(capsys, "--source", source, "--name", target_registry.host, "--referrers-artifact-type", SPDX)
    assert rc == 2 and err.strip() == "error: --referrers-artifact-type needs --include-referrers"


def test_another_tools_entries_in_the_target_index_are_kept(capsys, local_env, source_registry, target_registry,
                                                            pushers, unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    sbom = push_sbom(src, unique_repo, image.descriptor())
    source = f"{source_registry.host}/{unique_repo}:v1"
    ok(capsys, "--source", source, "--name", target_registry.host)  # the image alone, then another tool attaches
    theirs = push_referrer(tgt, unique_repo, image.descriptor(), artifact_type="application/vnd.example.scan+json",
                           data=b'{"scanner":"other"}')
    before = json.loads(raw(tgt, unique_repo, tag_of(image.digest)))["manifests"]

    ok(capsys, "--source", source, "--name", target_registry.host, "--include-referrers")

    after = json.loads(raw(tgt, unique_repo, tag_of(image.digest)))["manifests"]
    assert after[0] == before[0] == theirs  # kept as it was, first
    assert [e["digest"] for e in after] == [theirs["digest"], sbom["digest"]]


def test_a_rerun_copies_nothing_twice(capsys, local_env, source_registry, target_registry, pushers, unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    push_sbom(src, unique_repo, image.descriptor())
    sign_bundle(src, unique_repo, image.descriptor(), key)
    sign_tag(src, unique_repo, image.digest, key)
    args = ("--name", None, "--source", f"{source_registry.host}/{unique_repo}:v1", "--include-referrers")

    with FaultProxy(target_registry) as proxy:
        first = ok(capsys, *[proxy.host if a is None else a for a in args])
        index_before = raw(tgt, unique_repo, tag_of(image.digest))
        puts, patches, posts = (proxy.count(m, r"/v2/") for m in ("PUT", "PATCH", "POST"))
        second = ok(capsys, *[proxy.host if a is None else a for a in args])
        assert (proxy.count("PUT", r"/v2/") - puts, proxy.count("PATCH", r"/v2/") - patches,
                proxy.count("POST", r"/v2/") - posts) == (1, 0, 0)  # the one PUT: the tag v1, same bytes

    assert first["referrers"]["copied"] == 3 and first["referrers"]["indexTags"]
    assert second["referrers"] == {**second["referrers"], "copied": 0, "present": 3, "blobs": 0, "tags": [],
                                   "indexTags": []}
    assert second["blobs"]["copied"] == 0
    assert raw(tgt, unique_repo, tag_of(image.digest)) == index_before


def test_noforce_refuses_a_cosign_tag_that_differs_in_the_target(capsys, local_env, source_registry, target_registry,
                                                                 pushers, unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    sign_tag(src, unique_repo, image.digest, key)
    source = f"{source_registry.host}/{unique_repo}:v1"
    ok(capsys, "--source", source, "--name", target_registry.host)
    theirs = sign_tag(tgt, unique_repo, image.digest, Key.generate())  # the target's own signature

    rc, _, err = run(capsys, "--source", source, "--name", target_registry.host, "--include-referrers")

    assert rc == 1
    assert err.startswith(f"error: target tag {target_registry.host}/{unique_repo}:{tag_of(image.digest, '.sig')} "
                          f"already exists with digest {theirs}")
    assert raw(tgt, unique_repo, tag_of(image.digest, ".sig")) == raw(tgt, unique_repo, theirs)
    forced = ok(capsys, "--source", source, "--name", target_registry.host, "--include-referrers", "--force")
    assert raw(tgt, unique_repo, tag_of(image.digest, ".sig")) == raw(src, unique_repo, tag_of(image.digest, ".sig"))
    assert forced["referrers"]["tags"] == [f"{unique_repo}:{tag_of(image.digest, '.sig')}"]


def test_a_stale_index_entry_is_not_believed(capsys, local_env, source_registry, target_registry, pushers,
                                             unique_repo, key):
    """The tag schema's index is written by clients: an entry whose manifest names another subject is skipped."""
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    other = push_image(src, unique_repo, "other")
    elsewhere = push_sbom(src, unique_repo, other.descriptor(), tag_index=False)
    add_to_tag_index(src, unique_repo, image.digest, elsewhere)
    sbom = push_sbom(src, unique_repo, image.descriptor())

    result = ok(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                "--include-referrers")

    assert index_digests(tgt, unique_repo, image.digest) == [sbom["digest"]]
    assert raw(tgt, unique_repo, elsewhere["digest"]) is None
    assert result["referrers"]["found"] == 1


def test_cosign_att_and_sbom_tags_travel_as_tags(capsys, local_env, source_registry, target_registry, pushers,
                                                 unique_repo, key):
    src, tgt = pushers
    image = push_image(src, unique_repo, "v1")
    att = attach_tag(src, unique_repo, image.digest, ".att", layer_type="application/vnd.dsse.envelope.v1+json",
                     data=b'{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}')
    sbom = attach_tag(src, unique_repo, image.digest, ".sbom", layer_type=SPDX, data=b'{"spdxVersion":"SPDX-2.3"}')

    result = ok(capsys, "--source", f"{source_registry.host}/{unique_repo}:v1", "--name", target_registry.host,
                "--include-referrers")

    for suffix, digest in ((".att", att), (".sbom", sbom)):
        assert raw(tgt, unique_repo, tag_of(image.digest, suffix)) == raw(src, unique_repo, digest)
    assert sorted(result["referrers"]["tags"]) == sorted(f"{unique_repo}:{tag_of(image.digest, s)}"
                                                        for s in (".att", ".sbom"))
    assert raw(tgt, unique_repo, tag_of(image.digest)) is None  # tags only: no referrers index needed
