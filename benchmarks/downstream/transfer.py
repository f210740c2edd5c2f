"""Downstream transfer of a pretraining run: every task vs its trivial baseline, and pretrained
vs random initialization at small label fractions (issue 10, "What must be shown").

From the demo's pretrained run (`make demo` -> runs/tiny-cpu), in one process, sequentially:
- classification (14 CheXpert labels, finetune-cls-cpu on data/synth-mimic): pretrained and
  random init at 1% (seeds 0..N-1: fraction_seed = train.seed = seed) and 10% (seed 0) of the
  training patients, and pretrained at 100%;
- binary pneumonia (cls task on the synthetic RSNA Pneumonia layout), pretrained, 100%;
- VQA (finetune-vqa-cpu on the synthetic VQA-RAD layout), pretrained;
- report generation (finetune-report-cpu on data/synth-mimic), pretrained.
Synthetic data that is missing is generated first (TASK_DATA: 256 px; MIMIC with seed 0 as the
Makefile's synth-mimic, RSNA and VQA-RAD with other seeds, so pretraining saw none of their images).
Each run gets its own directory under --runs-dir. Results: <out>/downstream_<preset>.jsonl (one
record per run, appended) and <out>/downstream_<preset>.md (the latest invocation's tables).

Confidence intervals: AUC's bootstrap 95% CI comes from the scorer (finetune.bootstrap
resamples); VQA accuracy and the report metrics get a percentile bootstrap here, over the
evaluation split's questions / studies (the run's pred/ref JSONL, scored by medtrain's scorers).
A task "beats its baseline" when the CI lower bound is above the baseline's value.

Time (2 CPU cores): step counts are chosen for about 11-12 minutes on an otherwise idle machine;
`--steps KEY=N` changes one kind of run (cls-0.01, cls-0.1, cls-1.0, rsna, vqa, report). Reports
are decoded greedily here (`--report-beams 3` gives the preset's beam search, ~3x the decoding).

    .venv/bin/python benchmarks/downstream/transfer.py --init runs/tiny-cpu
    .venv/bin/python benchmarks/downstream/transfer.py --init RUN --quick   # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import environment  # noqa: E402

# (benchmark task, metric keys shown in its table; the first is the headline metric)
TASK_METRICS = {
    "cls": ("auc/macro",),
    "rsna": ("auc/macro",),
    "vqa": ("accuracy/overall", "accuracy/closed", "accuracy/open"),
    "report": ("bleu4", "rougeL", "cider", "ce/f1"),
}
TASK_TITLES = {
    "cls": "14-label CheXpert classification (synthetic MIMIC-CXR-JPG), AUC-ROC",
    "rsna": "Binary pneumonia (synthetic RSNA Pneumonia), AUC-ROC",
    "vqa": "VQA (synthetic VQA-RAD), accuracy",
    "report": "Report generation (synthetic MIMIC-CXR-JPG), BLEU-4 / ROUGE-L / CIDEr-D / CE F1",
}


@dataclass(frozen=True)
class Scale:
    """Data sizes, step counts and resample counts of one mode (full or --quick)."""

    image_size: int
    n_mimic: int
    n_rsna: int
    n_vqa: int  # images; the layout asks several questions per image
    steps: dict[str, int]  # "cls-0.01", "cls-0.1", "cls-1.0", "rsna", "vqa", "report"
    batch: int
    bootstrap: int  # AUC (scorer) and VQA (here) resamples
    report_bootstrap: int  # report metrics resamples (each rescoring the split: slower)
    report_beams: int  # beam width of report decoding (1 = greedy: a third of the time)
    extra: tuple[str, ...] = ()  # overrides for every run


FULL = Scale(
    image_size=256,
    n_mimic=4000,  # the Makefile's DEMO_N
    n_rsna=1000,
    n_vqa=500,
    steps={"cls-0.01": 30, "cls-0.1": 40, "cls-1.0": 60, "rsna": 40, "vqa": 200, "report": 60},
    batch=32,
    bootstrap=500,
    report_bootstrap=50,
    report_beams=1,
)
QUICK = Scale(
    image_size=128,
    n_mimic=160,
    n_rsna=120,
    n_vqa=30,
    steps={"cls-0.01": 2, "cls-0.1": 2, "cls-1.0": 2, "rsna": 2, "vqa": 2, "report": 2},
    batch=8,
    bootstrap=50,
    report_bootstrap=10,
    report_beams=2,
    extra=("finetune.max_new_tokens=16",),
)


@dataclass(frozen=True)
class Run:
    task: str  # cls | rsna | vqa | report (benchmark task)
    arm: str  # pretrained | random
    fraction: float
    seed: int
    steps: int
    preset: str
    overrides: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.task}-{self.arm}-f{self.fraction:g}-s{self.seed}"


# --- data ---------------------------------------------------------------------------------------
def synth(layout: str, n: int, size: int, out: Path, seed: int = 0) -> float:
    """`medtrain data synth` into `out` unless its .done stamp exists; returns seconds spent."""
    done = out / ".done"
    if done.exists():
        print(f"data: {out} exists", flush=True)
        return 0.0
    if out.exists() and any(out.iterdir()):  # not ours to delete: an interrupted synth or data
        sys.exit(f"{out} exists without the {done.name} stamp of a finished synth: remove it")
    t = time.time()
    cmd = [
        sys.executable,
        "-c",
        "from medtrain.cli import main; main()",
        "data",
        "synth",
        "--layout",
        layout,
        "--n",
        str(n),
        "--image-size",
        str(size),
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    print("data:", " ".join(cmd[3:]), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    done.touch()
    return time.time() - t


# Synthetic data per benchmark task: (layout, folder under --data-dir, seed). A phantom's image is
# a function of (seed, index): the RSNA and VQA cohorts take other seeds than the demo's
# pretraining data (seed 0, the Makefile's synth-mimic), so none of their images, train or test,
# was seen in pretraining.
TASK_DATA = {
    "mimic": ("mimic-cxr-jpg", "synth-mimic", 0),
    "rsna": ("rsna-pneumonia", "synth-rsna-seed1", 1),
    "vqa": ("vqa-rad", "synth-vqa-rad-seed2", 2),
}


# --- the plan -----------------------------------------------------------------------------------
def plan(scale: Scale, seeds: int, data_dir: Path) -> list[Run]:
    mimic, rsna, vqa = (data_dir / TASK_DATA[k][1] for k in ("mimic", "rsna", "vqa"))
    cls = ("finetune-cls-cpu", (f"data.root={mimic}",))
    runs = []
    for frac, n_seeds in ((0.01, seeds), (0.1, 1)):
        for seed in range(n_seeds):
            for arm in ("pretrained", "random"):
                runs.append(Run("cls", arm, frac, seed, scale.steps[f"cls-{frac:g}"], *cls))
    runs.append(Run("cls", "pretrained", 1.0, 0, scale.steps["cls-1.0"], *cls))
    rsna_over = (f"data.root={rsna}", "data.source=rsna-pneumonia", "finetune.labels=[Pneumonia]")
    runs.append(
        Run("rsna", "pretrained", 1.0, 0, scale.steps["rsna"], "finetune-cls-cpu", rsna_over)
    )
    vqa_over = (f"data.root={vqa}",)
    runs.append(Run("vqa", "pretrained", 1.0, 0, scale.steps["vqa"], "finetune-vqa-cpu", vqa_over))
    rep_over = (f"data.root={mimic}", f"finetune.num_beams={scale.report_beams}")
    runs.append(
        Run("report", "pretrained", 1.0, 0, scale.steps["report"], "finetune-report-cpu", rep_over)
    )
    return runs


def overrides(run: Run, scale: Scale, init: Path, out_dir: Path) -> list[str]:
    return [
        *run.overrides,
        f"finetune.init={init}",
        f"finetune.init_weights={run.arm}",
        f"finetune.label_fraction={run.fraction}",
        f"finetune.fraction_seed={run.seed}",
        f"finetune.bootstrap={scale.bootstrap}",
        f"train.seed={run.seed}",
        f"train.steps={run.steps}",
        f"train.micro_batch_size={scale.batch}",
        f"train.log_every={max(1, run.steps // 4)}",
        "train.ckpt_every=0",
        "data.num_workers=0",
        f"train.out_dir={out_dir}",
        *scale.extra,
    ]


# --- bootstrap CIs for the metrics the scorer gives as points -----------------------------------
def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _percentile_ci(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if math.isfinite(x)])
    if v.size == 0:
        return math.nan, math.nan
    return float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))


def vqa_ci(prefix: Path, resamples: int, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap over the split's questions: accuracy/overall and vqa_score over all
    of them, accuracy/closed and accuracy/open within their answer type (stratified)."""
    from medtrain.eval.metrics.vqa import vqa_metrics

    preds = {p["id"]: str(p["answer"]) for p in _read(Path(f"{prefix}.pred.jsonl"))}
    refs = {r["id"]: r for r in _read(Path(f"{prefix}.ref.jsonl"))}
    acc, score, kind = [], [], []  # per question
    for k, r in refs.items():  # one question at a time: its score
        m = vqa_metrics({k: preds[k]}, {k: r})
        acc.append(float(m["accuracy/overall"]))
        score.append(float(m["vqa_score"]))
        kind.append(str(r.get("answer_type", "")).upper())
    groups = {
        "accuracy/overall": np.asarray(acc),
        "vqa_score": np.asarray(score),
        "accuracy/closed": np.asarray([a for a, t in zip(acc, kind, strict=True) if t == "CLOSED"]),
        "accuracy/open": np.asarray([a for a, t in zip(acc, kind, strict=True) if t == "OPEN"]),
    }
    out = {}
    for key, vals in groups.items():
        if vals.size == 0:
            continue
        rng = np.random.default_rng(seed)  # the same resamples for overall and vqa_score
        idx = rng.integers(0, vals.size, size=(resamples, vals.size))  # (R, N)
        means = vals[idx].mean(axis=1)  # (R,)
        out[f"{key}/ci_low"], out[f"{key}/ci_high"] = _percentile_ci(means.tolist())
    return out


