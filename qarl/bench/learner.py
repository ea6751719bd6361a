"""Benchmarks of the SAC learners against the machine's matmul limit and against stable-baselines3 (issue 10).

``qarl bench update``: on one core (``torch.set_num_threads(1)``) and in one process, alternating rounds of

- the machine's fp32 matmul throughput on 256 x 256 x 256 products (GFLOP/s) with torch's own matmul (``torch.mm``,
  MKL's sgemm on x86) and with oneDNN's linear op (which the fast update uses where available): the faster of the
  two is the limit (on this project's AMD machine MKL reaches about 112 GFLOP/s, oneDNN about 235);
- updates/s of stable-baselines3's ``SAC.train`` at the QARL settings (``QSAC`` with ``fast_update=False``, whose
  ``train`` is ``SAC.train``; the subclass only keeps the actor at lr 1e-4 and critic/temperature at 3e-4);
- updates/s of the suite's learner (``QSAC`` with the default ``fast_update=True``, :mod:`qarl.sac.fast`);
- where sbx-rl is installed (``pip install -e ".[bench]"``), updates/s of its JAX SAC at the same settings (3x256
  actor and twin critics, batch 256, actor lr 1e-4, critic lr 3e-4, learned temperature from 0.005), driven as the
  two-player loop drives a learner (one ``train`` call per update) and with 64 jitted updates per call; XLA is
  held to one thread (``XLA_FLAGS``, set before JAX loads unless already set), as torch is;

then prints, per learner, the FLOP of one update, GFLOP/s, the fraction of the limit and the ratio to SB3, and
finally the time of the fast update's matmul calls alone (:func:`record_matmuls` records them during one step with
their operands; :func:`replay_seconds` replays them in order with nothing between them): the fraction of the limit
the update could reach if all its other work (element-wise operations, Adam, sampling, Python) took no time.

FLOP of one update come from :func:`qarl.sac.flops.sac_update_flops` (the analytic count, documented there).

``qarl bench trial``: env steps/s of a short QARL trial (one iteration of the two-player loop, both players learning
in their phases) with the default learner vs the stable-baselines3 path, same task and seed, alternating rounds; the
time inside ``Player.update`` is measured separately, which gives the projected wall time of a paper-scale QARL
trial (200 iterations x 10 episodes x 1000 steps, one update per 3 own-phase steps after 3,000 transitions,
2 + 2 evaluation episodes per iteration) next to the 5.8 hours of the authors' implementation.
"""

from __future__ import annotations

import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from qarl import provenance
from qarl.sac.flops import sac_update_flops

AUTHORS_HOURS = 5.8
"""Wall time of one paper-scale QARL trial with the authors' implementation on this kind of machine (issue 10)."""


MATMUL_KERNELS = ("torch.mm", "oneDNN")


def matmul_gflops(seconds: float = 0.5, size: int = 256, kernel: str = "torch.mm") -> float:
    """fp32 GFLOP/s of ``size``^3 matmuls on the current torch threads.

    ``kernel``: "torch.mm" (torch's own fp32 matmul, MKL's sgemm in the x86 builds; into a preallocated output) or
    "oneDNN" (the fp32 linear op the fast update uses, :func:`qarl.sac.fast.onednn_linear`; NaN where this
    torch build has none).
    """
    from qarl.sac.fast import onednn_linear

    a, b, c = th.randn(size, size), th.randn(size, size), th.empty(size, size)
    if kernel == "torch.mm":

        def product() -> None:
            th.mm(a, b, out=c)
    elif kernel == "oneDNN":
        linear = onednn_linear()
        if linear is None:
            return math.nan

        def product() -> None:
            linear(a, b, None, "none", [], "")
    else:
        raise ValueError(f"kernel must be one of {list(MATMUL_KERNELS)}, got {kernel!r}")
    for _ in range(10):
        product()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            product()
        n += 20
    return 2 * size**3 * n / (time.perf_counter() - t0) / 1e9


