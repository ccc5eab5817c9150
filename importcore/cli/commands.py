"""`python -m importcore import ...`: az acr import's flags over the copy engine (and `sync`, cli/sync.py)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..auth import Credential
from ..engine.imagecopy import ImportResult
from ..values.errors import ImporterError, UsageError
from ..values.media import Platform
from .progressbar import progress_reporter
from . import sync as sync_command
from ..values.reference import Reference, parse_registry
from ..engine.request import ImportRequest, check_targets, resolve_targets, source_by_resource_id
from ..values.settings import Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m importcore", description="Import container images and OCI "
                                     "artifacts into a registry, like az acr import, without Docker.")
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="import an image or artifact into the target registry")
    imp.add_argument("--source", required=True, help="[registry/]repository[:tag|@sha256:...]")
    imp.add_argument("--name", "-n", help="target registry (login server or ACR name); "
                     "default IMPORT_TARGET_REGISTRY")
    imp.add_argument("--image", "-t", action="append", default=[], help="target repo[:tag] (repeatable)")
    imp.add_argument("--repository", action="append", default=[], help="target repository, untagged (repeatable)")
    imp.add_argument("--username", "-u", help="source registry user")
    imp.add_argument("--password", "-p", help="source registry password; alone: an identity token "
                     "(one starting with '-' as --password=VALUE)")
    imp.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (kept out of the process list and shell history)")
    imp.add_argument("--registry", "-r", help="source ACR resource ID")
    imp.add_argument("--force", action="store_true", help="overwrite existing target tags (mode Force)")
    imp.add_argument("--platform", action="append", default=[],
                     help="os/arch[/variant]: import only that platform's manifest out of an index; repeated: "
                     "a new index of just those platforms")
    imp.add_argument("--copy-foreign-layers", action="store_true",
                     help="also copy non-distributable (foreign) layers")
    imp.add_argument("--include-referrers", action="store_true",
                     help="also copy the signatures, SBOMs and attestations attached to what is imported")
    imp.add_argument("--referrers-artifact-type", action="append", default=[], metavar="TYPE",
                     help="with --include-referrers: only referrers of this artifact type (repeatable)")
    imp.add_argument("--verify-key", action="append", default=[], metavar="FILE",
                     help="a cosign public key (PEM); the source must carry a valid signature by one of the keys "
                     "given before anything is tagged (repeatable: any one suffices)")
    imp.add_argument("--verify-key-ref", action="append", default=[], metavar="NAME",
                     help="like --verify-key, a key named in IMPORT_VERIFY_KEYS (repeatable)")
    imp.add_argument("--output", "-o", choices=("text", "json"), default="text")
    sync_command.add_parser(sub)
    serve = sub.add_parser("serve", help="run function_app.py's functions locally against Azurite")
    serve.add_argument("--port", type=int, default=7071)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--app", default="function_app", help="module that defines `app` (default function_app)")
    serve.add_argument("--host-json", type=Path, default=None, help="default ./host.json")
    return parser


def _request(args: argparse.Namespace, settings: Settings) -> ImportRequest:
    target_registry = args.name or settings.target_registry
    if not target_registry:
        raise UsageError("no target registry: pass --name or set IMPORT_TARGET_REGISTRY")
    if args.password_stdin:
        if args.password is not None:
            raise UsageError("--password and --password-stdin are mutually exclusive")
        args.password = _stdin_password()
    if args.username and not args.password:
        raise UsageError("--username needs --password (or --password-stdin)")
    resource_id = None
    if args.registry:
        source, resource_id = source_by_resource_id(args.registry, args.source, target="--registry")
    else:
        source = Reference.parse(args.source)
    credential = Credential(args.username, args.password) if args.password else None
    request = ImportRequest(
        source=source,
        targets=resolve_targets(source, args.image, args.repository),
        target_registry=parse_registry(target_registry),
        force=args.force,
        platforms=_platforms(args.platform),
        credential=credential,
        copy_foreign=args.copy_foreign_layers,
        source_resource_id=resource_id,
        include_referrers=args.include_referrers,
        referrer_types=_referrer_types(args),
        verify_keys=tuple((path, _read_key(path)) for path in args.verify_key),
        verify_key_refs=tuple(args.verify_key_ref),
    )
    check_targets(request.targets, request.target_registry, field="target")
    return request


def _referrer_types(args: argparse.Namespace) -> tuple[str, ...]:
    types = tuple(dict.fromkeys(t.strip() for t in args.referrers_artifact_type))
    if types and not args.include_referrers:
        raise UsageError("--referrers-artifact-type needs --include-referrers")
    if any(not t or len(t) > 255 or any(c.isspace() for c in t) for t in types):
        raise UsageError("--referrers-artifact-type: an artifact type is a media type, e.g. application/spdx+json")
    return types


def _read_key(path: str) -> str:
    """The PEM of a --verify-key file, checked now (a bad key is a usage error, exit 2)."""
    from ..values.cosign import load_public_key

    try:
        with open(path, encoding="ascii") as f:
            pem = f.read(64 * 1024)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--verify-key {path}: cannot read it ({getattr(exc, 'strerror', None) or 'not a text file'})"
                         ) from None
    load_public_key(pem, name=path, target="--verify-key")
    return pem


def _platforms(texts: list[str]) -> tuple[Platform, ...]:
    try:
        return tuple(Platform.parse(text) for text in texts)
    except UsageError as exc:
        raise UsageError(f"--platform: {exc.message}", target="--platform") from None


def _stdin_password() -> str:
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError("--password-stdin: pipe the password in, e.g. printf %s \"$PW\" | python -m importcore ...")
    # One line, as `docker login --password-stdin` reads it: a trailing newline is not part of it.
    password = sys.stdin.readline(64 * 1024).rstrip("\r\n")
    if not password:
        raise UsageError("--password-stdin: standard input held no password")
    return password


def _text(result: ImportResult, request: ImportRequest) -> str:
    untagged = [f"{t.repository}@{result.digest}" for t in request.targets if t.tag is None]
    where = ", ".join(result.tags + untagged)
    picked = f", from source index {result.source_digest}" if result.source_digest not in ("", result.digest) else ""
    lines = [f"imported {request.source} -> {request.target_registry}: {where}",
             f"digest {result.digest} ({result.media_type}{picked}), {result.manifests} manifest(s), blobs: "
             f"{result.copied} copied, {result.mounted} mounted, {result.skipped} skipped, "
             f"{result.bytes} bytes in {result.seconds:.2f}s"]
    if result.verified:
        v = result.verified
        signature = v["signature"].get("tag") or v["signature"]["manifest"]
        lines.append(f"verified: {v['signature']['format']} signature {signature} by key {v['key']} "
                     f"({v['keyFingerprint']})")
    if result.referrers is not None:
        r = result.referrers
        lines.append(f"referrers: {r['found']} found, {r['copied']} copied, {r['present']} already there")
    return "\n".join(lines)


def _json(result: ImportResult) -> str:
    # The object README.md documents under "--output json" (scripts parse it): the same keys, in the
    # same order, as a job's `result` in GET /api/imports/{id}; `referrers` and `verified` only when
    # --include-referrers / --verify-key asked for them.
    return json.dumps(result.to_dict())


def _guarded(command: Callable[[], int]) -> int:
    """Run a command, turning our errors into one `error: ...` line: 2 for usage, 1 otherwise."""
    try:
        return command()
    except UsageError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except ImporterError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "serve":
        from .. import devhost  # the local Functions host is a shell too; imported only when asked

        return devhost.run(port=args.port, host=args.host, app_module=args.app, host_json=args.host_json)
    if args.command == "sync":
        return _guarded(lambda: sync_command.run(args))
    return _guarded(lambda: _import(args))


def _import(args: argparse.Namespace) -> int:
    from ..engine.runner import run_request

    settings = Settings.from_env()
    request = _request(args, settings)
    with progress_reporter(enabled=args.output == "text" and sys.stderr.isatty()) as on_progress:
        result = run_request(request, settings, on_progress=on_progress)
    print(_json(result) if args.output == "json" else _text(result, request))
    return 0
