"""Plotting functions of the paper figures and tables (``qarl reproduce``).

Each function reads run directories (docs/results.md: ``config.yaml``, ``meta.json``, ``progress.parquet``,
``eval.parquet``) and writes its PNG and its table (Markdown and CSV) into ``out``; the Markdown states the command,
scale, seeds, methods, tasks and package versions of the runs it was drawn from, and lists runs that did not complete
(they are never averaged). Nothing is drawn from data other than the runs given.

Statistics: one convention with the leaderboard, from rliable (:mod:`qarl.report.stats`): the IQM over seeds with its
95% stratified bootstrap interval, no interval below the seed minimum (5).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qarl.experiment import rundir
from qarl.report import stats as qstats

_CONVENTION = (
    f"IQM over seeds with its {qstats.CONFIDENCE:.0%} stratified bootstrap interval, rliable's; no interval with "
    f"fewer than {qstats.MIN_SEEDS} seeds"
)

FIGURE_DPI = 110


class FigureError(ValueError):
    """The runs given cannot make the figure (e.g. no completed run of a method the figure needs)."""


@dataclass
class Run:
    """One run directory's files (``progress`` and ``eval`` are read on first use)."""

    path: Path
    config: dict[str, Any]
    meta: dict[str, Any]
    _progress: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def task(self) -> str:
        return str(self.config["task"])

    @property
    def method(self) -> str:
        return rundir.method_label(self.config)

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def completed(self) -> bool:
        return self.meta.get("status") == "completed"

    @property
    def progress(self) -> pd.DataFrame:
        if self._progress is None:
            if not (self.path / rundir.PROGRESS_FILE).exists():
                raise FigureError(f"{self.path}: no progress.parquet")
            self._progress = rundir.read_progress(self.path)
        return self._progress


def load_runs(run_dirs: Sequence[str | os.PathLike]) -> list[Run]:
    """The runs of ``run_dirs`` (each must hold config.yaml and meta.json)."""
    runs = []
    for d in run_dirs:
        try:
            path = rundir.require_run_dir(d)
            runs.append(Run(path, rundir.read_config(path), rundir.read_meta(path)))
        except rundir.RunDirError as e:
            raise FigureError(str(e)) from None
    if not runs:
        raise FigureError("no run directories given")
    return runs


def _completed(runs: list[Run], need: str) -> list[Run]:
    done = [r for r in runs if r.completed]
    if not done:
        raise FigureError(f"no completed run to draw {need} from ({len(runs)} runs, none completed)")
    return done


def iqm_band(table: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IQM, low, high) over the columns (seeds) of each row of ``table`` (e.g. one row per iteration): rliable's IQM
    with its 95% stratified bootstrap interval (:mod:`qarl.report.stats`); NaN bounds below the seed minimum. Rows
    where some seeds have no value use the seeds that have one."""
    values = table.to_numpy(dtype=float)
    if values.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    complete = np.isfinite(values).all(axis=1)
    point, low, high = np.full(len(values), np.nan), np.full(len(values), np.nan), np.full(len(values), np.nan)
    if complete.any():  # one bootstrap for every complete row, as rliable's curves are computed
        p, lo, hi = qstats.iqm_curve(values[complete].T[:, None, :], n_boot, seed)
        point[complete], low[complete], high[complete] = p, lo, hi
    for i in np.flatnonzero(~complete):
        row = values[i][np.isfinite(values[i])]
        if len(row):
            point[i], low[i], high[i] = qstats.iqm_interval(row, n_boot, seed)
    return point, low, high


def _band(ax: Any, table: pd.DataFrame, **plot_kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plot the IQM over the columns (seeds) of each row of ``table`` with its 95% interval as a band (where there
    are enough seeds for one); returns (IQM, low, high) per row."""
    point, low, high = iqm_band(table)
    ax.plot(table.index, point, **plot_kwargs)
    ok = np.isfinite(low) & np.isfinite(high)
    if ok.any():
        ax.fill_between(np.asarray(table.index)[ok], low[ok], high[ok], alpha=0.2)
    return point, low, high


