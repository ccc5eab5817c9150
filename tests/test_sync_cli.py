"""`python -m importcore sync` against real Distribution registries: only changed upstream tags are
imported, an unchanged pass costs HEADs and no manifest GET (counted by a proxy in front of the
upstream), --dry-run changes nothing, a 429 or a spent rate-limit budget defers, catalogs and tag
lists are paginated. skopeo reads back what arrived."""
from __future__ import annotations

import json
import subprocess
import sys
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from importcore.cli import main
from importcore.net.transport import make_http_client
from importcore.registry.client import RegistryClient
from importcore.engine.runner import policy_for
from importcore.values.errors import RegistryError
from importcore.values.settings import Settings
from tests.support.faultproxy import AddHeaders, FaultProxy, Status
from tests.support.httpserver import JsonHandler, serve_in_background, stop_server
from tests.support.images import Pusher, push_image, push_index
from tests.support.skopeo import skopeo_digest

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM_TAGS = ("0.9.0", "1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1", "latest")


@pytest.fixture
def env(local_env, monkeypatch, target_registry):
    monkeypatch.setenv("IMPORT_TARGET_REGISTRY", target_registry.host)
    monkeypatch.delenv("IMPORT_MIRROR_RULES_FILE", raising=False)
    monkeypatch.delenv("IMPORT_SYNC_MIN_REMAINING", raising=False)
    return local_env


@pytest.fixture
def upstream(source_registry):
    """A counting (and, when told, misbehaving) proxy in front of the source registry: the upstream."""
    with FaultProxy(source_registry) as proxy:
        yield proxy


def seed(source_registry, repo: str, tags) -> dict[str, str]:
    """Push one small image per tag (each different); tag -> digest."""
    with Pusher(source_registry) as pusher:
        return {tag: push_image(pusher, repo, tag, layers=[256]).digest for tag in tags}


def write_rules(tmp_path: Path, *rules: dict) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"version": 1, "rules": list(rules)}))
    return path


def rule(upstream, repo: str, **fields) -> dict:
    sync = fields.pop("sync", {"schedule": "0 0 */6 * * *"})
    return {"name": "app", "registry": upstream.host, "repository": repo, "target": "mirror/{repository}",
            "sync": sync, **fields}


