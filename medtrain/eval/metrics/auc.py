"""AUC-ROC per label and macro (scikit-learn), with percentile bootstrap 95% CIs, and ROC PNGs.

Targets are 0/1 with NaN for blank/ignored; NaNs are dropped per label. A label whose kept
targets hold one class only has no AUC: it is left out of the metrics and of the macro mean and
returned by `auc_report` as skipped (never dropped silently). The bootstrap draws one index set
over the samples per resample, shared by all labels, so the macro CI carries the labels'
correlation (independent draws per label would average out and give too narrow a macro CI).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_CHUNK = 100  # bootstrap resamples ranked at once
_CHUNK_CELLS = 2_000_000  # ... and at most this many resampled entries per label at once


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
    `bootstrap` resamples of the samples, fixed `seed`, one index set per resample shared by all
    labels; a label with one class in a resample sits that resample out, see _bootstrap). With
    bootstrap > 0 every label's arrays run over the same N samples (NaN = not scored)."""
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
        names = list(data)
        t, s = _shared_axis(y_true, y_score, names)  # (L, N) each
        out.update(_bootstrap(names, t, s, bootstrap, seed))
    return out, skipped


def rank_auc(t: np.ndarray, s: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """AUC of each row of (B, N) 0/1 targets `t` and scores `s` by the Mann-Whitney rank sum
    with average ranks for ties: the value roc_auc_score gives, vectorized for the bootstrap.
    `keep` (B, N) bool, optional: only those entries count (ranks among them alone; `t` and `s`
    elsewhere may hold anything, NaN included). Rows with one class among the kept give NaN."""
    from scipy.stats import rankdata

    if keep is None:
        keep = np.ones(t.shape, dtype=bool)
    t = np.where(keep, t, 0.0)  # (B, N), ignored entries neither positive nor negative
    ranks = rankdata(np.where(keep, s, np.nan), axis=-1, nan_policy="omit")  # (B, N), NaN off
    n1 = t.sum(-1)  # (B,)
    n0 = keep.sum(-1) - n1  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (np.nansum(ranks * t, -1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def _shared_axis(
    y_true: dict[str, np.ndarray], y_score: dict[str, np.ndarray], names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(targets (L, N) with NaN = ignored, scores (L, N)) of `names` over the one sample axis
    that all labels share; a ValueError when the labels do not have the same N."""
    t = [np.asarray(y_true[k], dtype=np.float64).ravel() for k in names]
    s = [np.asarray(y_score[k], dtype=np.float64).ravel() for k in names]
    if len({len(x) for x in t}) > 1:
        lengths = {k: len(x) for k, x in zip(names, t, strict=True)}
        raise ValueError(
            "the bootstrap resamples samples shared by all labels: give every label's targets "
            f"over the same samples (NaN where not scored); lengths {lengths}"
        )
    return np.stack(t), np.stack(s)


def _bootstrap_draws(t: np.ndarray, s: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, L) AUC of each label on each of `n` bootstrap resamples of the N samples of (L, N)
    targets `t` (NaN = ignored) and scores `s`: ONE index set per resample, shared by every
    label (so label AUCs stay as correlated as they are on the data); within it a label keeps
    its non-NaN targets, and is NaN (not scored) when those hold one class only."""
    rng = np.random.default_rng(seed)
    n_labels, n_samples = t.shape
    chunk = max(1, min(_CHUNK, _CHUNK_CELLS // max(n_samples, 1)))  # bounded memory
    out = []
    for start in range(0, n, chunk):
        idx = rng.integers(0, n_samples, (min(chunk, n - start), n_samples))  # (c, N)
        aucs = np.empty((len(idx), n_labels))  # (c, L)
        for j in range(n_labels):
            tj = t[j][idx]  # (c, N), NaN where ignored
            aucs[:, j] = rank_auc(tj, s[j][idx], keep=~np.isnan(tj))
        out.append(aucs)
    return np.concatenate(out)  # (n, L)


def _bootstrap(
    names: list[str], t: np.ndarray, s: np.ndarray, n: int, seed: int
) -> dict[str, float]:
    """Percentile 95% CIs from shared resamples (see _bootstrap_draws): a label's CI over the
    resamples that score it; the macro of a resample is the mean over the labels it scores
    (resamples scoring none are dropped)."""
    draws = _bootstrap_draws(t, s, n, seed)  # (n, L), NaN = label not scored
    scored = ~np.isnan(draws)  # (n, L)
    macro = np.nanmean(draws[scored.any(1)], axis=1)  # (n',) over the labels scored
    out: dict[str, float] = {}
    columns = [(f"auc/{k}", draws[scored[:, j], j]) for j, k in enumerate(names)]
    for key, vals in [*columns, ("auc/macro", macro)]:
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
