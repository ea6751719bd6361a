"""``qarl diagnose RUN_DIR``: one trial's critic diagnostics as a figure and a short verdict per player.

Reads the ``diag/`` columns of the run's ``progress.parquet`` (finished or still running; definitions in
:mod:`qarl.diagnostics.neural`) and writes ``diagnosis.png`` (every column over the diagnosed iterations, one line
per player), ``diagnosis.csv`` (the diagnosed rows) and ``diagnosis.md`` (the verdicts, the rules they follow and the
run's provenance). The verdicts describe the last diagnosed iteration, with the range over the diagnosed iterations of
the second half of the run so far beside each number (one diagnosed iteration: no range).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qarl.experiment import rundir
from qarl.files import atomic_write_text

#: The rules the verdicts follow (written beside them in diagnosis.md).
RULES = (
    "Bellman error split: the feature-class Bellman error BE of Q_1 is split by Pythagoras into the part a TD step "
    "inside the class could remove (the projected Bellman error) and the local inherent Bellman error outside it; "
    "'mostly outside the class' when completeness_ratio^2 = IBE^2 / BE^2 > 1/2, else 'mostly inside the class'.",
    "TD fixed point: 'near' when td_distance_rel (distance of Q_1 from the class's LSTD fixed point over the spread "
    "of Q_1) < 0.5, else 'far'; 'TD unstable in the class' when td_margin < 0.",
    "Next state: the buffer's one next state per transition adds next_state_bias (paired re-simulation) to the "
    "Bellman error's root; named when it exceeds a quarter of the paired Bellman error.",
    "Realizability: Q_1's distance from the projection of Monte-Carlo soft returns on the class, next to that "
    "projection's own held-out residual (return noise plus value outside the class).",
)


class DiagnosisError(ValueError):
    """The run directory has no diagnostics to show."""


@dataclass(frozen=True)
class _Value:
    last: float
    low: float
    high: float
    many: bool

    def text(self, fmt: str = "{:.3g}") -> str:
        if not math.isfinite(self.last):
            return "n/a"
        if not self.many:
            return fmt.format(self.last)
        return f"{fmt.format(self.last)} [{fmt.format(self.low)}, {fmt.format(self.high)}]"


def players(progress: pd.DataFrame) -> list[str]:
    """The diagnosed players of a progress table, in column order."""
    seen: list[str] = []
    for col in progress.columns:
        if col.startswith("diag/"):
            name = col.split("/")[1]
            if name not in seen:
                seen.append(name)
    return seen


def diagnosed_rows(progress: pd.DataFrame) -> pd.DataFrame:
    """The rows with at least one diagnostics value (the diagnosed iterations)."""
    diag = [c for c in progress.columns if c.startswith("diag/")]
    if not diag:
        raise DiagnosisError("the run has no diag/ columns (trained with diagnostics.enabled: false?)")
    rows = progress[progress[diag].notna().any(axis=1)]
    if rows.empty:
        raise DiagnosisError("no iteration has been diagnosed yet (diagnostics run every diagnostics.every iterations)")
    return rows


def _value(rows: pd.DataFrame, col: str) -> _Value:
    if col not in rows.columns:
        return _Value(math.nan, math.nan, math.nan, False)
    series = rows[col].astype(float)
    late = series[rows["iteration"] >= rows["iteration"].max() / 2].dropna()
    last = float(series.iloc[-1])
    if late.empty:
        return _Value(last, math.nan, math.nan, False)
    return _Value(last, float(late.min()), float(late.max()), len(late) > 1)


def verdict(rows: pd.DataFrame, player: str) -> str:
    """A few sentences on one player's critic at the last diagnosed iteration (rules: :data:`RULES`)."""

    def v(group: str, name: str) -> _Value:
        return _value(rows, f"diag/{player}/{group}/{name}")

    it = int(rows["iteration"].iloc[-1])
    be, ibe, pbe = (
        v("feature_class", "bellman_error"),
        v("feature_class", "local_ibe"),
        v("feature_class", "projected_bellman_error"),
    )
    ratio, alpha = v("feature_class", "completeness_ratio"), v("feature_class", "incompleteness")
    td, td_rel, margin = (
        v("feature_class", "td_distance"),
        v("feature_class", "td_distance_rel"),
        v("feature_class", "td_margin"),
    )
    parts = [f"{player} (iteration {it}):"]
    if math.isfinite(td.last):
        where = "near" if td_rel.last < 0.5 else "far from"
        parts.append(
            f"Q_1 is {where} its class's TD fixed point (distance {td.text()}, {td_rel.text('{:.2g}')} spreads of Q_1)"
            + ("; TD is unstable in the class (margin < 0)." if margin.last < 0 else ".")
        )
    if math.isfinite(be.last):
        outside = math.isfinite(ratio.last) and ratio.last**2 > 0.5
        split = "mostly outside the class (approximation)" if outside else "mostly inside the class (estimation)"
        parts.append(
            f"Bellman error {be.text()}: {split}; local IBE {ibe.text()}, projected {pbe.text()}, "
            f"completeness ratio {ratio.text('{:.2f}')}."
        )
    if math.isfinite(alpha.last):
        parts.append(f"Class incompleteness alpha-hat = {alpha.text('{:.2f}')} (a supremum: biased upwards).")
    bias, paired = v("paired", "next_state_bias"), v("paired", "bellman_error")
    if math.isfinite(bias.last) and math.isfinite(paired.last) and paired.last > 0:
        named = abs(bias.last) > 0.25 * paired.last
        parts.append(
            f"One stored next state adds {bias.text()} to the Bellman error's root (paired {paired.text()})"
            + ("." if named else ": negligible.")
        )
    real, resid = v("feature_class", "realizability"), v("feature_class", "return_residual")
    if math.isfinite(real.last):
        parts.append(
            f"Distance from the returns' projection {real.text()} (the projection's own residual {resid.text()})."
        )
    mc = v("mc", "bias")
    if math.isfinite(mc.last):
        parts.append(f"Monte-Carlo bias of f {mc.text()}.")
    return " ".join(parts)


