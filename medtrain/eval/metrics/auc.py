"""AUC-ROC per label and macro (scikit-learn), with percentile bootstrap 95% CIs, and ROC PNGs.

Targets are 0/1 with NaN for blank/ignored; NaNs are dropped per label. A label whose kept
targets hold one class only has no AUC: it is left out of the metrics and of the macro mean and
returned by `auc_report` as skipped (never dropped silently).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CHUNK = 100  # bootstrap resamples ranked at once
_MAX_REDRAWS = 100  # per resample: redraw a one-class bootstrap sample at most this often


def _kept(t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t, dtype=np.float64).ravel()  # (N,)
    s = np.asarray(s, dtype=np.float64).ravel()  # (N,)
    if t.shape != s.shape:
        raise ValueError(f"targets {t.shape} and scores {s.shape} differ in length")
    keep = ~np.isnan(t)
    t, s = t[keep], s[keep]
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError(f"AUC targets must be 0/1 (or NaN), got {sorted(set(t.tolist()))[:5]}")
    if np.isnan(s).any():
        raise ValueError("AUC scores contain NaN")
    return t, s


def _two_class(t: np.ndarray) -> bool:
    return t.size > 0 and 0 < t.sum() < t.size


def auc_report(
    y_true: dict[str, np.ndarray],
    y_score: dict[str, np.ndarray],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, float], list[str]]:
    """(metrics, skipped labels). Keys `auc/<label>`, `auc/macro` (mean over labels with both
    classes) and, with bootstrap > 0, `<key>/ci_low`, `<key>/ci_high` (2.5/97.5 percentiles over
    `bootstrap` resamples of the samples, fixed `seed`; one-class resamples are redrawn)."""
    from sklearn.metrics import roc_auc_score

    missing = sorted(set(y_true) ^ set(y_score))
    if missing:
        raise ValueError(f"labels present in only one of targets/scores: {missing[:5]}")
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    skipped: list[str] = []
    for name in y_true:
        t, s = _kept(y_true[name], y_score[name])
        if _two_class(t):
            data[name] = (t, s)
        else:
            skipped.append(name)
    out: dict[str, float] = {}
    for name, (t, s) in data.items():
        out[f"auc/{name}"] = float(roc_auc_score(t, s))
    if data:
        out["auc/macro"] = float(np.mean([out[f"auc/{n}"] for n in data]))
    if bootstrap > 0 and data:
        out.update(_bootstrap(data, bootstrap, seed))
    return out, skipped


def rank_auc(t: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUC of each row of (B, N) 0/1 targets `t` and scores `s` by the Mann-Whitney rank sum
    with average ranks for ties: the value roc_auc_score gives, vectorized for the bootstrap.
    Rows with one class give NaN."""
    from scipy.stats import rankdata

    ranks = rankdata(s, axis=-1)  # (B, N), ties -> average rank
    n1 = t.sum(-1)  # (B,)
    n0 = t.shape[-1] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * t).sum(-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _resample(t: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, N) bootstrap indices whose targets hold both classes (one-class rows redrawn; rows
    still one-class after _MAX_REDRAWS tries are dropped)."""
    idx = rng.integers(0, t.size, (n, t.size))  # (n, N)
    for _ in range(_MAX_REDRAWS):
        pos = t[idx].sum(-1)
        bad = (pos == 0) | (pos == t.size)
        if not bad.any():
            return idx
        idx[bad] = rng.integers(0, t.size, (int(bad.sum()), t.size))
    pos = t[idx].sum(-1)
    return idx[(pos > 0) & (pos < t.size)]


def _bootstrap(
    data: dict[str, tuple[np.ndarray, np.ndarray]], n: int, seed: int
) -> dict[str, float]:
    """Percentile 95% CIs: each label resamples its kept samples (n draws, fixed seed); the
    macro CI averages the labels' b-th draws."""
    rng = np.random.default_rng(seed)
    draws: dict[str, np.ndarray] = {}
    for name, (t, s) in data.items():
        chunks = []
        for start in range(0, n, _CHUNK):  # bounded memory: (_CHUNK, N) at a time
            idx = _resample(t, min(_CHUNK, n - start), rng)  # (n', N)
            chunks.append(rank_auc(t[idx], s[idx]))  # (n',)
        draws[name] = np.concatenate(chunks)
    m = min(len(v) for v in draws.values())
    macro = np.mean([v[:m] for v in draws.values()], axis=0) if m else np.empty(0)
    out: dict[str, float] = {}
    for key, vals in [*((f"auc/{k}", v) for k, v in draws.items()), ("auc/macro", macro)]:
        if len(vals):
            lo, hi = np.percentile(vals, [2.5, 97.5])
            out[f"{key}/ci_low"], out[f"{key}/ci_high"] = float(lo), float(hi)
    return out


def auc_scores(
    y_true: dict[str, np.ndarray],
    y_score: dict[str, np.ndarray],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """The metrics of `auc_report` (skipped labels are dropped; use auc_report to list them)."""
    return auc_report(y_true, y_score, bootstrap=bootstrap, seed=seed)[0]


def roc_png(
    y_true: dict[str, np.ndarray], y_score: dict[str, np.ndarray], path: str | Path
) -> Path:
    """One axes, one ROC curve per two-class label (AUC in the legend), chance diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    try:
        for name in y_true:
            t, s = _kept(y_true[name], y_score[name])
            if not _two_class(t):
                continue
            fpr, tpr, _ = roc_curve(t, s)
            ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(t, s):.3f})")
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(loc="lower right", fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
