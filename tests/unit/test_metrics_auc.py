"""AUC per label / macro against scikit-learn, NaN targets, bootstrap CIs, skipped labels, PNG."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medtrain.eval.metrics.auc import auc_report, auc_scores, rank_auc, roc_png


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
