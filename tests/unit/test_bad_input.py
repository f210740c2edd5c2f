"""Bad bytes and rows (issue 9): never an abort, never lost uncounted.

Each test injects one fault into synthetic data (medtrain.synth) and checks the exact outcome:
reports that are not UTF-8 are skipped with their reason (or decoded by the opt-in fallback
before de-identification), malformed rows are reported with their line, changed sources are
re-sharded, bogus splits exit 2, eval-time shard faults and checksum mismatches are skipped and
counted, config bounds, writer processes that die with `prepare`, and loaders that never draw
from the global torch RNG.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from medtrain.data.config import DataConfig, DeidConfig, ImageConfig, MaskingConfig, ShardConfig
from medtrain.data.errors import DataError
from medtrain.data.records import Record
from medtrain.data.shards.manifest import MANIFEST, QUARANTINE
from medtrain.data.shards.read import ShardIndexDataset, ShardLoader, ShardStream
from medtrain.data.shards.write import prepare_shards
from medtrain.data.sources import open_source
from medtrain.data.sources.common import decode_report
from medtrain.data.text import record_text
from medtrain.synth.config import SynthConfig
from medtrain.synth.generate import generate

CFG = ShardConfig(shard_size=4, image_size=32, window_shards=2)
BAD = b"Caf\xe9 "  # cp1252 / latin-1 for "Café ", not UTF-8

# source -> (synth layout, manifest format, report file glob, marker the bad bytes follow)
CASES = {
    "mimic-cxr-jpg": ("mimic-cxr-jpg", "jsonl", "files/**/*.txt", b"FINDINGS:"),
    "openi": ("openi", "jsonl", "ecgen-radiology/*.xml", b'Label="FINDINGS">'),
    "r2gen": ("r2gen", "jsonl", "annotation.json", b'"report": "'),
    "dicom": ("dicom", "jsonl", "reports.csv", b"FINDINGS:"),
    "manifest-jsonl": ("manifest", "jsonl", "manifest.jsonl", b"FINDINGS:"),
    "manifest-csv": ("manifest", "csv", "manifest.csv", b"FINDINGS:"),
}


def make(tmp: Path, case: str, n: int = 6) -> tuple[str, Path]:
    layout, fmt, _, _ = CASES[case]
    generate(SynthConfig(layout=layout, n=n, seed=5, image_size=64, manifest_format=fmt), tmp)
    return case.split("-")[0] if case.startswith("manifest") else case, tmp


def inject(root: Path, case: str, bad: bytes = BAD) -> Path:
    """Insert `bad` after the first marker in the first report file holding one."""
    _, _, pattern, marker = CASES[case]
    for path in sorted(root.glob(pattern)):
        data = path.read_bytes()
        if marker in data:
            path.write_bytes(data.replace(marker, marker + bad, 1))
            return path
    raise AssertionError(f"no {marker!r} in {pattern} under {root}")


def read(source: str, root: Path, **options) -> tuple[dict[str, Record], list[tuple[str, str]]]:
    skipped: list[tuple[str, str]] = []
    return {r.id: r for r in open_source(source, root, skipped=skipped, **options)}, skipped


# ------------------------------------------------------------------------ 1. report bytes


def test_decode_report_never_replaces():
    with pytest.raises(DataError, match=r"report is not valid UTF-8 at byte 11 \(f.txt\)"):
        decode_report(b"Dr. Smith, \xe9t\xe9", "", "f.txt")
    assert decode_report(b"Dr. Ren\xe9e", "cp1252", "f") == "Dr. Renée"
    assert decode_report(b"a\x81b", "latin-1", "f") == "a\x81b"
    with pytest.raises(DataError, match="nor cp1252"):  # 0x81 is undefined in cp1252
        decode_report(b"a\x81b", "cp1252", "f")


@pytest.mark.parametrize("case", sorted(CASES))
def test_non_utf8_report_is_skipped_or_decoded_by_the_fallback(case, tmp_path):
    source, root = make(tmp_path, case)
    clean, skipped = read(source, root)
    inject(root, case)
    kept, skipped_now = read(source, root)
    gone = set(clean) - set(kept)
    assert gone and set(kept) <= set(clean)  # per record: the others are still read
    new = skipped_now[len(skipped) :] if skipped_now[: len(skipped)] == skipped else skipped_now
    reasons = [r for _, r in new if "not valid UTF-8" in r]
    assert reasons and all("data.text_fallback_encoding" in r for r in reasons)
    assert "\ufffd" not in "".join(r.report or "" for r in kept.values())
    # opt-in fallback: decoded in the reader, so the text path (de-id first) sees "Café"
    fixed, _ = read(source, root, text_fallback_encoding="cp1252")
    assert set(fixed) == set(clean)
    changed = [r for r in fixed.values() if "Café" in (r.report or "")]
    assert changed and {r.id for r in changed} == gone
    assert "Café" in record_text(changed[0], DeidConfig())
    with pytest.raises(DataError, match="text_fallback_encoding must be one of"):
        read(source, root, text_fallback_encoding="utf-16")


def test_dicom_report_txt_not_utf8(tmp_path):
    source, root = make(tmp_path, "dicom")
    clean, _ = read(source, root)
    (txt,) = root.rglob("report.txt")
    txt.write_bytes(BAD + txt.read_bytes())
    kept, skipped = read(source, root)
    assert len(kept) == len(clean) - 1
    assert any(r.startswith("report is not valid UTF-8 at byte 3") for _, r in skipped)
    assert len(read(source, root, text_fallback_encoding="latin-1")[0]) == len(clean)


def test_training_load_counts_non_utf8(tmp_path, caplog):
    from medtrain.data.pipeline import load_records

    source, root = make(tmp_path, "manifest-jsonl", n=8)
    inject(root, "manifest-jsonl")
    cfg = DataConfig(source=source, root=str(root), views=())
    with caplog.at_level(logging.WARNING, logger="medtrain.data.pipeline"):
        records, texts, skipped = load_records(cfg, "train")
    assert len(records) == len(texts) and skipped
    assert "not UTF-8" in caplog.text  # the one-line count by kind
    cfg = DataConfig(source=source, root=str(root), views=(), text_fallback_encoding="cp1252")
    assert len(load_records(cfg, "train")[0]) == len(records) + 1


# ------------------------------------------------------------------------ 2. malformed rows


def test_manifest_csv_short_and_long_rows_counted_with_line(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    text = "image,report,Edema\na.png,ok,1\na.png,short\na.png,long,1,extra\na.png,bad,7\n"
    path = tmp_path / "m.csv"
    path.write_text(text)
    kept, skipped = read("manifest", path)
    assert list(kept) == ["m-2"]
    assert [(i, r.split(" (")[0]) for i, r in skipped] == [
        (f"{path} line 3", "malformed row: 2 cells, header has 3"),
        (f"{path} line 4", "malformed row: 4 cells, header has 3"),
        (f"{path} line 5", f"{path} line 5: bad label value '7'; valid: 1, 0, -1 or blank"),
    ]


def test_dicom_reports_csv_bad_rows(tmp_path):
    source, root = make(tmp_path, "dicom")
    csv_path = root / "reports.csv"
    with csv_path.open("a") as f:
        f.write("ACC-short\n")
        f.write('ACC-x,"report",bogus\n')
    _, skipped = read(source, root)
    assert any(r.startswith("malformed row") and f"{csv_path} line" in r for _, r in skipped)


def test_mimic_metadata_short_row_counted(tmp_path):
    import gzip

    source, root = make(tmp_path, "mimic-cxr-jpg")
    meta = root / "mimic-cxr-2.0.0-metadata.csv.gz"
    lines = gzip.decompress(meta.read_bytes()).decode().splitlines()
    lines.insert(2, "only-a-dicom-id")
    meta.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    kept, skipped = read(source, root, views=())
    item, reason = skipped[0]
    assert item == "mimic-cxr-2.0.0-metadata.csv.gz line 3"
    assert reason.startswith("short row: 1 of ") and reason.endswith("metadata.csv.gz line 3")


# ------------------------------------------------------------------- 3. shard reuse by content


def test_prepare_rewrites_a_shard_whose_source_changed(tmp_path):
    source, root = make(tmp_path / "src", "manifest-jsonl", n=10)
    inject(root, "manifest-jsonl")
    out = tmp_path / "shards"
    first = prepare_shards(source=source, root=root, out=out, split="all", cfg=CFG)
    assert first["reader_skipped"] == 1 and first["quarantined"] == 1
    (q,) = [json.loads(x) for x in (out / QUARANTINE).read_text().splitlines()]
    assert q["stage"] == "reader" and "not valid UTF-8" in q["reason"]
    tars = {p.name: p.read_bytes() for p in out.glob("*.tar")}
    again = prepare_shards(source=source, root=root, out=out, split="all", cfg=CFG)
    assert again["written"] == 0 and again["skipped_done"] == again["planned"]  # idempotent
    assert {p.name: p.read_bytes() for p in out.glob("*.tar")} == tars
    # the report is fixed at the source: its sample comes back and leaves the quarantine
    path = root / "manifest.jsonl"
    path.write_bytes(path.read_bytes().replace(BAD, b"Cafe ", 1))
    fixed = prepare_shards(source=source, root=root, out=out, split="all", cfg=CFG)
    assert fixed["reader_skipped"] == 0 and fixed["quarantined"] == 0 and fixed["written"] > 0
    assert fixed["samples"] == first["samples"] + 1
    assert (out / QUARANTINE).read_text() == ""
    # an image changed in place (same records, same plan): its shard is written again
    img = sorted((root / "images").glob("*.png"))[0]
    os.utime(img, ns=(time.time_ns(), time.time_ns() + 10**9))
    touched = prepare_shards(source=source, root=root, out=out, split="all", cfg=CFG)
    assert touched["written"] == 1 and touched["skipped_done"] == touched["planned"] - 1


# -------------------------------------------------------------------------------- 4. --split


def test_bogus_split_is_exit_2(capsys):
    from medtrain.cli import main

    for argv in (
        ["data", "prepare", "--source", "openi", "--root", "r", "--out", "o", "--split", "x"],
        ["data", "preview", "--source", "openi", "--root", "r", "--split", "x"],
        ["tokenizer", "train", "--root", "r", "--out", "o", "--split", "x"],
        ["tokenizer", "train", "--root", "r", "--out", "o", "--heldout-split", "x"],
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "invalid choice: 'x'" in capsys.readouterr().err
    with pytest.raises(DataError, match="unknown split 'bogus'; valid: train, validate, test"):
        prepare_shards(source="openi", root=".", out=".", split="bogus")


# ---------------------------------------------------------- 5, 6. eval faults and checksums


@pytest.fixture
def shard_dir(tmp_path) -> Path:
    source, root = make(tmp_path / "src", "manifest-jsonl", n=16)
    out = tmp_path / "shards"
    prepare_shards(source=source, root=root, out=out, split="all", cfg=CFG)
    return out


def _flip_member(path: Path, ext: str) -> None:
    """Overwrite the first `ext` member's bytes in place (size unchanged)."""
    with tarfile.open(path) as tar:
        info = next(i for i in tar.getmembers() if i.name.endswith(f".{ext}"))
    with path.open("r+b") as f:
        f.seek(info.offset_data)
        f.write(b"\x00" * min(info.size, 64))