def report_ci(prefix: Path, resamples: int, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap of the report metrics: resample studies, rescore (pycocoevalcap +
    labeler through score_task; a resampled study gets a fresh id)."""
    from medtrain.eval.metrics.score import score_task

    preds = {p["id"]: p for p in _read(Path(f"{prefix}.pred.jsonl"))}
    refs = _read(Path(f"{prefix}.ref.jsonl"))
    rng = np.random.default_rng(seed)
    keys = TASK_METRICS["report"]
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(resamples):
        pick = rng.integers(0, len(refs), size=len(refs))
        r_lines = [{**refs[i], "id": f"{j}"} for j, i in enumerate(pick)]
        p_lines = [{**preds[refs[i]["id"]], "id": f"{j}"} for j, i in enumerate(pick)]
        m = score_task("report", p_lines, r_lines, bootstrap=0)
        for k in keys:
            samples[k].append(float(m.get(k, math.nan)))
    out = {}
    for k, vals in samples.items():
        out[f"{k}/ci_low"], out[f"{k}/ci_high"] = _percentile_ci(vals)
    return out


# --- one run ------------------------------------------------------------------------------------
def execute(run: Run, scale: Scale, init: Path, runs_dir: Path) -> dict[str, Any]:
    from medtrain.config import load_config
    from medtrain.finetune.loop import finetune

    out_dir = runs_dir / run.name
    if out_dir.exists():
        shutil.rmtree(out_dir)  # this script's own earlier run of the same arm
    sets = overrides(run, scale, init, out_dir)
    cfg = load_config(run.preset, sets)  # a fresh config per run
    print(f"\n=== {run.name}: {run.preset}, {run.steps} steps -> {out_dir}", flush=True)
    t = time.time()
    summary = finetune(cfg, resume=False)
    ev = summary["eval"]
    metrics = dict(ev["metrics"])
    prefix = out_dir / "eval" / f"{ev['task']}-{ev['split']}"
    t_ci = time.time()
    if run.task == "vqa":
        metrics.update(vqa_ci(prefix, scale.bootstrap))
    elif run.task == "report":
        metrics.update(report_ci(prefix, scale.report_bootstrap))
    wall = time.time() - t
    return {
        "task": run.task,
        "finetune_task": ev["task"],
        "preset": run.preset,
        "arm": run.arm,
        "fraction": run.fraction,
        "seed": run.seed,
        "steps": run.steps,
        "micro_batch_size": scale.batch,
        "n_train": summary["n_train"],
        "n_eval": ev["n"],
        "eval_split": ev["split"],
        "metrics": metrics,
        "baseline": ev["baseline"],
        "train_wall_s": summary["train_wall_s"],
        "ci_wall_s": time.time() - t_ci,
        "wall_s": wall,
        "out_dir": str(out_dir),
        "overrides": sets,
    }


# --- report -------------------------------------------------------------------------------------
def _f(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) and math.isfinite(v) else "n/a"


def beats(metrics: dict[str, float], base: dict[str, float], key: str) -> str:
    low, b = metrics.get(f"{key}/ci_low", math.nan), base.get(key, math.nan)
    if not (math.isfinite(low) and math.isfinite(b)):
        return "n/a"
    return "yes" if low > b else "no"


def task_tables(records: list[dict]) -> list[str]:
    lines = []
    for task, keys in TASK_METRICS.items():
        rows = [r for r in records if r["task"] == task and r["arm"] == "pretrained"]
        if not rows:
            continue
        lines += [
            f"### {TASK_TITLES[task]}",
            "",
            "| fraction | seed | n train / eval | metric | value | 95% CI | baseline "
            "| CI low > baseline |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            m, b = r["metrics"], r["baseline"]
            for k in keys:
                ci = f"[{_f(m.get(f'{k}/ci_low'))}, {_f(m.get(f'{k}/ci_high'))}]"
                lines.append(
                    f"| {r['fraction']:g} | {r['seed']} | {r['n_train']} / {r['n_eval']} | {k} | "
                    f"{_f(m.get(k))} | {ci} | {_f(b.get(k))} | {beats(m, b, k)} |"
                )
        lines.append("")
    return lines


def transfer_table(records: list[dict]) -> list[str]:
    key = TASK_METRICS["cls"][0]
    lines = [
        f"### Pretrained vs random initialization (classification, {key})",
        "",
        "| label fraction | seeds | pretrained (mean ± sd) | random (mean ± sd) | difference |",
        "|---|---|---|---|---|",
    ]
    fractions = sorted(
        {r["fraction"] for r in records if r["task"] == "cls" and r["arm"] == "random"}
    )
    for frac in fractions:
        by_arm = {}
        for arm in ("pretrained", "random"):
            vals = [
                r["metrics"].get(key, math.nan)
                for r in records
                if r["task"] == "cls" and r["arm"] == arm and r["fraction"] == frac
            ]
            by_arm[arm] = vals
        p, q = by_arm["pretrained"], by_arm["random"]

        def ms(v: list[float]) -> str:
            sd = statistics.stdev(v) if len(v) > 1 else math.nan
            return f"{_f(statistics.fmean(v))} ± {_f(sd)}" if v else "n/a"

        diff = statistics.fmean(p) - statistics.fmean(q) if p and q else math.nan
        lines.append(f"| {frac:g} | {len(p)} | {ms(p)} | {ms(q)} | {_f(diff, 3)} |")
    return [*lines, ""]


def markdown(records: list[dict], meta: dict[str, Any]) -> str:
    lines = [
        f"# Downstream transfer of {meta['init']} ({meta['pretrain_preset']})",
        "",
        f"`{meta['command']}`",
        "",
        f"{meta['date']}, {meta['cpu']} ({meta['cores']} cores), torch {meta['torch']}"
        f"{', quick smoke mode (not a result)' if meta['quick'] else ''}.",
        "Value = the model on the evaluation split; 95% CI = bootstrap percentile interval; "
        "baseline = the trivial predictor (label prevalence / majority answer per answer type / "
        "most common training report) on the same split. "
        f"Report decoding: {meta['report_decoding']}.",
        "",
        *task_tables(records),
        *transfer_table(records),
        "### Wall time",
        "",
        "| run | steps | train s | total s |",
        "|---|---|---|---|",
        *[
            f"| {r['task']}-{r['arm']}-f{r['fraction']:g}-s{r['seed']} | {r['steps']} | "
            f"{_f(r['train_wall_s'], 1)} | {_f(r['wall_s'], 1)} |"
            for r in records
        ],
        "",
        f"Data synthesis: {_f(meta['synth_s'], 1)} s. "
        f"**Total wall time: {_f(meta['total_s'], 1)} s ({meta['total_s'] / 60:.1f} min).**",
        "",
    ]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--init", required=True, help="pretraining run directory (runs/tiny-cpu)")
    p.add_argument("--data-dir", default="data", help="synthetic data sets (made when missing)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "results"))
    p.add_argument("--runs-dir", default="runs/downstream", help="fine-tuning run directories")
    p.add_argument("--seeds", type=int, default=3, help="seeds at the 1%% label fraction")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny data, 2 steps, 1 seed")
    p.add_argument(
        "--steps",
        action="append",
        default=[],
        metavar="KEY=N",
        help=f"training steps of one kind of run; keys {sorted(FULL.steps)} (repeatable)",
    )
    p.add_argument("--report-beams", type=int, help="beam width of report decoding")
    args = p.parse_args()
    t0 = time.time()
    init, data_dir = Path(args.init), Path(args.data_dir)
    if not (init / "checkpoints").is_dir():
        sys.exit(f"{init}/checkpoints not found: run `make demo` first")
    scale = QUICK if args.quick else FULL
    steps = dict(scale.steps)
    for item in args.steps:
        key, _, n = item.partition("=")
        if key not in steps or not n.isdigit() or int(n) < 1:
            p.error(f"--steps {item!r}: expected KEY=N with KEY in {sorted(steps)}, N >= 1")
        steps[key] = int(n)
    beams = args.report_beams or scale.report_beams
    scale = dataclasses.replace(scale, steps=steps, report_beams=beams)
    seeds = 1 if args.quick else args.seeds
    pre_cfg = yaml.safe_load((init / "config.yaml").read_text()) or {}
    pretrain_preset = str(pre_cfg.get("name", init.name))
    name = f"downstream_{pretrain_preset}{'-quick' if args.quick else ''}"
    runs_dir = Path(args.runs_dir) / name.removeprefix("downstream_")

    layout, folder, seed = TASK_DATA["mimic"]
    synth_s = synth(layout, scale.n_mimic, scale.image_size, data_dir / folder, seed=seed)
    for key, n in (("rsna", scale.n_rsna), ("vqa", scale.n_vqa)):
        layout, folder, seed = TASK_DATA[key]
        synth_s += synth(layout, n, scale.image_size, data_dir / folder, seed=seed)

    env = environment()
    meta = {
        "init": str(init),
        "pretrain_preset": pretrain_preset,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": env["torch"],
        "quick": args.quick,
        "synth_s": synth_s,
        "report_decoding": "greedy" if beams == 1 else f"beam search, {beams} beams",
    }
    records = []
    for run in plan(scale, seeds, data_dir):
        rec = execute(run, scale, init, runs_dir)
        records.append({**rec, **{k: v for k, v in meta.items() if k != "synth_s"}, "env": env})
    meta["total_s"] = time.time() - t0
    for r in records:
        r["invocation_total_s"] = meta["total_s"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.jsonl").open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    md = markdown(records, meta)
    (out / f"{name}.md").write_text(md)
    print("\n" + md)
    print(f"wrote {out / (name + '.jsonl')} and {out / (name + '.md')}")


if __name__ == "__main__":
    main()
