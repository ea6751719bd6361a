"""Verdicts on the robust-RL claims: for each claim "X beats Y" and each score, the probability of improvement with a
95% interval and a verdict by a stated rule (``qarl reproduce robust-small``).

Scores of a run (one number per seed): ``nominal`` (performance: the mean return of the nominal episodes),
``worst_case`` (robustness: the mean return against the fresh worst-case adversary, at the bound the runs'
``eval.worst_case_bound`` set) and ``grid_mean`` (robustness: the mean return over the parameter grid).

The probability of improvement of X over Y on one task is P(x > y) + P(x = y) / 2 over all pairs of a seed of X and
a seed of Y (the Mann-Whitney statistic); over several tasks it is the mean of the tasks' values. Both it and its 95%
interval come from rliable (:func:`qarl.report.stats.poi_interval`): the percentile interval of a stratified
bootstrap in which each resample draws, within every task, X's seeds and Y's seeds with replacement, independently.
Over several tasks rliable needs the same number of seeds of a method on every task: with different counts the
lowest-numbered seeds up to the smallest count are used (the row's ``n_x``, ``n_y``).

Rule: **supported** when the interval's lower end is above 0.5, **contradicted** when its upper end is below 0.5,
**inconclusive** otherwise: the interval holds 0.5, or a method has fewer than :data:`MIN_SEEDS` seeds on a task. The
seed minimum guards the bootstrap's blind spot: when every seed of X beats every seed of Y, every resample does too
and the interval is [1, 1] whatever the number of seeds; with 5 seeds each, such a complete separation has
probability 1/252 when the two methods do not differ (2 seeds each: 1/6).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qarl.report import stats
from qarl.report.stats import MIN_SEEDS

CLAIMS: tuple[tuple[str, str], ...] = (
    ("qarl", "rarl"),
    ("qarl", "sac"),
    ("rarl", "sac"),
    ("qarl", "domain_randomization"),
    ("rarl", "domain_randomization"),
)
"""(X, Y): "X beats Y" (QARL vs RARL, each adversarial method vs SAC, adversarial vs domain randomisation)."""
SCORES: dict[str, str] = {
    "nominal": "performance (nominal return)",
    "worst_case": "robustness (return vs the worst-case adversary)",
    "grid_mean": "robustness (mean return over the grid of the task's two parameters)",
}
CONFIDENCE = stats.CONFIDENCE
RULE = (
    "Verdict rule: supported when the 95% interval's lower end is above 0.5, contradicted when its upper end is below "
    f"0.5, inconclusive otherwise (the interval holds 0.5, or a method has fewer than {MIN_SEEDS} seeds on a task: "
    "with 5 seeds each, every seed of one method beating every seed of the other has probability 1/252 when they do "
    "not differ, with 2 seeds each 1/6, and the bootstrap interval is then [1, 1] either way)."
)


def verdict(low: float, high: float, seeds: int = MIN_SEEDS) -> str:
    """The rule of :data:`RULE`; ``seeds``: the fewest seeds of either method on any task."""
    if seeds < MIN_SEEDS or not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    if low > 0.5:
        return "supported"
    if high < 0.5:
        return "contradicted"
    return "inconclusive"


def verdict_table(
    scores: pd.DataFrame,
    claims: Sequence[tuple[str, str]] = CLAIMS,
    metrics: Sequence[str] = tuple(SCORES),
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (claim, score, task), with task "all" (every task both methods ran) first per (claim, score):
    ``x``, ``y``, ``score``, ``task``, ``n_x``, ``n_y`` (seeds; per task, or the fewest over tasks), ``poi``,
    ``low``, ``high``, ``verdict``. ``scores``: one row per run with ``task``, ``method``, ``seed`` and the scores."""
    rows = []
    for x, y in claims:
        for metric in metrics:
            tasks = []
            for task in sorted(scores["task"].unique()):
                block = scores[scores.task == task].sort_values("seed")
                sx = block[block.method == x][metric].dropna().to_numpy(dtype=float)
                sy = block[block.method == y][metric].dropna().to_numpy(dtype=float)
                if len(sx) and len(sy):
                    tasks.append((task, sx, sy))
            if not tasks:
                continue
            block = [("all", [t[1] for t in tasks], [t[2] for t in tasks])] if len(tasks) > 1 else []
            block += [(t, [sx], [sy]) for t, sx, sy in tasks]
            for task, sxs, sys_ in block:
                n_x, n_y = min(len(s) for s in sxs), min(len(s) for s in sys_)
                mx = np.stack([s[:n_x] for s in sxs], axis=1)
                my = np.stack([s[:n_y] for s in sys_], axis=1)
                p, lo, hi = stats.poi_interval(mx, my, n_boot, seed)
                rows.append({
                    "claim": f"{x} > {y}", "x": x, "y": y, "score": metric, "task": task, "n_x": n_x, "n_y": n_y,
                    "poi": p, "low": lo, "high": hi, "verdict": verdict(lo, hi, min(n_x, n_y)),
                })  # fmt: skip
    return pd.DataFrame(rows)