def run_sync(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        rc = main(["sync", *args])
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return rc, out, err


def sync_json(capsys, rules: Path, *args: str) -> tuple[int, dict]:
    rc, out, err = run_sync(capsys, "--rules", str(rules), "--output", "json", *args)
    assert "Traceback" not in err, err
    [line] = out.strip().splitlines()
    return rc, json.loads(line)


def target_tags(target_registry, repo: str) -> list[str]:
    with Pusher(target_registry) as pusher:
        return sorted(pusher.tags(f"mirror/{repo}"))


def imported_tags(report: dict) -> list[str]:
    return sorted(i["target"].rsplit(":", 1)[1] for i in report["imported"])


def test_the_newest_two_arrive_then_only_what_changed(env, capsys, tmp_path, source_registry, target_registry,
                                                      upstream, unique_repo):
    digests = seed(source_registry, unique_repo, UPSTREAM_TAGS)
    rules = write_rules(tmp_path, rule(upstream, unique_repo, semver=">=1.0",
                                       sync={"schedule": "0 0 */6 * * *", "latest": 2}))

    rc, report = sync_json(capsys, rules)
    assert rc == 0, report
    [first] = report["rules"]
    assert first["name"] == "app" and first["failed"] == [] and first["deferred"] == [] and first["error"] is None
    assert [p["target"] for p in first["planned"]] == [f"mirror/{unique_repo}:1.2.0", f"mirror/{unique_repo}:1.1.0"]
    assert first["planned"][0]["source"] == f"{upstream.host}/{unique_repo}:1.2.0@{digests['1.2.0']}"
    assert imported_tags(first) == ["1.1.0", "1.2.0"] and first["unchanged"] == 0
    assert target_tags(target_registry, unique_repo) == ["1.1.0", "1.2.0"]
    for tag in ("1.1.0", "1.2.0"):
        assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:{tag}") == digests[tag]

    # Unchanged upstream: the tag list and one HEAD per candidate at the source, no manifest GET.
    before = len(upstream.requests)
    rc, report = sync_json(capsys, rules)
    assert rc == 0
    assert (report["rules"][0]["unchanged"], report["rules"][0]["planned"]) == (2, [])
    pass_requests = upstream.requests[before:]
    assert [r.method for r in pass_requests if "/manifests/" in r.path] == ["HEAD", "HEAD"]
    assert [(r.method, r.path) for r in pass_requests if "/manifests/" not in r.path and r.path != "/v2/"] == [
        ("GET", f"/v2/{unique_repo}/tags/list")]

    # Upstream moves on: a new version, and 1.2.0 re-pushed with new content. A sync rule is Force by
    # default, so exactly those two are imported and the mirror's 1.2.0 follows.
    digests.update(seed(source_registry, unique_repo, ("1.3.0", "1.2.0")))
    rc, report = sync_json(capsys, rules)
    assert rc == 0, report
    assert imported_tags(report["rules"][0]) == ["1.2.0", "1.3.0"] and report["rules"][0]["unchanged"] == 0
    for tag in ("1.2.0", "1.3.0"):
        assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:{tag}") == digests[tag]
    # Tags that fell out of `latest` stay in the mirror: sync never deletes.
    assert target_tags(target_registry, unique_repo) == ["1.1.0", "1.2.0", "1.3.0"]


def test_noforce_imports_new_tags_and_reports_moved_ones(env, capsys, tmp_path, source_registry, target_registry,
                                                         upstream, unique_repo):
    old = seed(source_registry, unique_repo, ("1.1.0", "1.2.0"))
    rules = write_rules(tmp_path, rule(upstream, unique_repo, mode="NoForce"))
    assert sync_json(capsys, rules)[0] == 0
    new = seed(source_registry, unique_repo, ("1.3.0", "1.2.0"))

    rc, report = sync_json(capsys, rules)
    assert rc == 1
    [result] = report["rules"]
    assert imported_tags(result) == ["1.3.0"] and result["unchanged"] == 1
    [failed] = result["failed"]
    assert failed["source"] == f"{upstream.host}/{unique_repo}:1.2.0@{new['1.2.0']}"
    assert failed["target"] == f"mirror/{unique_repo}:1.2.0"
    assert "mode NoForce leaves it" in failed["error"] and old["1.2.0"] in failed["error"]
    assert skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:1.2.0") == old["1.2.0"]


def test_dry_run_lists_the_plan_and_changes_nothing(env, capsys, tmp_path, source_registry, target_registry,
                                                    upstream, unique_repo):
    digests = seed(source_registry, unique_repo, ("1.0.0", "1.1.0", "latest"))
    rules = write_rules(tmp_path, rule(upstream, unique_repo, tags="[0-9.]+"))

    rc, report = sync_json(capsys, rules, "--dry-run")
    assert rc == 0
    assert report["rules"][0]["planned"] == [
        {"source": f"{upstream.host}/{unique_repo}:{t}@{digests[t]}", "target": f"mirror/{unique_repo}:{t}"}
        for t in ("1.1.0", "1.0.0")]
    assert report["rules"][0]["imported"] == []
    rc, out, err = run_sync(capsys, "--rules", str(rules), "--dry-run")
    assert (rc, err) == (0, "")
    assert out.splitlines() == [
        "rule app: 2 to import, 0 unchanged, 0 deferred, 0 failed",
        f"  would import {upstream.host}/{unique_repo}:1.1.0@{digests['1.1.0']} -> mirror/{unique_repo}:1.1.0",
        f"  would import {upstream.host}/{unique_repo}:1.0.0@{digests['1.0.0']} -> mirror/{unique_repo}:1.0.0"]
    assert target_tags(target_registry, unique_repo) == []
    assert upstream.count("GET", "/manifests/") == 0


def test_a_429_with_retry_after_defers_and_never_fails_the_rule(env, capsys, tmp_path, source_registry,
                                                                target_registry, upstream, unique_repo):
    seed(source_registry, unique_repo, ("1.1.0", "1.2.0"))
    rules = write_rules(tmp_path, rule(upstream, unique_repo))
    throttled = upstream.add("HEAD", r"/manifests/1\.2\.0$", Status(429, retry_after=3600))

    rc, report = sync_json(capsys, rules)
    assert rc == 0, report  # deferred is not failed: the next pass takes it
    [result] = report["rules"]
    assert result["failed"] == [] and result["error"] is None and throttled.fired == 1
    deferred = {d["source"]: d["reason"] for d in result["deferred"]}
    assert "429" in deferred[f"{upstream.host}/{unique_repo}:1.2.0"]
    assert "retry after 3600 s" in deferred[f"{upstream.host}/{unique_repo}:1.2.0"]
    assert "1.2.0" not in imported_tags(result)

    upstream.clear()
    rc, report = sync_json(capsys, rules)
    assert rc == 0
    assert target_tags(target_registry, unique_repo) == ["1.1.0", "1.2.0"]


def test_the_rate_limit_budget_defers_the_rest(env, capsys, tmp_path, source_registry, target_registry, upstream,
                                               unique_repo):
    seed(source_registry, unique_repo, ("1.0.0", "1.1.0", "1.2.0", "1.3.0"))
    rules = write_rules(tmp_path, rule(upstream, unique_repo))
    # Docker Hub's header on every answer: 12 pulls left. With IMPORT_SYNC_MIN_REMAINING 10 (the default)
    # a pass plans two imports (12-2 = 10) and defers the rest.
    upstream.add("*", r"^/v2/", AddHeaders((("RateLimit-Limit", "100;w=21600"), ("RateLimit-Remaining", "12;w=21600"))))

    rc, report = sync_json(capsys, rules)
    assert rc == 0
    [result] = report["rules"]
    assert len(result["imported"]) == 2 and len(result["deferred"]) == 2 and result["failed"] == []
    assert all("RateLimit-Remaining" in d["reason"] and "IMPORT_SYNC_MIN_REMAINING is 10" in d["reason"]
               for d in result["deferred"])
    assert len(target_tags(target_registry, unique_repo)) == 2

    # The next pass picks the deferred ones up (what was imported is unchanged now, and free to check).
    rc, report = sync_json(capsys, rules)
    assert rc == 0 and report["rules"][0]["unchanged"] == 2 and len(report["rules"][0]["imported"]) == 2
    assert target_tags(target_registry, unique_repo) == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]


