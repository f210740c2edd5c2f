"""The shard directory's manifest: what `medtrain data prepare` wrote, and how to check it.

manifest.json = {"format", "config" (the identity of the writing options and source),
"text_path" (medtrain.data.text.text_path_id of the texts), "root",
"shards": [{"name", "count", "splits": {split: count}, "bytes", "sha256"}],
"total" (samples, bytes, shards, quarantined, splits)}. quarantine.jsonl lists rejected
inputs; .state/ is the writer's resume bookkeeping. Manifests written before "text_path" and
"splits" existed still load: their text path is {} and their per-split counts come from the
config's split when it names one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtrain.data.errors import DataError

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.jsonl"
STATE_DIR = ".state"
FORMAT_VERSION = 1
# What each member holds, written into every manifest for people and tools that read the shards
# without medtrain (webdataset's own "l"/"pil" decoders scale by 255 and turn 16-bit PNGs white).
MEMBERS = {
    "png": (
        "grayscale image before contrast normalization, fitted to config.image_size; 8-bit, or "
        "16-bit (0..65535) where the sample's json says bits=16 (16-bit PNG and DICOM sources); "
        "decode with medtrain.data.shards.read.webdataset_png_decoder"
    ),
    "txt": "training text (UTF-8) from the text path recorded under text_path",
    "json": "id, study_id, subject_id, view, split, labels {finding: 1/0/-1/null}, source, bits",
}
ENTRY_KEYS = ("name", "count", "splits", "bytes", "sha256")  # one shard's manifest entry


@dataclass(kw_only=True, slots=True)
class Manifest:
    root: Path
    shards: list[dict[str, Any]]  # name, count, splits (absent in old manifests), bytes, sha256
    config: dict[str, Any]
    text_path: dict[str, Any] = field(default_factory=dict)  # {} in old manifests

    @property
    def total(self) -> int:
        return sum(s["count"] for s in self.shards)

    def count(self, split: str | None = None) -> int:
        """Samples of `split` (None: all). Old manifests without per-shard splits know it only
        when written for one split (config "split"); DataError otherwise."""
        if split is None:
            return self.total
        if all("splits" in s for s in self.shards):
            return sum(s["splits"].get(split, 0) for s in self.shards)
        written = self.config.get("split")
        if written in (None, "all"):
            raise DataError(
                f"{self.root / MANIFEST} has no per-split counts (written before they were "
                "recorded, with --split all): prepare the shards again"
            )
        return self.total if written == split else 0

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
        shards = [{k: s[k] for k in ENTRY_KEYS if k in s or k != "splits"} for s in m["shards"]]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: malformed shard manifest ({e})") from None
    for s in shards:
        if Path(s["name"]).name != s["name"] or not s["name"].endswith(".tar"):
            raise DataError(f"{path}: bad shard name {s['name']!r} (plain *.tar names only)")
    for s in shards:
        if "splits" in s and (
            not isinstance(s["splits"], dict) or sum(s["splits"].values()) != s["count"]
        ):
            raise DataError(f"{path}: shard {s['name']} splits {s['splits']} do not sum to count")
    return Manifest(
        root=root, shards=shards, config=m.get("config", {}), text_path=m.get("text_path", {})
    )


def shard_fault(root: Path, entry: dict[str, Any]) -> str | None:
    """Why the shard of manifest `entry` under `root` differs from the manifest (missing, size,
    sha256), or None when it matches. Reads the whole file."""
    path = Path(root) / entry["name"]
    try:
        size = path.stat().st_size
        if size != entry["bytes"]:
            return f"size {size} differs from the manifest's {entry['bytes']}"
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda f=f: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        return f"unreadable ({e.strerror or e})"
    if h.hexdigest() != entry["sha256"]:
        return "sha256 differs from the manifest"
    return None


def verify_shards(shard_dir: str | Path) -> list[str]:
    """Shards whose size or sha256 differs from the manifest (empty list: all good)."""
    m = read_manifest(shard_dir)
    return [s["name"] for s in m.shards if shard_fault(m.root, s) is not None]
