"""AUC per label / macro against scikit-learn, NaN targets, bootstrap CIs, skipped labels, PNG."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medtrain.eval.metrics.auc import (
    _bootstrap_draws,
    auc_report,
    auc_scores,
    rank_auc,
    roc_png,
)


def _data(n: int, seed: int, labels=("A", "B", "C")):
    rng = np.random.default_rng(seed)
    t = {k: (rng.random(n) < 0.3 + 0.1 * i).astype(float) for i, k in enumerate(labels)}
    s = {k: t[k] * 0.8 + rng.normal(size=n) for k in labels}  # informative, noisy
    return t, s


@pytest.mark.parametrize("n", [7, 33, 101])
def test_equal_to_sklearn(n: int) -> None:
    t, s = _data(n, seed=n)
    t["A"][:2], t["A"][2:4] = 0.0, 1.0  # both classes even for tiny n
    m = auc_scores(t, s, bootstrap=0)
    for k in t:
        assert m[f"auc/{k}"] == pytest.approx(roc_auc_score(t[k], s[k]), abs=1e-12)
    assert m["auc/macro"] == pytest.approx(np.mean([roc_auc_score(t[k], s[k]) for k in t]))
    assert not any(k.endswith("ci_low") for k in m)


def test_nan_targets_dropped_per_label() -> None:
    t, s = _data(61, seed=1)
    t["B"][::3] = np.nan
    keep = ~np.isnan(t["B"])
    m = auc_scores(t, s, bootstrap=0)
    assert m["auc/B"] == pytest.approx(roc_auc_score(t["B"][keep], s["B"][keep]))
    assert m["auc/A"] == pytest.approx(roc_auc_score(t["A"], s["A"]))


def test_single_class_label_skipped_not_silent() -> None:
    t, s = _data(40, seed=2)
    t["C"][:] = 1.0
    t["B"][:] = np.nan
    m, skipped = auc_report(t, s, bootstrap=0)
    assert skipped == ["B", "C"]
    assert "auc/C" not in m and "auc/B" not in m
    assert m["auc/macro"] == pytest.approx(m["auc/A"])


def test_bootstrap_ci_contains_point_and_narrows() -> None:
    widths = []
    for n in (60, 600):
        t, s = _data(n, seed=3)
        m = auc_scores(t, s, bootstrap=1000, seed=0)
        for k in ("A", "B", "C", "macro"):
            lo, hi = m[f"auc/{k}/ci_low"], m[f"auc/{k}/ci_high"]
            assert lo <= m[f"auc/{k}"] <= hi and lo < hi
        widths.append(m["auc/macro/ci_high"] - m["auc/macro/ci_low"])
    assert widths[1] < widths[0] * 0.6
    t, s = _data(60, seed=3)
    assert auc_scores(t, s, bootstrap=50, seed=5) == auc_scores(t, s, bootstrap=50, seed=5)


def test_bad_targets_and_png(tmp_path) -> None:
    t, s = _data(20, seed=4)
    t["A"][0] = 2.0
    with pytest.raises(ValueError, match="0/1"):
        auc_scores(t, s, bootstrap=0)
    t, s = _data(30, seed=4)
    out = roc_png(t, s, tmp_path / "roc" / "curves.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rank_auc_equals_sklearn_with_ties() -> None:
    rng = np.random.default_rng(9)
    t = (rng.random((20, 37)) < 0.4).astype(float)
    s = rng.integers(0, 5, (20, 37)).astype(float)  # many ties
    t[:, :2] = [0.0, 1.0]
    ours = rank_auc(t, s)
    for b in range(20):
        assert ours[b] == pytest.approx(roc_auc_score(t[b], s[b]), abs=1e-12)


def test_bootstrap_draws_are_shared_by_labels() -> None:
    """Two identical label columns: one index set per resample gives both the same AUC in every
    resample, so the macro CI is the per-label CI. Independent draws per label (the old scheme)
    average two uncorrelated draws and give a narrower macro CI."""
    t, s = _data(80, seed=6, labels=("A",))
    t2 = {"A": t["A"], "B": t["A"].copy()}
    s2 = {"A": s["A"], "B": s["A"].copy()}
    m = auc_scores(t2, s2, bootstrap=400, seed=1)
    for end in ("ci_low", "ci_high"):
        assert m[f"auc/macro/{end}"] == m[f"auc/A/{end}"] == m[f"auc/B/{end}"]
    ta, sa = t["A"][None], s["A"][None]  # (1, N): one label alone, two independent seeds
    independent = (_bootstrap_draws(ta, sa, 400, 1) + _bootstrap_draws(ta, sa, 400, 2)) / 2
    lo, hi = np.percentile(independent[:, 0], [2.5, 97.5])
    assert hi - lo < 0.85 * (m["auc/macro/ci_high"] - m["auc/macro/ci_low"])


def test_bootstrap_equals_reference_loop_with_nan_and_skips() -> None:
    """CIs equal a plain loop over the same draws (one rng.integers call of shape (n, N) for
    n <= 100) scored by scikit-learn: per resample, a label drops its NaN targets and sits the
    resample out when one class is left; the macro averages the labels scored."""
    n, size, seed = 60, 14, 3
    t, s = _data(size, seed=8, labels=("A", "B"))
    t["A"][:] = 0.0
    t["A"][[2, 9]] = 1.0  # rare positives: many resamples without one
    t["B"][[0, 1, 5]], t["B"][[3, 4]] = np.nan, (0.0, 1.0)
    m = auc_scores(t, s, bootstrap=n, seed=seed)
    idx = np.random.default_rng(seed).integers(0, size, (n, size))
    per: dict[str, list[float]] = {"A": [], "B": []}
    macro = []
    for row in idx:
        got = []
        for k in ("A", "B"):
            tk, sk = t[k][row], s[k][row]
            keep = ~np.isnan(tk)
            if len(set(tk[keep])) == 2:
                per[k].append(roc_auc_score(tk[keep], sk[keep]))
                got.append(per[k][-1])
        if got:
            macro.append(np.mean(got))
    assert len(per["A"]) < n  # the skip is exercised
    for k, vals in [*per.items(), ("macro", macro)]:
        lo, hi = np.percentile(vals, [2.5, 97.5])
        assert m[f"auc/{k}/ci_low"] == pytest.approx(lo, abs=1e-12)
        assert m[f"auc/{k}/ci_high"] == pytest.approx(hi, abs=1e-12)


def test_bootstrap_needs_one_sample_axis() -> None:
    t, s = _data(30, seed=4)
    t["B"], s["B"] = t["B"][:20], s["B"][:20]
    assert "auc/B" in auc_scores(t, s, bootstrap=0)  # point estimates need no shared axis
    with pytest.raises(ValueError, match="same samples"):
        auc_scores(t, s, bootstrap=10)