def test_a_glob_is_resolved_with_the_catalog_or_the_listed_repositories(env, capsys, tmp_path, source_registry,
                                                                        target_registry, upstream, unique_repo):
    for name in ("a", "b"):
        seed(source_registry, f"{unique_repo}/{name}", ("1.0",))
    by_catalog = write_rules(tmp_path, rule(upstream, f"{unique_repo}/*"))
    rc, report = sync_json(capsys, by_catalog)
    assert rc == 0, report
    assert sorted(i["target"] for i in report["rules"][0]["imported"]) == [
        f"mirror/{unique_repo}/a:1.0", f"mirror/{unique_repo}/b:1.0"]
    assert upstream.count("GET", "/v2/_catalog") >= 1

    # A registry that does not list its catalog (Docker Hub): the rule fails with a clear message...
    upstream.add("GET", r"^/v2/_catalog", Status(401, oci_code="UNAUTHORIZED"))
    rc, report = sync_json(capsys, by_catalog)
    assert rc == 1
    error = report["rules"][0]["error"]
    assert f"{upstream.host} does not list its repositories" in error and "sync.repositories" in error
    # ...and works with the repositories named.
    seed(source_registry, f"{unique_repo}/a", ("1.1",))
    listed = write_rules(tmp_path, rule(upstream, f"{unique_repo}/*", sync={
        "schedule": "0 0 */6 * * *", "repositories": [f"{unique_repo}/a"]}))
    rc, report = sync_json(capsys, listed)
    assert rc == 0, report
    assert [i["target"] for i in report["rules"][0]["imported"]] == [f"mirror/{unique_repo}/a:1.1"]
    assert report["rules"][0]["unchanged"] == 1


