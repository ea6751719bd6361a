"""``qarl reproduce``: one command per paper figure and table.

A figure is a sweep config under ``configs/sweeps/`` (whose ``reproduce`` block says which tasks, methods and seeds
each scale runs) plus a plotting function of :mod:`qarl.report.figures`. ``qarl reproduce FIGURE --scale S`` runs the
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

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qarl.config import SCALES
from qarl.experiment import rundir
from qarl.report import figures as F
from qarl.report import verdicts as V

# Cost model of the estimates (one CPU core; measured on this project's 2-core machine, results/benchmarks/):
LOOP_STEP_S = 0.55e-3
"""Seconds per env step of the two-player loop without gradient steps (dm_control's cheetah: 0.54 ms)."""
UPDATE_GFLOPS = 150.0
"""Matmul rate of the fast SAC update (GFLOP/s), and ..."""
UPDATE_OVERHEAD_S = 0.6e-3
"""... its fixed cost per update: 3x256 at batch 256 takes 8.0 ms, 64x64 at batch 128 0.76 ms."""
GRID_STEPS_PER_S = 20_000.0
"""Env steps/s of the batched evaluation (grid, sweeps, disturbances)."""


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
SUITE = "this suite (robust-RL claims)"

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
        Figure("robust-small", SUITE, "claims at a calibrated strength (0.5 b50): probability of improvement and "
               "verdict per claim and score", "robust-small", V.write_verdicts),
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
    from qarl.config import configs_dir

    return configs_dir() / "sweeps" / f"{name}.yaml"


def figure_dirs(out: str | os.PathLike, figure: Figure) -> tuple[Path, Path]:
    """(runs folder of the figure's sweep, the figure's output folder) under ``out``."""
    out = Path(out)
    return out / "runs", out / figure.name


# ----------------------------------------------------------------------------------------------------------------------
# Estimates


def _update_seconds(player: Any) -> float:
    """Estimated seconds of one gradient step of a SAC learner (HalfCheetah-sized observation and action)."""
    from qarl.sac.flops import sac_update_flops

    flops = sac_update_flops(17, 6, tuple(player.net_arch), player.batch_size)["required"]
    return flops / (UPDATE_GFLOPS * 1e9) + UPDATE_OVERHEAD_S


def trial_cpu_seconds(config: Any) -> float:
    """Estimated CPU-seconds of one trial: training, per-iteration evaluation, end-of-trial evaluation.

    An upper bound in one respect: every episode is taken to run its full horizon (early terminations, e.g. a
    falling pendulum, make real trials shorter). Training steps cost ``LOOP_STEP_S`` plus, every ``train_every``
    steps, one gradient step of the learning player's size (``_update_seconds``).
    """
    from qarl.experiment.registry import get_method
    from qarl.sac.learner import SACConfig

    loop, ev = config.loop, config.eval
    default = getattr(config.algo, "protagonist", None)
    default = default if isinstance(default, SACConfig) else SACConfig()
    train_steps = loop.iterations * loop.episodes_per_phase * loop.horizon  # per phase
    train = 0.0
    for phase in get_method(config.method).phases:
        player = getattr(config.algo, phase, None)
        player = player if isinstance(player, SACConfig) else default  # the phase's learner (else the protagonist's)
        train += train_steps * (LOOP_STEP_S + _update_seconds(player) / player.train_every)
    train += loop.iterations * 2 * loop.eval_episodes * loop.horizon * LOOP_STEP_S
    evaluation = 0.0
    if ev.enabled:
        cells = ev.grid_points**2 + 2 * ev.grid_points
        episodes = cells * ev.episodes_per_cell + 4 * ev.nominal_episodes
        evaluation = len(ev.policy_modes) * episodes * loop.horizon / GRID_STEPS_PER_S
        worst_case = ev.worst_case_steps * (LOOP_STEP_S + _update_seconds(default) / default.train_every)
        evaluation += len(ev.policy_modes) * worst_case
    return train + evaluation


# ----------------------------------------------------------------------------------------------------------------------
# Sweeps of the figures

_SELECTION_KEYS = ("tasks", "methods", "seeds", "overrides", "method_overrides")


def figure_sweep_data(figure: Figure, scale: str) -> dict[str, Any]:
    """The figure's sweep file as a mapping, with the ``reproduce`` selection of ``scale`` applied (paper: as written).

    A selection may replace ``tasks``, ``methods`` and ``seeds`` and add ``overrides`` and ``method_overrides``
    (merged over the file's; e.g. a task-specific budget at small scale).
    """
    from qarl.config import ConfigError, load_yaml, merge

    if scale not in SCALES:
        raise ReproduceError(f"unknown scale {scale!r}; expected one of {list(SCALES)}")
    if figure.sweep is None:
        raise ReproduceError(f"{figure.name} trains nothing (it has no sweep)")
    path = sweep_path(figure.sweep)
    data = dict(load_yaml(path))
    selections = data.get("reproduce") or {}
    if scale != "paper":
        chosen = selections.get(scale)
        if chosen is None:
            raise ReproduceError(f"{path}: reproduce.{scale}: missing (what the {scale} scale runs of this sweep)")
        unknown = sorted(set(chosen) - set(_SELECTION_KEYS))
        if unknown:
            raise ConfigError(f"{path}: reproduce.{scale}.{unknown[0]}: unknown key; allowed: {list(_SELECTION_KEYS)}")
        for key in ("tasks", "methods", "seeds"):
            if key in chosen:
                data[key] = chosen[key]
        for key in ("overrides", "method_overrides"):
            if chosen.get(key):
                data[key] = merge(data.get(key) or {}, chosen[key])
    data["scale"] = scale
    return data


def plan_figure(
    figure: Figure, scale: str, out: str | os.PathLike, learner: str = "default"
) -> tuple[Any, list[Any]]:
    """(SweepConfig, planned trials) of the figure at ``scale`` with run directories under ``out/<scale>/runs``;
    a ``learner`` preset other than default is set for every trial and appended to the sweep's name, so that its
    runs have a folder of their own."""
    from qarl.config import ConfigError
    from qarl.sweep.config import parse_sweep, plan_trials

    data = figure_sweep_data(figure, scale)
    data["storage"] = str(Path(out) / scale / "runs")
    if learner != "default":
        data["learner"] = learner
        data["name"] = f"{data['name']}-{learner}"
    path = sweep_path(figure.sweep or "")
    try:
        sweep = parse_sweep(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return sweep, plan_trials(sweep, path)


def estimate(figure: Figure, scale: str) -> tuple[int, float]:
    """(trial count, estimated CPU-hours) of the figure's sweep at ``scale`` (0 trials: no training)."""
    if figure.sweep is None:
        return 0, 0.0
    return _estimate(figure.sweep, scale)


@functools.cache
def _estimate(sweep: str, scale: str) -> tuple[int, float]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _, trials = plan_figure(next(f for f in FIGURES.values() if f.sweep == sweep), scale, tmp)
    return len(trials), sum(trial_cpu_seconds(t.config) for t in trials) / 3600


def list_figures() -> str:
    """The ``--list`` table: figure, paper, what it shows, sweep, and trials / CPU-hours per scale."""
    header = ["figure", "paper", "shows", "sweep", *[f"{s}: trials, CPU-h" for s in SCALES]]
    rows = []
    for f in FIGURES.values():
        cells = []
        for scale in SCALES:
            try:
                n, hours = estimate(f, scale)
            except ValueError:  # e.g. a relative bound without a calibration entry: list the others
                cells.append(f"cannot plan (`qarl reproduce {f.name} --scale {scale}` says why)")
                continue
            cells.append(f"{n}, {hours:.3g}" if n else "no training")
        rows.append([f.name, f.paper, f.shows, f"configs/sweeps/{f.sweep}.yaml" if f.sweep else "-", *cells])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def reproduce(
    name: str,
    scale: str,
    out: str | os.PathLike = "reproduced",
    *,
    address: str | None = None,
    log: Callable[[str], None] = print,
    command: Sequence[str] | None = None,
    learner: str = "default",
) -> list[Path]:
    """Run the trials of the figure's sweep that have no completed run yet, then draw the figure; returns its files.

    Complete runs under ``out/<scale>/runs`` are reused (a run whose recorded config differs from the planned one is
    an error, never silently mixed in); the figure goes to ``out/<scale>/<figure>/`` (with a ``learner`` preset
    other than default: ``out/<scale>/<figure>-<learner>/``, from runs of the sweep ``<name>-<learner>``).
    """
    from qarl.sweep.launch import preflight, run_sweep

    figure = get_figure(name)
    target = Path(out) / scale / (figure.name if learner == "default" else f"{figure.name}-{learner}")
    if figure.sweep is None:
        if learner != "default":
            raise ReproduceError(f"{figure.name} trains nothing: --learner does not apply to it")
        if scale not in SCALES:
            raise ReproduceError(f"unknown scale {scale!r}; expected one of {list(SCALES)}")
        files = figure.plot(target, scale=scale)
        log(f"{figure.name}: wrote " + ", ".join(str(p) for p in files))
        return files
    sweep, trials = plan_figure(figure, scale, out, learner)
    states = preflight(sweep, trials, resume=True)
    todo = sum(s != "completed" for s in states.values())
    if todo:
        log(f"{figure.name} ({scale}): {todo} of {len(trials)} trials to run -> {Path(out) / scale / 'runs'}")
        summary = run_sweep(sweep, trials, address=address, resume=True, out=log, command=command)
        if summary["interrupted_by"]:  # nothing drawn from a sweep cut short; the same command continues it
            raise KeyboardInterrupt(summary["interrupted_by"])
        if summary["failed"]:
            log(f"{len(summary['failed'])} trial(s) did not complete; the figure leaves them out and lists them")
    else:
        log(f"{figure.name} ({scale}): all {len(trials)} trials completed earlier; drawing")
    missing = [t for t in trials if not (t.run_dir / rundir.META_FILE).exists()]
    for t in missing:
        log(f"  not started: {t.label} ({t.run_dir})")
    runs = F.load_runs([t.run_dir for t in trials if t not in missing])
    files = figure.plot(runs, target, **figure.plot_kwargs)
    log(f"{figure.name}: wrote " + ", ".join(str(p) for p in files))
    return files