def _figure(ncols: int, nrows: int = 1, width: float = 4.2, height: float = 3.4):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _provenance(title: str, runs: list[Run], what: str) -> list[str]:
    """Markdown lines: what the figure shows, and the commands, scales, seeds, methods, tasks and versions behind it."""
    done = [r for r in runs if r.completed]
    versions: dict[str, set[str]] = {}
    for r in done or runs:
        for k, v in (r.meta.get("versions") or {}).items():
            if v:
                versions.setdefault(k, set()).add(str(v))
    commands = sorted({_command(r.meta) for r in runs})
    revisions = sorted({str((r.meta.get("git") or {}).get("revision")) for r in runs})
    scales = sorted({str(r.config.get("scale")) for r in runs})
    lines = [
        f"# {title}",
        "",
        what,
        "",
        f"Runs: {len(done)} completed of {len(runs)}; scale(s) {', '.join(scales)}; "
        f"tasks {', '.join(sorted({r.task for r in runs}))}; methods {', '.join(sorted({r.method for r in runs}))}; "
        f"seeds {', '.join(map(str, sorted({r.seed for r in runs})))}.",
        f"Versions: {'; '.join(k + ' ' + ', '.join(sorted(v)) for k, v in sorted(versions.items()))}.",
        f"Git revision(s): {', '.join(revisions)}.",
        "",
        "Commands that produced the runs:",
        "",
        *[f"    {c}" for c in commands[:20]],
        *([f"    ... and {len(commands) - 20} more"] if len(commands) > 20 else []),
        "",
    ]
    failed = [r for r in runs if not r.completed]
    if failed:
        lines += ["Runs not completed (left out of every number):", ""]
        lines += [f"- {r.path}: {r.meta.get('status')} ({r.meta.get('failure_reason')})" for r in failed]
        lines.append("")
    return lines


def _command(meta: dict[str, Any]) -> str:
    argv = [str(a) for a in (meta.get("command") or ["?"])]
    argv[0] = Path(argv[0]).name
    return " ".join(argv)