def test_the_catalog_follows_link_pagination(env, source_registry, upstream, unique_repo):
    seed(source_registry, f"{unique_repo}/x", ("1.0",))
    seed(source_registry, f"{unique_repo}/y", ("1.0",))
    settings = Settings.from_env()
    policy = policy_for(settings, None)
    with make_http_client(policy) as http:
        catalog = RegistryClient(upstream.host, http=http, policy=policy).catalog(page_size=2)
    assert {f"{unique_repo}/x", f"{unique_repo}/y"} <= set(catalog) and len(catalog) == len(set(catalog))
    pages = upstream.seen("GET", "/v2/_catalog")
    assert len(pages) >= len(catalog) // 2 >= 1 and pages[0].query == "n=2"
    assert all("last=" in page.query for page in pages[1:])


class _PagedTags(JsonHandler):
    """Distribution 2.8 lists every tag at once; registries that page (Distribution 3, ghcr, Harbor)
    answer `n` tags and `Link: <...>; rel="next"`. `links` maps a page to its Link header."""

    pages: dict[str, tuple[list[str], str | None]] = {}

    def do_GET(self):
        if self.path == "/v2/":
            return self._send(200, {})
        page = self.pages.get(self.path)
        if page is None:
            return self._send(404, {"errors": [{"code": "NAME_UNKNOWN"}]})
        tags, link = page
        data = json.dumps({"name": "app", "tags": tags}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if link:
            self.send_header("Link", link)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def paged_tags():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PagedTags)
    port = serve_in_background(server, "paged-tags")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_server(server)


def test_tag_lists_follow_link_pagination_on_the_same_host_only(env, paged_tags):
    settings = Settings.from_env()
    policy = policy_for(settings, None)
    _PagedTags.pages = {
        "/v2/app/tags/list?n=2": (["1.0", "1.1"], '</v2/app/tags/list?n=2&last=1.1>; rel="next"'),
        "/v2/app/tags/list?n=2&last=1.1": (["1.2", "2.0"], f'<http://{paged_tags}/v2/app/tags/list?n=2&last=2.0>; '
                                                           'rel="next"'),
        "/v2/app/tags/list?n=2&last=2.0": (["3.0"], None),
        "/v2/loop/tags/list?n=2": (["1.0"], '</v2/loop/tags/list?n=2>; rel="next"'),
        "/v2/away/tags/list?n=2": (["1.0"], '<http://127.0.0.2:9/v2/away/tags/list?n=2&last=1.0>; rel="next"'),
    }
    with make_http_client(policy) as http:
        client = RegistryClient(paged_tags, http=http, policy=policy)
        assert client.tags_list("app", page_size=2) == ["1.0", "1.1", "1.2", "2.0", "3.0"]
        with pytest.raises(RegistryError, match="loops back"):
            client.tags_list("loop", page_size=2)
        with pytest.raises(RegistryError, match=r"the next page is on another host \(127.0.0.2:9\)"):
            client.tags_list("away", page_size=2)


def test_usage_errors_are_one_line_and_exit_2(env, capsys, tmp_path, upstream, unique_repo):
    rules = write_rules(tmp_path, rule(upstream, unique_repo))
    rc, out, err = run_sync(capsys, "--rules", str(rules), "--rule", "nope")
    assert (rc, out) == (2, "")
    assert err.strip() == f"error: no sync rule named 'nope' in {rules} (sync rules: app)"
    bad = write_rules(tmp_path, rule(upstream, unique_repo, sync={"schedule": "0 0 * * * *", "latest": 0}))
    rc, out, err = run_sync(capsys, "--rules", str(bad))
    assert rc == 2
    assert err.strip() == (f"error: mirror rules file {bad}: rules[0].sync.latest: expected a whole number of at "
                           "least 1, got 0 (rule 'app')")
    rc, out, err = run_sync(capsys)
    assert (rc, err.strip()) == (2, "error: no mirror rules: pass --rules FILE or set IMPORT_MIRROR_RULES_FILE")