def _matmul_ops() -> dict[Any, Callable[..., int]]:
    """The matmul kernels an update may call, each with its FLOP (2 per multiply-add) from its operands."""
    aten = th.ops.aten

    def mm(a: th.Tensor, b: th.Tensor) -> int:
        return 2 * a.shape[0] * a.shape[1] * b.shape[1]

    def bmm(a: th.Tensor, b: th.Tensor) -> int:
        return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]

    ops: dict[Any, Callable[..., int]] = {}
    for op in (aten.mm.default, aten.mm.out):
        ops[op] = lambda a, b, *_, **__: mm(a, b)
    for op in (aten.addmm.default, aten.addmm.out):
        ops[op] = lambda bias, a, b, *_, **__: mm(a, b)
    for op in (aten.bmm.default, aten.bmm.out):
        ops[op] = lambda a, b, *_, **__: bmm(a, b)
    for op in (aten.baddbmm.default, aten.baddbmm.out):
        ops[op] = lambda bias, a, b, *_, **__: bmm(a, b)
    if hasattr(th.ops.mkldnn, "_linear_pointwise"):  # x @ w.T (+ bias, activation)
        ops[th.ops.mkldnn._linear_pointwise.default] = lambda x, w, *_, **__: 2 * x.shape[0] * x.shape[1] * w.shape[0]
    return ops


def record_matmuls(step: Callable[[], Any]) -> list[tuple[Any, tuple, dict, int]]:
    """The matmul calls of one ``step()`` in order: (op, args, kwargs, FLOP), the step's own tensors as arguments."""
    from torch.utils._python_dispatch import TorchDispatchMode

    ops = _matmul_ops()
    calls: list[tuple[Any, tuple, dict, int]] = []

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            if func in ops:
                calls.append((func, args, kwargs, ops[func](*args, **kwargs)))
            return func(*args, **kwargs)

    with Recorder():
        step()
    return calls


def replay_seconds(calls: Sequence[tuple[Any, tuple, dict, int]], repeats: int = 20) -> float:
    """Seconds of one in-order replay of recorded matmul calls (nothing else runs between them); best of 3 timings."""
    with th.no_grad():
        for op, args, kwargs, _ in calls:  # warm-up
            op(*args, **kwargs)
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(repeats):
                for op, args, kwargs, _ in calls:
                    op(*args, **kwargs)
            best = min(best, (time.perf_counter() - t0) / repeats)
    return best


def _fill_replay(buf: Any, obs_dim: int, act_dim: int, transitions: int, seed: int) -> None:
    """``transitions`` random transitions in a stable-baselines3 replay buffer (one environment)."""
    rng = np.random.default_rng(seed)
    buf.observations[:transitions, 0] = rng.normal(size=(transitions, obs_dim))
    buf.next_observations[:transitions, 0] = rng.normal(size=(transitions, obs_dim))
    buf.actions[:transitions, 0] = rng.uniform(-1, 1, size=(transitions, act_dim))
    buf.rewards[:transitions, 0] = rng.normal(size=transitions)
    buf.dones[:transitions, 0] = rng.random(transitions) < 0.01
    buf.pos = transitions


def _learner(fast: bool, obs_dim: int, act_dim: int, transitions: int, seed: int, device: str = "cpu") -> Any:
    """A QSAC at the QARL settings with a replay buffer of random transitions."""
    from gymnasium import spaces

    from qarl.sac.learner import SACConfig, make_sac

    th.manual_seed(seed)
    obs_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    act_space = spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
    model = make_sac(SACConfig(fast_update=fast), obs_space, act_space, device=device)
    _fill_replay(model.replay_buffer, obs_dim, act_dim, transitions, seed)
    return model


SBX_PER_CALL = 64
"""Updates per ``train`` call of the second sbx-rl row (a jitted scan over them)."""
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def sbx_available() -> bool:
    """Whether sbx-rl (and so JAX) is installed."""
    import importlib.util

    return importlib.util.find_spec("sbx") is not None