def _md_table(df: pd.DataFrame, fmt: str = "{:.4g}") -> list[str]:
    def cell(x: Any) -> str:
        if isinstance(x, (float, np.floating)):
            return "-" if not np.isfinite(x) else fmt.format(0.0 if abs(x) < 1e-9 else x)
        return str(x)

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    sep = "|" + "---|" * len(df.columns)
    return [header, sep, *["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]]


def _write(out: Path, stem: str, fig: Any, table: pd.DataFrame, md_head: list[str], note: str = "") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    png, csv, md = out / f"{stem}.png", out / f"{stem}.csv", out / f"{stem}.md"
    fig.savefig(png, dpi=FIGURE_DPI)
    table.to_csv(csv, index=False)
    lines = [*md_head, *_md_table(table), "", *([note, ""] if note else []), f"![{stem}]({png.name})", ""]
    md.write_text("\n".join(lines))
    return [png, md, csv]


def _evals(runs: list[Run], policy_mode: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    from qarl.report.leaderboard import load_evals

    evals, records = load_evals([r.path for r in runs])
    if len(evals) and not (evals["policy_mode"] == policy_mode).any():
        modes = sorted(map(str, evals["policy_mode"].unique()))
        raise FigureError(f"no eval rows with policy mode {policy_mode!r}; the runs have {', '.join(modes)}")
    return evals[evals["policy_mode"] == policy_mode], records


# ----------------------------------------------------------------------------------------------------------------------
# QARL paper


def table1(runs: list[Run], out: Path, policy_mode: str = "stochastic", reference: str = "sac") -> list[Path]:
    """% change vs ``reference`` of performance (nominal return) and robustness (grid mean), per method.

    Per task, a seed's % change is ``100 (x_seed - m_ref) / |m_ref|`` with ``m_ref`` the reference method's IQM over
    its seeds on that task. Per method the table gives rliable's IQM over its (seeds, tasks) matrix of % changes, on
    the tasks where both it and the reference ran (the lowest-numbered seeds up to the smallest count per task), with
    the stratified bootstrap interval (none below the seed minimum).
    """
    done = _completed(runs, "table1")
    evals, _ = _evals(done, policy_mode)
    per_seed = []
    for (task, algo, seed), block in evals.groupby(["task", "method", "seed"]):
        per_seed.append({
            "task": task, "method": algo, "seed": seed,
            "nominal": block.loc[block.metric == "nominal", "return"].mean(),
            "grid_mean": block.loc[block.metric == "grid", "return"].mean(),
        })  # fmt: skip
    ps = pd.DataFrame(per_seed).sort_values(["task", "method", "seed"])
    if reference not in set(ps["method"]):
        raise FigureError(f"table1 needs completed runs of the reference method {reference!r}")
    rows = []
    for algo in sorted(set(ps["method"])):
        changes: dict[str, list[np.ndarray]] = {"performance": [], "robustness": []}
        tasks = []
        for task in sorted(set(ps["task"])):
            ref = ps[(ps.task == task) & (ps.method == reference)]
            mine = ps[(ps.task == task) & (ps.method == algo)]
            refs = {col: qstats.iqm(ref[col].dropna().to_numpy()) if ref[col].notna().any() else 0.0
                    for col in ("nominal", "grid_mean")}  # fmt: skip
            if mine.empty or mine[["nominal", "grid_mean"]].isna().any().any() or 0.0 in refs.values():
                continue  # no % change against a zero (or absent) reference
            for name, col in (("performance", "nominal"), ("robustness", "grid_mean")):
                changes[name].append(100 * (mine[col].to_numpy(dtype=float) - refs[col]) / abs(refs[col]))
            tasks.append(task)
        row: dict[str, Any] = {"method": algo, "tasks": len(tasks), "seeds": 0}
        for name, cols in changes.items():
            n = min((len(c) for c in cols), default=0)
            row["seeds"] = n
            if n:
                matrix = np.stack([c[:n] for c in cols], axis=1)
                row[f"{name}_pct"], row[f"{name}_low"], row[f"{name}_high"] = qstats.iqm_interval(matrix)
        rows.append(row)
    columns = ["method", "tasks", "seeds"] + [f"{n}_{p}" for n in ("performance", "robustness")
                                              for p in ("pct", "low", "high")]  # fmt: skip
    table = pd.DataFrame(rows).reindex(columns=columns)
    fig, axes = _figure(2)
    for ax, col, label in zip(axes[0], ("performance", "robustness"), ("nominal return", "grid mean"), strict=True):
        point = table[f"{col}_pct"].to_numpy(dtype=float)
        low, high = table[f"{col}_low"].to_numpy(dtype=float), table[f"{col}_high"].to_numpy(dtype=float)
        yerr = np.nan_to_num(np.stack([point - low, high - point]))
        ax.bar(table["method"], point, yerr=yerr, capsize=3, color="tab:blue")
        ax.axhline(0, color="grey", lw=1)
        ax.set_title(f"{col}: % change vs {reference} ({label})")
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    head = _provenance(
        "QARL Table 1 form: % change vs SAC",
        runs,
        f"Per method: % change of the nominal return (performance) and of the grid-mean return (robustness) vs "
        f"`{reference}`'s IQM on the same task, {policy_mode} policy; {_CONVENTION}, over seeds and tasks.",
    )
    return _write(out, "table1", fig, table, head)


def curves(runs: list[Run], out: Path) -> list[Path]:
    """Evaluation return vs iteration, with and without the adversary, per task and method (IQM and interval)."""
    done = _completed(runs, "curves")
    tasks = sorted({r.task for r in done})
    fig, axes = _figure(2, len(tasks))
    rows = []
    for i, task in enumerate(tasks):
        for j, (col, label) in enumerate(
            (("eval_return_zero_force", "without the adversary"), ("eval_return_adversary", "against the adversary"))
        ):
            ax = axes[i][j]
            for algo in sorted({r.method for r in done if r.task == task}):
                mine = [r for r in done if r.task == task and r.method == algo]
                table = pd.concat([r.progress.set_index("iteration")[col] for r in mine], axis=1)
                if table.isna().all().all():
                    continue  # e.g. no adversary: nothing to draw
                point, low, high = _band(ax, table, label=algo)
                rows.append(
                    {
                        "task": task,
                        "metric": col,
                        "method": algo,
                        "seeds": table.shape[1],
                        "final_iqm": point[-1],
                        "final_low": low[-1],
                        "final_high": high[-1],
                    }
                )
            ax.set_title(f"{task}: {label}", fontsize=9)
            ax.set_xlabel("iteration")
            ax.set_ylabel("return")
            ax.legend(fontsize=7)
    what = f"Evaluation return after each iteration ({_CONVENTION})."
    head = _provenance("Learning curves", runs, what)
    return _write(out, "curves", fig, pd.DataFrame(rows), head)


def temperature(runs: list[Run], out: Path) -> list[Path]:
    """The QARL teacher's mean temperature (alpha) and kappa per iteration (IQM over seeds and its interval)."""
    done = [r for r in _completed(runs, "temperature") if "teacher_kappa" in r.progress.columns]
    if not done:
        raise FigureError("temperature needs completed runs of a method with a teacher (teacher_kappa column)")
    fig, axes = _figure(2)
    rows = []
    for task in sorted({r.task for r in done}):
        for algo in sorted({r.method for r in done if r.task == task}):
            mine = [r for r in done if r.task == task and r.method == algo]
            for ax, col in zip(axes[0], ("alpha_mean", "teacher_kappa"), strict=True):
                table = pd.concat([r.progress.set_index("iteration")[col] for r in mine], axis=1)
                point, low, high = _band(ax, table, marker="o", ms=3, label=f"{algo} {task}")
                for it, m, lo, hi in zip(table.index, point, low, high, strict=True):
                    rows.append(
                        {
                            "task": task,
                            "method": algo,
                            "iteration": int(it),
                            "column": col,
                            "iqm": m,
                            "low": lo,
                            "high": hi,
                            "seeds": len(mine),
                        }
                    )
    axes[0][0].set_title("mean adversary temperature alpha per iteration")
    axes[0][1].set_title("teacher kappa (Gamma shape) per iteration")
    for ax in axes[0]:
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    table = pd.DataFrame(rows).pivot_table(index=["task", "method", "iteration", "seeds"], columns="column",
                                           values=["iqm", "low", "high"], dropna=False).reset_index()  # fmt: skip
    table.columns = ["_".join(c for c in col if c) if isinstance(col, tuple) else col for col in table.columns]
    head = _provenance("QARL curriculum trace", runs,
                       f"The teacher's kappa and the mean sampled alpha per iteration ({_CONVENTION}).")  # fmt: skip
    return _write(out, "temperature", fig, table, head)


def heatmaps(runs: list[Run], out: Path, policy_mode: str = "stochastic") -> list[Path]:
    """Mass x friction grids: one PNG per task with a panel per method on a shared colour scale, and the cell table."""
    from qarl.report.leaderboard import _grid_cells, _heatmap_name, _write_heatmap

    done = _completed(runs, "heatmaps")
    evals, _ = _evals(done, policy_mode)
    cells = _grid_cells(evals)
    if cells.empty:
        raise FigureError("heatmaps: the runs have no grid rows")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for task in sorted(cells["task"].unique()):
        path = out / _heatmap_name(task)
        _write_heatmap(cells[cells["task"] == task], task, path, policy_mode)
        written.append(path)
    head = _provenance("Robustness grids", runs, f"Mean grid return per cell and method ({policy_mode} policy).")
    cells.to_csv(out / "heatmaps.csv", index=False)
    summary = cells.groupby(["task", "method"])["mean_return"].agg(["mean", "min", "max"]).reset_index()
    (out / "heatmaps.md").write_text(
        "\n".join([*head, *_md_table(summary), "", *[f"![{p.stem}]({p.name})" for p in written], ""])
    )
    return [*written, out / "heatmaps.md", out / "heatmaps.csv"]


def _panels(runs: list[Run], need: str, policy_mode: str, metrics: tuple[str, str]):
    """(figure, [(axes, task, metric, that task's eval rows of that metric)]): one row of panels per task."""
    evals, _ = _evals(_completed(runs, need), policy_mode)
    tasks = sorted(evals["task"].unique())
    fig, axes = _figure(2, len(tasks))
    panels = [
        (axes[i][j], task, metric, evals[(evals.task == task) & (evals.metric == metric)])
        for i, task in enumerate(tasks)
        for j, metric in enumerate(metrics)
    ]
    return fig, panels


def sweeps(runs: list[Run], out: Path, policy_mode: str = "stochastic", stem: str = "sweeps") -> list[Path]:
    """Return vs each robustness parameter alone (the 1-D sweeps), per task and method (IQM over seeds, interval)."""
    fig, panels = _panels(runs, "sweeps", policy_mode, ("sweep_x", "sweep_y"))
    rows = []
    for ax, task, metric, block in panels:
        if block.empty:
            continue
        param = block["param_x"].iloc[0] if metric == "sweep_x" else block["param_y"].iloc[0]
        value = "value_x" if metric == "sweep_x" else "value_y"
        for algo, b in block.groupby("method"):
            per_seed = b.groupby([value, "seed"])["return"].mean().unstack("seed")
            point, low, high = _band(ax, per_seed, marker="o", ms=3, label=algo)
            rows += [{"task": task, "parameter": param, "value": v, "method": algo, "iqm_return": m,
                      "low": lo, "high": hi, "seeds": per_seed.shape[1]}
                     for v, m, lo, hi in zip(per_seed.index, point, low, high, strict=True)]  # fmt: skip
        ax.set_title(f"{task}: return vs {param}", fontsize=9)
        ax.set_xlabel(str(param))
        ax.set_ylabel("return")
        ax.legend(fontsize=7)
    what = f"Return vs one parameter at a time, the others nominal ({policy_mode} policy; {_CONVENTION})."
    head = _provenance("1-D robustness sweeps", runs, what)
    return _write(out, stem, fig, pd.DataFrame(rows), head)


def boxplots(runs: list[Run], out: Path, policy_mode: str = "stochastic") -> list[Path]:
    """Per-seed final returns without the adversary (nominal) and against the worst-case adversary, per method."""
    fig, panels = _panels(runs, "boxplots", policy_mode, ("nominal", "worst_case"))
    rows = []
    for ax, task, metric, block in panels:
        per_seed = block.groupby(["method", "seed"])["return"].mean()
        algos = sorted(per_seed.index.get_level_values(0).unique())
        if algos:
            ax.boxplot([per_seed.loc[a].to_numpy() for a in algos], tick_labels=algos)
        ax.set_title(f"{task}: {metric.replace('_', '-')} return", fontsize=9)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
        for (algo, seed), v in per_seed.items():
            rows.append({"task": task, "metric": metric, "method": algo, "seed": seed, "return": v})
    table = pd.DataFrame(rows)
    head = _provenance("Final returns", runs, f"Mean return per seed ({policy_mode} policy), nominal and worst case.")
    return _write(out, "boxplots", fig, table, head)


def ablation(runs: list[Run], out: Path, policy_mode: str = "stochastic") -> list[Path]:
    """QARL vs its ablations: IQM (95% bootstrap interval) of the nominal return and of the grid mean per task."""
    from qarl.report.leaderboard import compute_leaderboard

    done = _completed(runs, "ablation")
    evals, records = _evals(done, policy_mode)
    main = compute_leaderboard(evals, records, policy_mode=policy_mode, reference="qarl", baseline="qarl")["main"]
    table = main[["task", "method", "n_seeds", "nominal_iqm", "nominal_low", "nominal_high", "grid_mean_iqm",
                  "grid_mean_low", "grid_mean_high", "performance_pct", "robustness_pct"]]  # fmt: skip
    table = table.rename(columns={"performance_pct": "nominal_pct_vs_qarl", "robustness_pct": "grid_pct_vs_qarl"})
    tasks = sorted(table["task"].unique())
    fig, axes = _figure(2, len(tasks))
    for i, task in enumerate(tasks):
        block = table[table.task == task]
        for j, m in enumerate(("nominal", "grid_mean")):
            err = np.nan_to_num(np.abs(block[[f"{m}_low", f"{m}_high"]].to_numpy().T - block[f"{m}_iqm"].to_numpy()))
            axes[i][j].bar(block["method"], block[f"{m}_iqm"], yerr=err, capsize=3)
            axes[i][j].set_title(f"{task}: {m} (IQM)", fontsize=9)
            axes[i][j].tick_params(axis="x", rotation=60, labelsize=7)
    what = f"IQM over seeds with 95% stratified-bootstrap intervals ({policy_mode} policy)."
    head = _provenance("QARL ablations", runs, what)
    return _write(out, "ablation", fig, table.reset_index(drop=True), head)


def navigation(runs: list[Run], out: Path, policy_mode: str = "stochastic") -> list[Path]:
    """Quadruped navigation: success rate and final distance to goal vs a constant wind at multiples of the training
    bound, from the evaluation's ``wind`` rows (``eval.parquet``: per run, wind factor and episode, the protagonist
    alone against the held wind; success: the final distance to the goal is under 1 m, the task's success radius).
    """
    done = [r for r in _completed(runs, "navigation") if r.task == "dmc/quadruped-navigate"]
    if not done:
        raise FigureError("navigation needs completed dmc/quadruped-navigate runs")
    evals, _ = _evals(done, policy_mode)
    ep = evals[evals["metric"] == "wind"] if "wind_factor" in evals.columns else evals.iloc[:0]
    if ep.empty:
        raise FigureError(
            "navigation needs the evaluation's wind rows, which these runs' eval.parquet lack (evaluated by an older "
            "qarl): rerun their evaluation with `qarl evaluate RUN_DIR` on their checkpoints, or rerun the trials"
        )
    table = (
        ep.groupby(["method", "wind_factor"])
        .agg(seeds=("seed", "nunique"), episodes=("episode", "size"), success_rate=("success", "mean"),
             mean_distance=("distance_to_goal", "mean"))
        .reset_index()
        .rename(columns={"method": "method"})
    )  # fmt: skip
    episodes = int(ep.groupby(["method", "seed", "wind_factor"]).size().max())
    fig, axes = _figure(2)
    for algo, b in table.groupby("method"):
        axes[0][0].plot(b["wind_factor"], b["success_rate"], marker="o", label=algo)
        axes[0][1].plot(b["wind_factor"], b["mean_distance"], marker="o", label=algo)
    axes[0][0].set_title("success rate vs wind (x training bound)")
    axes[0][1].set_title("final distance to goal (m) vs wind")
    for ax in axes[0]:
        ax.set_xlabel("wind factor")
        ax.legend(fontsize=7)
    head = _provenance(
        "Quadruped navigation under wind",
        runs,
        f"{episodes} episodes per run and wind factor, {policy_mode} protagonist, constant wind.",
    )
    return _write(out, "navigation", fig, table, head)


# ----------------------------------------------------------------------------------------------------------------------
# RARL paper


def percentile(runs: list[Run], out: Path, policy_mode: str = "stochastic") -> list[Path]:
    """Sorted final nominal returns over seeds per method and task (the RARL paper's percentile plot)."""
    done = _completed(runs, "percentile")
    evals, _ = _evals(done, policy_mode)
    nominal = evals[evals.metric == "nominal"].groupby(["task", "method", "seed"])["return"].mean().reset_index()
    tasks = sorted(nominal["task"].unique())
    fig, axes = _figure(len(tasks))
    rows = []
    for ax, task in zip(axes[0], tasks, strict=True):
        for algo, b in nominal[nominal.task == task].groupby("method"):
            values = np.sort(b["return"].to_numpy())
            pct = 100 * (np.arange(len(values)) + 0.5) / len(values)
            ax.plot(pct, values, marker="o", label=algo)
            rows += [
                {"task": task, "method": algo, "percentile": p, "return": v} for p, v in zip(pct, values, strict=True)
            ]
        ax.set_title(f"{task}: sorted nominal returns", fontsize=9)
        ax.set_xlabel("percentile of seeds")
        ax.set_ylabel("return")
        ax.legend(fontsize=7)
    head = _provenance("Percentile plot", runs, f"Final nominal return per seed, sorted ({policy_mode} policy).")
    return _write(out, "percentile", fig, pd.DataFrame(rows), head)


def mass_friction(runs: list[Run], out: Path, policy_mode: str = "stochastic") -> list[Path]:
    """Return vs torso mass and vs friction (1-D sweeps) and the joint grid heatmaps."""
    return sweeps(runs, out, policy_mode, stem="mass_friction") + heatmaps(runs, out, policy_mode)


# ----------------------------------------------------------------------------------------------------------------------
# Realizability paper

CRITIC_COLUMNS = (
    ("feature_class", "completeness_ratio", "completeness ratio IBE / BE (feature class)"),
    ("feature_class", "incompleteness", "incompleteness alpha-hat (feature class)"),
    ("feature_class", "td_distance_rel", "distance from the TD fixed point / spread"),
    ("feature_class", "bellman_error", "Bellman error (feature class)"),
    ("paired", "next_state_bias", "next-state part of the Bellman error"),
    ("feature_class", "realizability", "distance from the returns' projection"),
    ("mc", "rmse", "Monte-Carlo value error (RMSE)"),
)
CRITIC_PLAYERS = ("protagonist", "adversary")


def critics(runs: list[Run], out: Path, players: tuple[str, ...] = CRITIC_PLAYERS) -> list[Path]:
    """The SAC critics' diagnostics over training per method (IQM over seeds, each seed as a thin line; the table
    adds the interval), one row of panels per player."""
    done = _completed(runs, "critics")
    fig, axes = _figure(len(CRITIC_COLUMNS), nrows=len(players), width=3.6, height=3.0)
    rows = []
    for p_row, player in zip(axes, players, strict=True):
        for ax, (group, name, label) in zip(p_row, CRITIC_COLUMNS, strict=True):
            col = f"diag/{player}/{group}/{name}"
            for task in sorted({r.task for r in done}):
                for algo in sorted({r.method for r in done if r.task == task}):
                    mine = [r for r in done if r.task == task and r.method == algo]
                    missing = [str(r.path) for r in mine if col not in r.progress.columns]
                    if missing:
                        raise FigureError(
                            f"critics: {missing[0]} has no column {col!r} (trained without diagnostics, or by an "
                            "earlier version: rerun it)"
                        )
                    table = pd.concat([r.progress.set_index("iteration")[col] for r in mine], axis=1)
                    table = table.dropna(how="all")
                    # the IQM over seeds, and each seed thin: with 2-3 seeds a band would hide the data
                    point, low, high = iqm_band(table)
                    (line,) = ax.plot(table.index, point, marker="o", ms=3, label=f"{algo} (IQM)")
                    for c in table.columns:
                        ax.plot(table.index, table[c], color=line.get_color(), lw=0.7, alpha=0.45)
                    rows += [{"task": task, "method": algo, "column": col, "iteration": int(it), "iqm": m,
                              "low": lo, "high": hi, "seeds": len(mine)}
                             for it, m, lo, hi in zip(table.index, point, low, high, strict=True)]  # fmt: skip
            ax.set_title(f"{player}: {label}", fontsize=8)
            ax.set_xlabel("iteration")
            ax.legend(fontsize=7)
    head = _provenance("SAC critic diagnostics over training", runs,
                       "Columns `diag/<player>/...` of progress.parquet (definitions: qarl/diagnostics/neural.py); "
                       f"{_CONVENTION} (figure: the IQM, each seed a thin line).")  # fmt: skip
    return _write(out, "critics", fig, pd.DataFrame(rows), head)


FigureFn = Callable[..., list[Path]]


TESTBED_SIZES: dict[str, dict[str, tuple]] = {
    "smoke": {"lams": (0.0, 0.5, 1.0), "ns": (500, 2000), "seeds": (0, 1)},
    "small": {"lams": (0.0, 0.1, 0.2, 0.5, 1.0), "ns": (1000, 5000, 20000), "seeds": (0, 1, 2, 3, 4)},
    "paper": {
        "lams": (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0),
        "ns": (1000, 5000, 20000, 100000),
        "seeds": tuple(range(20)),
    },
}


def testbed(out: Path, scale: str = "small") -> list[Path]:
    """``qarl diagnose testbed`` at the scale's sizes (:data:`TESTBED_SIZES`): testbed.png, .md and .csv."""
    from qarl.diagnostics.testbed import run_testbed

    if scale not in TESTBED_SIZES:
        raise FigureError(f"unknown scale {scale!r}; expected one of {list(TESTBED_SIZES)}")
    run_testbed(**TESTBED_SIZES[scale], out=out)
    return [Path(out) / f"testbed.{ext}" for ext in ("png", "md", "csv")]
