"""Leaderboard: robustness scores per task and method from the runs' ``eval.parquet`` files.

A run directory is ``<storage>/<experiment>/<task>/<method>/seed=<k>/`` holding ``meta.json``, ``config.yaml`` and,
once evaluated, ``eval.parquet`` (one row per evaluation episode; columns in ``REQUIRED_COLUMNS``). ``find_runs``
finds them, ``load_evals`` reads and checks them, ``compute_leaderboard`` aggregates and ``write_leaderboard`` writes
``leaderboard.md``, ``leaderboard.csv``, ``leaderboard.html``, one ``heatmap_<task>.png`` per task and the aggregate
figures ``aggregate.png``, ``poi.png`` and ``profile.png``;
``main_leaderboard`` does all four (the ``qarl leaderboard`` command).

Definitions (all on episode returns of the requested ``policy_mode`` only):

* per-seed scores: ``nominal`` and ``worst_case`` are the mean return of that seed's episodes of the metric;
  ``grid_mean`` is the mean over all of its ``grid`` episodes; a grid cell's score is the mean return of its
  episodes; ``grid_worst`` is the minimum cell score; ``bottom_decile`` is the mean of the lowest
  ``max(1, n_cells // 10)`` cell scores (the lowest 10% of cells, at least one);
* across seeds: the IQM (interquartile mean) with a 95% stratified bootstrap interval, both from rliable
  (:mod:`qarl.report.stats`); no interval below ``MIN_SEEDS`` (5) seeds, which also keeps a method out of the ranks;
* ``performance_pct`` / ``robustness_pct``: ``100 * (m - m_ref) / |m_ref|`` with m the nominal / grid-mean IQM and
  m_ref that of the reference method on the same task (the QARL paper's Table 1);
* ``poi``: the probability of improvement over the baseline method on the task, ``P(X > Y) + 0.5 P(X = Y)`` for X a
  per-seed grid-mean score of the method and Y one of the baseline (rliable's ``probability_of_improvement``), with
  rliable's stratified independent bootstrap interval;
* ranking: rliable's aggregate IQM over tasks of scores normalised by the fixed reference scores of
  ``configs/tasks/reference_scores.yaml`` (so adding a method never reorders the others), see ``_ranking``;
* figures: the aggregate IQMs with intervals, the probability of improvement over the baseline and the performance
  profile of the normalised grid mean, for the ranked methods.

Runs that did not complete (failed, running, stopped, interrupted) are never averaged: they are counted and listed.
"""

from __future__ import annotations

import html
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qarl.experiment import rundir
from qarl.report import stats

__all__ = [
    "METRICS",
    "REQUIRED_COLUMNS",
    "VERSION_PACKAGES",
    "LeaderboardError",
    "compute_leaderboard",
    "find_runs",
    "load_evals",
    "main_leaderboard",
    "write_leaderboard",
]

REQUIRED_COLUMNS = (
    "task",
    "task_version",
    "method",
    "seed",
    "metric",
    "param_x",
    "value_x",
    "param_y",
    "value_y",
    "force_bound",
    "policy_mode",
    "episode",
    "return",
    "length",
)
"""The columns every ``eval.parquet`` must have."""

VERSION_PACKAGES = ("qarl", "torch", "mujoco", "dm-control", "gymnasium", "stable-baselines3")
"""Packages whose versions (``meta.json`` ``versions``) must agree across the runs of one leaderboard."""

METRICS = ("nominal", "worst_case", "grid_mean", "grid_worst", "bottom_decile")
"""The per-seed scores, in table order."""

METRIC_LABELS = {
    "nominal": "nominal",
    "worst_case": "worst case",
    "grid_mean": "grid mean",
    "grid_worst": "grid worst cell",
    "bottom_decile": "grid bottom 10%",
}

POLICY_MODES = ("deterministic", "stochastic")
_KEYS = ["task", "method", "seed"]
_MAX_FILES_LISTED = 5  # per differing value in a mixed-versions message, so that it stays readable


class LeaderboardError(ValueError):
    """Input that cannot make a sound leaderboard; the message names the offending file(s)."""


# ----------------------------------------------------------------------------------------------------------------------
# Finding and loading runs


def find_runs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Every run directory under ``paths`` (:func:`qarl.experiment.rundir.find_run_dirs`)."""
    try:
        return rundir.find_run_dirs(paths)
    except rundir.RunDirError as e:
        raise LeaderboardError(str(e)) from None


def _read_meta(run_dir: Path) -> dict[str, Any]:
    try:
        return rundir.read_meta(run_dir)
    except rundir.RunDirError as e:
        raise LeaderboardError(str(e)) from None


def _read_eval(run_dir: Path) -> pd.DataFrame:
    """The rows of one completed run's ``eval.parquet``, checked for presence, readability, rows and columns."""
    try:
        return rundir.read_eval(run_dir, REQUIRED_COLUMNS)
    except rundir.RunDirError as e:
        raise LeaderboardError(str(e)) from None


def _check_consistent(eval_file: Path, meta: dict[str, Any], df: pd.DataFrame) -> None:
    """Raise when the eval rows are not all of the run named by meta.json (task, method, seed)."""
    for key in _KEYS:
        values = df[key].dropna().unique().tolist()
        expected = meta.get(key)
        if key == "seed":
            ok = expected is not None and all(int(v) == int(expected) for v in values)
        else:
            ok = all(str(v) == str(expected) for v in values)
        if not ok or len(values) != 1 or df[key].isna().any():
            raise LeaderboardError(
                f"{eval_file}: eval rows have {key} {sorted(map(str, values))} but "
                f"{eval_file.parent / rundir.META_FILE} says {expected!r}"
            )


def _list_files(files: Iterable[Path]) -> str:
    files = sorted(map(str, files))
    shown = ", ".join(files[:_MAX_FILES_LISTED])
    return shown + (f" and {len(files) - _MAX_FILES_LISTED} more" if len(files) > _MAX_FILES_LISTED else "")


def _check_versions(records: list[dict[str, Any]], evals: list[tuple[Path, pd.DataFrame]]) -> None:
    """Raise on mixed task versions within a task or mixed package versions across the completed runs."""
    problems = []
    by_task: dict[str, dict[str, set[Path]]] = defaultdict(lambda: defaultdict(set))
    for eval_file, df in evals:
        for task, version in df[["task", "task_version"]].drop_duplicates().itertuples(index=False):
            by_task[str(task)][str(version)].add(eval_file)
    for task, versions in sorted(by_task.items()):
        if len(versions) > 1:
            detail = "; ".join(f"{v}: {_list_files(f)}" for v, f in sorted(versions.items()))
            problems.append(f"task {task} has differing task_version: {detail}")
    for package in VERSION_PACKAGES:
        seen: dict[str, set[Path]] = defaultdict(set)
        for r in records:
            if r["status"] == "completed":
                seen[str(r["versions"].get(package))].add(Path(r["path"]) / rundir.META_FILE)
        if len(seen) > 1:
            detail = "; ".join(f"{v}: {_list_files(f)}" for v, f in sorted(seen.items()))
            problems.append(f"package {package} differs: {detail}")
    if problems:
        raise LeaderboardError(
            "mixed versions (results from different code or task versions are not comparable; pass allow_mixed=True,"
            " --allow-mixed, to accept them): " + " | ".join(problems)
        )


