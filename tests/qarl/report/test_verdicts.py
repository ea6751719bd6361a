"""The verdict table of ``qarl reproduce robust-small``: probability of improvement, its interval and the rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qarl.report.stats import StatsError, poi_interval
from qarl.report.verdicts import CLAIMS, MIN_SEEDS, verdict, verdict_table


def _by_hand(x: np.ndarray, y: np.ndarray) -> float:
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y) / (len(x) * len(y))


def test_poi_is_the_mann_whitney_statistic():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 5, size=5).astype(float), rng.integers(0, 5, size=4).astype(float)
        u = stats.mannwhitneyu(x, y).statistic  # pairs with x > y, plus half the ties
        assert poi_interval(x, y, reps=10)[0] == pytest.approx(u / (len(x) * len(y))) == pytest.approx(_by_hand(x, y))
    assert poi_interval([3, 4], [1, 2])[0] == 1.0 and poi_interval([1, 2], [1, 2])[0] == 0.5


def test_poi_over_tasks_averages_them_and_brackets_the_point():
    x = np.array([[3.0, 1], [4, 2], [5, 3], [6, 4], [7, 5]])  # (seeds, tasks)
    y = np.array([[1.0, 3], [2, 4], [3, 3.5], [0, 2.5], [2, 5]])
    p, lo, hi = poi_interval(x, y, reps=2000, seed=1)
    assert p == pytest.approx((_by_hand(x[:, 0], y[:, 0]) + _by_hand(x[:, 1], y[:, 1])) / 2)
    assert lo < p < hi and 0 <= lo and hi <= 1
    assert poi_interval(x, y, reps=500, seed=3) == poi_interval(x, y, reps=500, seed=3)  # reproducible
    with pytest.raises(StatsError, match="non-empty"):
        poi_interval(np.array([1.0]), np.array([]))
    with pytest.raises(StatsError, match="tasks must be the same"):
        poi_interval(x, y[:, :1])


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
    p, lo, hi = poi_interval(np.array(x, float), np.array(y, float), reps=2000)
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
    table = verdict_table(pd.DataFrame(rows), n_boot=200)
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


def test_qarl_verdicts_tests_the_claims_it_is_given(tmp_path):
    """`qarl verdicts RUNS --claim X>Y` on the committed robust-small runs: one row per score, the rule applied."""
    from qarl.cli import main
    from qarl.report.verdicts import parse_claim

    assert parse_claim("qarl [qarl-authors] > qarl") == ("qarl [qarl-authors]", "qarl")
    with pytest.raises(ValueError, match="X>Y"):
        parse_claim("qarl beats rarl")
    root = Path(__file__).resolve().parents[3] / "results" / "figures" / "small" / "runs" / "robust-small"
    if len(list(root.glob("dmc/cartpole-balance/domain_randomization/seed=*/eval.parquet"))) < 5:
        pytest.skip("the committed robust-small runs of sac and domain_randomization are not all there")
    out = tmp_path / "v"
    task = root / "dmc/cartpole-balance"
    args = ["verdicts", str(task / "sac"), str(task / "domain_randomization"), "--claim", "domain_randomization>sac"]
    assert main([*args, "--out", str(out)]) == 0
    table = pd.read_csv(out / "verdicts.csv")
    assert list(table.score) == ["nominal", "worst_case", "grid_mean"] and set(table.claim) == {
        "domain_randomization > sac"
    }
    for row in table.itertuples():
        assert row.verdict == verdict(row.low, row.high, min(row.n_x, row.n_y)) and row.n_x == row.n_y == 5
    assert "qarl verdicts" in (out / "verdicts.md").read_text()
