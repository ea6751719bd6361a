"""Leaderboard: scores, intervals, % change, probability of improvement and ranking on synthetic runs with known
returns, checked against rliable's own functions called on the same score matrices; the input checks (each raising
LeaderboardError naming the file); the written files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from qarl.report import stats as qstats
from qarl.report.leaderboard import (
    LeaderboardError,
    compute_leaderboard,
    find_runs,
    load_evals,
    main_leaderboard,
    write_leaderboard,
)

TASKS = {"dmc/cheetah-run": ("torso_mass", "friction"), "gym/Hopper-v5": ("mass", "damping")}
METHODS = ("sac", "rarl", "qarl")
SEEDS = range(5)
GRID_X, GRID_Y = (0.5, 1.0, 1.5), (0.8, 1.0, 1.2)
# Per task and method: the nominal return of each seed, and the base of the grid returns. A grid cell (i, j) of seed s
# returns base + 10 s + i + 3 j on average (episodes at -0.5 and +0.5), so a seed's grid mean is base + 10 s + 4, its
# worst cell base + 10 s, and with 3 x 3 = 9 cells its bottom decile (one cell) is the worst cell too.
NOMINAL = {"sac": [1.0, 2.0, 3.0, 4.0, 100.0], "rarl": [2.0, 4.0, 6.0, 8.0, 200.0], "qarl": [10.0] * 5}
GRID_BASE = {"dmc/cheetah-run": {"sac": 0.0, "rarl": 100.0, "qarl": 200.0}, "gym/Hopper-v5": {"sac": 30.0, "rarl": 0.0}}
GRID_BASE["gym/Hopper-v5"]["qarl"] = 100.0
VERSIONS = {
    "python": "3.11.7",
    "qarl": "0.1.0",
    "torch": "2.13.0+cpu",
    "stable-baselines3": "2.9.2",
    "gymnasium": "1.4.0",
    "mujoco": "3.17.0",
    "dm-control": "1.0.50",
}
N_BOOT = 200  # fewer resamples than the default keeps the test fast; the comparisons use the same number


def _rows(
    task: str,
    algo: str,
    seed: int,
    nominal: float,
    grid: dict[tuple[float, float], float],
    worst_case: float | None = None,
    task_version: str = "v0",
    policy_mode: str = "stochastic",
) -> list[dict[str, Any]]:
    """Eval rows of one run: two episodes per cell, at the given mean -0.5 and +0.5."""
    px, py = TASKS.get(task, ("px", "py"))
    base = dict(task=task, task_version=task_version, method=algo, seed=seed, param_x=px, param_y=py)
    base.update(force_bound=1.0, policy_mode=policy_mode, length=1000)
    cells = [("nominal", 1.0, 1.0, nominal)] + [("grid", x, y, r) for (x, y), r in grid.items()]
    if worst_case is not None:
        cells.append(("worst_case", 1.0, 1.0, worst_case))
    rows = []
    for metric, x, y, mean in cells:
        for episode, offset in enumerate((-0.5, 0.5)):
            rows.append({**base, "metric": metric, "value_x": x, "value_y": y, "episode": episode})
            rows[-1]["return"] = mean + offset
    return rows


def write_run(
    root: Path,
    task: str,
    algo: str,
    seed: int,
    rows: list[dict[str, Any]] | None,
    status: str = "completed",
    failure_reason: str | None = None,
    versions: dict[str, str] | None = None,
    scale: str = "small",
    meta_overrides: dict[str, Any] | None = None,
    config_extra: dict[str, Any] | None = None,
) -> Path:
    """A run directory ``root/exp/<task>/<algo>/seed=<k>`` with meta.json, config.yaml and (rows given) eval.parquet."""
    run_dir = root / "exp" / task / algo / f"seed={seed}"
    run_dir.mkdir(parents=True)
    meta = dict(task=task, method=algo, seed=seed, status=status, failure_reason=failure_reason)
    meta.update(versions=versions or VERSIONS, **(meta_overrides or {}))
    (run_dir / "meta.json").write_text(json.dumps(meta))
    config = dict(task=task, method=algo, seed=seed, scale=scale, loop={"horizon": 1000}, **(config_extra or {}))
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    if rows is not None:
        pd.DataFrame(rows).to_parquet(run_dir / "eval.parquet")
    return run_dir


def _grid(base: float, seed: int) -> dict[tuple[float, float], float]:
    return {(x, y): base + 10 * seed + i + 3 * j for i, x in enumerate(GRID_X) for j, y in enumerate(GRID_Y)}


def _rliable_interval(scores: dict[str, Any], func: Any) -> tuple[float, float]:
    """rliable's own interval for one entry, with NumPy's global generator seeded as the leaderboard seeds it."""
    library, _ = qstats.rliable_modules()
    np.random.seed(0)
    _, intervals = library.get_interval_estimates(scores, func, reps=N_BOOT)
    low, high = next(iter(intervals.values()))[:, 0]
    return float(low), float(high)


def _rliable_iqm(matrix: np.ndarray) -> tuple[float, float, float]:
    _, metrics = qstats.rliable_modules()
    matrix = matrix.reshape(len(matrix), -1)
    low, high = _rliable_interval({"x": matrix}, lambda s: np.array([metrics.aggregate_iqm(s)]))
    return float(metrics.aggregate_iqm(matrix)), low, high


def _rliable_poi(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    _, metrics = qstats.rliable_modules()
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    low, high = _rliable_interval({"xy": (x, y)}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]))
    return float(metrics.probability_of_improvement(x, y)), low, high


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """2 tasks x 3 methods x 5 seeds, plus a failed and an interrupted run, loaded and aggregated once."""
    root = tmp_path_factory.mktemp("runs")
    for task in TASKS:
        for algo in METHODS:
            for seed in SEEDS:
                nominal = NOMINAL[algo][seed]
                worst = None if algo == "sac" else nominal - 1  # sac has no worst-case rows: NaN, not an error
                rows = _rows(task, algo, seed, nominal, _grid(GRID_BASE[task][algo], seed), worst)
                # Deterministic rows with absurd returns: they must not leak into the stochastic leaderboard.
                rows += _rows(task, algo, seed, 1e6, _grid(1e6, seed), policy_mode="deterministic")
                write_run(root, task, algo, seed, rows)
    write_run(root, "dmc/cheetah-run", "sac", 7, None, status="failed", failure_reason="non-finite loss: critic nan")
    partial = _rows("dmc/cheetah-run", "qarl", 8, -1e6, _grid(-1e6, 8))
    write_run(root, "dmc/cheetah-run", "qarl", 8, partial, status="interrupted", failure_reason="SIGTERM")
    runs = find_runs([root])
    evals, records = load_evals(runs)
    tables = compute_leaderboard(evals, records, n_boot=N_BOOT)
    return dict(root=root, runs=runs, evals=evals, records=records, tables=tables)


def _row(tables: dict[str, pd.DataFrame], task: str, algo: str) -> pd.Series:
    main = tables["main"]
    return main[(main["task"] == task) & (main["method"] == algo)].iloc[0]


def test_find_runs_includes_failed_runs_without_eval(suite: dict[str, Any]) -> None:
    assert len(suite["runs"]) == 2 * 3 * 5 + 2
    assert any(p.name == "seed=7" and not (p / "eval.parquet").exists() for p in suite["runs"])
    assert find_runs([suite["runs"][0] / "meta.json"]) == [suite["runs"][0]]


def test_per_seed_scores_by_hand(suite: dict[str, Any]) -> None:
    per_seed = suite["tables"]["per_seed"]
    assert set(per_seed["policy_mode"]) == {"stochastic"}
    cheetah = per_seed[per_seed["task"] == "dmc/cheetah-run"]
    row = cheetah[(cheetah["method"] == "rarl") & (cheetah["seed"] == 2)].iloc[0]
    assert row["nominal"] == 6.0 and row["worst_case"] == 5.0
    assert row["grid_mean"] == pytest.approx(100 + 20 + 4)
    assert row["grid_worst"] == 100 + 20
    assert row["bottom_decile"] == 100 + 20  # 9 cells: 9 // 10 = 0, so at least one cell
    assert per_seed[per_seed["method"] == "sac"]["worst_case"].isna().all()


def test_bottom_decile_and_worst_cell_on_a_larger_grid(tmp_path: Path) -> None:
    # A 5 x 4 grid (20 cells): the bottom decile is the mean of the 2 lowest cell means.
    cells = {(float(i), float(j)): 100.0 + 7 * i + j for i in range(5) for j in range(4)}
    cells[(2.0, 3.0)] = -50.0
    cells[(4.0, 0.0)] = -10.0
    write_run(tmp_path, "t/a", "sac", 0, _rows("t/a", "sac", 0, 1.0, cells))
    evals, records = load_evals(find_runs([tmp_path]))
    per_seed = compute_leaderboard(evals, records, n_boot=N_BOOT)["per_seed"].iloc[0]
    assert per_seed["grid_worst"] == -50.0
    assert per_seed["bottom_decile"] == pytest.approx((-50.0 - 10.0) / 2)
    assert per_seed["grid_mean"] == pytest.approx(np.mean(list(cells.values())))


def test_iqm_and_interval_equal_rliable(suite: dict[str, Any]) -> None:
    tables = suite["tables"]
    sac = _row(tables, "dmc/cheetah-run", "sac")
    assert sac["nominal_iqm"] == 3.0  # [1, 2, 3, 4, 100]: trim one each side, mean of [2, 3, 4]
    assert sac["n_seeds"] == 5 and sac["n_not_completed"] == 1 and sac["policy_mode"] == "stochastic"
    assert (sac["nominal_iqm"], sac["nominal_low"], sac["nominal_high"]) == _rliable_iqm(np.array(NOMINAL["sac"]))
    assert 1.0 <= sac["nominal_low"] < 3.0 < sac["nominal_high"] <= 100.0
    per_seed = tables["per_seed"]
    for task in TASKS:
        for algo in METHODS:
            row = _row(tables, task, algo)
            scores = per_seed[(per_seed["task"] == task) & (per_seed["method"] == algo)]
            for metric in ("grid_mean", "grid_worst", "bottom_decile"):
                x = scores[metric].to_numpy()
                assert (row[f"{metric}_iqm"], row[f"{metric}_low"], row[f"{metric}_high"]) == _rliable_iqm(x)
            assert row["grid_mean_iqm"] == pytest.approx(GRID_BASE[task][algo] + 24)  # 4 + mean of 10, 20, 30
    assert np.isnan(_row(tables, "dmc/cheetah-run", "sac")["worst_case_iqm"])
    assert _row(tables, "dmc/cheetah-run", "rarl")["worst_case_iqm"] == 5.0


def test_intervals_are_reproducible_and_leave_numpy_global_state_alone(suite: dict[str, Any]) -> None:
    np.random.seed(123)
    before = np.random.random()
    np.random.seed(123)
    again = compute_leaderboard(suite["evals"], suite["records"], n_boot=N_BOOT)
    assert np.random.random() == before  # the global generator continues where the caller left it
    pd.testing.assert_frame_equal(again["main"], suite["tables"]["main"])


def test_below_five_seeds_no_interval_no_rank_and_said_so(tmp_path: Path) -> None:
    for algo, base in (("sac", 0.0), ("rarl", 50.0)):
        for seed in range(4):  # one seed short of the minimum
            write_run(
                tmp_path, "dmc/cheetah-run", algo, seed, _rows("dmc/cheetah-run", algo, seed, 5.0, _grid(base, seed))
            )
    evals, records = load_evals(find_runs([tmp_path]))
    tables = compute_leaderboard(evals, records, n_boot=N_BOOT)
    for _, row in tables["main"].iterrows():
        assert row["nominal_iqm"] == 5.0 and np.isnan(row["nominal_low"]) and np.isnan(row["nominal_high"])
        assert pd.isna(row["rank"]) and np.isnan(row["poi_low"])
    assert _row(tables, "dmc/cheetah-run", "sac")["poi"] == 0.0  # the point estimate is still given
    ranking = tables["ranking"]
    assert ranking["rank_robustness"].isna().all() and ranking["robustness_score"].isna().all()
    assert all(qstats.TOO_FEW in note for note in ranking["note"])
    write_leaderboard(tables, records, tmp_path / "board", "cmd")
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "4 (0, 1, 2, 3), too few to rank" in md and "1.00 [" not in md
    assert not (tmp_path / "board" / "aggregate.png").exists()


def test_percent_change_vs_reference(suite: dict[str, Any]) -> None:
    tables = suite["tables"]
    rarl = _row(tables, "dmc/cheetah-run", "rarl")
    assert rarl["performance_pct"] == pytest.approx(100 * (6 - 3) / 3)
    assert rarl["robustness_pct"] == pytest.approx(100 * (124 - 24) / 24)
    qarl = _row(tables, "gym/Hopper-v5", "qarl")
    assert qarl["robustness_pct"] == pytest.approx(100 * (124 - 54) / 54)
    assert _row(tables, "gym/Hopper-v5", "sac")["performance_pct"] == 0.0


def test_probability_of_improvement(suite: dict[str, Any]) -> None:
    tables = suite["tables"]
    assert _row(tables, "dmc/cheetah-run", "qarl")["poi"] == 1.0  # every qarl seed beats every rarl seed
    assert _row(tables, "dmc/cheetah-run", "sac")["poi"] == 0.0
    assert _row(tables, "dmc/cheetah-run", "rarl")["poi"] == 0.5  # against itself: identical distributions
    # Hopper: sac grid means 34..74 vs rarl 4..44: pairs with sac > rarl, plus half the ties (30 + 10 s equal sets).
    per_seed = tables["per_seed"]
    hop = per_seed[per_seed["task"] == "gym/Hopper-v5"]
    x = hop[hop["method"] == "sac"]["grid_mean"].to_numpy()
    y = hop[hop["method"] == "rarl"]["grid_mean"].to_numpy()
    by_hand = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y) / 25
    sac = _row(tables, "gym/Hopper-v5", "sac")
    assert sac["poi"] == pytest.approx(by_hand)
    assert sac["poi"] == pytest.approx(stats.mannwhitneyu(x, y).statistic / 25)

    assert (sac["poi"], sac["poi_low"], sac["poi_high"]) == _rliable_poi(x, y)
    assert sac["poi_low"] < sac["poi"] < sac["poi_high"]


def _normalised(per_seed: pd.DataFrame, method: str, score: str) -> np.ndarray:
    """The (seeds, tasks) matrix of a method's normalised score: dmc returns over 1000, Hopper's over 3800."""
    high = {"dmc/cheetah-run": 1000.0, "gym/Hopper-v5": 3800.0}
    cols = [per_seed[(per_seed.task == t) & (per_seed.method == method)].sort_values("seed")[score] / h
            for t, h in sorted(high.items())]  # fmt: skip
    return np.stack([c.to_numpy() for c in cols], axis=1)


def test_ranking_by_fixed_reference_scores_equals_rliable(suite: dict[str, Any]) -> None:
    tables = suite["tables"]
    ranking, per_seed = tables["ranking"], tables["per_seed"]
    assert ranking["method"].tolist() == ["qarl", "rarl", "sac"]
    assert ranking["rank_robustness"].tolist() == [1, 2, 3] and ranking["n_tasks"].tolist() == [2, 2, 2]
    for _, row in ranking.iterrows():
        for name, score in (("robustness", "grid_mean"), ("performance", "nominal")):
            expected = _rliable_iqm(_normalised(per_seed, row["method"], score))
            assert (row[f"{name}_score"], row[f"{name}_low"], row[f"{name}_high"]) == pytest.approx(expected)
    perf = dict(zip(ranking["method"], ranking["rank_performance"], strict=True))
    assert perf == {"qarl": 1, "rarl": 2, "sac": 3}  # nominal IQMs 10 > 6 > 3 on both tasks
    # By hand: sac's normalised grid means are (4 + 10 s) / 1000 and (34 + 10 s) / 3800; the IQM of the ten values
    # drops the two lowest and two highest.
    values = np.sort([(4 + 10 * s) / 1000 for s in SEEDS] + [(34 + 10 * s) / 3800 for s in SEEDS])
    assert ranking.set_index("method").at["sac", "robustness_score"] == pytest.approx(values[2:8].mean())


def test_adding_a_method_changes_no_other_score(suite: dict[str, Any]) -> None:
    """Fixed reference scores: a method's score and rank order do not depend on which other methods are present."""
    without = [r for r in suite["records"] if r["method"] != "qarl"]
    tables = compute_leaderboard(suite["evals"][suite["evals"]["method"] != "qarl"], without, n_boot=N_BOOT)
    full = suite["tables"]["ranking"].set_index("method")
    part = tables["ranking"].set_index("method")
    for method in ("sac", "rarl"):
        assert part.at[method, "robustness_score"] == full.at[method, "robustness_score"]
        assert part.at[method, "performance_score"] == full.at[method, "performance_score"]
    assert part["rank_robustness"].to_dict() == {"rarl": 1, "sac": 2}