def test_the_module_exits_1_with_one_line_when_the_upstream_is_gone(env, tmp_path, unique_repo):
    # A real process: the exit code and stderr as a cron job sees them. Nothing listens on the port.
    from tests.support.ports import free_port

    gone = f"127.0.0.1:{free_port()}"
    rules = write_rules(tmp_path, {"name": "gone", "registry": gone, "repository": unique_repo,
                                   "sync": {"schedule": "0 0 * * * *"}})
    p = subprocess.run([sys.executable, "-m", "importcore", "sync", "--rules", str(rules)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p
    assert "Traceback" not in p.stderr
    assert p.stdout.splitlines()[0] == "rule gone: 0 imported, 0 unchanged, 0 deferred, 1 failed"
    assert f"failed {gone}/{unique_repo}: " in p.stdout


@pytest.mark.parametrize("platforms", [{"platform": "linux/amd64"},
                                       {"platforms": ["linux/amd64", "linux/arm64"]}], ids=["platform", "platforms"])
def test_a_platform_rule_compares_what_the_platforms_pick(env, capsys, tmp_path, source_registry, target_registry,
                                                          upstream, unique_repo, platforms):
    # With `platform` the mirror's tag holds the platform's image, with `platforms` a new index of just
    # those: not the upstream index, by design. The CLI (which keeps nothing between runs) reads the
    # index once per tag to know what they pick; the app remembers it (tests/test_sync_app.py).
    with Pusher(source_registry) as pusher:
        index = push_index(pusher, unique_repo, "1.0",
                           platforms=[("linux", "amd64", None), ("linux", "arm64", "v8"), ("linux", "s390x", None)])
    rules = write_rules(tmp_path, rule(upstream, unique_repo, **platforms))
    rc, report = sync_json(capsys, rules)
    assert rc == 0 and imported_tags(report["rules"][0]) == ["1.0"]
    mirrored = skopeo_digest(f"{target_registry.host}/mirror/{unique_repo}:1.0")
    assert mirrored != index.digest
    if "platform" in platforms:
        assert mirrored == index.children[0].digest

    before = upstream.count("GET", "/manifests/")
    rc, report = sync_json(capsys, rules)
    assert rc == 0 and report["rules"][0]["unchanged"] == 1 and report["rules"][0]["planned"] == []
    assert [r.path for r in upstream.seen("GET", "/manifests/")[before:]] == [
        f"/v2/{unique_repo}/manifests/{index.digest}"]


def test_the_host_policy_applies_to_a_sync_source(env, capsys, tmp_path, monkeypatch, upstream, unique_repo):
    monkeypatch.delenv("IMPORT_ALLOWED_PRIVATE_HOSTS")  # loopback sources are refused again
    rules = write_rules(tmp_path, rule(upstream, unique_repo))
    rc, report = sync_json(capsys, rules)
    assert rc == 1
    assert report["rules"][0]["error"].startswith(f"source registry {upstream.host} is not allowed: ")
    assert upstream.total == 0  # refused before any request


def test_a_registry_echoing_the_credentials_does_not_get_them_into_the_report(env, capsys, tmp_path):
    import base64

    from tests.support.hostile import BasicAuth, HostileServer, Reply

    password = "hunter2-echoed-in-sync"
    basic = base64.b64encode(f"alice:{password}".encode()).decode()
    with HostileServer() as srv:
        srv.auth = BasicAuth("alice", password)
        srv.on("GET", "/v2/r/tags/list", Reply.error(400, "NAME_INVALID", f"you said {password} and Basic {basic}"))
        env.write_auth({srv.host: ("alice", password)})
        rules = write_rules(tmp_path, {"name": "echo", "registry": srv.host, "repository": "r",
                                       "sync": {"schedule": "0 0 * * * *"}})
        rc, out, err = run_sync(capsys, "--rules", str(rules), "--output", "json")
    assert rc == 1
    [failed] = json.loads(out)["rules"][0]["failed"]
    assert "NAME_INVALID" in failed["error"] and "***" in failed["error"]
    assert password not in out + err and basic not in out + err