def diagnose_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[list[Path], list[str]]:
    """Write the figure, table and verdicts of one run (default folder: ``RUN_DIR/diagnosis``); returns (files,
    verdicts)."""
    path = rundir.require_run_dir(run_dir)
    progress = rundir.read_progress(path)
    rows = diagnosed_rows(progress)
    names = players(rows)
    meta = rundir.read_meta(path, missing_ok=True)
    config = rundir.read_config(path)
    target = Path(out) if out is not None else path / "diagnosis"
    target.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    columns = sorted({c.split("/", 2)[2] for c in rows.columns if c.startswith("diag/")}, key=_column_order)
    ncols = 6
    nrows = math.ceil(len(columns) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.5 * nrows))  # a fixed layout: a solver over ~40 panels takes seconds
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.04, top=0.97, hspace=0.45, wspace=0.3)
    for ax, name in zip(axes.flat, columns, strict=False):
        for player in names:
            col = f"diag/{player}/{name}"
            if col in rows.columns and rows[col].notna().any():
                ax.plot(rows["iteration"], rows[col], marker="o", ms=3, label=player)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
        if ax.lines:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(columns) :]:
        ax.set_visible(False)
    png, csv, md = target / "diagnosis.png", target / "diagnosis.csv", target / "diagnosis.md"
    fig.savefig(png, dpi=110)
    keep = ["iteration", *[c for c in rows.columns if c.startswith("diag/")]]
    rows[keep].to_csv(csv, index=False)
    verdicts = [verdict(rows, p) for p in names]
    task, method, seed = config.get("task", "?"), config.get("method", "?"), config.get("seed", "?")
    lines = [
        f"# Critic diagnostics: {task}, {method}, seed {seed}",
        "",
        f"Run: `{path.name}`; status {meta.get('status', 'unknown')}; scale {config.get('scale', '?')}; "
        f"iterations diagnosed: {', '.join(str(int(i)) for i in rows['iteration'])}; "
        f"qarl {meta.get('versions', {}).get('qarl', '?')}, git {meta.get('git', {}).get('revision', '?')}.",
        "Numbers: the last diagnosed iteration, with [min, max] over the diagnosed iterations of the second half of "
        "the run so far. Definitions: qarl/diagnostics/neural.py and qarl/diagnostics/feature_class.py.",
        "",
        *[f"- {t}" for t in verdicts],
        "",
        "Rules of the verdicts:",
        "",
        *[f"- {r}" for r in RULES],
        "",
        f"![diagnosis]({png.name})",
        "",
    ]
    atomic_write_text(md, "\n".join(lines))
    return [png, md, csv], verdicts


_GROUP_ORDER = ("feature_class", "paired", "bellman", "mc", "mc_curriculum", "shift", "representation")


def _column_order(name: str) -> tuple[int, str]:
    group = name.split("/")[0]
    return (_GROUP_ORDER.index(group) if group in _GROUP_ORDER else len(_GROUP_ORDER), name)