def test_aggregates_equal_rliable(suite: dict[str, Any]) -> None:
    tables = suite["tables"]
    per_seed = tables["per_seed"]
    agg = tables["aggregate"].set_index(["method", "score"])
    expected = _rliable_iqm(_normalised(per_seed, "qarl", "grid_mean"))
    assert tuple(agg.loc[("qarl", "grid_mean"), ["iqm", "low", "high"]]) == pytest.approx(expected)
    assert ("sac", "worst_case") not in agg.index  # sac has no worst-case rows
    poi = tables["poi_aggregate"].set_index("method")
    assert set(poi.index) == {"qarl", "sac"} and set(poi["baseline"]) == {"rarl"}

    def raw(method: str) -> np.ndarray:
        return np.stack(
            [per_seed[(per_seed.task == t) & (per_seed.method == method)].sort_values("seed")["grid_mean"].to_numpy()
             for t in sorted(TASKS)], axis=1)  # fmt: skip

    assert tuple(poi.loc["sac", ["poi", "low", "high"]]) == pytest.approx(_rliable_poi(raw("sac"), raw("rarl")))
    assert poi.at["qarl", "poi"] == 1.0  # qarl's grid means beat rarl's on both tasks
    library, _ = qstats.rliable_modules()
    matrices = {m: _normalised(per_seed, m, "grid_mean") for m in ("qarl", "rarl", "sac")}  # the ranking's order
    np.random.seed(0)
    profiles, cis = library.create_performance_profile(matrices, np.linspace(0, 1, 21), reps=N_BOOT)
    profile = tables["profile"]
    qarl = profile[profile["method"] == "qarl"]
    np.testing.assert_allclose(qarl["fraction"], profiles["qarl"])
    np.testing.assert_allclose(qarl["low"], cis["qarl"][0])
    np.testing.assert_allclose(qarl["high"], cis["qarl"][1])
    assert qarl["tau"].iloc[0] == 0.0 and qarl["fraction"].iloc[0] == 1.0  # every normalised score exceeds 0