def _sbx_learner(obs_dim: int, act_dim: int, transitions: int, seed: int) -> Any:
    """sbx-rl's SAC at the QARL settings with a replay buffer of the same kind of random transitions."""
    import os

    os.environ.setdefault("XLA_FLAGS", XLA_ONE_THREAD)  # read once, when JAX loads
    import gymnasium as gym
    from sbx import SAC

    class Spaces(gym.Env):  # the spaces only: the benchmark never steps it
        observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)

    model = SAC("MlpPolicy", Spaces(), learning_rate=1e-4, qf_learning_rate=3e-4, batch_size=256,
                buffer_size=max(transitions, 10_000), learning_starts=0, ent_coef="auto_0.005",
                policy_kwargs={"net_arch": [256, 256, 256]}, seed=seed, device="cpu")  # fmt: skip
    _fill_replay(model.replay_buffer, obs_dim, act_dim, transitions, seed)
    model._logger = _null_logger()
    return model


def _null_logger() -> Any:
    from stable_baselines3.common.logger import Logger

    return Logger(folder=None, output_formats=[])


def _kernel_text(model: Any, batch_size: int) -> tuple[str, str | None]:
    """The fast update's matmul kernel in words (chosen by measurement, with its timings, or forced), and its name."""
    from qarl.sac import fast as fast_sac

    kernel = getattr(model, "matmul_kernel", None)
    if kernel is None:
        return "fast update's matmul kernel: none chosen (the fast update did not run)", None
    forced = fast_sac.kernel_override()
    if forced is not None:
        return f"fast update's matmul kernel: {kernel} (forced by QARL_ONEDNN={os.environ.get('QARL_ONEDNN')})", kernel
    key = (tuple(fast_sac.critic_shapes(model)), batch_size, len(model.critic.q_networks))
    timings = fast_sac.kernel_timings.get(key)
    if not timings:
        return f"fast update's matmul kernel: {kernel} (oneDNN unavailable here)", kernel
    measured = ", ".join(f"{k} {1000 * t:.2f} ms" for k, t in sorted(timings.items(), key=lambda kv: kv[1]))
    return f"fast update's matmul kernel: {kernel}, chosen by measurement (critic forward+backward: {measured})", kernel


