"""The verdict table of ``qarl reproduce robust-small``: probability of improvement, its interval and the rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qarl.report.verdicts import CLAIMS, MIN_SEEDS, poi, stratified_poi, verdict, verdict_table


def test_poi_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 5, size=5).astype(float), rng.integers(0, 5, size=4).astype(float)
        u = stats.mannwhitneyu(x, y).statistic  # pairs with x > y, plus half the ties
        assert poi(x, y) == pytest.approx(u / (len(x) * len(y)))
    assert poi([3, 4], [1, 2]) == 1.0 and poi([1, 2], [1, 2]) == 0.5


def test_stratified_poi_averages_tasks_and_brackets_the_point():
    xs, ys = [np.array([3.0, 4, 5, 6, 7]), np.array([1.0, 2, 3, 4, 5])], [np.array([1.0, 2, 3]), np.array([3.0, 4])]
    p, lo, hi = stratified_poi(xs, ys, n_boot=4000, seed=1)
    assert p == pytest.approx((poi(xs[0], ys[0]) + poi(xs[1], ys[1])) / 2)
    assert lo < p < hi and 0 <= lo and hi <= 1
    assert stratified_poi(xs, ys, n_boot=500, seed=3) == stratified_poi(xs, ys, n_boot=500, seed=3)  # reproducible
    with pytest.raises(ValueError, match="at least one score"):
        stratified_poi([np.array([1.0])], [np.array([])])


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        ([5, 6, 7, 8, 9], [0, 1, 2, 3, 4], "supported"),  # every seed of X above every seed of Y: [1, 1]
        ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9], "contradicted"),
        ([0, 2, 4, 6, 8], [1, 3, 5, 7, 9], "inconclusive"),  # interleaved: the interval holds 0.5
        ([9], [0, 1, 2], "inconclusive"),  # one seed: no interval
        ([8, 9], [0, 1], "inconclusive"),  # complete separation, but 2 seeds each: [1, 1] says nothing
    ],
)
def test_the_rule_on_synthetic_scores(x, y, expected):
    p, lo, hi = stratified_poi([np.array(x, float)], [np.array(y, float)], n_boot=2000)
    assert verdict(lo, hi, min(len(x), len(y))) == expected
    if expected == "supported":
        assert (p, lo, hi) == (1.0, 1.0, 1.0)


def test_verdict_rule_edges():
    assert verdict(0.51, 0.9) == "supported" and verdict(0.5, 0.9) == "inconclusive"
    assert verdict(0.1, 0.49) == "contradicted" and verdict(0.1, 0.5) == "inconclusive"
    assert verdict(float("nan"), float("nan")) == "inconclusive"
    assert verdict(1.0, 1.0, MIN_SEEDS - 1) == "inconclusive" and verdict(1.0, 1.0, MIN_SEEDS) == "supported"


def test_verdict_table_rows():
    rows = []
    for task, shift in (("a", 0.0), ("b", 100.0)):
        for method, level in (("sac", 0), ("domain_randomization", 1), ("rarl", 2), ("qarl", 3)):
            for seed in range(5):
                v = shift + 10 * level + seed
                rows.append({"task": task, "method": method, "seed": seed, "nominal": v, "worst_case": -v,
                             "grid_mean": v if task == "a" else -v})  # fmt: skip
    table = verdict_table(pd.DataFrame(rows), n_boot=500)
    assert len(table) == len(CLAIMS) * 3 * 3  # claims x scores x (all, a, b)
    first = table.iloc[0]
    assert (first.claim, first.score, first.task) == ("qarl > rarl", "nominal", "all")
    by = table.set_index(["claim", "score", "task"])
    assert (table[table.score == "nominal"].verdict == "supported").all()
    assert (table[table.score == "worst_case"].verdict == "contradicted").all()
    grid = by.xs("grid_mean", level="score")
    assert grid.loc[("qarl > sac", "a"), "verdict"] == "supported"
    assert grid.loc[("qarl > sac", "b"), "verdict"] == "contradicted"
    both = grid.loc[("qarl > sac", "all")]
    assert both["poi"] == 0.5 and both["verdict"] == "inconclusive"
    assert (table.n_x == 5).all() and (table.n_y == 5).all()


def test_one_method_alone_is_a_clear_error(tmp_path):
    from qarl.report.figures import FigureError, load_runs
    from qarl.report.verdicts import write_verdicts

    root = Path(__file__).resolve().parents[3] / "results" / "figures" / "small" / "runs" / "robust-small"
    runs = sorted(root.rglob("eval.parquet"))
    if not runs:
        pytest.skip("no committed robust-small runs")
    sac = [p.parent for p in runs if "/sac/" in str(p)]
    with pytest.raises(FigureError, match="need completed runs of both methods of a claim"):
        write_verdicts(load_runs(sac), tmp_path)