class _TinyModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def encode_image(self, pixels):  # (b, 1, S, S) -> (b, 4)
        return None, self.w * pixels.flatten(1)[:, :4]

    def encode_text(self, ids, mask):  # (b, L) -> (b, 4)
        return None, self.w * ids[:, :4].float()


def _tokenizer(texts, **_):
    ids = torch.tensor([[len(t) % 7 + 1, 1 + len(t) % 5, 3, 4] for t in texts])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_eval_skips_and_counts_malformed_shards(shard_dir):
    from medtrain.eval.config import EvalConfig
    from medtrain.eval.runner import evaluate

    names = sorted(p.name for p in shard_dir.glob("shard-*.tar"))
    total = json.loads((shard_dir / MANIFEST).read_text())["total"]["samples"]
    truncated = shard_dir / names[0]
    truncated.write_bytes(truncated.read_bytes()[:1500])  # inside the first sample
    _flip_member(shard_dir / names[1], "png")
    _flip_member(shard_dir / names[2], "json")
    ds = ShardIndexDataset(shard_dir, image_size=32, image=ImageConfig(), verify=False)
    assert ds.skipped == {"corrupt": 1, "checksum": 0}
    metrics = evaluate(
        _TinyModel(),
        ds,
        _tokenizer,
        EvalConfig(batch_size=3),
        max_length=8,
        device=torch.device("cpu"),
        on_device=lambda b, d, t: b,
    )
    # shard 0 keeps one partial sample (4 lost), two more samples do not decode
    assert len(ds) == total - 4 + 1 and metrics["n"] == total - 4 - 2
    assert metrics["skipped"] == 1 + 3  # the truncated shard + three undecodable samples