def _updates_per_s(model: Any, updates: int, batch_size: int, per_call: int = 1) -> float:
    t0 = time.perf_counter()
    for _ in range(max(1, updates // per_call)):  # per_call 1: one gradient step per call, as the loop drives it
        model.train(gradient_steps=per_call, batch_size=batch_size)
    return max(1, updates // per_call) * per_call / (time.perf_counter() - t0)


def bench_update(rounds: int = 5, updates: int = 60, seed: int = 0) -> dict[str, Any]:
    """Alternating rounds of the matmul limit, SB3's update and the suite's update; print and return the medians."""
    th.set_num_threads(1)
    print(provenance.header("qarl bench update"), flush=True)
    obs_dim, act_dim, net_arch, batch = 17, 6, (256, 256, 256), 256
    flops = sac_update_flops(obs_dim, act_dim, net_arch, batch)
    learners = {
        "stable-baselines3 SAC.train": _learner(False, obs_dim, act_dim, 10_000, seed),
        "qarl fast update": _learner(True, obs_dim, act_dim, 10_000, seed),
    }
    per_call = {name: 1 for name in learners}
    if sbx_available():
        sbx = _sbx_learner(obs_dim, act_dim, 10_000, seed)
        learners["sbx-rl SAC (JAX), 1 per call"] = sbx
        learners[f"sbx-rl SAC (JAX), {SBX_PER_CALL} per call"] = sbx
        per_call["sbx-rl SAC (JAX), 1 per call"] = 1
        per_call[f"sbx-rl SAC (JAX), {SBX_PER_CALL} per call"] = SBX_PER_CALL
    else:
        print("sbx-rl is not installed (pip install -e \".[bench]\"): its rows are left out", file=sys.stderr)
    for name, model in learners.items():  # warm-up: allocations, the fast path's layout, JAX's compilation
        _updates_per_s(model, 5 * per_call[name], batch, per_call[name])
    kernels = [f"matmul {k}" for k in MATMUL_KERNELS]
    runs: dict[str, list[float]] = {**{k: [] for k in kernels}, **{k: [] for k in learners}}
    names = list(learners)
    for r in range(rounds):
        for kernel in MATMUL_KERNELS:
            runs[f"matmul {kernel}"].append(matmul_gflops(kernel=kernel))
        for name in names if r % 2 == 0 else names[::-1]:  # alternate the order against drift
            n = max(updates, per_call[name])
            runs[name].append(_updates_per_s(learners[name], n, batch, per_call[name]))
        print(
            f"  round {r + 1}/{rounds}: "
            + ", ".join(f"{k} {runs[k][-1]:6.1f} GFLOP/s" for k in kernels)
            + ", "
            + ", ".join(f"{k} {runs[k][-1]:6.1f} updates/s" for k in names),
            file=sys.stderr,
            flush=True,
        )
    rates = {k: statistics.median(runs[f"matmul {k}"]) for k in MATMUL_KERNELS}
    limit = max(v for v in rates.values() if not math.isnan(v))  # the fastest fp32 matmul this torch offers
    per_update = flops["required"]
    print(
        f"\nSAC update at the QARL settings: 3x256 ReLU actor and twin critics, batch {batch}, obs {obs_dim}, "
        f"action {act_dim}, learned temperature; {rounds} rounds x {updates} updates, medians; 1 torch thread"
    )
    print(
        f"FLOP per update: {per_update / 1e9:.3f} GFLOP required by the algorithm "
        f"({flops['executed by SB3'] / 1e9:.3f} GFLOP executed by stable-baselines3's autograd)"
    )
    print(
        "matmul limit (256x256x256 fp32, the faster of "
        + " and ".join(f"{k} {v:.1f}" for k, v in rates.items())
        + f" GFLOP/s): {limit:.1f} GFLOP/s = {limit * 1e9 / per_update:.1f} updates/s at the required FLOP"
    )
    header = f"{'updates/s':>10s} {'ms/update':>10s} {'GFLOP/s':>8s} {'of limit':>9s} {'vs SB3':>7s}"
    print(f"{'learner':34s} {header}  runs")
    base = statistics.median(runs[names[0]])
    kernel_line, kernel = _kernel_text(learners["qarl fast update"], batch)
    print(kernel_line)
    summary: dict[str, Any] = {"matmul_gflops": limit, "matmul_kernels": rates, "flops": flops, "runs": runs,
                               "learners": {}, "fast_update_kernel": kernel}
    for name in names:
        ups = statistics.median(runs[name])
        gflops = ups * per_update / 1e9
        summary["learners"][name] = {
            "updates_per_s": ups,
            "gflops": gflops,
            "fraction_of_limit": gflops / limit,
            "vs_sb3": ups / base,
        }
        print(
            f"{name:34s} {ups:10.1f} {1000 / ups:10.2f} {gflops:8.1f} {gflops / limit:9.1%} {ups / base:6.2f}x  "
            + " ".join(f"{x:.1f}" for x in runs[name])
        )
    peers = [n for n in names if n.startswith("sbx-rl")]
    for peer in peers:
        ratio = summary["learners"]["qarl fast update"]["updates_per_s"] / summary["learners"][peer]["updates_per_s"]
        summary["learners"]["qarl fast update"][f"vs {peer}"] = ratio
        print(f"qarl fast update vs {peer}: {ratio:.2f}x")
    if peers:
        print(f"XLA_FLAGS: {__import__('os').environ.get('XLA_FLAGS')}")
    # The same matmul calls alone, replayed in order on the fast update's own tensors: the update's other work
    # (element-wise operations, Adam, sampling, Python) and its cache misses removed, the most it could reach here.
    fast = learners[names[1]]._fast
    calls = record_matmuls(fast.step) if fast is not None else []
    if calls:
        alone = replay_seconds(calls)
        flop = sum(c[3] for c in calls)
        summary["matmuls_alone"] = {"calls": len(calls), "flop": flop, "seconds": alone,
                                    "fraction_of_limit": flop / alone / 1e9 / limit}  # fmt: skip
        print(
            f"the fast update's {len(calls)} matmul calls alone ({flop / 1e9:.3f} GFLOP), replayed in order on its "
            f"own tensors with nothing between them: {alone * 1e3:.2f} ms = {flop / alone / 1e9:.1f} GFLOP/s = "
            f"{flop / alone / 1e9 / limit:.1%} of the limit (the update's other work adds "
            f"{1000 / statistics.median(runs[names[1]]) - alone * 1e3:.2f} ms)"
        )
    print(f"load average at end: {provenance.load_average()}")
    return summary


def _qarl_trial_round(task: str, fast: bool, episodes: int, learning_starts: int, seed: int) -> dict[str, float]:
    """One QARL iteration (both players learn in their phases); wall time, env steps and time inside updates."""
    import dataclasses

    from qarl.quantal.trainers import QARLConfig, QARLTrainer
    from qarl.sac.learner import SACConfig
    from qarl.training.loop import LoopConfig

    sac = SACConfig(learning_starts=learning_starts, fast_update=fast)
    config = dataclasses.replace(QARLConfig(), protagonist=sac, adversary=sac)
    loop = LoopConfig(iterations=1, episodes_per_phase=episodes, eval_episodes=0, horizon=1000)
    trainer = QARLTrainer(task, config, loop, seed)
    spent = {"update": 0.0}
    for player in trainer.players.values():
        player.update = _timed(player.update, spent)
    t0 = time.perf_counter()
    row = trainer.run_iteration()
    wall = time.perf_counter() - t0
    updates = sum(int(row[f"updates_{p}"]) for p in ("protagonist", "adversary"))
    return {"wall": wall, "steps": float(row["env_steps"]), "updates": float(updates), "update_time": spent["update"]}


def _timed(fn: Callable[[], None], spent: dict[str, float]) -> Callable[[], None]:
    def wrapper() -> None:
        t0 = time.perf_counter()
        fn()
        spent["update"] += time.perf_counter() - t0

    return wrapper


def paper_scale_counts(
    iterations: int = 200,
    episodes_per_phase: int = 5,
    horizon: int = 1000,
    train_every: int = 3,
    learning_starts: int = 3000,
    eval_episodes: int = 2,
) -> dict[str, int]:
    """Env steps, gradient updates (both players) and evaluation steps of a paper-scale QARL trial."""
    own = iterations * episodes_per_phase * horizon  # own-phase transitions of one player
    # Player.observe: an update after the k-th own transition when k % train_every == 0 and k >= learning_starts
    first = -(-max(learning_starts, 1) // train_every) * train_every
    per_player = len(range(first, own + 1, train_every))
    return {"train_steps": 2 * own, "updates": 2 * per_player, "eval_steps": iterations * 2 * eval_episodes * horizon}


def bench_trial(
    task: str = "dmc/cheetah-run", episodes: int = 2, learning_starts: int = 1000, rounds: int = 3, seed: int = 0
) -> dict[str, Any]:
    """Short QARL trials with the fast learner and the SB3 path, alternating; env steps/s and paper-scale projection."""
    th.set_num_threads(1)
    print(provenance.header("qarl bench trial"), flush=True)
    paths = {"stable-baselines3 SAC.train": False, "qarl fast update": True}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in paths}
    names = list(paths)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            res = _qarl_trial_round(task, paths[name], episodes, learning_starts, seed)
            runs[name].append(res)
            print(
                f"  round {r + 1}/{rounds} {name:28s} {res['steps'] / res['wall']:7.1f} env steps/s, "
                f"{res['updates']:.0f} updates, {1000 * res['update_time'] / max(res['updates'], 1):6.2f} ms/update",
                file=sys.stderr,
                flush=True,
            )
    counts = paper_scale_counts()
    print(
        f"\n{task}: one QARL iteration, {episodes} + {episodes} episodes of 1000 steps, updates after "
        f"{learning_starts} transitions (one per 3 own-phase steps), 3x256 networks, batch 256, 1 torch thread; "
        f"{rounds} rounds, medians"
    )
    print(
        f"{'learner':30s} {'env steps/s':>12s} {'ms/update':>10s} {'ms/step excl. updates':>22s} "
        f"{'paper-scale trial':>18s}"
    )
    summary: dict[str, Any] = {"counts": counts, "learners": {}}
    for name in names:
        rs = runs[name]
        steps_per_s = statistics.median(x["steps"] / x["wall"] for x in rs)
        ms_update = statistics.median(1000 * x["update_time"] / max(x["updates"], 1) for x in rs)
        ms_step = statistics.median(1000 * (x["wall"] - x["update_time"]) / x["steps"] for x in rs)
        hours = (counts["updates"] * ms_update + (counts["train_steps"] + counts["eval_steps"]) * ms_step) / 3.6e6
        summary["learners"][name] = {
            "steps_per_s": steps_per_s,
            "ms_per_update": ms_update,
            "ms_per_step": ms_step,
            "paper_hours": hours,
        }
        print(f"{name:30s} {steps_per_s:12.1f} {ms_update:10.2f} {ms_step:22.3f} {hours:16.2f} h")
    print(
        f"paper scale: {counts['train_steps']:,} training env steps, {counts['updates']:,} updates (both players), "
        f"{counts['eval_steps']:,} evaluation steps; the authors' implementation: {AUTHORS_HOURS} h "
        f"(about 100 env steps/s including updates)"
    )
    fast, base = summary["learners"]["qarl fast update"], summary["learners"]["stable-baselines3 SAC.train"]
    hours = fast["paper_hours"]
    print(
        f"env steps/s fast / stable-baselines3: {fast['steps_per_s'] / base['steps_per_s']:.2f}x; projected "
        f"paper-scale trial {hours:.2f} h vs {AUTHORS_HOURS} h ({AUTHORS_HOURS / hours:.2f}x faster)"
    )
    print(f"load average at end: {provenance.load_average()}")
    return summary


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        th.cuda.synchronize()


def bench_group(
    ks: Sequence[int] = (1, 4, 8), rounds: int = 5, updates: int = 20, device: str = "cpu", seed: int = 0
) -> dict[str, Any]:
    """Total updates/s of K seeds' models updated together (``GroupedSACUpdate``) vs one model's fast update.

    All learners at the QARL settings (3x256, batch 256, HalfCheetah sizes), built once; alternating rounds in one
    process, each learner taking ``updates`` steps per round; medians. "total updates/s" counts one update per model:
    a grouped step of K models is K updates. On the CPU it runs on one torch thread.
    """
    from qarl.sac.grouped import GroupedSACUpdate

    if device == "cpu":
        th.set_num_threads(1)
    print(provenance.header("qarl bench group", {"device": device}), flush=True)
    obs_dim, act_dim, net_arch, batch = 17, 6, (256, 256, 256), 256
    per_update = sac_update_flops(obs_dim, act_dim, net_arch, batch)["required"]
    single = _learner(True, obs_dim, act_dim, 10_000, seed) if device == "cpu" else None
    groups = {
        k: GroupedSACUpdate([_learner(True, obs_dim, act_dim, 10_000, seed + i, device) for i in range(k)], batch)
        for k in ks
    }

    def run_single(n: int) -> None:
        assert single is not None
        for _ in range(n):
            single.train(gradient_steps=1, batch_size=batch)

    def run_group(k: int) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                groups[k].step()

        return run

    learners: dict[str, tuple[int, Callable[[int], None]]] = {}
    if device == "cpu":  # FastSACUpdate allocates its stacks on the CPU: elsewhere "grouped, K = 1" is the baseline
        learners["fast update, one model (QSAC.train)"] = (1, run_single)
    learners.update({f"grouped, K = {k}": (k, run_group(k)) for k in ks})
    for _, run in learners.values():  # warm-up: layouts, optimiser state, allocations
        run(3)
    _sync(device)
    names = list(learners)
    kernels = [f"matmul {k}" for k in MATMUL_KERNELS] if device == "cpu" else []
    runs: dict[str, list[float]] = {**{k: [] for k in kernels}, **{n: [] for n in names}}
    for r in range(rounds):
        for kernel in MATMUL_KERNELS if device == "cpu" else ():
            runs[f"matmul {kernel}"].append(matmul_gflops(kernel=kernel))
        for name in names if r % 2 == 0 else names[::-1]:  # alternate the order against drift
            k, run = learners[name]
            _sync(device)
            t0 = time.perf_counter()
            run(updates)
            _sync(device)
            runs[name].append(k * updates / (time.perf_counter() - t0))
        print(
            f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {runs[n][-1]:6.1f}" for n in names) + " updates/s",
            file=sys.stderr,
            flush=True,
        )
    print(
        f"\nSAC updates at the QARL settings: 3x256 ReLU actor and twin critics, batch {batch}, obs {obs_dim}, action "
        f"{act_dim}, learned temperature; {rounds} rounds x {updates} steps per learner, medians"
    )
    rates = {k: statistics.median(runs[f"matmul {k}"]) for k in MATMUL_KERNELS} if kernels else {}
    limit = max((v for v in rates.values() if not math.isnan(v)), default=math.nan)
    if kernels:
        print(
            "matmul limit (256x256x256 fp32, the faster of "
            + " and ".join(f"{k} {v:.1f}" for k, v in rates.items())
            + f" GFLOP/s): {limit:.1f} GFLOP/s = {limit * 1e9 / per_update:.1f} updates/s"
        )
    base = statistics.median(runs[names[0]])
    header = f"{'total updates/s':>16s} {'per model':>10s} {'GFLOP/s':>8s} {'of limit':>9s} {'vs one':>7s}"
    print(f"{'learner':38s} {header}  runs")
    summary: dict[str, Any] = {"device": device, "matmul_gflops": limit, "runs": runs, "learners": {}}
    for name in names:
        k = learners[name][0]
        total = statistics.median(runs[name])
        gflops = total * per_update / 1e9
        summary["learners"][name] = {"k": k, "updates_per_s": total, "gflops": gflops, "vs_single": total / base}
        print(
            f"{name:38s} {total:16.1f} {total / k:10.1f} {gflops:8.1f} {gflops / limit:9.1%} {total / base:6.2f}x  "
            + " ".join(f"{x:.1f}" for x in runs[name])
        )
    print(f"load average at end: {provenance.load_average()}")
    return summary


def bench_group_trial(
    task: str = "dmc/cheetah-run",
    algo: str = "sac",
    k: int = 4,
    episodes: int = 2,
    learning_starts: int = 1000,
    rounds: int = 3,
) -> dict[str, Any]:
    """Wall time of K seeds' short trials: ``run_group`` (one process, steps batched) vs ``run_trial`` one by one.

    Paper-scale learners (3x256, batch 256) and horizon 1000; one iteration of ``episodes`` episodes per phase, updates
    after ``learning_starts`` transitions, no evaluation or diagnostics; each round writes fresh run directories into
    a temporary folder. Alternating rounds, medians; total env steps/s of the K seeds.
    """
    import tempfile

    import pandas as pd

    from qarl.config import parse_overrides
    from qarl.experiment import rundir
    from qarl.experiment.group import run_group
    from qarl.experiment.trial import resolve_config, run_dir_for, run_trial
    from qarl.sac.learner import SACConfig

    th.set_num_threads(1)
    print(provenance.header("qarl bench group --trial"), flush=True)
    sets = ["loop.iterations=1", f"loop.episodes_per_phase={episodes}", "eval.enabled=false"]
    sets += ["diagnostics.enabled=false", "loop.eval_episodes=0"]
    probe = resolve_config(task, algo, 0, "paper", parse_overrides(sets))
    players = [f.name for f in dataclasses.fields(probe.algo) if isinstance(getattr(probe.algo, f.name), SACConfig)]
    sets += [f"{p}.learning_starts={learning_starts}" for p in players]
    configs = [resolve_config(task, algo, s, "paper", parse_overrides(sets)) for s in range(k)]

    def quiet(msg: str) -> None:
        pass

    def one_by_one(root: Path) -> None:
        for c in configs:
            run_trial(c, run_dir=run_dir_for(root, "bench", task, algo, c.seed), log=quiet)

    def grouped(root: Path) -> None:
        run_group(configs, [run_dir_for(root, "bench", task, algo, c.seed) for c in configs], log=quiet)

    paths: dict[str, Callable[[Path], None]] = {f"run_trial x {k}, one by one": one_by_one}
    paths[f"run_group, K = {k}"] = grouped
    with tempfile.TemporaryDirectory(prefix="qarl-bench-group-") as tmp:  # warm-up: imports, model compilation
        short = dataclasses.replace(configs[0], loop=dataclasses.replace(configs[0].loop, horizon=50))
        run_trial(short, run_dir=Path(tmp) / "warm-up", log=quiet)
    names = list(paths)
    runs: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    steps = 0
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            with tempfile.TemporaryDirectory(prefix="qarl-bench-group-") as tmp:
                t0, c0 = time.perf_counter(), time.process_time()
                paths[name](Path(tmp))
                runs[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                progress = [run_dir_for(tmp, "bench", task, algo, c.seed) / rundir.PROGRESS_FILE for c in configs]
                steps = sum(int(pd.read_parquet(f)["env_steps"].iloc[-1]) for f in progress)
            print(
                f"  round {r + 1}/{rounds} {name:28s} {runs[name][-1]:7.1f} s wall, {cpu[name][-1]:7.1f} s CPU",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"\n{task} {algo}: {k} seeds x one iteration of {episodes} episodes per phase (horizon 1000), updates after "
        f"{learning_starts} transitions, paper-scale learners, 1 torch thread; {rounds} rounds, medians. CPU time is "
        "this process's (all its threads): on a shared machine it is less disturbed by other jobs than wall time"
    )
    base, base_cpu = statistics.median(runs[names[0]]), statistics.median(cpu[names[0]])
    summary: dict[str, Any] = {"env_steps": steps, "runs": runs, "cpu": cpu, "paths": {}}
    print(f"{'':30s} {'wall':>8s} {'env steps/s':>12s} {'speedup':>8s} {'CPU':>8s} {'per CPU s':>10s} {'speedup':>8s}")
    for name in names:
        wall, used = statistics.median(runs[name]), statistics.median(cpu[name])
        summary["paths"][name] = {
            "seconds": wall,
            "steps_per_s": steps / wall,
            "vs_one_by_one": base / wall,
            "cpu_seconds": used,
            "steps_per_cpu_s": steps / used,
            "cpu_vs_one_by_one": base_cpu / used,
        }
        print(
            f"{name:30s} {wall:7.1f}s {steps / wall:12.1f} {base / wall:7.2f}x {used:7.1f}s {steps / used:10.1f} "
            f"{base_cpu / used:7.2f}x"
        )
    print(f"load average at end: {provenance.load_average()}")
    return summary


__all__ = [
    "bench_group",
    "bench_group_trial",
    "bench_trial",
    "bench_update",
    "matmul_gflops",
    "paper_scale_counts",
]
