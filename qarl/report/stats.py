"""Aggregate statistics of the reports, all from rliable (Agarwal et al., "Deep RL at the edge of the statistical
precipice", NeurIPS 2021): the one convention of the leaderboard, Table 1, the learning curves and the verdicts.

Scores are matrices of shape ``(runs, tasks)`` (``(runs, tasks, points)`` for curves), one row per seed:

* :func:`iqm`: the interquartile mean over every run and task (``rliable.metrics.aggregate_iqm``);
* :func:`iqm_interval`, :func:`iqm_curve`: the IQM with its 95% percentile interval from rliable's stratified bootstrap
  (``rliable.library.get_interval_estimates``: within every task the runs are drawn with replacement);
* :func:`poi_interval`: the probability of improvement of X over Y (``rliable.metrics.probability_of_improvement``:
  per task the Mann-Whitney statistic over the pairs of runs, averaged over tasks) with its interval from rliable's
  stratified independent bootstrap (X's and Y's runs drawn independently within every task);
* :func:`performance_profile`: the fraction of runs whose score exceeds each threshold, with intervals
  (``rliable.library.create_performance_profile``);
* :func:`normalise`: scores put on one scale across tasks by the fixed reference scores of
  ``configs/tasks/reference_scores.yaml`` (never by the methods present, so adding a method reorders nothing).

Below :data:`MIN_SEEDS` runs of a method on a task an interval is not given and the method is not ranked: with fewer
runs a bootstrap interval says more about the resampling than about the method ("too few seeds to rank").

rliable draws its bootstrap indices from NumPy's global generator (``np.random.choice``) whatever ``random_state`` it
is given, so every function here seeds that generator with ``seed`` for the call and restores its state after:
the same inputs and seed give the same interval, in any order of calls.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qarl.config import ConfigError, configs_dir, load_yaml

__all__ = [
    "CONFIDENCE",
    "MIN_SEEDS",
    "TOO_FEW",
    "ReferenceScores",
    "StatsError",
    "enough_seeds",
    "iqm",
    "iqm_curve",
    "iqm_interval",
    "load_reference_scores",
    "normalise",
    "performance_profile",
    "poi_interval",
    "rliable_modules",
]

CONFIDENCE = 0.95
MIN_SEEDS = 5
"""Runs of a method on a task below which no interval is given and the method is not ranked."""
TOO_FEW = "too few seeds to rank"


class StatsError(ValueError):
    """Scores that cannot be aggregated as asked (the message says why)."""


# ----------------------------------------------------------------------------------------------------------------------
# rliable


@functools.cache
def rliable_modules() -> tuple[Any, Any]:
    """``(rliable.library, rliable.metrics)``.

    rliable 1.2 needs arch < 8, and arch 7 calls pandas' ``deprecate_kwarg(old, new)``, which pandas 3 changed to
    ``deprecate_kwarg(warning_class, old, new)``; the call fails at import. While rliable (and arch with it) is
    imported, that decorator is wrapped to accept the old form, then restored; nothing else is changed.
    """
    try:
        import pandas.util._decorators as decorators
    except ImportError:  # pragma: no cover - pandas is a dependency
        decorators = None
    original = getattr(decorators, "deprecate_kwarg", None)
    patched = False
    if original is not None and next(iter(inspect.signature(original).parameters), "") == "klass":

        def deprecate_kwarg(*args: Any, **kwargs: Any) -> Any:
            if args and isinstance(args[0], str):  # the pandas < 3 form (old_arg_name, new_arg_name, ...)
                return original(FutureWarning, *args, **kwargs)
            return original(*args, **kwargs)

        decorators.deprecate_kwarg = deprecate_kwarg
        patched = True
    try:
        from rliable import library, metrics
    except ImportError as e:
        raise StatsError(f"the report statistics need rliable (pip install 'rliable==1.2.0'): {e}") from None
    finally:
        if patched:
            decorators.deprecate_kwarg = original
    return library, metrics


@contextlib.contextmanager
def _global_seed(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded with ``seed`` inside, its state restored after (see the module docstring)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch's notice about its own random_state argument
            yield
    finally:
        np.random.set_state(state)


def _matrix(scores: Any, what: str = "scores") -> np.ndarray:
    """A float matrix (runs, tasks, ...) from an array; a 1-D array is one task's runs."""
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim < 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise StatsError(f"{what} must be a non-empty (runs, tasks) matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise StatsError(f"{what} hold non-finite values; leave a missing score out rather than passing NaN")
    return x


def enough_seeds(*counts: int) -> bool:
    """Whether every count of runs reaches :data:`MIN_SEEDS`."""
    return all(int(c) >= MIN_SEEDS for c in counts)


def iqm(scores: Any) -> float:
    """The interquartile mean over all runs and tasks (``rliable.metrics.aggregate_iqm``)."""
    _, metrics = rliable_modules()
    return float(metrics.aggregate_iqm(_matrix(scores)))


def iqm_interval(scores: Any, reps: int = 2000, seed: int = 0, min_runs: int = MIN_SEEDS) -> tuple[float, float, float]:
    """(IQM, low, high): the IQM of ``scores`` (runs, tasks) and its 95% stratified bootstrap interval; the bounds
    are NaN with fewer than ``min_runs`` runs."""
    library, metrics = rliable_modules()
    x = _matrix(scores)
    point = float(metrics.aggregate_iqm(x))
    if x.shape[0] < max(2, min_runs):
        return point, math.nan, math.nan
    with _global_seed(seed):
        _, intervals = library.get_interval_estimates(
            {"x": x}, lambda s: np.array([metrics.aggregate_iqm(s)]), reps=reps, confidence_interval_size=CONFIDENCE
        )
    low, high = intervals["x"][:, 0]
    return point, float(low), float(high)


def iqm_curve(
    scores: Any, reps: int = 2000, seed: int = 0, min_runs: int = MIN_SEEDS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IQM, low, high) per point of ``scores`` (runs, tasks, points), e.g. per iteration of a learning curve, as in
    rliable's sample-efficiency curves; NaN bounds with fewer than ``min_runs`` runs."""
    library, metrics = rliable_modules()
    x = np.asarray(scores, dtype=float)
    if x.ndim == 2:
        x = x[:, None, :]
    if x.ndim != 3 or 0 in x.shape:
        raise StatsError(f"curve scores must be a non-empty (runs, tasks, points) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise StatsError("curve scores hold non-finite values")

    def per_point(s: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(s[..., t]) for t in range(s.shape[-1])])

    point = per_point(x)
    if x.shape[0] < max(2, min_runs):
        nan = np.full_like(point, np.nan)
        return point, nan, nan.copy()
    with _global_seed(seed):
        _, intervals = library.get_interval_estimates(
            {"x": x}, per_point, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return point, intervals["x"][0], intervals["x"][1]


def poi_interval(
    x: Any, y: Any, reps: int = 2000, seed: int = 0, min_runs: int = MIN_SEEDS
) -> tuple[float, float, float]:
    """(P, low, high): the probability of improvement of X over Y (``scores_x`` and ``scores_y``, (runs, tasks)
    with the same tasks in the same order) and its 95% stratified independent bootstrap interval; NaN bounds when
    either has fewer than ``min_runs`` runs."""
    library, metrics = rliable_modules()
    sx, sy = _matrix(x, "scores of X"), _matrix(y, "scores of Y")
    if sx.shape[1] != sy.shape[1]:
        raise StatsError(f"X has scores on {sx.shape[1]} tasks and Y on {sy.shape[1]}: the tasks must be the same")
    point = float(metrics.probability_of_improvement(sx, sy))
    if min(sx.shape[0], sy.shape[0]) < max(2, min_runs):
        return point, math.nan, math.nan
    with _global_seed(seed):
        _, intervals = library.get_interval_estimates(
            {"xy": (sx, sy)},
            lambda a, b: np.array([metrics.probability_of_improvement(a, b)]),
            reps=reps,
            confidence_interval_size=CONFIDENCE,
        )
    low, high = intervals["xy"][:, 0]
    return point, float(low), float(high)


def performance_profile(
    score_dict: Mapping[str, Any], taus: Sequence[float], reps: int = 2000, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per method: (fraction of runs with score > tau for each tau, low, high), rliable's score-distribution
    profile with its stratified bootstrap interval."""
    library, _ = rliable_modules()
    matrices = {k: _matrix(v, f"scores of {k}") for k, v in score_dict.items()}
    taus = np.asarray(taus, dtype=float)
    with _global_seed(seed):
        profiles, intervals = library.create_performance_profile(
            matrices, taus, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return {k: (np.asarray(profiles[k]), intervals[k][0], intervals[k][1]) for k in matrices}


# ----------------------------------------------------------------------------------------------------------------------
# Reference scores


class ReferenceScores:
    """The fixed reference scores of ``configs/tasks/reference_scores.yaml``: per task a ``low`` and a ``high``
    return per 1000 steps, scaled to the runs' horizon (a task id may be matched by a ``family/*`` entry)."""

    def __init__(self, table: Mapping[str, Mapping[str, Any]], path: str = "") -> None:
        self.path = path
        self.entries: dict[str, tuple[float, float, str]] = {}
        for task, entry in table.items():
            try:
                low, high = float(entry["low"]), float(entry["high"])
            except (KeyError, TypeError, ValueError):
                raise ConfigError(f"{path or 'reference scores'}: {task} needs numbers low and high") from None
            if not high > low:
                raise ConfigError(f"{path or 'reference scores'}: {task} has high {high} not above low {low}")
            self.entries[str(task)] = (low, high, str(entry.get("source", "")))

    def entry(self, task: str) -> tuple[float, float, str] | None:
        """(low, high, source) per 1000 steps for ``task``, or None when the table has none."""
        if task in self.entries:
            return self.entries[task]
        family = task.split("/", 1)[0]
        return self.entries.get(f"{family}/*")

    def range(self, task: str, horizon: int) -> tuple[float, float] | None:
        """(low, high) of one episode of ``horizon`` steps, or None when the table has no entry for ``task``."""
        e = self.entry(task)
        if e is None:
            return None
        return e[0] * horizon / 1000.0, e[1] * horizon / 1000.0


def reference_scores_file() -> Path:
    return configs_dir() / "tasks" / "reference_scores.yaml"


@functools.cache
def _load_reference_scores(path: str) -> ReferenceScores:
    table = load_yaml(path)
    if not isinstance(table, Mapping):
        raise ConfigError(f"{path}: expected a mapping of task id to {{low, high, source}}")
    return ReferenceScores(table, path)


def load_reference_scores(path: str | Path | None = None) -> ReferenceScores:
    """The reference-score table (default: the committed ``configs/tasks/reference_scores.yaml``)."""
    return _load_reference_scores(str(path or reference_scores_file()))


def normalise(returns: Any, task: str, horizon: int, reference: ReferenceScores | None = None) -> np.ndarray | None:
    """``(return - low) / (high - low)`` with the task's reference range for episodes of ``horizon`` steps; None
    when the table has no entry for the task (the caller leaves the task out of cross-task aggregates)."""
    reference = reference or load_reference_scores()
    bounds = reference.range(task, horizon)
    if bounds is None:
        return None
    low, high = bounds
    return (np.asarray(returns, dtype=float) - low) / (high - low)