def test_checksum_mismatch_skips_the_shard(shard_dir, caplog):
    manifest = json.loads((shard_dir / MANIFEST).read_text())
    victim = manifest["shards"][1]
    _flip_member(shard_dir / victim["name"], "txt")
    with caplog.at_level(logging.WARNING, logger="medtrain.data.shards.read"):
        ds = ShardIndexDataset(shard_dir, image_size=32, image=ImageConfig())
    assert ds.skipped == {"corrupt": 0, "checksum": 1}
    assert len(ds) == manifest["total"]["samples"] - victim["count"]
    assert f"{victim['name']}: sha256 differs from the manifest; shard skipped" in caplog.text
    stream = ShardStream(shard_dir, image_size=32, image=ImageConfig(), seed=0, buffer=2)
    loader = ShardLoader(stream, batch_size=2, collate_fn=lambda xs: [s.id for s in xs])
    it = iter(loader)
    ids = [
        i for _ in range((manifest["total"]["samples"] - victim["count"]) // 2) for i in next(it)
    ]
    assert len(set(ids)) == len(ids) and loader.state.counters["checksum"] == 1
    unchecked = ShardIndexDataset(shard_dir, image_size=32, image=ImageConfig(), verify=False)
    assert len(unchecked) == manifest["total"]["samples"]


# ------------------------------------------------------------------------------ 7. config bounds


@pytest.mark.parametrize(
    ("make_cfg", "message"),
    [
        (lambda: DataConfig(num_workers=-3), "data.num_workers must be >= 0, got -3"),
        (lambda: DataConfig(max_eval_samples=-1), "data.max_eval_samples must be >= 0"),
        (lambda: DataConfig(shuffle_buffer=0), "data.shuffle_buffer must be >= 1"),
        (lambda: DataConfig(text_fallback_encoding="utf-16"), "text_fallback_encoding"),
        (lambda: ImageConfig(std=float("nan")), "image.std must be finite"),
        (lambda: ImageConfig(lcn_eps=2.0), r"image.lcn_eps must be in \(0, 1\]"),
        (lambda: ImageConfig(min_side=0), "image.min_side must be >= 1"),
        (lambda: MaskingConfig(mlm_probability=float("nan")), "masking.mlm_probability"),
        (lambda: ShardConfig(seed=-1), "seed must be >= 0"),
        (lambda: ShardConfig(max_aspect=float("inf")), "max_aspect a finite number"),
    ],
)
def test_data_config_bounds(make_cfg, message):
    with pytest.raises(ValueError, match=message):
        make_cfg()


# ---------------------------------------------------------------- 8. writers die with prepare

_PARENT = """
import sys, time
from pathlib import Path
from medtrain.data.config import ShardConfig
from medtrain.data.records import Record
from medtrain.data.shards.write import prepare_shards

def records():  # images are a FIFO nobody writes: each writer blocks reading it (a busy worker)
    for i in range(2):
        yield Record(id=f"r{i}", image_path=Path(sys.argv[1]), report="FINDINGS: clear.")
    print("planned", flush=True)
    time.sleep(120)  # the parent is blocked here, the writers inside a shard

cfg = ShardConfig(shard_size=1, window_shards=1, image_size=32, workers=2)
prepare_shards(source="manifest", root=".", out=sys.argv[2], split="all", cfg=cfg,
               records=records())
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_prepare_workers_die_with_the_parent(tmp_path, subprocess_env):
    fifo, out = tmp_path / "image.png", tmp_path / "out"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(fifo), str(out)],
        stdout=subprocess.PIPE,
        env=subprocess_env(),
    )
    kids: list[int] = []
    try:
        assert proc.stdout.readline().strip() == b"planned"
        deadline = time.monotonic() + 60
        while len(kids) < 2 and time.monotonic() < deadline:  # both writers inside a shard
            kids = [int(p.name.rsplit("-", 1)[1]) for p in out.glob("shard-*.tar.tmp-*")]
            time.sleep(0.1)
        assert len(kids) == 2
        time.sleep(0.5)  # from the temp file to the blocking read of the image
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while (alive := _alive(kids)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert alive == [], f"writer processes {alive} outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in _alive(kids):  # only when the test failed: never leave them blocked
            os.kill(pid, signal.SIGKILL)


def _alive(pids: list[int]) -> list[int]:
    """Pids still running (zombies waiting for their reaper count as gone)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


# ------------------------------------------------------------- 9. loaders own their generator


def test_loaders_never_draw_from_the_global_torch_rng(shard_dir, tmp_path):
    from medtrain.data.pipeline import RecordsData

    source, root = make(tmp_path / "rec", "manifest-jsonl", n=8)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    stream = ShardStream(shard_dir, image_size=32, image=ImageConfig(), seed=4, buffer=2)
    loader = ShardLoader(stream, batch_size=2, collate_fn=len)
    assert next(iter(loader)) == 2 and next(iter(loader)) == 2  # created twice
    cfg = DataConfig(source=source, root=str(root), views=(), num_workers=0, train_split="train")
    data = RecordsData(cfg, image_size=32, batch_size=2, rank=0, world=1, seed=4, collator=len)
    assert next(data.batches()) == 2
    assert torch.equal(torch.get_rng_state(), before)
    g1, g2 = data.generator(), data.generator()
    assert torch.equal(g1.get_state(), g2.get_state())  # a function of (seed, rank, position)


def test_shard_cut_at_a_member_boundary_is_counted(shard_dir):
    """tarfile sees a clean end of archive there: the manifest's count tells the loss."""
    manifest = json.loads((shard_dir / MANIFEST).read_text())
    entry = manifest["shards"][0]
    path = shard_dir / entry["name"]
    with tarfile.open(path) as tar:
        third = [i for i in tar.getmembers() if i.name.endswith(".png")][2]
    path.write_bytes(path.read_bytes()[: third.offset])  # the first two samples stay whole
    ds = ShardIndexDataset(shard_dir, image_size=32, image=ImageConfig(), verify=False)
    assert ds.skipped == {"corrupt": 1, "checksum": 0}
    assert len(ds) == manifest["total"]["samples"] - entry["count"] + 2
    stream = ShardStream(
        shard_dir, image_size=32, image=ImageConfig(), seed=0, buffer=2, verify=False
    )
    n, corrupt = 0, 0
    for _, ((epoch, _, _), events) in stream:
        corrupt += events["corrupt"]
        if epoch > 0:
            break
        n += 1
    assert n == len(ds) and corrupt == entry["count"] - 2


def test_cli_fallback_flags_and_skip_reports(tmp_path, capsys):
    from medtrain.cli import main

    source, root = make(tmp_path / "src", "manifest-jsonl", n=12)
    inject(root, "manifest-jsonl")
    assert main(["data", "deid-audit", "--source", source, "--root", str(root)]) == 0
    err = capsys.readouterr().err
    assert "deid-audit: 1 item(s) skipped by the reader:" in err and "not valid UTF-8" in err
    out = tmp_path / "shards"
    base = ["data", "prepare", "--source", source, "--root", str(root), "--out"]
    small = ["--split", "all", "--image-size", "32", "--shard-size", "4"]
    assert main([*base, str(out), *small]) == 0
    summary, err = capsys.readouterr()
    assert '"reader_skipped": 1' in summary
    assert "data prepare: 1 record(s) skipped by the reader, 1 quarantined in all" in err
    fixed = tmp_path / "fixed"
    assert main([*base, str(fixed), *small, "--text-fallback-encoding", "cp1252"]) == 0
    assert '"reader_skipped": 0' in capsys.readouterr().out
    tok = ["tokenizer", "train", "--source", source, "--root", str(root), "--no-baseline"]
    assert main([*tok, "--vocab-size", "200", "--out", str(tmp_path / "tok")]) == 0
    assert "tokenizer train: 1 report(s) skipped" in capsys.readouterr().out
