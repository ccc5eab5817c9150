"""The `sync` object of a mirror rule: what loads, what is refused (naming the rule and the field),
which tags a pass considers, and when a schedule is due. Pure: no registry."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from importcore.triggers import MirrorRules
from importcore.triggers.sync import Schedule, select_tags
from importcore.values.errors import UsageError

UTC = dt.timezone.utc


def rules(*rule: dict) -> MirrorRules:
    return MirrorRules.from_json(json.dumps({"version": 1, "rules": list(rule)}), source="rules.json")


def sync_rule(**fields) -> dict:
    base = {"name": "app", "registry": "registry.example.com", "repository": "team/app",
            "sync": {"schedule": "0 0 */6 * * *"}}
    base.update(fields)
    return base


def load_error(*rule: dict) -> str:
    with pytest.raises(UsageError) as caught:
        rules(*rule)
    return caught.value.message


def test_a_sync_rule_loads_with_its_fields():
    loaded = rules(sync_rule(semver=">=1.0", sync={"schedule": "0 */5 * * * *", "latest": 2}),
                   {"registry": "*.azurecr.io", "repository": "team/*"})
    [rule] = loaded.sync_rules
    assert (rule.name, str(rule.sync.schedule), rule.sync.latest, rule.sync.repositories) == (
        "app", "0 */5 * * * *", 2, None)
    assert loaded.sync_rule("app") is rule
    assert len(loaded) == 2  # the rule without sync still matches events


def test_a_sync_rule_defaults_to_force_and_keeps_an_explicit_mode():
    assert rules(sync_rule()).sync_rule("app").mode == "Force"
    assert rules(sync_rule(mode="NoForce")).sync_rule("app").mode == "NoForce"
    assert rules({"registry": "registry.example.com", "repository": "team/app"}).rules[0].mode == "NoForce"


def test_docker_hub_short_repositories_get_library():
    rule = rules(sync_rule(registry="docker.io", repository="library/*",
                           sync={"schedule": "0 0 3 * * *", "repositories": ["nginx", "library/redis"]}))
    assert rule.sync_rule("app").sync.repositories == ("library/nginx", "library/redis")


@pytest.mark.parametrize(("rule", "where", "words"), [
    (sync_rule(registry="*.azurecr.io"), "rules[0].registry", "exact host"),
    (sync_rule(sync={"schedule": "0 */5 * * *"}), "rules[0].sync.schedule", "6 NCRONTAB fields"),
    (sync_rule(sync={"schedule": "0 61 * * * *"}), "rules[0].sync.schedule", "not a valid NCRONTAB"),
    (sync_rule(sync={}), "rules[0].sync.schedule", "required"),
    (sync_rule(sync={"schedule": "0 0 * * * *", "latest": 0}), "rules[0].sync.latest", "at least 1"),
    (sync_rule(sync={"schedule": "0 0 * * * *", "latest": "3"}), "rules[0].sync.latest", "whole number"),
    (sync_rule(sync={"schedule": "0 0 * * * *", "every": 3}), "rules[0].sync.every", "unknown field"),
    (sync_rule(sync="0 0 * * * *"), "rules[0].sync", "expected an object"),
    (sync_rule(repository="team/*", sync={"schedule": "0 0 * * * *", "repositories": ["other/app"]}),
     "rules[0].sync.repositories[0]", "does not match the rule's repository"),
    (sync_rule(repository="team/*", sync={"schedule": "0 0 * * * *", "repositories": ["team/*"]}),
     "rules[0].sync.repositories[0]", "no glob"),
    (sync_rule(repository="team/*", sync={"schedule": "0 0 * * * *", "repositories": []}),
     "rules[0].sync.repositories", "non-empty"),
    (sync_rule(name="my app"), "rules[0].name", "needs a name"),
])
def test_load_errors_name_the_rule_and_the_field(rule, where, words):
    message = load_error(rule)
    assert f"rules.json: {where}: " in message and words in message, message
    if rule["name"] == "app":
        assert "(rule 'app')" in message


def test_a_sync_rule_without_a_name_is_refused():
    rule = sync_rule()
    del rule["name"]
    assert "rules[0].name: a rule with sync needs a name" in load_error(rule)


def test_two_sync_rules_may_not_share_a_name():
    message = load_error(sync_rule(), sync_rule(repository="team/other"))
    assert "rules[1].name: 'app' is also the name of rules[0]" in message


def test_an_unknown_rule_name_lists_the_sync_rules():
    with pytest.raises(UsageError) as caught:
        rules(sync_rule(), {"name": "events-only", "registry": "r.example.com", "repository": "x"}).sync_rule("nope")
    assert caught.value.message == "no sync rule named 'nope' in rules.json (sync rules: app)"
    assert caught.value.target == "rule"


TAGS = ["0.9.0", "1.0.0", "1.1.0", "1.2.0", "2.0.0-rc.1", "latest"]


def test_the_newest_two_of_semver_1_0_and_up():
    rule = rules(sync_rule(semver=">=1.0", sync={"schedule": "0 0 * * * *", "latest": 2})).sync_rule("app")
    assert rule.select_tags(TAGS) == ["1.2.0", "1.1.0"]


def test_latest_counts_only_versions_and_skips_prereleases_unless_asked():
    def pick(**kw):
        return select_tags(TAGS, include=None, exclude=None, semver=None, **kw)

    assert pick(include_prerelease=False, latest=2) == ["1.2.0", "1.1.0"]  # `latest` is no version
    assert pick(include_prerelease=True, latest=2) == ["2.0.0-rc.1", "1.2.0"]
    # Without `latest` every tag that passes the filters is checked: newest versions first, then the rest.
    assert pick(include_prerelease=False, latest=None) == ["1.2.0", "1.1.0", "1.0.0", "0.9.0", "2.0.0-rc.1", "latest"]


def test_every_filter_applies_before_latest():
    rule = rules(sync_rule(tags="[0-9.]+", excludeTags="1\\.2\\..*",
                           sync={"schedule": "0 0 * * * *", "latest": 2})).sync_rule("app")
    assert rule.select_tags(TAGS + ["1.2.1", "1.10.0"]) == ["1.10.0", "1.1.0"]


def test_schedule_due_and_next_in_utc():
    every_six_hours = Schedule("0 0 */6 * * *")
    at = dt.datetime(2024, 5, 6, 13, 20, 5, tzinfo=UTC)
    assert every_six_hours.due_at(at) == dt.datetime(2024, 5, 6, 12, 0, 0, tzinfo=UTC)
    assert every_six_hours.next_after(at) == dt.datetime(2024, 5, 6, 18, 0, 0, tzinfo=UTC)
    exactly = dt.datetime(2024, 5, 6, 18, 0, 0, tzinfo=UTC)
    assert every_six_hours.due_at(exactly) == exactly  # a tick right on the due time runs it
    # NCRONTAB: a restricted day-of-month AND day-of-week must both hold (cron would OR them).
    friday_13th = Schedule("0 0 0 13 * FRI")
    assert friday_13th.next_after(at) == dt.datetime(2024, 9, 13, 0, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize("doc", ["README.md", "docs/sync.md"])
def test_the_documented_rules_examples_load(doc):
    """The complete examples users copy: the first JSON block after the sync section's heading."""
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / doc).read_text()
    start = text.index("# Keep a mirror current")  # the heading, not a link to it
    block = text[start:].split("```json", 1)[1].split("```", 1)[0]
    loaded = MirrorRules.from_json(block, source=doc)
    assert [r.name for r in loaded.sync_rules] == ["nginx", "hub-tools", "team-charts"]
    assert [r.mode for r in loaded.sync_rules] == ["Force", "Force", "NoForce"]
