"""Bench content: incompressible layers generated as a stream and pushed without ever being held whole.

The bytes are an AES-128-CTR keystream (the `cryptography` package the service already depends on),
≈ 6 GB/s on one core with AES-NI, deterministic per seed, and incompressible like real gzip layers.
A layer is pushed as POST + chunked PATCH (hashed while it streams) + PUT ?digest=, so a 2 GiB layer
costs 1 MiB of memory here. Manifests go through tests/support's Pusher (plain httpx, independent
of importcore and of skopeo).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.images import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Pusher  # noqa: E402

__all__ = ["Image", "MiB", "GiB", "KiB", "push_image", "push_multiarch", "stream"]

KiB, MiB, GiB = 1024, 1024**2, 1024**3
CHUNK = MiB


def stream(seed: str, size: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """`size` pseudo-random bytes in `chunk`-sized pieces, the same for the same seed."""
    key = hashlib.sha256(seed.encode()).digest()[:16]
    encryptor = Cipher(algorithms.AES(key), modes.CTR(b"\0" * 16)).encryptor()
    zeros = bytes(chunk)
    left = size
    while left > 0:
        n = min(chunk, left)
        yield encryptor.update(zeros if n == chunk else bytes(n))
        left -= n


def push_stream_blob(pusher: Pusher, repo: str, seed: str, size: int, media_type: str = OCI_LAYER) -> dict:
    """Push `size` bytes of `stream(seed)` as one blob; return its descriptor."""
    hasher = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for piece in stream(seed, size):
            hasher.update(piece)
            yield piece

    start = pusher._ok(pusher.request("POST", f"/v2/{repo}/blobs/uploads/"))
    location = start.headers["location"]
    patched = pusher._ok(pusher.request("PATCH", location, content=body(),
                                        headers={"Content-Type": "application/octet-stream"}))
    location = patched.headers["location"]
    digest = "sha256:" + hasher.hexdigest()
    sep = "&" if "?" in location else "?"
    pusher._ok(pusher.request("PUT", f"{location}{sep}digest={digest}", content=b""))
    return {"mediaType": media_type, "digest": digest, "size": size}


def _json(obj: dict) -> bytes:
    return json.dumps(obj, indent=2).encode()


@dataclass
class Image:
    repo: str
    tag: str | None
    digest: str
    media_type: str
    blob_bytes: int  # sum of unique blob sizes (config + layers): what a copy must move
    blobs: int

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}" if self.tag else f"{self.repo}@{self.digest}"


def push_image(pusher: Pusher, repo: str, tag: str | None, *, layers: list[int], seed: str,
               platform: tuple[str, str] = ("linux", "amd64")) -> tuple[Image, dict]:
    """One OCI image manifest with layers of the given sizes; returns (image, its descriptor)."""
    descs = []
    for i, size in enumerate(layers):
        if size <= 4 * MiB:  # small: one monolithic POST+PUT through the Pusher
            descs.append(pusher.blob(repo, b"".join(stream(f"{seed}/layer{i}", size)), OCI_LAYER))
        else:
            descs.append(push_stream_blob(pusher, repo, f"{seed}/layer{i}", size))
    config = {"architecture": platform[1], "os": platform[0], "created": "2024-01-01T00:00:00Z",
              "config": {"Labels": {"bench.seed": seed}},
              "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}
    cfg = pusher.blob(repo, _json(config), OCI_CONFIG)
    raw = _json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": cfg, "layers": descs})
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    pusher.manifest(repo, tag or digest, raw, OCI_MANIFEST)
    unique = {d["digest"]: d["size"] for d in [cfg, *descs]}
    image = Image(repo, tag, digest, OCI_MANIFEST, sum(unique.values()), len(unique))
    descriptor = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw),
                  "platform": {"architecture": platform[1], "os": platform[0]}}
    return image, descriptor


def push_multiarch(pusher: Pusher, repo: str, tag: str, *, platforms: list[tuple[str, str]], layers: list[int],
                   seed: str) -> Image:
    """An OCI index over one image per platform (each with its own layers), tagged `tag`."""
    children, blob_bytes, blobs = [], 0, 0
    for os_, arch in platforms:
        image, descriptor = push_image(pusher, repo, None, layers=layers, seed=f"{seed}/{os_}-{arch}",
                                       platform=(os_, arch))
        children.append(descriptor)
        blob_bytes += image.blob_bytes
        blobs += image.blobs
    raw = _json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    digest = pusher.manifest(repo, tag, raw, OCI_INDEX)
    return Image(repo, tag, digest, OCI_INDEX, blob_bytes, blobs)


def new_pusher(registry_url: str) -> Pusher:
    pusher = Pusher(registry_url)
    pusher.http = httpx.Client(timeout=600.0)  # a 2 GiB PATCH takes a while on 2 cores
    return pusher
