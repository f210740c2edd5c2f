"""The shard directory's manifest: what `medtrain data prepare` wrote, and how to check it.

manifest.json = {"format", "config" (the identity of the writing options and source), "root",
"shards": [{"name", "count", "bytes", "sha256"}], "total"}. quarantine.jsonl lists rejected
inputs; .state/ is the writer's resume bookkeeping.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtrain.data.errors import DataError

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.jsonl"
STATE_DIR = ".state"
FORMAT_VERSION = 1


@dataclass(kw_only=True, slots=True)
class Manifest:
    root: Path
    shards: list[dict[str, Any]]  # name, count, bytes, sha256
    config: dict[str, Any]

    @property
    def total(self) -> int:
        return sum(s["count"] for s in self.shards)

    def fingerprint(self) -> str:
        """Identifies the shard set (names + counts + hashes): a checkpoint's loader position
        is only meaningful on the same set."""
        h = hashlib.sha256()
        for s in self.shards:
            h.update(f"{s['name']}:{s['count']}:{s['sha256']};".encode())
        return h.hexdigest()[:16]


def read_manifest(shard_dir: str | Path) -> Manifest:
    root = Path(shard_dir)
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{path} not found: write shards with `medtrain data prepare --out {root} ...`"
        )
    try:
        m = json.loads(path.read_text())
        shards = [{k: s[k] for k in ("name", "count", "bytes", "sha256")} for s in m["shards"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: malformed shard manifest ({e})") from None
    for s in shards:
        if Path(s["name"]).name != s["name"] or not s["name"].endswith(".tar"):
            raise DataError(f"{path}: bad shard name {s['name']!r} (plain *.tar names only)")
    return Manifest(root=root, shards=shards, config=m.get("config", {}))


def verify_shards(shard_dir: str | Path) -> list[str]:
    """Shards whose size or sha256 differs from the manifest (empty list: all good)."""
    m = read_manifest(shard_dir)
    bad = []
    for s in m.shards:
        path = m.root / s["name"]
        if not path.is_file() or path.stat().st_size != s["bytes"]:
            bad.append(s["name"])
            continue
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
        if h.hexdigest() != s["sha256"]:
            bad.append(s["name"])
    return bad