def load_evals(
    run_dirs: Sequence[str | os.PathLike], allow_mixed: bool = False
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read the runs: the concatenated eval rows of the completed runs (with ``scale`` from config.yaml added) and
    one record per run (task, method, seed, status, failure_reason, scale, path, versions, task_version).

    Only runs whose meta.json status is ``completed`` contribute rows; the others are recorded (and listed by
    ``write_leaderboard``) but their eval files, possibly partial, are not read. Raises ``LeaderboardError`` naming
    the file for: a missing meta.json; a completed run whose eval.parquet is missing, empty (0 bytes or no rows),
    unreadable or lacks required columns; eval rows whose task/method/seed contradict meta.json; two completed
    runs of the same (task, method, seed); and, unless ``allow_mixed``, differing ``task_version`` within a task
    or differing versions of any package in ``VERSION_PACKAGES`` among the completed runs.
    """
    records: list[dict[str, Any]] = []
    frames: list[tuple[Path, pd.DataFrame]] = []
    seen_runs: dict[tuple[str, str, int], Path] = {}
    for d in run_dirs:
        run_dir = Path(d)
        meta = _read_meta(run_dir)
        status = str(meta.get("status", "unknown"))
        config: dict[str, Any] = {}
        if status == "completed" or (run_dir / rundir.CONFIG_FILE).exists():
            try:
                config = rundir.read_config(run_dir)
            except rundir.RunDirError as e:
                raise LeaderboardError(str(e)) from None
        label = rundir.method_label({"method": meta.get("method", config.get("method")), **config})
        record: dict[str, Any] = {
            "task": meta.get("task", config.get("task")),
            "method": label,
            "seed": meta.get("seed", config.get("seed")),
            "status": status,
            "failure_reason": meta.get("failure_reason"),
            "scale": config.get("scale"),
            "path": str(run_dir),
            "versions": dict(meta.get("versions") or {}),
            "task_version": None,
            "adversary_bound": (config.get("loop") or {}).get("adversary_bound"),
            "worst_case_bound": (config.get("eval") or {}).get("worst_case_bound"),
            "strength": dict(config.get("strength") or {}),
            "horizon": (config.get("loop") or {}).get("horizon"),
        }
        records.append(record)
        if status != "completed":
            continue
        eval_file = run_dir / rundir.EVAL_FILE
        df = _read_eval(run_dir)
        _check_consistent(eval_file, meta, df)
        key = (str(meta["task"]), label, int(meta["seed"]))
        if key in seen_runs:
            # Averaging both would count one seed twice (e.g. the same run copied into two experiments).
            raise LeaderboardError(
                f"{eval_file}: task {key[0]} method {key[1]} seed {key[2]} also in {seen_runs[key] / rundir.EVAL_FILE}"
            )
        seen_runs[key] = run_dir
        record["task_version"] = ",".join(sorted(map(str, df["task_version"].unique())))
        df = df.assign(scale=config.get("scale"), method=label)  # the learner preset in the name, see method_label
        frames.append((eval_file, df))
    if not allow_mixed:
        _check_versions(records, frames)
    if frames:
        evals = pd.concat([f for _, f in frames], ignore_index=True)
    else:
        evals = pd.DataFrame({c: pd.Series(dtype=object) for c in (*REQUIRED_COLUMNS, "scale")})
    evals["seed"] = evals["seed"].astype("int64")
    for c in ("value_x", "value_y", "return"):
        evals[c] = evals[c].astype("float64")
    return evals, records


# ----------------------------------------------------------------------------------------------------------------------
# Statistics


def _bottom_decile(cell_means: pd.Series) -> float:
    values = np.sort(cell_means.to_numpy(dtype=float))
    return float(values[: max(1, len(values) // 10)].mean())


def _per_seed(evals: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, method, seed) with the per-seed scores of ``METRICS`` (NaN where the metric is absent)."""
    out = evals[_KEYS].drop_duplicates().set_index(_KEYS).sort_index()
    for metric in ("nominal", "worst_case"):
        out[metric] = evals[evals["metric"] == metric].groupby(_KEYS)["return"].mean()
    grid = evals[evals["metric"] == "grid"]
    out["grid_mean"] = grid.groupby(_KEYS)["return"].mean()
    cells = grid.groupby([*_KEYS, "value_x", "value_y"], dropna=False)["return"].mean()
    by_seed = cells.groupby(level=_KEYS)
    out["grid_worst"] = by_seed.min()
    out["bottom_decile"] = by_seed.apply(_bottom_decile) if len(cells) else np.nan
    return out.reset_index()


def _grid_cells(evals: pd.DataFrame) -> pd.DataFrame:
    """Mean grid return per (task, method, cell): the mean over seeds of the seed cell means."""
    grid = evals[evals["metric"] == "grid"]
    cols = ["task", "method", "param_x", "value_x", "param_y", "value_y"]
    per_seed = grid.groupby([*cols, "seed"], dropna=False)["return"].mean().reset_index()
    cells = per_seed.groupby(cols, dropna=False)["return"].agg(mean_return="mean", n_seeds="count")
    return cells.reset_index()


def _pct_change(m: float, m_ref: float) -> float:
    return 100.0 * (m - m_ref) / abs(m_ref) if m_ref != 0 and np.isfinite(m_ref) else math.nan


def compute_leaderboard(
    evals: pd.DataFrame,
    records: list[dict[str, Any]],
    policy_mode: str = "stochastic",
    reference: str = "sac",
    baseline: str = "rarl",
    n_boot: int = 2000,
    seed: int = 0,
    reference_scores: stats.ReferenceScores | None = None,
) -> dict[str, pd.DataFrame]:
    """Aggregate eval rows (from ``load_evals``) into the leaderboard tables; only rows of ``policy_mode`` are used.

    Every aggregate comes from rliable (:mod:`qarl.report.stats`): IQMs with 95% stratified bootstrap intervals
    (``n_boot`` resamples, NumPy's global generator seeded with ``seed`` for each interval) and the probability of
    improvement with its interval. Below :data:`~qarl.report.stats.MIN_SEEDS` seeds the point estimate is given and
    the bounds are NaN. Missing metrics give NaN.

    Returns a dict of DataFrames:

    * ``main``: one row per (task, method): ``policy_mode``, ``scale``, ``n_seeds`` (completed runs with eval rows
      of this policy mode), ``n_not_completed`` (failed, running, stopped or interrupted runs, not averaged), for each
      metric m in ``METRICS`` ``m_iqm``, ``m_low``, ``m_high``, then ``performance_pct`` and ``robustness_pct`` (vs
      ``reference``), ``poi``, ``poi_low``, ``poi_high`` (vs ``baseline``), ``rank`` (by grid-mean IQM among the
      methods with enough seeds on the task);
    * ``per_seed``: task, method, seed, policy_mode and the per-seed scores, with ``nominal_norm``,
      ``worst_case_norm`` and ``grid_mean_norm`` normalised by the task's reference scores;
    * ``ranking``: see :func:`_ranking`;
    * ``grid``: mean grid return per (task, method, cell) for the heatmaps;
    * ``settings``: one row with policy_mode, reference, baseline, n_boot, seed, confidence_level, min_seeds,
      ranked_tasks and unranked_tasks (with the reason).
    """
    if policy_mode not in POLICY_MODES:
        raise ValueError(f"policy_mode must be one of {POLICY_MODES}, got {policy_mode!r}")
    if len(evals) and not (evals["policy_mode"] == policy_mode).any():
        # An all-NaN table would look like a result; more likely the wrong mode was asked for.
        modes = sorted(map(str, evals["policy_mode"].unique()))
        raise LeaderboardError(f"no eval rows with policy_mode {policy_mode!r}; the runs have {', '.join(modes)}")
    evals = evals[evals["policy_mode"] == policy_mode]
    per_seed = _per_seed(evals)
    per_seed.insert(3, "policy_mode", policy_mode)
    _add_normalised(per_seed, records, reference_scores or stats.load_reference_scores())

    pairs = {(str(t), str(a)) for t, a in per_seed[["task", "method"]].itertuples(index=False)}
    pairs |= {(str(r["task"]), str(r["method"])) for r in records}
    rows = []
    for task, method in sorted(pairs):
        scores = per_seed[(per_seed["task"] == task) & (per_seed["method"] == method)]
        runs = [r for r in records if str(r["task"]) == task and str(r["method"]) == method]
        scales = sorted({str(r["scale"]) for r in runs if r["status"] == "completed" and r["scale"] is not None})
        row: dict[str, Any] = {
            "task": task,
            "method": method,
            "policy_mode": policy_mode,
            "scale": ",".join(scales) if scales else None,
            "n_seeds": len(scores),
            "n_not_completed": sum(r["status"] != "completed" for r in runs),
        }
        for metric in METRICS:
            x = scores[metric].dropna().to_numpy(dtype=float)  # seeds lacking the metric are left out, not zeroed
            if len(x):
                row[f"{metric}_iqm"], row[f"{metric}_low"], row[f"{metric}_high"] = stats.iqm_interval(x, n_boot, seed)
            else:
                row[f"{metric}_iqm"] = row[f"{metric}_low"] = row[f"{metric}_high"] = math.nan
        rows.append(row)
    main = pd.DataFrame(rows, columns=_main_columns())
    for col in ("n_seeds", "n_not_completed"):
        main[col] = main[col].astype("int64")

    for task, idx in main.groupby("task").groups.items():
        block = main.loc[idx]
        ref = block[block["method"] == reference]
        ref_nominal = float(ref["nominal_iqm"].iloc[0]) if len(ref) else math.nan
        ref_grid = float(ref["grid_mean_iqm"].iloc[0]) if len(ref) else math.nan
        main.loc[idx, "performance_pct"] = [_pct_change(m, ref_nominal) for m in block["nominal_iqm"]]
        main.loc[idx, "robustness_pct"] = [_pct_change(m, ref_grid) for m in block["grid_mean_iqm"]]
        base_scores = per_seed[(per_seed["task"] == task) & (per_seed["method"] == baseline)]
        y = base_scores["grid_mean"].dropna().to_numpy(dtype=float)
        for i in idx:
            algo_scores = per_seed[(per_seed["task"] == task) & (per_seed["method"] == main.at[i, "method"])]
            x = algo_scores["grid_mean"].dropna().to_numpy(dtype=float)
            if len(x) and len(y):
                main.at[i, "poi"], main.at[i, "poi_low"], main.at[i, "poi_high"] = stats.poi_interval(
                    x, y, n_boot, seed
                )
        rankable = block["grid_mean_iqm"].where(block["n_seeds"] >= stats.MIN_SEEDS)
        main.loc[idx, "rank"] = rankable.rank(ascending=False, method="min")
    main["rank"] = main["rank"].astype("Int64")

    ranking, ranked_tasks, unranked = _ranking(per_seed, n_boot, seed)
    return {
        "main": main,
        "per_seed": per_seed,
        "ranking": ranking,
        **_aggregates(per_seed, ranking, ranked_tasks, baseline, n_boot, seed),
        "grid": _grid_cells(evals),
        "settings": pd.DataFrame(
            [
                {
                    "policy_mode": policy_mode,
                    "reference": reference,
                    "baseline": baseline,
                    "n_boot": n_boot,
                    "seed": seed,
                    "confidence_level": stats.CONFIDENCE,
                    "min_seeds": stats.MIN_SEEDS,
                    "ranked_tasks": ", ".join(ranked_tasks),
                    "unranked_tasks": "; ".join(f"{t} ({why})" for t, why in unranked.items()),
                }
            ]
        ),
    }


def _add_normalised(per_seed: pd.DataFrame, records: list[dict[str, Any]], reference: stats.ReferenceScores) -> None:
    """Add ``<score>_norm`` columns for the ranked scores: normalised by the task's reference range at the run's
    horizon (NaN where the task has no reference entry or the run no recorded horizon)."""
    horizons = {
        (str(r["task"]), str(r["method"]), int(r["seed"])): r.get("horizon")
        for r in records
        if r["status"] == "completed" and r.get("seed") is not None
    }
    for score in RANKED_SCORES:
        values = []
        for task, method, seed_, value in per_seed[["task", "method", "seed", score]].itertuples(index=False):
            horizon = horizons.get((str(task), str(method), int(seed_)))
            normed = stats.normalise(value, str(task), int(horizon), reference) if horizon else None
            values.append(math.nan if normed is None else float(normed))
        per_seed[f"{score}_norm"] = np.array(values, dtype=float)


def _main_columns() -> list[str]:
    cols = ["task", "method", "policy_mode", "scale", "n_seeds", "n_not_completed"]
    for metric in METRICS:
        cols += [f"{metric}_iqm", f"{metric}_low", f"{metric}_high"]
    return [*cols, "performance_pct", "robustness_pct", "poi", "poi_low", "poi_high", "rank"]


RANKED_SCORES = ("nominal", "worst_case", "grid_mean")
"""The scores put on one scale across tasks (``<score>_norm``) and aggregated in the overall ranking."""
RANKING_COLUMNS = [
    "method", "n_tasks", "n_seeds",
    "robustness_score", "robustness_low", "robustness_high",
    "performance_score", "performance_low", "performance_high",
    "rank_robustness", "rank_performance", "note",
]  # fmt: skip


def _method_matrix(per_seed: pd.DataFrame, method: str, tasks: Sequence[str], score: str) -> np.ndarray | None:
    """The (seeds, tasks) matrix of ``score`` for ``method`` on ``tasks``, the lowest-numbered seeds up to the
    smallest count over the tasks; None when a task has none."""
    cols = [
        per_seed[(per_seed["task"] == t) & (per_seed["method"] == method)].sort_values("seed")[score]
        .dropna().to_numpy(dtype=float)
        for t in tasks
    ]  # fmt: skip
    n = min((len(c) for c in cols), default=0)
    return np.stack([c[:n] for c in cols], axis=1) if n else None


def _ranking(per_seed: pd.DataFrame, n_boot: int, seed: int) -> tuple[pd.DataFrame, list[str], dict[str, str]]:
    """The overall ranking: (table, ranked tasks, {unranked task: reason}).

    The ranked tasks are those with reference scores on which every method of the leaderboard has runs. A method is
    ranked when it has at least ``MIN_SEEDS`` seeds on each of them (else its note says "too few seeds to rank").
    Its scores are rliable's aggregate IQM over its (seeds, tasks) matrix of normalised grid-mean (robustness) and
    nominal (performance) returns, with stratified bootstrap intervals; with different seed counts across tasks the
    matrix keeps the lowest-numbered seeds up to the smallest count (said in the note). Rank 1 is best; ties share
    the best rank. Fixed reference scores make a method's score independent of which other methods are present.
    """
    methods = sorted(map(str, per_seed["method"].unique()))
    unranked: dict[str, str] = {}
    ranked_tasks = []
    for task in sorted(map(str, per_seed["task"].unique())):
        block = per_seed[per_seed["task"] == task]
        missing = sorted(set(methods) - set(map(str, block["method"])))
        if block["grid_mean_norm"].isna().all() and block["nominal_norm"].isna().all():
            unranked[task] = "no reference scores in configs/tasks/reference_scores.yaml"
        elif missing:
            unranked[task] = f"no runs of {', '.join(missing)}"
        else:
            ranked_tasks.append(task)
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": method, "n_tasks": len(ranked_tasks)}
        if not ranked_tasks:
            row["note"] = "no task to rank on"
            rows.append(row)
            continue
        counts = [
            int(per_seed[(per_seed["task"] == t) & (per_seed["method"] == method)]["grid_mean_norm"].notna().sum())
            for t in ranked_tasks
        ]
        row["n_seeds"] = min(counts)
        notes = []
        if not stats.enough_seeds(*counts):
            notes.append(f"{stats.TOO_FEW} ({min(counts)} seeds, {stats.MIN_SEEDS} needed)")
        else:
            if len(set(counts)) > 1:
                notes.append(f"the lowest {min(counts)} seeds of each task are used (seeds per task: {counts})")
            for score, name in (("grid_mean_norm", "robustness"), ("nominal_norm", "performance")):
                matrix = _method_matrix(per_seed, method, ranked_tasks, score)
                if matrix is None or not stats.enough_seeds(matrix.shape[0]):
                    notes.append(f"{name}: {stats.TOO_FEW}")
                    continue
                row[f"{name}_score"], row[f"{name}_low"], row[f"{name}_high"] = stats.iqm_interval(matrix, n_boot, seed)
        row["note"] = "; ".join(notes)
        rows.append(row)
    ranking = pd.DataFrame(rows).reindex(columns=RANKING_COLUMNS)
    for col in ("n_tasks", "n_seeds"):
        ranking[col] = ranking[col].astype("Int64")
    for name in ("robustness", "performance"):
        for part in ("score", "low", "high"):
            ranking[f"{name}_{part}"] = ranking[f"{name}_{part}"].astype("float64")
        ranking[f"rank_{name}"] = ranking[f"{name}_score"].rank(ascending=False, method="min").astype("Int64")
    ranking["note"] = ranking["note"].fillna("")
    ranking = ranking.sort_values(["rank_robustness", "method"], na_position="last").reset_index(drop=True)
    return ranking, ranked_tasks, unranked


PROFILE_TAUS = np.linspace(0.0, 1.0, 21)
"""Thresholds of the performance profile, on the normalised grid mean."""


def _aggregates(
    per_seed: pd.DataFrame, ranking: pd.DataFrame, tasks: list[str], baseline: str, n_boot: int, seed: int
) -> dict[str, pd.DataFrame]:
    """The data of the aggregate figures, for the ranked methods on the ranked tasks:

    * ``aggregate``: method, score (``nominal``, ``worst_case``, ``grid_mean``), iqm, low, high: rliable's IQM of
      the normalised score over seeds and tasks;
    * ``poi_aggregate``: method, baseline, poi, low, high: the probability of improvement of the method's grid mean
      over the baseline's, averaged over the tasks (the baseline needs enough seeds too);
    * ``profile``: method, tau, fraction, low, high: the fraction of (seed, task) runs whose normalised grid mean
      exceeds tau (rliable's score distribution), for tau in ``PROFILE_TAUS``.
    """
    ranked = ranking.loc[ranking["robustness_score"].notna(), "method"].tolist()
    agg, poi, profile = [], [], []
    matrices = {m: _method_matrix(per_seed, m, tasks, "grid_mean_norm") for m in ranked}
    for method in ranked:
        for score in RANKED_SCORES:
            matrix = _method_matrix(per_seed, method, tasks, f"{score}_norm")
            if matrix is not None and stats.enough_seeds(matrix.shape[0]):
                point, low, high = stats.iqm_interval(matrix, n_boot, seed)
                agg.append({"method": method, "score": score, "iqm": point, "low": low, "high": high})
    if baseline in ranked:
        y = _method_matrix(per_seed, baseline, tasks, "grid_mean")
        for method in ranked:
            x = _method_matrix(per_seed, method, tasks, "grid_mean")
            if method != baseline and x is not None and y is not None:
                point, low, high = stats.poi_interval(x, y, n_boot, seed)
                poi.append({"method": method, "baseline": baseline, "poi": point, "low": low, "high": high})
    usable = {m: x for m, x in matrices.items() if x is not None}
    if usable:
        for method, (frac, low, high) in stats.performance_profile(usable, PROFILE_TAUS, n_boot, seed).items():
            for i, tau in enumerate(PROFILE_TAUS):
                profile.append(
                    {"method": method, "tau": float(tau), "fraction": frac[i], "low": low[i], "high": high[i]}
                )
    return {
        "aggregate": pd.DataFrame(agg, columns=["method", "score", "iqm", "low", "high"]),
        "poi_aggregate": pd.DataFrame(poi, columns=["method", "baseline", "poi", "low", "high"]),
        "profile": pd.DataFrame(profile, columns=["method", "tau", "fraction", "low", "high"]),
    }


# ----------------------------------------------------------------------------------------------------------------------
# Output

AGGREGATE_FIGURES = {
    "aggregate.png": "aggregate IQM of the normalised scores with 95% intervals",
    "poi.png": "probability of improvement over the baseline with 95% intervals",
    "profile.png": "performance profile of the normalised grid mean",
}
"""The aggregate figures (file name: what it shows), written when at least one method is ranked."""


def _interval_rows(ax: Any, point: pd.Series, low: pd.Series, high: pd.Series, color: str) -> np.ndarray:
    """One row per entry: the interval as a bar, the point estimate as a tick; returns the rows' y positions."""
    ypos = np.arange(len(point))
    ax.hlines(ypos, low, high, lw=6, alpha=0.5, color=color)
    ax.plot(point, ypos, "k|", ms=14)
    return ypos


def _write_aggregate_figures(tables: dict[str, pd.DataFrame], out: Path, policy_mode: str) -> list[Path]:
    from matplotlib.figure import Figure

    settings = tables["settings"].iloc[0]
    tasks = settings["ranked_tasks"]
    written = []
    agg = tables["aggregate"]
    if len(agg):
        scores = [s for s in RANKED_SCORES if s in set(agg["score"])]
        fig = Figure(figsize=(3.6 * len(scores), 0.45 * agg["method"].nunique() + 1.6), layout="constrained")
        axes = fig.subplots(1, len(scores), squeeze=False, sharey=True)[0]
        methods = sorted(agg["method"].unique(), reverse=True)
        for ax, score in zip(axes, scores, strict=True):
            block = agg[agg["score"] == score].set_index("method").reindex(methods)
            ypos = _interval_rows(ax, block["iqm"], block["low"], block["high"], "tab:blue")
            ax.set_yticks(ypos, methods)
            ax.set_title(f"{METRIC_LABELS[score]} (normalised)", fontsize=10)
            ax.set_xlabel("IQM")
        fig.suptitle(f"Aggregate IQM over {tasks} ({policy_mode} policy, 95% intervals)", fontsize=10)
        written.append(out / "aggregate.png")
        fig.savefig(written[-1], dpi=110)
    poi = tables["poi_aggregate"]
    if len(poi):
        fig = Figure(figsize=(5.2, 0.45 * len(poi) + 1.6), layout="constrained")
        ax = fig.subplots()
        poi = poi.sort_values("method", ascending=False)
        ypos = _interval_rows(ax, poi["poi"], poi["low"], poi["high"], "tab:green")
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.set_yticks(ypos, [f"P({m} > {b})" for m, b in zip(poi["method"], poi["baseline"], strict=True)])
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability of improvement (grid mean)")
        ax.set_title(f"over {tasks}, 95% intervals", fontsize=10)
        written.append(out / "poi.png")
        fig.savefig(written[-1], dpi=110)
    profile = tables["profile"]
    if len(profile):
        fig = Figure(figsize=(5.2, 3.6), layout="constrained")
        ax = fig.subplots()
        for method, block in profile.groupby("method", sort=True):
            ax.plot(block["tau"], block["fraction"], label=method)
            ax.fill_between(block["tau"], block["low"], block["high"], alpha=0.2)
        ax.set_xlabel("normalised grid mean, tau")
        ax.set_ylabel("fraction of runs with score > tau")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
        ax.set_title(f"Performance profile over {tasks}", fontsize=10)
        written.append(out / "profile.png")
        fig.savefig(written[-1], dpi=110)
    return written


def _num(x: Any, fmt: str = ".1f") -> str:
    return "n/a" if x is None or pd.isna(x) else format(float(x), fmt)


def _interval(row: pd.Series, prefix: str, fmt: str = ".1f") -> str:
    """``IQM [low, high]``, or just the IQM when there is no interval."""
    key = {"poi": "poi", "robustness": "robustness_score", "performance": "performance_score"}.get(prefix)
    point, low, high = row[key or f"{prefix}_iqm"], row[f"{prefix}_low"], row[f"{prefix}_high"]
    if pd.isna(point):
        return "n/a"
    if pd.isna(low) or pd.isna(high):
        return _num(point, fmt)
    return f"{_num(point, fmt)} [{_num(low, fmt)}, {_num(high, fmt)}]"


def _seeds_text(n: int, seeds: Iterable[Any]) -> str:
    """``5 (0, 1, 2, 3, 4)``; below the seed minimum ``2 (0, 1), too few to rank``."""
    if not n:
        return "0"
    text = f"{n} ({', '.join(map(str, sorted(seeds)))})"
    return text if stats.enough_seeds(n) else f"{text}, too few to rank"


def _ranking_text(settings: pd.Series) -> str:
    unranked = f" Not ranked on: {settings['unranked_tasks']}." if settings.get("unranked_tasks") else ""
    return (
        "Scores normalised by the fixed reference scores of configs/tasks/reference_scores.yaml "
        "((return - low) / (high - low) at the runs' horizon), aggregated over the ranked tasks "
        f"({settings['ranked_tasks'] or 'none'}) as rliable's IQM over all seeds and tasks, with "
        f"{settings['confidence_level']:.0%} stratified bootstrap intervals. A method needs "
        f"{settings['min_seeds']} seeds on every ranked task to be ranked. Rank 1 is best; ties share the best rank."
        + unranked
    )


def _pct(x: Any) -> str:
    return "n/a" if pd.isna(x) else f"{float(x):+.1f}%"


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _heatmap_name(task: str) -> str:
    return f"heatmap_{task.replace('/', '_')}.png"


def _write_heatmap(cells: pd.DataFrame, task: str, path: Path, policy_mode: str) -> None:
    """One panel per method of the mean grid return over param_x (columns) x param_y (rows), one colour scale."""
    # A bare Figure renders with Agg and leaves pyplot's global state (and any backend the caller chose) alone.
    from matplotlib.figure import Figure

    methods = sorted(cells["method"].unique())
    vmin, vmax = float(cells["mean_return"].min()), float(cells["mean_return"].max())
    fig = Figure(figsize=(3.4 * len(methods) + 1.2, 3.6), layout="constrained")
    axes = fig.subplots(1, len(methods), squeeze=False)[0]
    image = None
    for ax, method in zip(axes, methods, strict=True):
        block = cells[cells["method"] == method]
        table = block.pivot(index="value_y", columns="value_x", values="mean_return").sort_index().sort_index(axis=1)
        image = ax.imshow(table.to_numpy(), origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis")
        ax.set_xticks(range(table.shape[1]), [f"{v:.3g}" for v in table.columns], rotation=90, fontsize=7)
        ax.set_yticks(range(table.shape[0]), [f"{v:.3g}" for v in table.index], fontsize=7)
        ax.set_xlabel(str(block["param_x"].iloc[0]))
        ax.set_ylabel(str(block["param_y"].iloc[0]))
        ax.set_title(method)
    fig.colorbar(image, ax=list(axes), label=f"mean return ({policy_mode} policy)")
    fig.suptitle(f"{task}: grid, zero force")
    fig.savefig(path, dpi=110)


def _versions_lines(records: list[dict[str, Any]]) -> list[str]:
    """Each package's version(s) over the completed runs (all runs if none completed), with counts when mixed."""
    runs = [r for r in records if r["status"] == "completed"] or records
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in runs:
        for package, version in r["versions"].items():
            counts[package][str(version)] += 1
    lines = []
    for package in sorted(counts):
        values = counts[package]
        if len(values) == 1:
            lines.append(f"- {package} {next(iter(values))}")
        else:
            lines.append(f"- {package} MIXED: " + ", ".join(f"{v} ({_runs(n)})" for v, n in sorted(values.items())))
    return lines or ["- (no versions recorded)"]


def strength_text(records: list[dict[str, Any]], task: str) -> str:
    """The adversary strength of a task's completed runs, in words: the trial's bound, the worst-case adversary's
    bound and, where given relative to the calibration, b50 (e.g. "adversary bound 0.2308 N (0.5 b50, b50 0.4616 N);
    worst-case bound 0.4616 N (1 b50)")."""
    runs = [r for r in records if str(r["task"]) == task and r["status"] == "completed"]

    def one(key: str, strength_key: str) -> str:
        values = sorted({str(r[key]) for r in runs if r.get(key) is not None})
        rel = sorted({f"{(r['strength'].get(strength_key) or {}).get('b50'):g} b50, b50 "
                      f"{(r['strength'].get(strength_key) or {}).get('task_b50'):g} N"
                      for r in runs if (r.get("strength") or {}).get(strength_key)})  # fmt: skip
        return (", ".join(values) + " N" if values else "") + (f" ({'; '.join(rel)})" if rel else "")

    trial = one("adversary_bound", "loop.adversary_bound") or "the task's default"
    worst = one("worst_case_bound", "eval.worst_case_bound") or "the trial's bound"
    return f"adversary bound {trial}; worst-case adversary bound {worst}"


def _markdown(tables: dict[str, pd.DataFrame], records: list[dict[str, Any]], command: str, pngs: list[Path]) -> str:
    settings = tables["settings"].iloc[0]
    main, per_seed = tables["main"], tables["per_seed"]
    ref, base, mode = settings["reference"], settings["baseline"], settings["policy_mode"]
    md = [
        "# Leaderboard",
        "",
        "Made by:",
        "",
        f"    {command or '(command not recorded)'}",
        "",
        f"Policy mode: **{mode}** (only evaluation episodes with this policy mode are used"
        + (f"; {settings['note']}" if settings.get("note") else "")
        + "). "
        f"Scores per seed are mean episode returns; across seeds the IQM (interquartile mean) with a "
        f"{settings['confidence_level']:.0%} stratified bootstrap interval, both from rliable "
        f"({settings['n_boot']} resamples, seed {settings['seed']}), shown as IQM [low, high]. With fewer than "
        f"{settings['min_seeds']} seeds a method gets no interval and no rank (too few seeds to rank).",
        "",
        f"Grid mean: mean over all grid episodes (zero force). Grid worst cell: the lowest cell mean. Grid bottom 10%: "
        f"the mean of the lowest 10% of cell means (at least one cell). Performance / robustness: % change of the "
        f"nominal / grid-mean IQM vs `{ref}` on the same task, 100 (m - m_ref) / |m_ref|. P(> {base}): probability "
        f"that a seed's grid mean beats one of `{base}` (ties count half; rliable's probability of improvement). "
        "Rank: by grid-mean IQM among the methods with enough seeds on the task.",
        "",
    ]
    for task, block in main.groupby("task", sort=True):
        versions = sorted({str(r["task_version"]) for r in records if r["task"] == task and r["task_version"]})
        md += [f"## {task}" + (f" ({', '.join(versions)})" if versions else ""), ""]
        md += [f"Strength: {strength_text(records, task)}.", ""]
        scales = {s for s in block["scale"].dropna() for s in str(s).split(",")}
        if len(scales) > 1:
            md += [
                f"**Warning: runs of different scales ({', '.join(sorted(scales))}) are compared on this task.**",
                "",
            ]
        header = ["rank", "method", "seeds", "scale", *[METRIC_LABELS[m] for m in METRICS]]
        header += [f"perf. vs {ref}", f"robust. vs {ref}", f"P(> {base})", "not completed"]
        md += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in block.iterrows():
            seeds = per_seed[(per_seed["task"] == task) & (per_seed["method"] == row["method"])]["seed"]
            cells = [
                _num(row["rank"], ".0f") if pd.notna(row["rank"]) else "-",
                str(row["method"]),
                _seeds_text(row["n_seeds"], seeds),
                str(row["scale"]) if pd.notna(row["scale"]) else "n/a",
                *[_interval(row, m) for m in METRICS],
                _pct(row["performance_pct"]),
                _pct(row["robustness_pct"]),
                _interval(row, "poi", ".2f"),
                str(row["n_not_completed"]),
            ]
            md.append("| " + " | ".join(cells) + " |")
        md.append("")
        png = next((p for p in pngs if p.name == _heatmap_name(task)), None)
        if png is not None:
            md += [f"![{task} grid]({png.name})", ""]

    ranking = tables["ranking"]
    md += ["## Overall ranking", "", _ranking_text(settings), ""]
    md += [
        "| rank (robustness) | method | tasks | seeds | robustness score (grid mean) | performance score (nominal) "
        "| rank (performance) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, row in ranking.iterrows():
        md.append(
            f"| {_num(row['rank_robustness'], '.0f')} | {row['method']} | {_num(row['n_tasks'], '.0f')} "
            f"| {_num(row['n_seeds'], '.0f')} | {_interval(row, 'robustness', '.3f')} "
            f"| {_interval(row, 'performance', '.3f')} | {_num(row['rank_performance'], '.0f')} "
            f"| {row['note'] or '-'} |"
        )
    md.append("")
    md += [f"![{p.stem}]({p.name})" for p in pngs if p.name in AGGREGATE_FIGURES]
    md.append("")

    completed = [r for r in records if r["status"] == "completed"]
    scale_counts = pd.Series([str(r["scale"]) for r in completed], dtype=object).value_counts().sort_index()
    md += [
        "## Runs",
        "",
        f"{len(completed)} completed runs of {len(records)}. Scales: "
        + (", ".join(f"{s} ({_runs(n)})" for s, n in scale_counts.items()) or "none")
        + ".",
        "",
        "Package versions (from meta.json):",
        "",
        *_versions_lines(records),
        "",
    ]
    not_completed = sorted(
        (r for r in records if r["status"] != "completed"),
        key=lambda r: (str(r["task"]), str(r["method"]), str(r["seed"])),
    )
    md += ["Failed or incomplete runs (not averaged):", ""]
    if not_completed:
        md += ["| task | method | seed | status | reason | path |", "|---|---|---|---|---|---|"]
        for r in not_completed:
            reason = str(r["failure_reason"] or "").replace("|", "\\|").replace("\n", " ") or "-"
            md.append(f"| {r['task']} | {r['method']} | {r['seed']} | {r['status']} | {reason} | {r['path']} |")
    else:
        md.append("none")
    md.append("")
    return "\n".join(md)


_PAGE_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1d; max-width: 1360px;
       margin: 16px auto; padding: 0 12px; font-size: 14px; line-height: 1.4; }
h1 { font-size: 24px; margin: 4px 0 8px; } h2 { font-size: 19px; margin: 22px 0 4px; }
p.meta { color: #555; margin: 2px 0 6px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { white-space: normal; max-width: 110px; vertical-align: bottom; } .ci { color: #666; font-size: 11px; }
th { background: #eef1f5; cursor: pointer; user-select: none; position: relative; }
th.sorted-asc::after { content: " \\25B2"; font-size: 10px; }
th.sorted-desc::after { content: " \\25BC"; font-size: 10px; }
td.l, th.l { text-align: left; } tr:nth-child(even) td { background: #fafafa; }
td.best { font-weight: 600; } .na { color: #999; } .warn { color: #a40000; font-weight: 600; }
img.heatmap { max-width: 100%; border: 1px solid #e0e0e0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; } dt { font-weight: 600; } dd { margin: 0; }
details { margin: 8px 0; } code { font-size: 12px; }
"""

_PAGE_SCRIPT = """
function sortTable(table, col, dir) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const key = r => { const c = r.cells[col]; const v = c.dataset.v;
                     return v === undefined ? c.textContent.trim().toLowerCase() : (v === "" ? NaN : parseFloat(v)); };
  rows.sort((a, b) => { const x = key(a), y = key(b);
    if (typeof x === "number" || typeof y === "number") {
      if (isNaN(x) && isNaN(y)) return 0; if (isNaN(x)) return 1; if (isNaN(y)) return -1;
      return dir === "asc" ? x - y : y - x; }
    return dir === "asc" ? x.localeCompare(y) : y.localeCompare(x); });
  rows.forEach(r => body.appendChild(r));
  Array.from(table.tHead.rows[0].cells).forEach((h, i) => {
    h.classList.remove("sorted-asc", "sorted-desc"); if (i === col) h.classList.add("sorted-" + dir); });
}
document.querySelectorAll("table.sortable").forEach(table => {
  Array.from(table.tHead.rows[0].cells).forEach((h, i) => h.addEventListener("click", () => {
    sortTable(table, i, h.classList.contains("sorted-desc") ? "asc" : "desc"); }));
});
// #sort=<table id>:<column index>:<asc|desc> sorts on load (links, and headless checks)
const m = decodeURIComponent(location.hash).match(/^#sort=([^:]+):(\\d+):(asc|desc)$/);
if (m && document.getElementById(m[1])) sortTable(document.getElementById(m[1]), parseInt(m[2]), m[3]);
"""


def _cell(text: str, value: Any = None, left: bool = False, css: str = "") -> str:
    """A table cell; ``value`` (a number, or NaN) is what the column sorts by. An ``IQM [low, high]`` text shows its
    interval on a second, smaller line."""
    classes = " ".join(c for c in ("l" if left else "", css, "na" if text == "n/a" else "") if c)
    attr = f' class="{classes}"' if classes else ""
    if value is not None:
        v = "" if pd.isna(value) else repr(float(value))
        attr += f' data-v="{v}"'
    point, sep, interval = text.partition(" [")
    body = html.escape(point) + (f'<br><span class="ci">[{html.escape(interval)}</span>' if sep else "")
    return f"<td{attr}>{body}</td>"


def _na(x: Any) -> Any:
    return None if x is None or pd.isna(x) else x


def _png_data_uri(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _definitions(ref: str, base: str, level: float, n_boot: int) -> list[tuple[str, str]]:
    return [
        ("rank", f"rank of the method on the task by grid-mean IQM among the methods with {stats.MIN_SEEDS} or more "
                 "seeds (1 = best; ties share the best rank; '-': too few seeds to rank)"),
        ("seeds", "completed runs with evaluation episodes of this policy mode (the task's line above lists them)"),
        ("scale", "the budget preset the runs were trained at (configs/scales.yaml), on the task's line"),
        ("nominal", "mean return of the seed's episodes at nominal physics with zero force"),
        ("worst case", "mean return against a freshly trained worst-case adversary (the evaluation's own SAC)"),
        ("grid mean", "mean return over the whole grid of physics parameters (zero force)"),
        ("grid worst cell", "the lowest grid cell's mean return"),
        ("grid bottom 10%", "the mean of the lowest 10% of grid cell means (at least one cell)"),
        ("IQM [low, high]", f"interquartile mean over seeds with its {level:.0%} stratified bootstrap interval "
                            f"(rliable, {n_boot} resamples of the seeds); no interval with fewer than "
                            f"{stats.MIN_SEEDS} seeds"),
        (f"perf. / robust. vs {ref}", f"% change of the nominal / grid-mean IQM against {ref} on the same task, "
                                      "100 (m - m_ref) / |m_ref|"),
        (f"P(> {base})", f"probability that a seed's grid mean beats one of {base} (ties count half), with its "
                         "stratified independent bootstrap interval (rliable's probability of improvement)"),
        ("robustness / performance score", "rliable's IQM over all seeds and ranked tasks of the grid-mean / nominal "
                                           "return normalised by the task's fixed reference scores "
                                           "(configs/tasks/reference_scores.yaml)"),
        ("not completed", "runs that failed, stopped or are still running: listed below, never averaged"),
    ]  # fmt: skip


def _html(
    tables: dict[str, pd.DataFrame], records: list[dict[str, Any]], command: str, out: Path, pngs: list[Path]
) -> str:
    """One self-contained page: per task a sortable table with IQM [low, high] cells and a rank column, the
    heatmap embedded, the overall ranking, the definitions and the runs that did not complete (relative paths)."""
    settings = tables["settings"].iloc[0]
    main = tables["main"]
    ref, base, mode = settings["reference"], settings["baseline"], settings["policy_mode"]
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">',
        f"<title>Leaderboard</title><style>{_PAGE_STYLE}</style></head><body>",
        "<h1>Leaderboard</h1>",
        f'<p class="meta">Made by <code>{esc(command or "(command not recorded)")}</code>. Policy mode '
        f"<b>{esc(str(mode))}</b>{' (' + esc(str(settings['note'])) + ')' if settings.get('note') else ''}; "
        f"scores are IQMs over seeds with {settings['confidence_level']:.0%} stratified bootstrap intervals (rliable); "
        f"fewer than {settings['min_seeds']} seeds: no interval and no rank. Click a column header to sort. "
        "Definitions at the end.</p>",
    ]
    header = ["rank", "method", "seeds", *[METRIC_LABELS[m] for m in METRICS]]
    header += [f"perf. vs {ref}", f"robust. vs {ref}", f"P(> {base})", "not completed"]
    left = {"method"}
    for k, (task, block) in enumerate(main.groupby("task", sort=True)):
        runs = [r for r in records if str(r["task"]) == task and r["status"] == "completed"]
        scales = sorted({str(r["scale"]) for r in runs if r["scale"] is not None})
        seeds_all = sorted({int(r["seed"]) for r in runs})
        versions = sorted({str(r["task_version"]) for r in records if r["task"] == task and r["task_version"]})
        parts.append(f'<h2 id="task-{k}">{esc(task)}{" (" + esc(", ".join(versions)) + ")" if versions else ""}</h2>')
        parts.append(
            f'<p class="meta">Scale {esc(", ".join(scales) or "n/a")}; '
            f"seeds {esc(', '.join(map(str, seeds_all)) or 'none')}"
            + f"; {esc(strength_text(records, task))}"
            + ('; <span class="warn">runs of different scales are compared here</span>' if len(scales) > 1 else "")
            + "</p>"
        )
        best = block["grid_mean_iqm"].max()
        parts.append(f'<table class="sortable" id="table-{k}"><thead><tr>')
        parts.append("".join(f'<th class="l">{esc(h)}</th>' if h in left else f"<th>{esc(h)}</th>" for h in header))
        parts.append("</tr></thead><tbody>")
        for _, row in block.iterrows():
            rank = row["rank"] if pd.notna(row["rank"]) else None
            seeds_css = "" if stats.enough_seeds(row["n_seeds"]) else "warn"
            cells = [
                _cell(_num(rank, ".0f") if rank is not None else "-", rank),
                _cell(str(row["method"]), left=True),
                _cell(str(row["n_seeds"]), row["n_seeds"], css=seeds_css),
            ]
            for m in METRICS:
                css = "best" if m == "grid_mean" and pd.notna(best) and row[f"{m}_iqm"] == best else ""
                cells.append(_cell(_interval(row, m), row[f"{m}_iqm"], css=css))
            cells += [
                _cell(_pct(row["performance_pct"]), row["performance_pct"]),
                _cell(_pct(row["robustness_pct"]), row["robustness_pct"]),
                _cell(_interval(row, "poi", ".2f"), row["poi"]),
                _cell(str(row["n_not_completed"]), row["n_not_completed"]),
            ]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
        png = next((p for p in pngs if p.name == _heatmap_name(task)), None)
        if png is not None:
            parts.append(f'<img class="heatmap" alt="{esc(task)} grid heatmap" src="{_png_data_uri(png)}">')

    ranking = tables["ranking"]
    parts += [
        "<h2>Overall ranking</h2>",
        f'<p class="meta">{esc(_ranking_text(settings))}</p>',
        '<table class="sortable" id="table-ranking"><thead><tr><th>rank (robustness)</th><th class="l">method</th>'
        "<th>tasks</th><th>seeds</th><th>robustness score (grid mean)</th><th>performance score (nominal)</th>"
        '<th>rank (performance)</th><th class="l">note</th></tr></thead><tbody>',
    ]
    for _, row in ranking.iterrows():
        parts.append(
            "<tr>"
            + _cell(_num(row["rank_robustness"], ".0f"), _na(row["rank_robustness"]))
            + _cell(str(row["method"]), left=True)
            + _cell(_num(row["n_tasks"], ".0f"), _na(row["n_tasks"]))
            + _cell(_num(row["n_seeds"], ".0f"), _na(row["n_seeds"]))
            + _cell(_interval(row, "robustness", ".3f"), row["robustness_score"])
            + _cell(_interval(row, "performance", ".3f"), row["performance_score"])
            + _cell(_num(row["rank_performance"], ".0f"), _na(row["rank_performance"]))
            + _cell(str(row["note"] or "-"), left=True)
            + "</tr>"
        )
    parts.append("</tbody></table>")
    for png in pngs:
        if png.name in AGGREGATE_FIGURES:
            parts.append(f'<img class="heatmap" alt="{esc(AGGREGATE_FIGURES[png.name])}" src="{_png_data_uri(png)}">')

    parts += ["<h2>Definitions</h2>", "<dl>"]
    for term, text in _definitions(ref, base, float(settings["confidence_level"]), int(settings["n_boot"])):
        parts.append(f"<dt>{esc(term)}</dt><dd>{esc(text)}</dd>")
    parts.append("</dl>")

    completed = [r for r in records if r["status"] == "completed"]
    not_completed = sorted(
        (r for r in records if r["status"] != "completed"),
        key=lambda r: (str(r["task"]), str(r["method"]), str(r["seed"])),
    )
    parts += [f'<h2>Runs</h2><p class="meta">{len(completed)} completed runs of {len(records)}.</p>']
    parts.append("<p>Package versions: " + esc("; ".join(line[2:] for line in _versions_lines(records))) + "</p>")
    if not_completed:
        parts.append(
            '<table class="sortable" id="table-failed"><thead><tr><th class="l">task</th><th class="l">method</th>'
            '<th>seed</th><th class="l">status</th><th class="l">reason</th><th class="l">path</th></tr></thead><tbody>'
        )
        for r in not_completed:
            parts.append(
                "<tr>"
                + _cell(str(r["task"]), left=True)
                + _cell(str(r["method"]), left=True)
                + _cell(str(r["seed"]), r["seed"] if isinstance(r["seed"], int) else None)
                + _cell(str(r["status"]), left=True)
                + _cell(str(r["failure_reason"] or "-"), left=True)
                + _cell(_relative(r["path"], out), left=True)
                + "</tr>"
            )
        parts.append("</tbody></table>")
    else:
        parts.append("<p>Failed or incomplete runs: none.</p>")
    parts.append(f"<script>{_PAGE_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _relative(path: str, out: Path) -> str:
    """``path`` relative to the page's folder (so the page moves with the results)."""
    try:
        return os.path.relpath(path, out)
    except ValueError:  # another drive (Windows)
        return str(path)


def write_leaderboard(
    tables: dict[str, pd.DataFrame], records: list[dict[str, Any]], out: str | os.PathLike, command: str
) -> list[Path]:
    """Write into ``out``: ``leaderboard.md``, ``leaderboard.csv`` (``tables['main']``, one row per task x method),
    ``leaderboard.html`` (one self-contained page: sortable tables, figures embedded, definitions),
    ``heatmap_<task>.png`` for every task with grid rows (``/`` in the task id becomes ``_``) and the
    ``AGGREGATE_FIGURES`` when a method is ranked. Returns the paths written (Markdown, CSV, HTML, then the figures)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    mode = str(tables["settings"].iloc[0]["policy_mode"])
    pngs = []
    for task, cells in tables["grid"].groupby("task", sort=True):
        png = out / _heatmap_name(str(task))
        _write_heatmap(cells, str(task), png, mode)
        pngs.append(png)
    pngs += _write_aggregate_figures(tables, out, mode)
    md, csv, page = out / "leaderboard.md", out / "leaderboard.csv", out / "leaderboard.html"
    md.write_text(_markdown(tables, records, command, pngs), encoding="utf-8")
    tables["main"].to_csv(csv, index=False)
    page.write_text(_html(tables, records, command, out, pngs), encoding="utf-8")
    return [md, csv, page, *pngs]


def main_leaderboard(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    allow_mixed: bool = False,
    policy_mode: str | None = None,
    command: str = "",
    n_boot: int = 2000,
) -> list[Path]:
    """Find the runs under ``paths``, load, check and aggregate them, and write the leaderboard into ``out``
    (``n_boot``: bootstrap resamples of every interval).
    ``policy_mode`` None: the stochastic policy's episodes where the runs have them, else those of the one mode they
    have (said so in the outputs).
    Raises ``LeaderboardError`` when no run is found (and for the input errors of ``load_evals``)."""
    run_dirs = find_runs(paths)
    if not run_dirs:
        raise LeaderboardError(
            f"no run directories (with eval.parquet or meta.json) under {', '.join(map(str, paths))}"
        )
    evals, records = load_evals(run_dirs, allow_mixed=allow_mixed)
    note = ""
    if policy_mode is None:  # the stochastic policy where the runs have it, else the one mode they have
        modes = sorted(map(str, evals["policy_mode"].unique())) if len(evals) else []
        policy_mode = "stochastic" if "stochastic" in modes or not modes else modes[0]
        if modes and "stochastic" not in modes:
            note = f"the runs have no stochastic-policy episodes, so the {policy_mode} ones are used"
    tables = compute_leaderboard(evals, records, policy_mode=policy_mode, n_boot=n_boot)
    tables["settings"]["note"] = note
    return write_leaderboard(tables, records, out, command)
