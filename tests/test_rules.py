"""Mirror rules (pure): loading and validating the rules file, matching push events to imports,
the semver comparator, and the example in docs/events.md."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from importcore.auth import Credential
from importcore.values.errors import UsageError
from importcore.values.media import Platform
from importcore.values.reference import Reference, TargetSpec
from importcore.values.settings import Settings
from importcore.triggers import (
    MirrorRules,
    PushEvent,
    Range,
    dedupe_key,
    parse_eventgrid,
    parse_version,
    parse_webhook,
)

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "events"
DIGEST = "sha256:" + "d" * 64


def ev(registry="registry.example.com", repository="team/app", tag="v1.2.3", digest=DIGEST, provider="distribution"):
    return PushEvent.build(registry=registry, repository=repository, tag=tag, digest=digest, media_type=None,
                           provider=provider)


def rules(*rule_list, **top) -> MirrorRules:
    return MirrorRules.from_data({"version": 1, "rules": list(rule_list), **top}, source="test")


BASE = {"registry": "registry.example.com", "repository": "team/*"}


# -- matching -------------------------------------------------------------------------------------

def test_match_produces_the_import():
    m = rules({**BASE, "name": "team", "target": "mirror/{repository}", "mode": "Force", "platform": "linux/arm64",
               "credential": "example-reader", "targetRegistry": "mirror.azurecr.io"}).match(ev())
    assert m is not None
    assert (m.rule_index, m.rule_name) == (0, "team")
    assert m.source == Reference("registry.example.com", "team/app", "v1.2.3", DIGEST)  # pinned, tag kept
    assert m.source.ref == DIGEST
    assert m.target == TargetSpec("mirror/team/app", "v1.2.3")
    assert (m.mode, m.force, m.platforms, m.credential) == ("Force", True, (Platform("linux", "arm64"),), "example-reader")
    assert m.target_registry == "mirror.azurecr.io"
    request = m.to_request("default.azurecr.io", Credential("u", "p"))
    assert request.source == m.source and request.targets == (m.target,)
    assert request.target_registry == "mirror.azurecr.io" and request.force and request.credential.username == "u"
    assert m.dedupe_key(None) == dedupe_key(m.source, "mirror.azurecr.io", m.target)


def test_platforms_list_is_kept_in_order_and_duplicates_collapse():
    m = rules({**BASE, "platforms": ["linux/arm64", "linux/amd64", "linux/arm64", "linux/arm/v7"]}).match(ev())
    assert m.platforms == (Platform("linux", "arm64"), Platform("linux", "amd64"), Platform("linux", "arm", "v7"))
    assert m.to_request("default.azurecr.io").platforms == m.platforms
    one = rules({**BASE, "platforms": ["linux/amd64"]}).match(ev())
    assert one.platforms == (Platform("linux", "amd64"),)  # one platform: that image, as "platform" does


def test_defaults():
    m = rules(dict(BASE)).match(ev())
    assert m.target == TargetSpec("team/app", "v1.2.3")  # default target: the source path and tag
    assert (m.mode, m.force, m.platforms, m.credential, m.target_registry) == ("NoForce", False, (), None, None)
    assert m.rule_name == "rule 0"
    assert m.to_request("default.azurecr.io").target_registry == "default.azurecr.io"
    with pytest.raises(UsageError, match="no target registry"):
        m.to_request(None)


def test_pinned_after_resolving_a_tag():
    m = rules({"registry": "docker.io", "repository": "*"}).match(ev(registry="docker.io", digest=None))
    assert m.source.digest is None
    pinned = m.pinned(DIGEST)
    assert pinned.source == Reference("docker.io", "team/app", "v1.2.3", DIGEST) and pinned.target == m.target
    assert pinned.dedupe_key("t.io") != m.dedupe_key("t.io")
    with pytest.raises(UsageError):
        m.pinned("sha256:nope")


def test_no_match_is_none():
    r = rules({**BASE, "tags": "v.*"})
    assert r.match(ev(registry="other.example.com")) is None
    assert r.match(ev(repository="other/app")) is None
    assert r.match(ev(tag="latest")) is None
    assert MirrorRules().match(ev()) is None


def test_first_match_wins():
    r = rules({**BASE, "name": "first", "tags": "v1\\..*", "target": "first/{name}"},
              {**BASE, "name": "second", "target": "second/{name}"},
              {**BASE, "name": "third", "target": "third/{name}"})
    assert r.match(ev(tag="v1.0.0")).rule_name == "first"
    assert r.match(ev(tag="v2.0.0")).rule_name == "second"
    assert r.match(ev(tag="v2.0.0")).rule_index == 1


@pytest.mark.parametrize("pattern, registry, hit", [
    ("registry.example.com", "registry.example.com", True),
    ("REGISTRY.example.com", "registry.example.com", True),
    ("registry.example.com", "registry.example.com:5000", False),
    ("*.azurecr.io", "contoso.azurecr.io", True),
    ("*.azurecr.io", "azurecr.io.evil.com", False),
    ("127.0.0.1:*", "127.0.0.1:35765", True),
    ("contoso", "contoso.azurecr.io", True),  # a bare word is an ACR name, as in az acr import --name
    ("index.docker.io", "docker.io", True),
    ("*", "anything.example", True),
])
def test_registry_exact_or_glob(pattern, registry, hit):
    assert (rules({"registry": pattern, "repository": "*"}).match(ev(registry=registry)) is not None) is hit


@pytest.mark.parametrize("pattern, repository, hit", [
    ("team/*", "team/app", True),
    ("team/*", "team/sub/app", True),  # fnmatch: * crosses /
    ("team/*", "teams/app", False),
    ("team/app?", "team/app2", True),
    ("team/[ab]*", "team/backend", True),
    ("team/[ab]*", "team/core", False),
    ("*/app", "team/app", True),
    ("team/app", "team/app", True),
    ("team/app", "team/application", False),
])
def test_repository_glob(pattern, repository, hit):
    r = rules({"registry": "registry.example.com", "repository": pattern})
    assert (r.match(ev(repository=repository)) is not None) is hit


def test_docker_hub_one_word_repository_means_library():
    r = rules({"registry": "docker.io", "repository": "nginx"})
    assert r.match(ev(registry="docker.io", repository="nginx", digest=None)) is not None
    assert r.match(ev(registry="docker.io", repository="someone/nginx", digest=None)) is None


@pytest.mark.parametrize("tags, tag, hit", [
    ("v.*", "v1.2.3", True),
    ("v.*", "1.2.3", False),
    ("[0-9]+", "123", True),
    ("[0-9]+", "123-alpine", False),  # the whole tag must match
    ("1\\.25|1\\.26", "1.26", True),
    ("1\\.25|1\\.26", "1.261", False),
])
def test_tag_regex_is_a_full_match(tags, tag, hit):
    assert (rules({**BASE, "tags": tags}).match(ev(tag=tag)) is not None) is hit


def test_exclude_tags():
    r = rules({**BASE, "tags": "v.*", "excludeTags": ".*-(rc|beta)[0-9.]*"})
    assert r.match(ev(tag="v1.2.3")) is not None
    assert r.match(ev(tag="v1.2.3-rc1")) is None
    assert r.match(ev(tag="v1.2.3-beta.2")) is None
    assert rules({**BASE, "excludeTags": "latest"}).match(ev(tag="latest")) is None
    assert rules({**BASE, "excludeTags": "latest"}).match(ev(tag="latest-debug")) is not None


@pytest.mark.parametrize("rng, tag, hit", [
    (">=1.2,<2", "1.2.0", True),
    (">=1.2,<2", "v1.9.14", True),
    (">=1.2,<2", "1.1.9", False),
    (">=1.2,<2", "2.0.0", False),
    (">=1.2,<2", "1.25", True),
    (">=1.2,<2", "latest", False),
    (">=1.2,<2", "1.5.0-rc.1", False),  # pre-releases only with includePrerelease
    ("^1.4", "1.9.0", True),
    ("^1.4", "2.0.0", False),
    ("~2.3", "2.3.9", True),
    ("~2.3", "2.4.0", False),
    ("<1 || >=3", "0.9.0", True),
    ("<1 || >=3", "2.0.0", False),
    ("!=1.3.0", "1.3.0", False),
    ("*", "7", True),
])
def test_semver_rule(rng, tag, hit):
    assert (rules({**BASE, "semver": rng}).match(ev(tag=tag)) is not None) is hit


def test_include_prerelease():
    r = rules({**BASE, "semver": ">=1.2,<2", "includePrerelease": True})
    assert r.match(ev(tag="1.5.0-rc.1")) is not None
    assert r.match(ev(tag="1.25.3-alpine")) is not None
    assert r.match(ev(tag="1.2.0-rc.1")) is None  # 1.2.0-rc.1 < 1.2.0


def test_all_filters_combine():
    r = rules({**BASE, "tags": "v[0-9.]+(-rc[0-9]+)?", "excludeTags": ".*-rc9", "semver": ">=1.2,<2",
               "includePrerelease": True})
    assert r.match(ev(tag="v1.4.0")) is not None
    assert r.match(ev(tag="v1.4.0-rc1")) is not None
    assert r.match(ev(tag="v1.4.0-rc9")) is None  # excluded
    assert r.match(ev(tag="v2.4.0")) is None  # semver
    assert r.match(ev(tag="1.4.0")) is None  # regex


@pytest.mark.parametrize("template, registry, repository, tag, expected", [
    ("mirror/{repository}", "registry.example.com", "team/app", "v1", ("mirror/team/app", "v1")),
    ("mirror/{name}", "registry.example.com", "team/app", "v1", ("mirror/app", "v1")),
    ("{registry}/{repository}", "127.0.0.1:5000", "team/app", "v1", ("127.0.0.1-5000/team/app", "v1")),
    ("mirror/{name}:{tag}-amd64", "registry.example.com", "team/app", "v1", ("mirror/app", "v1-amd64")),
    ("mirror/{name}:stable", "registry.example.com", "team/app", "v1", ("mirror/app", "stable")),
    ("hub/{repository}", "docker.io", "library/nginx", "1.25", ("hub/library/nginx", "1.25")),
])
def test_target_templates(template, registry, repository, tag, expected):
    r = rules({"registry": "*", "repository": "*", "target": template})
    m = r.match(ev(registry=registry, repository=repository, tag=tag))
    assert (m.target.repository, m.target.tag) == expected


def test_template_rendering_an_invalid_target_names_the_rule():
    r = rules({"registry": "*", "repository": "*", "name": "by-tag", "target": "mirror/{tag}"})
    assert r.match(ev(tag="v1")).target == TargetSpec("mirror/v1", "v1")
    with pytest.raises(UsageError, match=r"mirror rule 0 \(by-tag\).*'mirror/V1'"):
        r.match(ev(tag="V1"))  # tags may be uppercase, repositories may not


# -- the fixtures, end to end through the rules ------------------------------------------------------

FIXTURE_RULES = {
    "version": 1,
    "rules": [
        {"name": "acr", "registry": "*.azurecr.io", "repository": "*", "target": "from-acr/{repository}"},
        {"name": "local", "registry": "127.0.0.1:*", "repository": "team/*", "semver": ">=1,<2",
         "target": "mirror/{repository}"},
        {"name": "hub", "registry": "docker.io", "repository": "svendowideit/*", "target": "hub/{name}",
         "credential": "dockerhub"},
        {"name": "harbor", "registry": "harbor.example.com*", "repository": "*", "tags": "[0-9.]+|v[0-9.]+",
         "target": "harbor/{repository}", "platform": "linux/amd64"},
        {"name": "ghcr", "registry": "ghcr.io", "repository": "octo-org/*", "target": "gh/{name}", "mode": "Force"},
    ],
}


@pytest.mark.parametrize("fixture, source, target, rule", [
    ("eventgrid_imagepushed.json",
     "contosoregistry.azurecr.io/aci-helloworld:v1"
     "@sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5",
     "from-acr/aci-helloworld:v1", "acr"),
    ("cloudevents_imagepushed.json",
     "contosoregistry.azurecr.io/aci-helloworld:v1"
     "@sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5",
     "from-acr/aci-helloworld:v1", "acr"),
    ("eventgrid_batch_multiarch.json",
     "contosoregistry.azurecr.io/team/app:v1.2.3"
     "@sha256:7e4b9d3a1c2f8e6d5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4",
     "from-acr/team/app:v1.2.3", "acr"),
    ("distribution_multiarch_push.json",
     "127.0.0.1:35765/team/app:v1.2.3@sha256:de4c24cd2fc23460624877e07ac0913267127369f451961513bdcc54ba682e09",
     "mirror/team/app:v1.2.3", "local"),
    ("acr_push.json",
     "myregistry.azurecr.io/hello-world:v1@sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
     "from-acr/hello-world:v1", "acr"),
    ("dockerhub_push.json", "docker.io/svendowideit/testhook:latest", "hub/testhook:latest", "hub"),
    ("harbor_push_artifact.json",
     "harbor.example.com/library/alpine:3.18@sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4",
     "harbor/library/alpine:3.18", "harbor"),
    ("harbor_cloudevents_push.json",
     "harbor.example.com:8443/project01/app:v2.1.0"
     "@sha256:dde8e930c7b6a490f728e66292bc9bce42efc9bbb5278bae40e4f30f6e00fe8c",
     "harbor/project01/app:v2.1.0", "harbor"),
    ("github_registry_package_published.json",
     "ghcr.io/octo-org/hello-world:v1.2.3@sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498",
     "gh/hello-world:v1.2.3", "ghcr"),
])
def test_fixture_to_import(fixture, source, target, rule):
    raw = (FIXTURES / fixture).read_bytes()
    prefix = fixture.split("_", 1)[0]
    parsed = parse_eventgrid(raw) if prefix in ("eventgrid", "cloudevents") else parse_webhook(prefix, raw)
    assert len(parsed.events) == 1
    m = MirrorRules.from_data(FIXTURE_RULES).match(parsed.events[0])
    assert (str(m.source), str(m.target), m.rule_name) == (source, target, rule)
    request = m.to_request("target.azurecr.io")
    assert request.source.ref == (m.source.digest or m.source.tag)


def test_fixture_matching_no_rule_is_ignored():
    event = parse_eventgrid((FIXTURES / "eventgrid_chartpushed.json").read_bytes()).events[0]
    r = MirrorRules.from_data({"rules": [{"registry": "*.azurecr.io", "repository": "team/*"}]})
    assert r.match(event) is None


# -- loading and validation -----------------------------------------------------------------------

def test_load_from_file_and_env(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(FIXTURE_RULES))
    loaded = MirrorRules.load(path)
    assert len(loaded) == 5 and loaded.source == str(path)
    assert len(MirrorRules.from_settings(Settings.from_env({"IMPORT_MIRROR_RULES_FILE": str(path)}))) == 5
    assert len(MirrorRules.from_settings(Settings.from_env({}))) == 0


def test_load_errors(tmp_path):
    with pytest.raises(UsageError, match="cannot read mirror rules file"):
        MirrorRules.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [\n  {"registry": "x.io",}\n]}')
    with pytest.raises(UsageError, match="line 2 column"):
        MirrorRules.load(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="cannot read"):
        MirrorRules.load(bad)


@pytest.mark.parametrize("data, message", [
    ([], "top level: expected an object"),
    ({"rules": {}}, "rules: required"),
    ({}, "rules: required"),
    ({"version": 2, "rules": []}, "version: unsupported"),
    ({"version": True, "rules": []}, "version: unsupported"),
    ({"rule": []}, "rule: unknown field"),
    ({"rules": ["x"]}, r"rules\[0\]: a rule must be an object"),
    ({"rules": [{"repository": "a"}]}, r"rules\[0\]\.registry: required"),
    ({"rules": [{**BASE}, {"registry": "x.io"}]}, r"rules\[1\]\.repository: required"),
    ({"rules": [{**BASE, "tag": "v.*"}]}, r"rules\[0\]\.tag: unknown field"),
    ({"rules": [{**BASE}, {**BASE, "tags": "v(.*"}]}, r"rules\[1\]\.tags: invalid regular expression"),
    ({"rules": [{**BASE, "excludeTags": "["}]}, r"rules\[0\]\.excludeTags: invalid regular expression"),
    ({"rules": [{**BASE, "semver": ">=1.2,,<"}]}, r"rules\[0\]\.semver: semver range"),
    ({"rules": [{**BASE, "semver": "latest"}]}, r"rules\[0\]\.semver"),
    ({"rules": [{**BASE, "semver": 12}]}, r"rules\[0\]\.semver: expected a non-empty string"),
    ({"rules": [{**BASE, "includePrerelease": "yes"}]}, r"rules\[0\]\.includePrerelease"),
    ({"rules": [{**BASE, "target": "mirror/{repo}"}]}, r"rules\[0\]\.target: unknown placeholder \{repo\}"),
    ({"rules": [{**BASE, "target": "mirror/{name!r}"}]}, r"rules\[0\]\.target: placeholder \{name\}"),
    ({"rules": [{**BASE, "target": "mirror/{name"}]}, r"rules\[0\]\.target: invalid template"),
    ({"rules": [{**BASE, "target": "Mirror/{name}"}]}, r"rules\[0\]\.target: .*lowercase"),
    ({"rules": [{**BASE, "target": "mirror/{name}@sha256:x"}]}, r"rules\[0\]\.target"),
    ({"rules": [{**BASE, "target": ""}]}, r"rules\[0\]\.target: expected a non-empty string"),
    ({"rules": [{**BASE, "targetRegistry": "not a host"}]}, r"rules\[0\]\.targetRegistry"),
    ({"rules": [{**BASE, "mode": "Sometimes"}]}, r"rules\[0\]\.mode: 'Sometimes': expected NoForce or Force"),
    ({"rules": [{**BASE, "platform": "linux"}]}, r"rules\[0\]\.platform: invalid platform"),
    ({"rules": [{**BASE, "platforms": ["linux/amd64", "linux"]}]}, r"rules\[0\]\.platforms\[1\]: invalid platform"),
    ({"rules": [{**BASE, "platforms": ["linux/amd64", 7]}]}, r"rules\[0\]\.platforms\[1\]: expected a string"),
    ({"rules": [{**BASE, "platforms": []}]}, r"rules\[0\]\.platforms: expected a non-empty array"),
    ({"rules": [{**BASE, "platforms": "linux/amd64"}]}, r"rules\[0\]\.platforms: expected a non-empty array"),
    ({"rules": [{**BASE, "platform": "linux/amd64", "platforms": ["linux/arm64"]}]},
     r"rules\[0\]\.platforms: give platform or platforms, not both"),
    ({"rules": [{**BASE, "credential": {"username": "u", "password": "p"}}]},
     r"rules\[0\]\.credential: must be the NAME of a credential entry"),
    ({"rules": [{**BASE, "credential": "has space"}]}, r"rules\[0\]\.credential: 'has space'"),
    ({"rules": [{"registry": "bad host!", "repository": "a"}]}, r"rules\[0\]\.registry: invalid registry"),
    ({"rules": [{"registry": "x.io", "repository": "Team/*"}]}, r"rules\[0\]\.repository: .*lowercase"),
    ({"rules": [{**BASE, "name": ["x"]}]}, r"rules\[0\]\.name: expected a non-empty string"),
])
def test_validation_errors_name_the_rule_and_field(data, message):
    with pytest.raises(UsageError, match=message) as info:
        MirrorRules.from_data(data, source="rules.json")
    assert str(info.value).startswith("mirror rules file rules.json: ")


def test_from_json_errors():
    with pytest.raises(UsageError, match="not valid JSON at line 1"):
        MirrorRules.from_json("{nope")
    with pytest.raises(UsageError, match="not valid JSON"):
        MirrorRules.from_json("[" * 100_000)


def test_docs_example_rules_file_loads_and_matches():
    """The rules example in docs/events.md is a real, valid rules file."""
    text = (ROOT / "docs" / "events.md").read_text()
    blocks = [b for b in re.findall(r"```json\n(.*?)```", text, re.S) if '"rules"' in b]
    assert blocks, "docs/events.md must hold a rules file example"
    r = MirrorRules.from_json(blocks[0], source="docs/events.md")
    assert [rule.name for rule in r.rules] == ["nginx-stable", "team-releases", "ghcr-charts"]
    m = r.match(ev(registry="docker.io", repository="library/nginx", tag="1.27.3", digest=None))
    assert (str(m.target), m.platforms, m.credential) == (
        "mirror/library/nginx:1.27.3", (Platform("linux", "amd64"), Platform("linux", "arm64")), "dockerhub")
    assert m.to_request("mirror.azurecr.io").platforms == m.platforms
    assert r.match(ev(registry="docker.io", repository="library/nginx", tag="1.27.3-alpine")) is None
    m = r.match(ev(registry="contoso.azurecr.io", repository="team/api", tag="v4.0.1"))
    assert (str(m.target), m.mode) == ("upstream/contoso.azurecr.io/team/api:v4.0.1", "Force")
    assert r.match(ev(registry="contoso.azurecr.io", repository="team/api", tag="v4.0.1-rc2")) is None
    m = r.match(ev(registry="ghcr.io", repository="octo-org/charts/redis", tag="2.4.0"))
    assert (str(m.target), m.target_registry) == ("charts/redis:2.4.0", "charts.azurecr.io")
    assert r.match(ev(registry="ghcr.io", repository="octo-org/charts/redis", tag="2.0.9")) is None


# -- semver ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("tag, expected", [
    ("1.2.3", "1.2.3"), ("v1.2.3", "1.2.3"), ("1.25", "1.25.0"), ("7", "7.0.0"), ("1.2.3-rc.1", "1.2.3-rc.1"),
    ("1.25.3-alpine3.19", "1.25.3-alpine3.19"), ("latest", None), ("1.2.3.4", None), ("", None),
    ("v", None), ("1.2.3-", None), ("sha-1a2b3c", None), ("1..2", None), ("99999999999999999", None),
])
def test_parse_version(tag, expected):
    v = parse_version(tag)
    assert (str(v) if v else None) == expected


def test_version_precedence():
    order = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11",
             "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]  # the example of semver.org section 11
    keys = [parse_version(t).key for t in order]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


@pytest.mark.parametrize("rng, inside, outside", [
    ("^1.2.3", ["1.2.3", "1.9.9"], ["1.2.2", "2.0.0"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
    ("^1", ["1.0.0", "1.99.0"], ["2.0.0", "0.9.0"]),
    ("^0", ["0.0.0", "0.9.9"], ["1.0.0"]),
    ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
    ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
    (">= 1.2 , < 2", ["1.2.0", "1.99.1"], ["2.0.0"]),
    (">=1.2 <2", ["1.5.0"], ["1.1.0"]),
    ("=1.2", ["1.2.0"], ["1.2.1"]),
    ("1.2.3", ["1.2.3", "v1.2.3"], ["1.2.4"]),
    ("==1.2.3", ["1.2.3"], ["1.2.4"]),
    (">1.2.3", ["1.2.4"], ["1.2.3"]),
    ("<=1.2.3", ["1.2.3", "0.1.0"], ["1.2.4"]),
    ("<1 || >=3 <4", ["0.5.0", "3.5.0"], ["1.0.0", "4.0.0"]),
])
def test_ranges(rng, inside, outside):
    r = Range.parse(rng)
    assert all(r.contains(v) for v in inside), rng
    assert not any(r.contains(v) for v in outside), rng


@pytest.mark.parametrize("rng", ["", "  ", ">=", "latest", ">=1.2,,<", "<1 ||", "=>1.0", ">=1.2.3.4", "^", "1.x"])
def test_invalid_ranges(rng):
    with pytest.raises(UsageError):
        Range.parse(rng)


@settings(max_examples=300, deadline=None)
@given(a=st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)),
       b=st.tuples(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30)))
def test_property_range_agrees_with_tuple_order(a, b):
    va, vb = ".".join(map(str, a)), ".".join(map(str, b))
    assert Range.parse(f">={vb}").contains(va) == (a >= b)
    assert Range.parse(f"<{vb}").contains(va) == (a < b)
    assert Range.parse(f"={vb}").contains(va) == (a == b)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=30))
def test_property_range_parse_raises_only_usage_errors(text):
    try:
        r = Range.parse(text)
    except UsageError:
        return
    r.contains("1.2.3")


_RULE_KEYS = ["rules", "version", "registry", "repository", "tags", "excludeTags", "semver", "target", "mode",
              "platform", "platforms", "credential", "name", "includePrerelease", "targetRegistry"]


def _rule_children(children):
    return st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(_RULE_KEYS), children, max_size=5)


_rule_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=15), _rule_children,
                          max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(data=_rule_json)
def test_property_rules_validation_raises_only_usage_errors(data):
    try:
        MirrorRules.from_data(data)
    except UsageError:
        pass
