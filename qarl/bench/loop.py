"""Benchmarks that print ratios measured side by side in one run.

``qarl bench grid``: episodes/s of the batched lock-step grid evaluation vs a naive per-episode
``model.predict`` loop on the same grid, and the fraction of the raw ``mujoco.mj_step`` rate it reaches.

``qarl bench loop``: env steps/s and seconds per gradient update of the two-player loop (the ``sac``
method: protagonist phase, adversary switched off) next to plain stable-baselines3 ``SAC.learn`` with the
same settings (networks, batch, one update per 3 env steps) on the same task. The two are run in alternating
rounds in one process with one torch thread, and the medians are compared. Both use stable-baselines3's own
gradient step (``fast_update=False``), so the ratio is the cost of the loop itself; the fast update is measured
by ``qarl bench update`` and ``qarl bench trial`` (:mod:`qarl.bench.learner`).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch as th

from qarl import provenance


def _sb3_round(task: str, steps: int, learning_starts: int, seed: int) -> tuple[float, int]:
    import envs
    from envs.views import ProtagonistView
    from qarl.sac.learner import SACConfig, make_sac

    cfg = SACConfig(learning_starts=learning_starts, fast_update=False)
    view = ProtagonistView(envs.make(task, horizon=1000))
    th.manual_seed(seed)
    model = make_sac(cfg, view.observation_space, view.action_space)
    model.set_env(view)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    return time.perf_counter() - t0, int(model._n_updates)


def _loop_round(task: str, steps: int, learning_starts: int, seed: int) -> tuple[float, int]:
    from qarl.experiment.registry import get_method
    from qarl.sac.learner import SACConfig
    from qarl.training.loop import LoopConfig

    if steps % 1000:
        raise ValueError("--steps must be a multiple of the 1000-step horizon")
    loop = LoopConfig(iterations=1, episodes_per_phase=steps // 1000, eval_episodes=0, horizon=1000)
    sac = SACConfig(learning_starts=learning_starts, fast_update=False)
    trainer_cls = get_method("sac")
    trainer = trainer_cls(task, trainer_cls.config_cls(sac), loop, seed)
    t0 = time.perf_counter()
    row = trainer.run_iteration()
    return time.perf_counter() - t0, int(row["updates_protagonist"])


def bench_loop(
    task: str = "dmc/cartpole-balance", steps: int = 6000, learning_starts: int = 1000, rounds: int = 3
) -> dict[str, Any]:
    """Alternate rounds of both paths; print and return the medians and their ratios."""
    th.set_num_threads(1)
    print(provenance.header("qarl bench loop"), flush=True)
    results: dict[str, list[tuple[float, int]]] = {"stable-baselines3 SAC.learn": [], "qarl two-player loop": []}
    for r in range(rounds):
        for name, fn in (("stable-baselines3 SAC.learn", _sb3_round), ("qarl two-player loop", _loop_round)):
            elapsed, updates = fn(task, steps, learning_starts, seed=r)
            results[name].append((elapsed, updates))
            print(f"  round {r + 1}/{rounds} {name:28s} {steps / elapsed:7.1f} env steps/s, {updates} updates, "
                  f"{1000 * elapsed / max(updates, 1):6.2f} ms per update", file=sys.stderr, flush=True)  # fmt: skip
    summary = {}
    for name, runs in results.items():
        med = statistics.median(e for e, _ in runs)
        updates = runs[0][1]
        summary[name] = {"steps_per_s": steps / med, "ms_per_update": 1000 * med / max(updates, 1), "updates": updates}
    base, ours = summary["stable-baselines3 SAC.learn"], summary["qarl two-player loop"]
    print(f"\n{task}: {steps} env steps, updates after {learning_starts}, 3x256 networks, batch 256, 1 torch thread")
    print(f"{'path':30s} {'env steps/s':>12s} {'ms/update':>10s} {'updates':>8s}")
    for name, s in summary.items():
        print(f"{name:30s} {s['steps_per_s']:12.1f} {s['ms_per_update']:10.2f} {s['updates']:8d}")
    ratio = ours["ms_per_update"] / base["ms_per_update"]
    print(f"time per update, loop / stable-baselines3: {ratio:.3f} ({(ratio - 1) * 100:+.1f}%)")
    print(f"env steps/s, loop / stable-baselines3: {ours['steps_per_s'] / base['steps_per_s']:.3f}")
    return {"summary": summary, "update_time_ratio": ratio}


__all__ = ["bench_loop"]


def _raw_control_steps_per_s(task: str, seconds: float = 1.0) -> float:
    """Control steps/s of bare ``mujoco.mj_step`` calls (substeps per control step as the game) on the same model."""
    import mujoco

    import envs

    game = envs.make(task)
    game.reset(seed=0)
    m, d = game.model, game.data
    substeps = max(1, round(game.dt / m.opt.timestep))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        mujoco.mj_step(m, d, 100 * substeps)
        n += 100
    return n / (time.perf_counter() - t0)


def _naive_grid(model: Any, game: Any, cells: list[dict[str, float]]) -> tuple[float, int]:
    """One ``model.predict`` call and one ``game.step`` per control step, episode after episode.

    Written out on purpose instead of using :func:`qarl.training.rollout.rollout`: the benchmark's reference is the
    plain loop a user would write around stable-baselines3's ``predict``.
    """
    import numpy as np

    zero = np.zeros(game.adversary_action_space.shape)
    t0, steps = time.perf_counter(), 0
    for k, cell in enumerate(cells):
        game.set_params(**cell)
        obs, _ = game.reset(seed=k)
        done = False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, _, terminated, truncated, _ = game.step(action, zero)
            done = terminated or truncated
            steps += 1
    return time.perf_counter() - t0, steps


def bench_grid(
    tasks: Sequence[str] = ("dmc/cheetah-run", "gym/HalfCheetah-v5"),
    horizon: int = 200,
    points: int = 11,
    rounds: int = 3,
) -> dict[str, Any]:
    """Batched lock-step grid evaluation vs a naive per-episode ``model.predict`` loop, same grid, one run.

    Per task, ``rounds`` alternating rounds of both paths; the medians are compared.
    """
    from qarl.evaluation.runner import EvalConfig, Evaluator
    from qarl.experiment.registry import get_method
    from qarl.training.loop import PROTAGONIST, LoopConfig

    th.set_num_threads(1)
    print(provenance.header("qarl bench grid"), flush=True)
    out = {}
    for task in tasks:
        trainer_cls = get_method("sac")
        trainer = trainer_cls(task, trainer_cls.config_cls(), LoopConfig(horizon=horizon), seed=0)  # 3x256, untrained
        cfg = EvalConfig(grid_points=points, episodes_per_cell=1, policy_modes=("deterministic",))  # default batch
        ev = Evaluator(trainer, cfg)
        x, y = ev.param_names[:2]
        cells = [{**ev.nominal, x: float(vx), y: float(vy)} for vy in ev.axis(y) for vx in ev.axis(x)]
        ev.pool.take(min(len(cells), cfg.batch_size))  # games are built once and reused: keep that out of the timing
        model = trainer.players[PROTAGONIST].model
        batched_times, naive_times = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            rows = ev._episodes("grid", "deterministic", cells, 1, False)
            batched_times.append(time.perf_counter() - t0)
            elapsed, naive_steps = _naive_grid(model, ev.pool.take(1)[0], cells)
            naive_times.append(elapsed)
        steps = sum(r["length"] for r in rows)
        batched, naive = statistics.median(batched_times), statistics.median(naive_times)
        raw = _raw_control_steps_per_s(task)
        res = {
            "episodes": len(cells),
            "batched_episodes_per_s": len(cells) / batched,
            "naive_episodes_per_s": len(cells) / naive,
            "speedup": naive / batched * steps / max(naive_steps, 1),
            "speedups_per_round": [
                n / b * steps / max(naive_steps, 1) for b, n in zip(batched_times, naive_times, strict=True)
            ],
            "batched_steps_per_s": steps / batched,
            "raw_mj_control_steps_per_s": raw,
        }
        res["fraction_of_raw"] = res["batched_steps_per_s"] / raw
        out[task] = res
        per_round = ", ".join(f"{v:.2f}x" for v in res["speedups_per_round"])
        print(
            f"{task}: {points}x{points}x1 grid, horizon {horizon}, 3x256 actor, 1 torch thread, "
            f"batches of {cfg.batch_size} games, median of {rounds} alternating rounds\n"
            f"  batched lock-step: {res['batched_episodes_per_s']:8.2f} episodes/s "
            f"({res['batched_steps_per_s']:.0f} control steps/s)\n"
            f"  naive predict loop: {res['naive_episodes_per_s']:7.2f} episodes/s\n"
            f"  speedup batched / naive: {res['speedup']:.2f}x (rounds: {per_round})\n"
            f"  raw mujoco.mj_step: {raw:.0f} control steps/s; "
            f"batched evaluation reaches {res['fraction_of_raw']:.1%} of it",
            flush=True,
        )  # fmt: skip
    return out
