"""Learning curves from run directories: a PNG figure and a Markdown table that say how they were made.

``qarl curves RUN_DIR ... --out DIR`` reads each run's ``progress.parquet``, ``config.yaml`` and
``meta.json`` and writes ``DIR/curves.png`` (evaluation return against protagonist env steps, one line per
run) and ``DIR/curves.md`` (per run: seed, status, steps, final return, first step above a threshold, mean
steps/s; plus the commands, scale and package versions read from the runs).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from qarl.experiment import rundir


def _load(run_dir: Path) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    return rundir.read_progress(run_dir), rundir.read_config(run_dir), rundir.read_meta(run_dir)


def _command(meta: dict[str, Any]) -> str:
    """The recorded command line, with the interpreter/script path shortened to its name."""
    argv = list(meta.get("command") or ["?"])
    argv[0] = Path(argv[0]).name
    return " ".join(argv)


def write_curves(
    run_dirs: list[str | os.PathLike],
    out: str | os.PathLike,
    metric: str = "eval_return_zero_force",
    threshold: float | None = None,
    title: str | None = None,
) -> tuple[Path, Path]:
    import matplotlib

    matplotlib.use("Agg")  # no display on the machines this runs on
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = [(Path(d), *_load(Path(d))) for d in run_dirs]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lines = []
    for run_dir, df, cfg, meta in runs:
        if metric not in df.columns:
            raise ValueError(f"{run_dir}: progress has no column {metric!r}; columns: {list(df.columns)}")
        x = df["env_steps_protagonist"]
        label = f"{cfg['method']} seed={cfg['seed']}"
        ax.plot(x, df[metric], marker="o", ms=3, label=label)
        above = df.loc[df[metric] > threshold, "env_steps_protagonist"] if threshold is not None else pd.Series()
        lines.append(
            f"| {cfg['task']} | {cfg['method']} | {cfg['seed']} | {meta.get('status')} | {int(x.iloc[-1])} "
            f"| {df[metric].iloc[-1]:.1f} | {df[metric].max():.1f} "
            f"| {int(above.iloc[0]) if len(above) else 'never'} | {df['steps_per_s'].mean():.0f} |"
        )
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("protagonist env steps")
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_title(title or f"{runs[0][2]['task']}: {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = out / "curves.png"
    fig.savefig(png, dpi=120)
    plt.close(fig)

    first_cfg, first_meta = runs[0][2], runs[0][3]
    git = first_meta.get("git", {})
    evals = first_cfg["loop"]["eval_episodes"]
    md = [
        f"# {title or 'Learning curves'}",
        "",
        f"Metric: `{metric}`, the mean over {evals} evaluation episodes after each iteration "
        f"({'deterministic' if first_cfg['loop'].get('eval_deterministic', True) else 'stochastic'} policy), "
        f"against protagonist env steps. One run per seed; {len(runs)} seeds. Made by real runs of:",
        "",
        *[f"    {_command(m)}" for _, _, _, m in runs],
        "",
        f"Scale `{first_cfg['scale']}`: {first_cfg['loop']['iterations']} iterations x "
        f"{first_cfg['loop']['episodes_per_phase']} episodes x {first_cfg['loop']['horizon']} steps per phase. "
        f"Versions: " + ", ".join(f"{k} {v}" for k, v in first_meta.get("versions", {}).items() if v) + ".",
        f"Git revision {git.get('revision')} (uncommitted changes: {git.get('dirty')}).",
        "",
        f"| task | method | seed | status | protagonist steps | final {metric} | best | first step above "
        f"{threshold if threshold is not None else '-'} | mean env steps/s |",
        "|---|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        f"![curves]({png.name})",
        "",
    ]  # fmt: skip
    table = out / "curves.md"
    table.write_text("\n".join(md))
    return png, table
