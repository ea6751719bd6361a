"""``qarl reproduce``: one command per paper figure and table.

A figure is a sweep config under ``configs/sweeps/`` (whose ``reproduce`` block says which tasks, methods and seeds
each scale runs) plus a plotting function of :mod:`qarl.figures`. ``qarl reproduce FIGURE --scale S`` runs the
sweep's trials that have no completed run directory yet under ``OUT/runs`` (on the embedded local Ray, or on a
cluster with ``--address``), then draws the figure from the completed runs into ``OUT/FIGURE/``.
``qarl reproduce --list`` prints every figure with its paper, what it shows, its sweep and the estimated trial count
and CPU-hours per scale.

CPU-hour estimates use rates measured on this project's 2-core machine (one torch thread per trial): the two-player
loop with 3x256 networks runs about 120 env steps/s including its updates (``results/cartpole-small``: 200k env steps
in about 27 minutes), SB3's SAC.learn (the worst-case adversary of the evaluation) about 80 steps/s, the batched grid
evaluation about 20k control steps/s, and the smoke scale's 32x32 networks about 2,000 env steps/s. They are estimates
of compute, not of wall time on a cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qarl import figures as F

LOOP_STEPS_PER_S = {"smoke": 2000.0, "small": 120.0, "paper": 120.0}
SAC_LEARN_STEPS_PER_S = 80.0
GRID_STEPS_PER_S = 20_000.0
ONE_PLAYER_METHODS = ("sac", "domain_randomization")


@dataclass(frozen=True)
class Figure:
    """One paper figure or table: its sweep (None: no training) and its plotting function."""

    name: str
    paper: str
    shows: str
    sweep: str | None
    plot: Callable[..., list[Path]]
    plot_kwargs: dict[str, Any] = field(default_factory=dict)


QARL_PAPER = "Reddi et al., ICLR 2024 (QARL)"
RARL_PAPER = "Pinto et al., ICML 2017 (RARL)"
REAL_PAPER = "Zanette, ICML 2023 (realizability)"

FIGURES: dict[str, Figure] = {
    f.name: f
    for f in (
        Figure("qarl-table1", QARL_PAPER, "% change vs SAC of nominal return and grid mean per method", "qarl-main",
               F.table1),
        Figure("qarl-curves", QARL_PAPER, "return vs iteration with and without the adversary, per task", "qarl-main",
               F.curves),
        Figure("qarl-temperature", QARL_PAPER, "the teacher's mean alpha and kappa per iteration", "qarl-main",
               F.temperature),
        Figure("qarl-heatmaps", QARL_PAPER, "mass x friction grids per method", "qarl-heatmaps", F.heatmaps),
        Figure("qarl-sweeps", QARL_PAPER, "return vs torso mass and vs friction (1-D)", "qarl-main", F.sweeps),
        Figure("qarl-boxplots", QARL_PAPER, "final returns without the adversary and vs the worst-case adversary",
               "qarl-main", F.boxplots),
        Figure("qarl-ablation", QARL_PAPER, "QARL vs its linear, point, single and homogeneous ablations",
               "qarl-ablation", F.ablation),
        Figure("qarl-navigation", QARL_PAPER, "navigation success rate and distance to goal vs wind (1x-4x)",
               "qarl-navigation", F.navigation),
        Figure("rarl-percentile", RARL_PAPER, "sorted final nominal returns over seeds: SAC vs RARL vs QARL",
               "rarl-gym", F.percentile),
        Figure("rarl-mass-friction", RARL_PAPER, "return vs torso mass and vs friction (0.5-1.5x) and the joint grid",
               "rarl-gym", F.mass_friction),
        Figure("realizability-testbed", REAL_PAPER, "error amplification vs the incompleteness factor (finite MDPs)",
               None, F.testbed),
        Figure("realizability-critics", REAL_PAPER, "SAC critics' incompleteness ratio, Bellman residual, MC error "
               "over training: rarl vs qarl", "realizability-critics", F.critics),
    )
}  # fmt: skip


class ReproduceError(ValueError):
    """An unknown figure or scale, or a figure that cannot be drawn from the runs."""


def get_figure(name: str) -> Figure:
    if name not in FIGURES:
        import difflib

        close = difflib.get_close_matches(name, list(FIGURES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(FIGURES)}"
        raise ReproduceError(f"unknown figure {name!r}{hint}")
    return FIGURES[name]


def sweep_path(name: str) -> Path:
    from qarl.training.run import configs_dir

    return configs_dir() / "sweeps" / f"{name}.yaml"


def figure_dirs(out: str | os.PathLike, figure: Figure) -> tuple[Path, Path]:
    """(runs folder of the figure's sweep, the figure's output folder) under ``out``."""
    out = Path(out)
    return out / "runs", out / figure.name


# ----------------------------------------------------------------------------------------------------------------------
# Estimates


def trial_cpu_seconds(config: Any) -> float:
    """Estimated CPU-seconds of one trial (training, per-iteration evaluation and end-of-trial evaluation)."""
    from qarl.algorithms import get_algorithm

    loop, ev = config.loop, config.eval
    phases = len(get_algorithm(config.algorithm).phases)
    per_iteration = (phases * loop.episodes_per_phase + 2 * loop.eval_episodes) * loop.horizon
    train = loop.iterations * per_iteration / LOOP_STEPS_PER_S[config.scale]
    evaluation = 0.0
    if ev.enabled:
        cells = ev.grid_points**2 + 2 * ev.grid_points
        episodes = cells * ev.episodes_per_cell + 4 * ev.nominal_episodes
        evaluation = len(ev.policy_modes) * episodes * loop.horizon / GRID_STEPS_PER_S
        evaluation += len(ev.policy_modes) * ev.worst_case_steps / SAC_LEARN_STEPS_PER_S
    return train + evaluation
