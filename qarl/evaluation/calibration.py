"""Adversary strength in a unit that transfers across tasks: the calibration ladder, b50 and relative bounds.

A force bound in newtons means something different on every task (2 N is twice gravity on cartpole's pole and a
breeze on the quadruped). A task's **calibration** measures it: each of a few protagonists (run directories, usually
``sac`` trained without an adversary) plays a fresh worst-case adversary, the end-of-trial evaluation's
(:meth:`qarl.evaluation.runner.Evaluator.worst_case`), at every bound of a ladder of fractions of the task's default
bound (:data:`DEFAULT_FRACTIONS`); each point is the mean return of ``episodes`` episodes.

**b50** is the bound at which the worst-case return, averaged over the protagonists, falls to half of its value at
bound 0 (the nominal return): the first ladder point at or below half, interpolated from the point before it,
linearly in log bound between two positive bounds and linearly in bound from 0 (:func:`find_b50`). When no point
falls that low, b50 is ``None``: "beyond the ladder".

The committed table ``configs/tasks/calibration.yaml`` (:data:`TABLE_FILE`) holds one entry per task, written by
``qarl calibrate TASK --write`` with the command, scale, seeds and versions that produced it. A trial config may then
give ``loop.adversary_bound`` or ``eval.worst_case_bound`` relative to it, ``{b50: 0.5}`` meaning half of the task's
b50: :func:`resolve_relative_bounds` replaces the mapping by the absolute bound before the config is validated (so
``config.yaml`` holds the bound that ran, and a later recalibration cannot change what a stored run means) and
records the request under the config's ``strength`` key.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import envs
from qarl.config import ConfigError, configs_dir, dump_yaml, load_yaml
from qarl.evaluation.runner import EvalConfig, Evaluator

DEFAULT_FRACTIONS: tuple[float, ...] = (0.0, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0)
"""The ladder: fractions of the task's default bound."""
RELATIVE_KEYS = ("b50",)
"""The units a relative bound may be given in."""
BOUND_KEYS = (("loop", "adversary_bound"), ("eval", "worst_case_bound"))
"""The config keys that accept a relative bound."""

TABLE_HEADER = """\
# Adversary strength per task: the calibration of qarl's robustness benchmark (docs/results.md, Adversary strength).
# b50: the force bound (N or N*m, every adversary dimension) at which the worst-case adversary halves the nominal
# return of the protagonists listed; null: beyond the ladder. A trial config may give loop.adversary_bound or
# eval.worst_case_bound as {b50: x}, meaning x * b50. Written by `qarl calibrate TASK --write`: do not edit by hand.
"""


def table_path() -> Path:
    """The committed calibration table, ``configs/tasks/calibration.yaml``."""
    return configs_dir() / "tasks" / "calibration.yaml"


class CalibrationError(ConfigError):
    """A calibration that cannot be computed, read or used (one line, reported without a traceback)."""


# ----------------------------------------------------------------------------------------------------------------------
# b50