def test_failed_runs_listed_and_excluded(suite: dict[str, Any]) -> None:
    records = {(r["method"], r["seed"]): r for r in suite["records"] if r["task"] == "dmc/cheetah-run"}
    assert records[("sac", 7)]["status"] == "failed"
    assert records[("qarl", 8)]["status"] == "interrupted"
    assert set(suite["evals"]["seed"]) == set(SEEDS)  # the interrupted run's partial rows are not read
    assert _row(suite["tables"], "dmc/cheetah-run", "qarl")["n_not_completed"] == 1


def test_only_requested_policy_mode(suite: dict[str, Any]) -> None:
    det = compute_leaderboard(suite["evals"], suite["records"], policy_mode="deterministic", n_boot=N_BOOT)
    assert _row(det, "dmc/cheetah-run", "sac")["nominal_iqm"] == 1e6
    with pytest.raises(LeaderboardError, match="no eval rows with policy_mode"):
        compute_leaderboard(suite["evals"].assign(policy_mode="deterministic"), suite["records"], n_boot=N_BOOT)


def _one_run(tmp_path: Path, **kwargs: Any) -> Path:
    return write_run(tmp_path, "t/a", "sac", 0, _rows("t/a", "sac", 0, 1.0, _grid(0, 0)), **kwargs)


