"""``qarl diagnose overhead``: the cost of the neural critic diagnostics next to the training they observe.

Two trainers of the same trial (task, method, seed, scale) run side by side in one process, iteration by iteration in
alternation (so that a change of machine load hits both): one without diagnostics, one followed by a diagnostics call
after every iteration. Each trainer keeps its own numpy/torch global generator state between its turns, so both are
the deterministic run of that seed, and the benchmark checks that their progress rows agree (the diagnostics change
no training). Reported: seconds per training iteration of each, seconds per diagnostics call (split by group), and
the overhead at a diagnostics frequency K, diag / (K * train), for K = 1, the scale's ``diagnostics.every`` and 10.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from qarl import provenance
from qarl.diagnostics.neural import GROUPS, NeuralDiagnostics
from qarl.experiment.registry import get_method
from qarl.experiment.trial import resolve_config
from qarl.training.checkpoint import rng_state, set_rng_state

_TIMING = ("wall_time", "steps_per_s")


def _same_rows(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = [k for k in a if k not in _TIMING]
    return set(keys) == {k for k in b if k not in _TIMING and not k.startswith("diag/")} and all(
        a[k] == b[k] or (isinstance(a[k], float) and math.isnan(a[k]) and math.isnan(b[k])) for k in keys
    )


def bench_overhead(
    task: str = "dmc/cheetah-run",
    algo: str = "qarl",
    scale: str = "small",
    iterations: int = 2,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark, print its table through ``log`` and return the measurements."""
    log = log or (lambda msg: print(msg, flush=True))
    log(provenance.header("qarl diagnose overhead"))
    config = resolve_config(task, algo, seed, scale, {"eval": {"enabled": False}})
    every = config.diagnostics.every
    cls = get_method(algo)
    trainers, states = {}, {}
    for name in ("off", "on"):
        trainers[name] = cls(task, config.algo, config.loop, seed)  # seeds the global generators
        states[name] = rng_state()
    diagnostics = NeuralDiagnostics(trainers["on"], dataclasses.replace(config.diagnostics, enabled=True, every=1))
    log(
        f"{task} {algo} seed={seed} scale={scale}: {iterations} iterations of {config.loop.episodes_per_phase} "
        f"episodes x {config.loop.horizon} steps per phase; diagnosed players: {', '.join(diagnostics.player_names)}"
    )
    header = f"{'iteration':>9} {'train off s':>12} {'train on s':>11} {'diag s':>8}  "
    log(header + " ".join(f"{g:>14}" for g in GROUPS))
    train = {"off": [], "on": []}
    diag, groups, identical = [], [], True
    for it in range(1, iterations + 1):
        rows = {}
        for name in ("off", "on"):
            set_rng_state(states[name])
            t0 = time.perf_counter()
            rows[name] = trainers[name].run_iteration()
            train[name].append(time.perf_counter() - t0)
            states[name] = rng_state()
        diagnostics.on_iteration_end(trainers["on"].iteration)
        diag.append(diagnostics.last_seconds)
        groups.append(dict(diagnostics.last_group_seconds))
        identical = identical and _same_rows(rows["off"], rows["on"])
        log(
            f"{it:>9} {train['off'][-1]:>12.2f} {train['on'][-1]:>11.2f} {diag[-1]:>8.2f}  "
            + " ".join(f"{groups[-1][g]:>14.2f}" for g in GROUPS)
        )
    t_train, t_diag = statistics.mean(train["off"]), statistics.mean(diag)
    ks = sorted({1, every, 10})
    overhead = {k: t_diag / (k * t_train) for k in ks}
    log(
        f"mean over {iterations} iterations: train {t_train:.2f} s/iteration (off), "
        f"{statistics.mean(train['on']):.2f} (on); diagnostics {t_diag:.2f} s/call"
    )
    if iterations > 1:
        log(
            f"last iteration only: train {train['off'][-1]:.2f} s, diagnostics {diag[-1]:.2f} s, "
            f"overhead at every={every}: {100 * diag[-1] / (every * train['off'][-1]):.2f}%"
        )
    for k in ks:
        note = " (this scale's diagnostics.every)" if k == every else ""
        log(f"overhead at every={k}: {100 * overhead[k]:.2f}% of training wall time{note}")
    log(f"training rows with and without diagnostics identical: {'yes' if identical else 'NO'}")
    return {
        "train_off": train["off"],
        "train_on": train["on"],
        "diag": diag,
        "groups": groups,
        "every": every,
        "overhead": overhead,
        "identical": identical,
    }
