"""Benchmarks that print ratios measured side by side in one run.

``qarl bench loop``: env steps/s and seconds per gradient update of the two-player loop (the ``sac``
method: protagonist phase, adversary switched off) next to plain stable-baselines3 ``SAC.learn`` with the
same settings (networks, batch, one update per 3 env steps) on the same task. The two are run in alternating
rounds in one process with one torch thread, and the medians are compared.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import torch as th


def _sb3_round(task: str, steps: int, learning_starts: int, seed: int) -> tuple[float, int]:
    from stable_baselines3.common.logger import Logger

    import envs
    from envs.views import ProtagonistView
    from qarl.training.sac import SACConfig, make_sac

    cfg = SACConfig(learning_starts=learning_starts)
    view = ProtagonistView(envs.make(task, horizon=1000))
    th.manual_seed(seed)
    model = make_sac(cfg, view.observation_space, view.action_space)
    model.set_env(view)
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    elapsed = time.perf_counter() - t0
    model.set_logger(Logger(folder=None, output_formats=[]))
    return elapsed, int(model._n_updates)


def _loop_round(task: str, steps: int, learning_starts: int, seed: int) -> tuple[float, int]:
    from baselines.sac import SACMethodConfig, SACTrainer
    from qarl.training.loop import LoopConfig
    from qarl.training.sac import SACConfig

    if steps % 1000:
        raise ValueError("--steps must be a multiple of the 1000-step horizon")
    loop = LoopConfig(iterations=1, episodes_per_phase=steps // 1000, eval_episodes=0, horizon=1000)
    trainer = SACTrainer(task, SACMethodConfig(SACConfig(learning_starts=learning_starts)), loop, seed)
    t0 = time.perf_counter()
    row = trainer.run_iteration()
    return time.perf_counter() - t0, int(row["updates_protagonist"])


def bench_loop(
    task: str = "dmc/cartpole-balance", steps: int = 6000, learning_starts: int = 1000, rounds: int = 3
) -> dict[str, Any]:
    """Alternate rounds of both paths; print and return the medians and their ratios."""
    th.set_num_threads(1)
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