def test_missing_eval_for_completed_run(tmp_path: Path) -> None:
    run = write_run(tmp_path, "t/a", "sac", 0, None)
    with pytest.raises(LeaderboardError, match="no such file") as e:
        load_evals([run])
    assert str(run / "eval.parquet") in str(e.value)


def test_empty_and_corrupt_eval_files(tmp_path: Path) -> None:
    run = _one_run(tmp_path)
    eval_file = run / "eval.parquet"
    eval_file.write_bytes(b"")
    with pytest.raises(LeaderboardError, match="empty") as e:
        load_evals([run])
    assert str(eval_file) in str(e.value)
    pd.DataFrame(_rows("t/a", "sac", 0, 1.0, {})).iloc[:0].to_parquet(eval_file)
    with pytest.raises(LeaderboardError, match="no rows"):
        load_evals([run])
    eval_file.write_bytes(b"PAR1 this is not a parquet file")
    with pytest.raises(LeaderboardError, match="unreadable") as e:
        load_evals([run])
    assert str(eval_file) in str(e.value)


def test_missing_columns_named(tmp_path: Path) -> None:
    run = _one_run(tmp_path)
    pd.read_parquet(run / "eval.parquet").drop(columns=["length", "policy_mode"]).to_parquet(run / "eval.parquet")
    with pytest.raises(LeaderboardError, match=r"missing column.*policy_mode.*length") as e:
        load_evals([run])
    assert str(run / "eval.parquet") in str(e.value)