def find_b50(bounds: Sequence[float], returns: Sequence[float]) -> float | None:
    """The bound at which ``returns`` (one per bound, ``bounds`` increasing from 0) first falls to half of
    ``returns[0]``; None when it never does. See the module docstring for the interpolation."""
    b, r = np.asarray(bounds, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    if b.ndim != 1 or b.shape != r.shape or len(b) < 2:
        raise CalibrationError(f"a ladder needs at least 2 bounds with one return each, got {b.shape} and {r.shape}")
    if b[0] != 0.0 or np.any(np.diff(b) <= 0):
        raise CalibrationError(f"the ladder's bounds must increase from 0, got {b.tolist()}")
    if not np.all(np.isfinite(r)):
        raise CalibrationError(f"returns must be finite, got {r.tolist()}")
    if r[0] <= 0:
        raise CalibrationError(f"the nominal return (bound 0) is {r[0]:g}: half of it is no threshold; b50 undefined")
    half = r[0] / 2
    below = np.flatnonzero(r <= half)
    if len(below) == 0:
        return None
    i = int(below[0])
    r0, r1 = r[i - 1], r[i]
    t = (r0 - half) / (r0 - r1)  # r0 > half >= r1, so 0 < t <= 1
    if b[i - 1] == 0.0:
        return float(t * b[i])
    return float(math.exp(math.log(b[i - 1]) + t * (math.log(b[i]) - math.log(b[i - 1]))))


def ladder(default_bound: float, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> list[float]:
    """The absolute bounds of ``fractions`` of ``default_bound``; the fractions must increase from 0."""
    f = [float(x) for x in fractions]
    if len(f) < 2 or f[0] != 0.0 or any(b <= a for a, b in itertools.pairwise(f)):
        raise CalibrationError(f"fractions must start at 0 and increase (at least 2), got {f}")
    if not all(math.isfinite(x) for x in f):
        raise CalibrationError(f"fractions must be finite, got {f}")
    return [x * float(default_bound) for x in f]


def summarize(points: pd.DataFrame) -> pd.DataFrame:
    """One row per ladder bound from the per-episode ``points`` (columns run_dir, fraction, bound, return): the mean
    over protagonists (run directories) of each one's mean return, their min and max, the number of protagonists and
    of episodes."""
    per_run = points.groupby(["fraction", "bound", "run_dir"], as_index=False)["return"].mean()
    out = per_run.groupby(["fraction", "bound"], as_index=False).agg(
        mean=("return", "mean"), low=("return", "min"), high=("return", "max"), protagonists=("run_dir", "nunique")
    )
    episodes = points.groupby(["fraction", "bound"])["return"].size().rename("episodes").reset_index()
    return out.merge(episodes, on=["fraction", "bound"]).sort_values("bound").reset_index(drop=True)


def protagonist_b50(points: pd.DataFrame) -> dict[str, float | None]:
    """b50 of each protagonist's (run directory's) own curve: the spread behind the mean curve's b50."""
    out: dict[str, float | None] = {}
    for run_dir, rows in points.groupby("run_dir"):
        curve = rows.groupby("bound")["return"].mean().sort_index()
        try:
            out[str(run_dir)] = find_b50(curve.index.to_numpy(), curve.to_numpy())
        except CalibrationError:
            out[str(run_dir)] = None
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Measuring


POINT_COLUMNS = ("seed", "run_dir", "fraction", "bound", "policy_mode", "worst_case_steps", "episode", "return")


@dataclass(frozen=True)
class Protagonist:
    """One protagonist to calibrate with: a trained trainer, its name (its run directory), seed and evaluation
    settings (the worst-case budget, episodes and policy modes of its scale)."""

    name: str
    seed: int
    trainer: Any
    eval: EvalConfig


def calibrate(
    protagonists: Sequence[Protagonist],
    fractions: Sequence[float],
    *,
    episodes: int | None = None,
    worst_case_steps: int | None = None,
    policy_mode: str | None = None,
    done: pd.DataFrame | None = None,
    on_point: Callable[[pd.DataFrame], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """The per-episode rows of every (protagonist, ladder bound): ``POINT_COLUMNS`` (``run_dir``: the protagonist's
    name).

    The evaluation settings (worst-case budget, episodes, policy mode) are each protagonist's own unless given. Points
    already in ``done`` (same protagonist, bound, mode and budget) are kept, not measured again; ``on_point`` receives
    all rows so far after each new point (so an interrupted calibration loses at most one point)."""
    log = log or (lambda msg: None)
    rows = [] if done is None or done.empty else [done]
    jobs, tasks = [], {p.trainer.task_id for p in protagonists}
    if len(tasks) > 1:
        raise CalibrationError(f"the protagonists play several tasks ({sorted(tasks)}): calibrate one at a time")
    bounds = ladder(float(np.max(default_bound(tasks.pop()))), fractions) if tasks else []
    for p in protagonists:
        cfg = p.eval if worst_case_steps is None else dataclasses.replace(p.eval, worst_case_steps=worst_case_steps)
        if cfg.worst_case_steps < 1:
            raise CalibrationError(f"{p.name}: the worst-case budget is 0 steps; give worst_case_steps >= 1")
        mode, n = policy_mode or cfg.policy_modes[0], episodes or cfg.nominal_episodes
        for f, b in zip(fractions, bounds, strict=True):
            jobs.append((p, dataclasses.replace(cfg, nominal_episodes=n), mode, n, float(f), b))
    settings = sorted({(j[1].worst_case_steps, j[3], j[2]) for j in jobs})
    if len(settings) > 1:  # one calibration, one budget: else its points would not be comparable
        raise CalibrationError(
            f"the protagonists' evaluation settings differ (worst-case steps, episodes, policy mode: {settings}); "
            "give worst_case_steps, episodes and policy_mode"
        )
    have = _episode_counts(done)
    todo = [j for j in jobs if have.get(_key(j[0].name, j[4], j[2], j[1].worst_case_steps), 0) != j[3]]
    t0 = time.perf_counter()
    for k, (p, cfg, mode, n, f, b) in enumerate(todo, 1):
        ep = Evaluator(p.trainer, cfg).worst_case(mode, b, episodes=n)
        frame = pd.DataFrame(
            {
                "seed": p.seed,
                "run_dir": p.name,
                "fraction": f,
                "bound": b,
                "policy_mode": mode,
                "worst_case_steps": cfg.worst_case_steps,
                "episode": [r["episode"] for r in ep],
                "return": [r["return"] for r in ep],
            }
        )
        rows.append(frame)
        elapsed = time.perf_counter() - t0
        log(
            f"[{k}/{len(todo)}] seed {p.seed}, bound {b:g} ({f:g} x default): mean return "
            f"{frame['return'].mean():.1f} over {n} episodes | {elapsed:.0f}s, ETA {elapsed / k * (len(todo) - k):.0f}s"
        )
        if on_point is not None:
            on_point(pd.concat(rows, ignore_index=True))
    if len(todo) < len(jobs):
        log(f"{len(jobs) - len(todo)} of {len(jobs)} points reused from earlier measurements")
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(POINT_COLUMNS))
    keep = {_key(j[0].name, j[4], j[2], j[1].worst_case_steps) for j in jobs}
    cols = ("run_dir", "fraction", "policy_mode", "worst_case_steps")
    return out[[_key(*k) in keep for k in zip(*(out[c] for c in cols), strict=True)]].reset_index(drop=True)


def _key(run_dir: Any, fraction: Any, mode: Any, steps: Any) -> tuple:
    """What identifies a measured point (the fraction rounded: it may come back from a CSV file)."""
    return str(run_dir), round(float(fraction), 12), str(mode), int(steps)


def _episode_counts(done: pd.DataFrame | None) -> dict[tuple, int]:
    """Episodes per measured point (:func:`_key`) in ``done``."""
    if done is None or done.empty:
        return {}
    cols = ("run_dir", "fraction", "policy_mode", "worst_case_steps")
    return dict(Counter(_key(*k) for k in zip(*(done[c] for c in cols), strict=True)))


def default_bound(task: str) -> np.ndarray:
    """The task's default adversary bound (one value per force dimension)."""
    return envs.make(task).adversary_bound


# ----------------------------------------------------------------------------------------------------------------------
# The table


def load_table(path: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The calibration table (task -> entry); empty when the file does not exist."""
    path = Path(path) if path is not None else table_path()
    if not path.exists():
        return {}
    data = load_yaml(path) or {}
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise CalibrationError(f"{path}: expected a mapping of task id to calibration entry")
    return {str(k): dict(v) for k, v in data.items()}


def write_entry(task: str, entry: Mapping[str, Any], path: str | os.PathLike | None = None) -> Path:
    """Set ``task``'s entry of the table (the other tasks' entries kept), atomically."""
    path = Path(path) if path is not None else table_path()
    table = load_table(path)
    table[task] = dict(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    dump_yaml(dict(sorted(table.items())), path, header=TABLE_HEADER)
    return path


def resolve_relative_bounds(
    data: Mapping[str, Any], table: Mapping[str, Mapping[str, Any]] | None = None, table_file: str | None = None
) -> dict[str, Any]:
    """``data`` (a trial config dict) with every relative bound of :data:`BOUND_KEYS` replaced by the absolute
    bound, and ``strength`` recording each: {key: {b50: x, task_b50: ..., bound: ..., calibrated: date}}."""
    out = dict(data)
    strength: dict[str, Any] = {}
    task = data.get("task")
    for section, key in BOUND_KEYS:
        value = (data.get(section) or {}).get(key) if isinstance(data.get(section), Mapping) else None
        if not isinstance(value, Mapping):
            continue
        where = f"{section}.{key}"
        unit, fraction = _relative(value, where)
        if table is None:
            table, table_file = load_table(), _shown(table_path())
        entry = table.get(str(task))
        if entry is None:
            raise CalibrationError(
                f"{where}: {{{unit}: {fraction:g}}} needs {task}'s calibration, which {table_file} does not have; "
                f"run `qarl calibrate {task} --write` or give an absolute bound"
            )
        b = entry.get(unit)
        if b is None:
            raise CalibrationError(
                f"{where}: {task}'s calibration has no {unit} (the worst-case return never fell to half of the nominal "
                f"on its ladder, up to {entry.get('ladder_max', '?')}): give an absolute bound"
            )
        bound = float(fraction) * float(b)
        out[section] = {**data[section], key: bound}
        strength[where] = {
            unit: fraction,
            f"task_{unit}": float(b),
            "bound": bound,
            "calibrated": entry.get("date"),
            "table": table_file,
        }
    if strength:
        out["strength"] = strength
    return out


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies in it (configs/tasks/calibration.yaml)."""
    try:
        return str(path.relative_to(configs_dir().parent))
    except ValueError:
        return str(path)


def _relative(value: Mapping[str, Any], where: str) -> tuple[str, float]:
    keys = list(value)
    if len(keys) != 1 or keys[0] not in RELATIVE_KEYS:
        raise CalibrationError(f"{where}: a relative bound is {{b50: FRACTION}}, got {dict(value)!r}")
    x = value[keys[0]]
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x <= 0:
        raise CalibrationError(f"{where}: {keys[0]} must be a number > 0, got {x!r}")
    return keys[0], float(x)


__all__ = [
    "DEFAULT_FRACTIONS",
    "CalibrationError",
    "Protagonist",
    "calibrate",
    "default_bound",
    "find_b50",
    "ladder",
    "load_table",
    "protagonist_b50",
    "resolve_relative_bounds",
    "summarize",
    "table_path",
    "write_entry",
]
