"""`python -m importcore sync`: run every mirror rule with `sync` once, in this process.

    python -m importcore sync [--rules FILE] [--rule NAME]... [--dry-run] [--output text|json]

Exit 0 when every planned import succeeded (deferred tags do not count: the next pass takes them),
1 when an import or a rule failed, 2 on usage (a rules file that does not load, an unknown --rule).
"""

from __future__ import annotations

import argparse
import json

from typing import TYPE_CHECKING

from ..values.errors import UsageError
from ..values.settings import Settings

if TYPE_CHECKING:  # the service layer is imported when `sync` runs, not for every command's parser
    from ..service.syncplan import RulePass
    from ..triggers import MirrorRule

__all__ = ["add_parser", "run"]


def add_parser(sub) -> argparse.ArgumentParser:
    parser = sub.add_parser("sync", help="run each mirror rule with `sync` once: import the upstream tags that "
                                         "changed (docs/sync.md)")
    parser.add_argument("--rules", metavar="FILE", help="mirror rules file (default IMPORT_MIRROR_RULES_FILE)")
    parser.add_argument("--rule", action="append", default=[], metavar="NAME",
                        help="run only this rule (repeatable; default every rule with sync)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be imported; change nothing")
    parser.add_argument("--output", "-o", choices=("text", "json"), default="text")
    return parser


def _rules(args: argparse.Namespace, settings: Settings) -> list[MirrorRule]:
    from ..triggers import MirrorRules

    rules = MirrorRules.load(args.rules) if args.rules else MirrorRules.from_settings(settings)
    if not args.rules and rules.source == "<none>":
        raise UsageError("no mirror rules: pass --rules FILE or set IMPORT_MIRROR_RULES_FILE")
    if not rules.sync_rules:
        raise UsageError(f"mirror rules file {rules.source} has no rule with a sync object (docs/sync.md)")
    if args.rule:
        return [rules.sync_rule(name) for name in dict.fromkeys(args.rule)]
    return list(rules.sync_rules)


def run(args: argparse.Namespace) -> int:
    """Plan and run each rule; print the report. Raises UsageError for 2 (the caller prints it)."""
    from ..service.syncplan import SyncPlanner, run_locally

    settings = Settings.from_env()
    selected = _rules(args, settings)
    planner = SyncPlanner(settings)
    passes: list[RulePass] = []
    for rule in selected:
        result = planner.plan(rule)
        if not args.dry_run:
            run_locally(result, settings, memory=planner.memory)
        passes.append(result)
        if args.output == "text":
            print(_text(result, dry_run=args.dry_run), flush=True)
    if args.output == "json":
        print(json.dumps({"rules": [p.to_cli() for p in passes]}))
    return 0 if all(p.ok for p in passes) else 1


def _text(result: RulePass, *, dry_run: bool) -> str:
    done = "to import" if dry_run else "imported"
    count = len(result.planned) if dry_run else len(result.imported)
    lines = [f"rule {result.rule}: {count} {done}, {len(result.unchanged)} unchanged, "
             f"{len(result.deferred)} deferred, {len(result.failed)} failed"]
    if result.error:
        lines.append(f"  error: {result.error}")
    if dry_run:
        lines += [f"  would import {m.source} -> {m.target}" for m in result.planned]
    else:
        lines += [f"  imported {i['source']} -> {i['target']}" for i in result.imported]
    lines += [f"  failed {f['source']}" + (f" -> {f['target']}" if f.get("target") else "") + f": {f['error']}"
              for f in result.failed]
    lines += [f"  deferred {d['source']}: {d['reason']}" for d in result.deferred]
    return "\n".join(lines)