def test_meta_contradicting_rows(tmp_path: Path) -> None:
    run = _one_run(tmp_path, meta_overrides={"seed": 3})
    with pytest.raises(LeaderboardError, match="seed") as e:
        load_evals([run])
    assert str(run / "eval.parquet") in str(e.value)


def test_mixed_package_versions(tmp_path: Path) -> None:
    a = _one_run(tmp_path)
    rows = _rows("t/a", "rarl", 0, 1.0, _grid(0, 0))
    b = write_run(tmp_path, "t/a", "rarl", 0, rows, versions={**VERSIONS, "torch": "2.12.0"})
    with pytest.raises(LeaderboardError, match="torch") as e:
        load_evals([a, b])
    assert str(a / "meta.json") in str(e.value) and str(b / "meta.json") in str(e.value)
    evals, _ = load_evals([a, b], allow_mixed=True)
    assert set(evals["method"]) == {"sac", "rarl"}


def test_mixed_task_version(tmp_path: Path) -> None:
    a = _one_run(tmp_path)
    b = write_run(tmp_path, "t/a", "rarl", 0, _rows("t/a", "rarl", 0, 1.0, _grid(0, 0), task_version="v1"))
    with pytest.raises(LeaderboardError, match="task_version") as e:
        load_evals([a, b])
    assert str(a / "eval.parquet") in str(e.value) and str(b / "eval.parquet") in str(e.value)
    load_evals([a, b], allow_mixed=True)


