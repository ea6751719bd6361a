"""``qarl calibrate``'s outputs: ``calibration.csv`` (one row per ladder bound), ``calibration.md`` (the table, b50 and
how they were made) and ``calibration.png`` (return vs bound, log axis, the protagonists' spread), plus the entry
``qarl calibrate --write`` puts in the calibration table (:mod:`qarl.evaluation.calibration`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from qarl import provenance
from qarl.evaluation.calibration import find_b50, protagonist_b50, summarize
from qarl.files import atomic_write, atomic_write_text

B50_RULE = (
    "b50 is the bound at which the mean worst-case return over the protagonists first falls to half of the return at "
    "bound 0, interpolated between the two ladder points around that crossing (in log bound, or linearly from 0); "
    "'beyond the ladder' when no point falls that low."
)


def _fmt(x: float | None, digits: int = 4) -> str:
    return "beyond the ladder" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def calibration_result(points: pd.DataFrame) -> dict[str, Any]:
    """The summary table, b50 of the mean curve and each protagonist's b50."""
    summary = summarize(points)
    b50 = find_b50(summary["bound"].to_numpy(), summary["mean"].to_numpy())
    return {"summary": summary, "b50": b50, "per_protagonist": protagonist_b50(points)}


def table_entry(task: str, points: pd.DataFrame, result: Mapping[str, Any], setting: Mapping[str, Any]) -> dict:
    """The calibration table's entry for ``task`` (plain YAML types): b50, the ladder's returns and provenance."""
    summary = result["summary"]
    return {
        "b50": None if result["b50"] is None else round(float(result["b50"]), 4),
        "default_bound": float(setting["default_bound"]),
        "nominal_return": round(float(summary["mean"].iloc[0]), 2),
        "ladder_max": float(summary["bound"].iloc[-1]),
        "ladder": [
            {
                "fraction": round(float(r.fraction), 6),
                "bound": round(float(r.bound), 6),
                "mean": round(float(r.mean), 2),
                "low": round(float(r.low), 2),
                "high": round(float(r.high), 2),
            }
            for r in summary.itertuples()
        ],
        "b50_per_protagonist": [None if v is None else round(float(v), 4) for v in result["per_protagonist"].values()],
        "protagonists": {
            "method": setting["method"],
            "scale": setting["scale"],
            "seeds": sorted(int(s) for s in points["seed"].unique()),
        },
        "worst_case_steps": int(setting["worst_case_steps"]),
        "episodes": int(setting["episodes"]),
        "policy_mode": str(setting["policy_mode"]),
        "command": setting["command"],
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "versions": {k: v for k, v in provenance.versions().items() if v is not None},
        "git": provenance.git_revision().get("revision"),
    }


def write_calibration(
    task: str, points: pd.DataFrame, out: str | os.PathLike, setting: Mapping[str, Any]
) -> tuple[dict[str, Any], list[Path]]:
    """Write ``calibration.{csv,md,png}`` under ``out``; returns (the result of :func:`calibration_result`, paths)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = calibration_result(points)
    summary = result["summary"]
    csv_path, md_path, png_path = out / "calibration.csv", out / "calibration.md", out / "calibration.png"
    atomic_write_text(csv_path, summary.to_csv(index=False))
    _plot(task, points, result, png_path)
    atomic_write_text(md_path, _markdown(task, points, result, setting, png_path.name))
    return result, [csv_path, md_path, png_path]


def _markdown(task: str, points: pd.DataFrame, result: Mapping[str, Any], setting: Mapping[str, Any], png: str) -> str:
    summary, b50 = result["summary"], result["b50"]
    seeds = sorted(int(s) for s in points["seed"].unique())
    nominal = float(summary["mean"].iloc[0])
    lines = [
        f"# Adversary strength calibration: {task}",
        "",
        f"b50 = **{_fmt(b50)}** (default bound {setting['default_bound']:g}; nominal return {nominal:.1f}, half "
        f"{nominal / 2:.1f}). Per protagonist: "
        + ", ".join(
            f"seed {s}: {_fmt(v)}"
            for s, v in zip(_seeds_of(points, result), result["per_protagonist"].values(), strict=True)
        )
        + ".",
        "",
        B50_RULE,
        "",
        f"Protagonists: `{setting['method']}` at scale `{setting['scale']}`, seeds {seeds}. Each point: a fresh "
        f"worst-case SAC adversary trained for {setting['worst_case_steps']} env steps against the frozen protagonist "
        f"({setting['policy_mode']} policy), then {setting['episodes']} episodes against it (bound 0: the protagonist "
        "alone). mean: over protagonists of each one's mean return; low / high: the lowest and highest protagonist.",
        "",
        "| fraction of default | bound | mean return | low | high | protagonists | episodes |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r.fraction:g} | {r.bound:.4g} | {r.mean:.1f} | {r.low:.1f} | {r.high:.1f} | {r.protagonists} | "
            f"{r.episodes} |"
            for r in summary.itertuples()
        ),
        "",
        f"![return vs bound]({png})",
        "",
        "## Provenance",
        "",
        f"- command: `{setting['command']}`",
        f"- CPU: {provenance.machine_summary()}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in provenance.versions().items() if v is not None),
        f"- git: {provenance.git_revision().get('revision')}",
        "- protagonist run directories: " + ", ".join(f"`{d}`" for d in dict.fromkeys(points["run_dir"].astype(str))),
        "",
    ]
    return "\n".join(lines)


def _seeds_of(points: pd.DataFrame, result: Mapping[str, Any]) -> Sequence[int]:
    """The seed of each protagonist of ``result["per_protagonist"]``, in its order."""
    seed_of = dict(zip(points["run_dir"].astype(str), points["seed"], strict=True))
    return [int(seed_of[d]) for d in result["per_protagonist"]]


def _plot(task: str, points: pd.DataFrame, result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, b50 = result["summary"], result["b50"]
    positive = summary["bound"][summary["bound"] > 0]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for _run_dir, rows in points.groupby("run_dir"):
        curve = rows.groupby("bound")["return"].mean().sort_index()
        seed = int(rows["seed"].iloc[0])
        ax.plot(curve.index, curve.to_numpy(), color="0.6", lw=0.8, marker=".", label=f"seed {seed}")
    ax.fill_between(
        summary["bound"], summary["low"], summary["high"], color="C0", alpha=0.2, label="protagonists' range"
    )
    ax.plot(summary["bound"], summary["mean"], color="C0", lw=2, marker="o", label="mean")
    half = float(summary["mean"].iloc[0]) / 2
    ax.axhline(half, color="C3", ls="--", lw=1, label="half of nominal")
    if b50 is not None:
        ax.axvline(b50, color="C3", ls=":", lw=1.2, label=f"b50 = {b50:.3g}")
    if len(positive):
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.5)
    ax.set_xlim(left=0)
    ax.set_xlabel("adversary force bound (symlog; 0 = no adversary)")
    ax.set_ylabel("return vs the worst-case adversary")
    ax.set_title(f"{task}: b50 = {_fmt(b50, 3)}")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)


__all__ = ["B50_RULE", "calibration_result", "table_entry", "write_calibration"]
