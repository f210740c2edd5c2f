"""`medtrain data preview`: the first samples of a split exactly as training builds them.

The samples come from the training pipeline itself (`build_pipeline(...).samples(split)`: the
records path, or the shards with data.format=shards), the images finished as on the training
device (`Pipeline.on_device`, so a GPU-LCN config shows the normalized input). One row per sample:

    {"id", "text" (training text after de-identification and sectioning; null without a report),
     "labels" {finding: 1.0 / 0.0 / -1.0 / null}, "image" {"height", "width", "min", "max",
     "mean"}, and the task fields a sample has ("question", "answer")}

Sources without reports (REPORTLESS_SOURCES: rsna-pneumonia, vqa-rad, slake), which
pretraining cannot use, are shown as fine-tuning reads them: their records (open_source), each
image loaded and finished as above, the question through the one text path (`scrub_text`);
rows then carry "labels" as the source gives them (RSNA {"Pneumonia"}; VQA {}), "text" null,
and "question", "answer", "answer_type" (VQA) or "boxes" [[x, y, width, height], ...] (RSNA).
"""

from __future__ import annotations

import dataclasses
import math
import textwrap
from collections.abc import Iterator
from typing import Any

import torch

from medtrain.config import ConfigError, RunConfig, load_config
from medtrain.data.config import DataConfig
from medtrain.data.errors import DataError
from medtrain.data.images import load_image
from medtrain.data.labels import CHEXPERT_LABELS
from medtrain.data.pipeline import Pipeline, build_pipeline
from medtrain.data.records import Record, Sample
from medtrain.data.sources import REPORTLESS_SOURCES, open_source, source_options
from medtrain.data.text import scrub_text

TEXT_CHARS = 300  # the readable form shows this much of the text
WIDTH = 96  # and wraps lines at this width


def preview_config(
    preset: str = "tiny-cpu",
    overrides: list[str] | tuple[str, ...] = (),
    **data: str,
) -> RunConfig:
    """The run config a preview uses: preset + `--set` overrides, then the data fields given
    (source, root, reports_root, images_root; shards=DIR switches to data.format=shards)."""
    cfg = load_config(preset, overrides)
    fields = {k: v for k, v in data.items() if v}
    if fields.get("shards"):
        fields["format"] = "shards"
    try:
        cfg.data = dataclasses.replace(cfg.data, **fields)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"data preview: {e}") from None
    return cfg


def sample_row(sample: Sample, pipeline: Pipeline) -> dict[str, Any]:
    """One sample as a JSON-ready dict (the image finished as on the training device)."""
    batch = {"pixel_values": sample.pixel_values[None]}  # (1, 1, S, S)
    x = pipeline.on_device(batch, "cpu", torch.float32)["pixel_values"][0, 0]  # (S, S)
    row: dict[str, Any] = {
        "id": sample.id,
        "text": sample.text,
        "labels": {
            name: None if math.isnan(v) else v
            for name, v in zip(CHEXPERT_LABELS, sample.labels.tolist(), strict=True)
        },
        "image": _image_stats(x),
    }
    for name in ("question", "answer"):
        if getattr(sample, name) is not None:
            row[name] = getattr(sample, name)
    return row


def _image_stats(x: torch.Tensor) -> dict[str, Any]:
    return {
        "height": int(x.shape[0]),
        "width": int(x.shape[1]),
        "min": round(float(x.min()), 4),
        "max": round(float(x.max()), 4),
        "mean": round(float(x.mean()), 4),
    }


def record_row(rec: Record, pixels: torch.Tensor, data: DataConfig, pipeline: Pipeline) -> dict:
    """One record of a report-less source as a JSON-ready dict; pixels (1, S, S)."""
    x = pipeline.on_device({"pixel_values": pixels[None]}, "cpu", torch.float32)
    row: dict[str, Any] = {
        "id": rec.id,
        "text": None,
        "labels": dict(rec.labels),
        "image": _image_stats(x["pixel_values"][0, 0]),
    }
    if rec.question is not None:
        row["question"] = scrub_text(rec.question, data.deid)
        row["answer"] = rec.answer
        row["answer_type"] = rec.answer_type
    if rec.answers:
        row["answers"] = list(rec.answers)
    if rec.boxes or rec.labels.get("Pneumonia") is not None:
        row["boxes"] = [list(b) for b in rec.boxes]
    return row


def _record_rows(data: DataConfig, pipeline: Pipeline, image_size: int, split: str, n: int):
    """Rows of the first `n` usable records of `split` of a report-less source."""
    skipped: list[tuple[str, str]] = []
    count = 0
    for rec in open_source(
        data.source, data.root, splits=[split], skipped=skipped, **source_options(data)
    ):
        try:
            pixels = load_image(rec.image_path, image_size, data.image, rec.image_kind)
        except DataError as e:
            if data.on_bad_image == "error":
                raise
            skipped.append((rec.id, str(e)))
            continue
        yield record_row(rec, pixels, data, pipeline)
        count += 1
        if count >= n:
            return
    if not count:
        raise DataError(
            f"no usable {split!r} records under {data.root} (source {data.source}); "
            f"{len(skipped)} skipped, e.g. {skipped[:3]}"
        )


def preview_rows(data: DataConfig, *, image_size: int, split: str, n: int) -> Iterator[dict]:
    """Rows of the first `n` samples of `split`, through the training pipeline (report-less
    sources: through their records, see the module docstring)."""
    pipeline = build_pipeline(data, image_size=image_size)
    if data.source in REPORTLESS_SOURCES and data.format != "shards":
        yield from _record_rows(data, pipeline, image_size, split, n)
        return
    samples = pipeline.samples(split, limit=n)
    for i in range(min(n, len(samples))):
        yield sample_row(samples[i], pipeline)


def format_row(row: dict[str, Any]) -> str:
    """The readable short form: id and image stats, the set labels, the text (shortened)."""
    im = row["image"]
    lines = [
        f"{row['id']}  image {im['height']}x{im['width']}  "
        f"min {im['min']:.3f} max {im['max']:.3f} mean {im['mean']:.3f}"
    ]
    items = [f"{k}={v:g}" for k, v in row["labels"].items() if v is not None] or ["(none set)"]
    line = "  labels:"
    for i, item in enumerate(items):  # "finding=value" items, never split across lines
        piece = f" {item}" + ("," if i < len(items) - 1 else "")
        if len(line) + len(piece) > WIDTH:
            lines.append(line)
            line = "   "
        line += piece
    lines.append(line)
    for name in ("question", "answer", "answer_type", "boxes"):
        if name in row:
            lines.append(f"  {name}: {row[name]}")
    text = row["text"]
    if text is None:
        lines.append("  text: (no report)")
    else:
        short = textwrap.shorten(text, TEXT_CHARS, placeholder=" ...")
        lines += textwrap.wrap(short, WIDTH, initial_indent="  text: ", subsequent_indent="    ")
    return "\n".join(lines)