def test_written_files(suite: dict[str, Any], tmp_path: Path) -> None:
    command = "qarl leaderboard runs/ --out board"
    paths = write_leaderboard(suite["tables"], suite["records"], tmp_path, command)
    names = sorted(p.name for p in paths)
    pngs = ["heatmap_dmc_cheetah-run.png", "heatmap_gym_Hopper-v5.png", "aggregate.png", "poi.png", "profile.png"]
    assert names == sorted(["leaderboard.md", "leaderboard.csv", "leaderboard.html", *pngs])
    assert all(p.exists() for p in paths)
    main = suite["tables"]["main"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "leaderboard.csv"), main, check_dtype=False)
    assert len(main) == 6
    md = (tmp_path / "leaderboard.md").read_text()
    assert command in md and "stochastic" in md
    assert "torch 2.13.0+cpu" in md and "mujoco 3.17.0" in md and "dm-control 1.0.50" in md
    assert "non-finite loss: critic nan" in md and "interrupted" in md
    assert "3.0 [" in md  # the sac nominal IQM with its interval
    assert "![aggregate](aggregate.png)" in md and "reference_scores.yaml" in md
    html = (tmp_path / "leaderboard.html").read_text()
    assert "<table" in html and command in html and "http" not in html
    import matplotlib.image

    for png in (p for p in paths if p.suffix == ".png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.image.imread(png).ndim == 3


def test_main_leaderboard(suite: dict[str, Any], tmp_path: Path) -> None:
    paths = main_leaderboard([suite["root"]], tmp_path / "board", command="qarl leaderboard x", n_boot=N_BOOT)
    assert (tmp_path / "board" / "leaderboard.csv") in paths
    with pytest.raises(LeaderboardError, match="no run directories"):
        main_leaderboard([tmp_path / "board"], tmp_path / "other")


def test_html_page_is_self_contained_and_readable(suite: dict[str, Any], tmp_path: Path) -> None:
    import re

    write_leaderboard(suite["tables"], suite["records"], tmp_path / "board", "qarl leaderboard runs/ --out board")
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    # nothing fetched from elsewhere: the heatmaps are embedded, no external script, style or image
    assert not re.search(r'(src|href)="(?!data:)', page) and page.count('src="data:image/png;base64,') == 2 + 3
    assert page.count('<table class="sortable" id="table-') == 2 + 2  # two tasks, the ranking, the failed runs
    assert "<th>rank</th>" in page and "function sortTable" in page
    assert re.search(r'data-v="3\.0"[^>]*>3\.0<br><span class="ci">\[', page)  # IQM [low, high] in one cell
    for term in ("rank", "grid bottom 10%", "IQM [low, high]", "P(&gt; rarl)", "not completed"):
        assert f"<dt>{term}</dt>" in page
    assert "non-finite loss: critic nan" in page and ">None<" not in page
    assert str(tmp_path) not in page  # run paths are relative to the page's folder
    assert "_low" not in page and "_high" not in page and "snake" not in page


@pytest.mark.slow
def test_html_page_sorts_and_renders_in_headless_chromium(suite: dict[str, Any], tmp_path: Path) -> None:
    """A real browser (Debian's chromium): the page's sort (applied from the URL's #sort=..., the click handler's
    function) reorders the rows, and a 1400 px wide screenshot is drawn."""
    import re
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    write_leaderboard(suite["tables"], suite["records"], tmp_path, "qarl leaderboard runs/ --out board")
    url = (tmp_path / "leaderboard.html").as_uri() + "#sort=table-0:1:asc"  # the first task by method name
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    table = dom[dom.index('id="table-0"') :]
    table = table[: table.index("</table>")]
    methods = re.findall(r'<tr><td data-v="[^"]*">[^<]*</td><td class="l">([^<]+)</td>', table)
    assert methods == sorted(methods) and len(methods) >= 2, methods
    assert 'class="l sorted-asc"' in table
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", url], capture_output=True, timeout=120, check=True)
    import matplotlib.image

    image = matplotlib.image.imread(shot)
    assert image.shape[:2] == (1000, 1400) and image.std() > 0


def test_default_policy_mode_uses_what_the_runs_have_and_says_so(tmp_path: Path) -> None:
    for seed in (0, 1):
        write_run(
            tmp_path / "runs",
            "t/a",
            "sac",
            seed,
            _rows("t/a", "sac", seed, 1.0, _grid(0, seed), policy_mode="deterministic"),
        )
    main_leaderboard([tmp_path / "runs"], tmp_path / "board")
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert "Policy mode: **deterministic**" in md and "no stochastic-policy episodes" in md
    assert "no stochastic-policy episodes" in (tmp_path / "board" / "leaderboard.html").read_text()
    with pytest.raises(LeaderboardError, match="no eval rows with policy_mode 'stochastic'"):
        main_leaderboard([tmp_path / "runs"], tmp_path / "board2", policy_mode="stochastic")


def test_each_task_states_its_adversary_strength():
    from qarl.report.leaderboard import strength_text

    rel = {"loop.adversary_bound": {"b50": 0.5, "task_b50": 0.4616}, "eval.worst_case_bound": {"b50": 1.0,
           "task_b50": 0.4616}}  # fmt: skip
    records = [
        {"task": "a", "status": "completed", "adversary_bound": 0.2308, "worst_case_bound": 0.4616, "strength": rel},
        {"task": "a", "status": "failed", "adversary_bound": 9.0, "worst_case_bound": None, "strength": {}},
        {"task": "b", "status": "completed", "adversary_bound": None, "worst_case_bound": None, "strength": {}},
    ]
    assert strength_text(records, "a") == (
        "adversary bound 0.2308 N (0.5 b50, b50 0.4616 N); worst-case adversary bound 0.4616 N (1 b50, b50 0.4616 N)"
    )
    default = "adversary bound the task's default; worst-case adversary bound the trial's bound"
    assert strength_text(records, "b") == default


def test_the_command_records_itself_as_typed(suite: dict[str, Any], tmp_path: Path) -> None:
    from qarl.cli import main

    args = ["leaderboard", str(suite["root"]), "--out", str(tmp_path / "board"), "--n-boot", str(N_BOOT)]
    assert main(args) == 0
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert f"    qarl {' '.join(args)}" in md and f"{N_BOOT} resamples" in md


def test_runs_of_a_learner_preset_are_their_own_row(tmp_path: Path) -> None:
    """The same method and seed with the default learner and with a preset: two rows, never one average."""
    write_run(tmp_path, "t/a", "qarl", 0, _rows("t/a", "qarl", 0, 5.0, _grid(0, 0)))
    run = write_run(tmp_path / "p", "t/a", "qarl", 0, _rows("t/a", "qarl", 0, 9.0, _grid(0, 0)),
                    config_extra={"learner": "qarl-authors"})  # fmt: skip
    evals, records = load_evals(find_runs([tmp_path]))
    main = compute_leaderboard(evals, records, n_boot=N_BOOT)["main"].set_index("method")
    assert main.at["qarl", "nominal_iqm"] == 5.0 and main.at["qarl [qarl-authors]", "nominal_iqm"] == 9.0
    from qarl.report.figures import load_runs

    assert load_runs([run])[0].method == "qarl [qarl-authors]"