def run_scores(evals: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, method, seed): the mean return of its ``nominal``, ``worst_case`` and ``grid`` episodes."""
    keys = ["task", "method", "seed"]
    out = evals[keys].drop_duplicates().set_index(keys).sort_index()
    for metric, column in (("nominal", "nominal"), ("worst_case", "worst_case"), ("grid", "grid_mean")):
        out[column] = evals[evals["metric"] == metric].groupby(keys)["return"].mean()
    bounds = evals[evals["metric"] == "worst_case"].groupby(keys)["force_bound"].first()
    out["worst_case_bound"] = bounds
    return out.reset_index()


def _strength_lines(runs: Sequence[Any]) -> list[str]:
    """Per task: the trial bound and the worst-case bound the runs were trained and evaluated at, and where from."""
    lines = []
    for task in sorted({r.task for r in runs}):
        mine = [r for r in runs if r.task == task]
        train = sorted({str((r.config.get("loop") or {}).get("adversary_bound")) for r in mine})
        worst = sorted({str((r.config.get("eval") or {}).get("worst_case_bound")) for r in mine})
        rel = {}
        for r in mine:
            for key, rec in (r.config.get("strength") or {}).items():
                rel[key] = f"{rec.get('b50')} x b50 (b50 = {rec.get('task_b50')}, calibrated {rec.get('calibrated')})"
        rel_text = "; ".join(f"`{k}` = {v}" for k, v in sorted(rel.items())) or "absolute bounds"
        lines.append(f"- {task}: trial bound {', '.join(train)}, worst-case bound {', '.join(worst)} ({rel_text})")
    return lines


def parse_claim(text: str) -> tuple[str, str]:
    """``"X>Y"`` (spaces allowed, e.g. ``"qarl [qarl-authors] > qarl"``) as (X, Y)."""
    x, sep, y = text.partition(">")
    if not sep or not x.strip() or not y.strip() or ">" in y:
        raise ValueError(f"a claim is 'X>Y' with two method names, got {text!r}")
    return x.strip(), y.strip()


def write_verdicts(
    runs: Sequence[Any],
    out: Path,
    policy_mode: str = "stochastic",
    n_boot: int = 2000,
    claims: Sequence[tuple[str, str]] = CLAIMS,
    command: str = "",
) -> list[Path]:
    """``verdicts.{md,csv,png}`` and ``scores.{csv,png}`` from the completed runs (see the module docstring);
    ``claims``: the (X, Y) pairs tested (default the robust-RL claims of :data:`CLAIMS`)."""
    from qarl.report import figures as F

    done = F._completed(list(runs), "the verdicts")
    evals, _ = F._evals(done, policy_mode)
    scores = run_scores(evals)
    table = verdict_table(scores, claims=claims, n_boot=n_boot)
    if table.empty:
        methods = sorted(scores["method"].unique())
        raise F.FigureError(f"the verdicts need completed runs of both methods of a claim on a task; the runs have "
                            f"{methods} (claims: {', '.join(f'{x} > {y}' for x, y in claims)})")  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "verdicts.md", out / "verdicts.csv", out / "verdicts.png", out / "scores.csv", out / "scores.png"]
    table.to_csv(paths[1], index=False)
    scores.to_csv(paths[3], index=False)
    _plot_verdicts(table, paths[2])
    _plot_scores(scores, paths[4])
    head = F._provenance(
        "Robust-RL claims at a calibrated adversary strength: verdicts",
        list(runs),
        f'Per claim "X > Y" and score ({policy_mode} policy): the probability that a seed of X scores higher than a '
        "seed of Y on the same task (ties count half), its 95% stratified-bootstrap interval "
        f"(rliable, {n_boot} resamples), and the verdict. Task `all`: the mean over the tasks of the per-task values. "
        + "; ".join(f"`{k}`: {v}" for k, v in SCORES.items())
        + ".",
    )
    made_by = ["Made by:", "", f"    {command}", ""] if command else []
    lines = [*head, *made_by, RULE, "", "Strength per task:", "", *_strength_lines(done), ""]
    shown = table.assign(
        poi=table["poi"].map(lambda v: f"{v:.2f}"),
        interval=[
            f"[{lo:.2f}, {hi:.2f}]" if np.isfinite(lo) else "-" for lo, hi in zip(table.low, table.high, strict=True)
        ],
    )[["claim", "score", "task", "n_x", "n_y", "poi", "interval", "verdict"]]
    lines += F._md_table(shown)
    lines += ["", "Scores per method (IQM over seeds, rliable's; `scores.csv` has every seed):", ""]

    def iqm(v: pd.Series) -> float:
        v = v.dropna()
        return stats.iqm(v.to_numpy()) if len(v) else math.nan

    means = scores.groupby(["task", "method"])[list(SCORES)].agg([("IQM", iqm), ("seeds", "count")])
    means.columns = [f"{a} {b}" for a, b in means.columns]
    lines += F._md_table(means.reset_index(), "{:.1f}")
    lines += ["", "![verdicts](verdicts.png)", "", "![scores](scores.png)", ""]
    paths[0].write_text("\n".join(lines))
    return paths


_COLORS = {"supported": "tab:green", "contradicted": "tab:red", "inconclusive": "tab:gray"}


def _plot_verdicts(table: pd.DataFrame, path: Path) -> None:
    from qarl.report.figures import FIGURE_DPI, _figure

    metrics = list(dict.fromkeys(table["score"]))
    fig, axes = _figure(len(metrics), width=4.0, height=0.45 * max(4, len(table) / max(1, len(metrics))) + 1)
    for ax, metric in zip(axes[0], metrics, strict=True):
        block = table[table.score == metric].reset_index(drop=True)
        ypos = np.arange(len(block))[::-1]
        for yv, r in zip(ypos, block.itertuples(), strict=True):
            color = _COLORS[r.verdict]
            marker = "D" if r.task == "all" else "o"
            if np.isfinite(r.low):
                ax.plot([r.low, r.high], [yv, yv], color=color, lw=2 if r.task == "all" else 1)
            ax.plot([r.poi], [yv], marker=marker, color=color)
        ax.axvline(0.5, color="black", lw=0.8, ls="--")
        ax.set_xlim(-0.02, 1.02)
        ax.set_yticks(ypos, [f"{r.claim} [{r.task}]" for r in block.itertuples()], fontsize=6)
        ax.set_xlabel("P(X > Y), 95% interval")
        ax.set_title(SCORES.get(metric, metric).replace(" (", "\n("), fontsize=8)
    fig.savefig(path, dpi=FIGURE_DPI)


def _plot_scores(scores: pd.DataFrame, path: Path) -> None:
    from qarl.report.figures import FIGURE_DPI, _figure

    tasks, metrics = sorted(scores["task"].unique()), list(SCORES)
    methods = sorted(scores["method"].unique())
    fig, axes = _figure(len(metrics), len(tasks), width=3.6, height=2.8)
    for i, task in enumerate(tasks):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            for k, m in enumerate(methods):
                v = scores[(scores.task == task) & (scores.method == m)][metric].dropna()
                ax.plot(np.full(len(v), k), v, "o", alpha=0.6, color=f"C{k}")
                if len(v):
                    ax.plot([k - 0.3, k + 0.3], [stats.iqm(v.to_numpy())] * 2, color=f"C{k}", lw=2)  # the IQM
            ax.set_xticks(range(len(methods)), methods, rotation=30, fontsize=7)
            ax.set_title(f"{task}: {metric}", fontsize=8)
    fig.savefig(path, dpi=FIGURE_DPI)


def verdict_summary(table: pd.DataFrame) -> Mapping[str, int]:
    """How many (claim, score) rows over all tasks got each verdict."""
    top = table[table.task == "all"] if (table.task == "all").any() else table
    return {v: int((top.verdict == v).sum()) for v in _COLORS}


__all__ = ["CLAIMS", "MIN_SEEDS", "RULE", "SCORES", "parse_claim", "run_scores", "verdict", "verdict_table",
           "write_verdicts"]  # fmt: skip
