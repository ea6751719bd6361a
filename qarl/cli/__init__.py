"""The ``qarl`` command line.

User errors (an unknown task id, a bad value) print one line saying what is wrong and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

import envs
from qarl import __version__

DEMO_TASKS = ("gym/HalfCheetah-v5", "dmc/cheetah-run")


def _trial_errors() -> tuple[type[Exception], ...]:
    from qarl.config import ConfigError
    from qarl.experiment.registry import UnknownAlgorithmError
    from qarl.experiment.trial import TrialError
    from qarl.training.checkpoint import CheckpointError

    return (TrialError, CheckpointError, ConfigError, UnknownAlgorithmError)


class UserError(Exception):
    """A mistake in the command's input: reported as one line, no traceback."""


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def task_rows(family: str | None = None) -> list[dict]:
    """One row per registered task, built from the games themselves (so the table cannot drift)."""
    rows = []
    for task_id in envs.list_tasks(family):
        game = envs.make(task_id)
        nominal, bounds = game.nominal_params(), game.param_bounds()
        rows.append(
            {
                "id": task_id,
                "family": game.family,
                "obs_dim": int(game.observation_space.shape[0]),
                "protagonist_dim": int(game.protagonist_action_space.shape[0]),
                "adversary_dim": int(game.adversary_action_space.shape[0]),
                "adversary_bodies": list(game.adversary_labels),
                "adversary_low": game.adversary_action_space.low.astype(float).tolist(),
                "adversary_high": game.adversary_action_space.high.astype(float).tolist(),
                "params": {k: {"nominal": nominal[k], "low": bounds[k][0], "high": bounds[k][1]} for k in nominal},
            }
        )
        game.close()
    return rows


def cmd_tasks(args: argparse.Namespace) -> int:
    rows = task_rows(args.family)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = ("id", "family", "obs", "prot", "adv", "adversary bound", "parameters: nominal [low, high]")
    table = []
    for r in rows:
        lo, hi = r["adversary_low"], r["adversary_high"]
        bound = (
            f"[{_fmt(lo[0])}, {_fmt(hi[0])}]"
            if len(set(lo)) == 1 and len(set(hi)) == 1
            else str(list(zip(lo, hi, strict=True)))
        )
        params = "; ".join(
            f"{k} {_fmt(p['nominal'])} [{_fmt(p['low'])}, {_fmt(p['high'])}]" for k, p in r["params"].items()
        )
        table.append(
            (r["id"], r["family"], str(r["obs_dim"]), str(r["protagonist_dim"]), str(r["adversary_dim"]), bound, params)
        )
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"\n{len(rows)} tasks. Adversary bounds are N (forces) or N·m (torques); override with adversary_bound.")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Random protagonist vs random adversary: returns, applied forces and parameters per episode."""
    for task_id in args.tasks:
        envs.spec(task_id)  # unknown ids fail before anything runs
    if args.episodes < 1 or args.steps < 1:
        raise UserError("--episodes and --steps must be at least 1")
    for task_id in args.tasks:
        game = envs.make(task_id, horizon=args.steps)
        rng = np.random.default_rng(args.seed)
        print(f"\n== {task_id}: {type(game).__name__}, dt={game.dt:g}s, horizon {game.horizon} steps")
        print(f"   adversary: {', '.join(game.adversary_labels)} within +-{game.adversary_bound.tolist()}")
        bounds = game.param_bounds()
        for ep in range(args.episodes):
            # episode 0 at nominal parameters, later ones at a random point of the robustness range
            params = (
                game.nominal_params() if ep == 0 else {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in bounds.items()}
            )
            game.set_params(**params)
            game.reset(seed=args.seed + ep)
            ret, steps, force_abs, t0 = 0.0, 0, np.zeros(len(game.adversary_labels)), time.perf_counter()
            done = False
            while not done:
                a = rng.uniform(game.protagonist_action_space.low, game.protagonist_action_space.high)
                b = rng.uniform(game.adversary_action_space.low, game.adversary_action_space.high)
                _, r, terminated, truncated, info = game.step(a, b)
                ret += r
                steps += 1
                force_abs += np.abs(info["adversary_force"])
                done = terminated or truncated
            mean_force = ", ".join(
                f"{lab}={_fmt(f)}" for lab, f in zip(game.adversary_labels, force_abs / steps, strict=True)
            )
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in info["params"].items())
            speed = steps / (time.perf_counter() - t0)
            print(
                f"   episode {ep}: return {ret:9.3f} over {steps} steps ({speed:.0f} steps/s)"
                f"{' [terminated]' if terminated else ''}\n"
                f"      params: {shown}\n      mean |force|: {mean_force}"
            )
        game.close()
    return 0


def cmd_bench_loop(args: argparse.Namespace) -> int:
    from qarl.bench.loop import bench_loop

    envs.spec(args.task)
    if args.steps < 1000 or args.steps % 1000 or args.rounds < 1 or not 0 <= args.learning_starts < args.steps:
        raise UserError("--steps must be a positive multiple of 1000, --rounds >= 1, 0 <= --learning-starts < --steps")
    bench_loop(args.task, args.steps, args.learning_starts, args.rounds)
    return 0


def cmd_bench_update(args: argparse.Namespace) -> int:
    from qarl.bench.learner import bench_update

    if args.rounds < 1 or args.updates < 1:
        raise UserError("--rounds and --updates must be >= 1")
    bench_update(args.rounds, args.updates)
    return 0


def cmd_bench_trial(args: argparse.Namespace) -> int:
    from qarl.bench.learner import bench_trial

    envs.spec(args.task)
    if args.rounds < 1 or args.episodes < 1 or not 0 <= args.learning_starts < 1000 * args.episodes:
        raise UserError("--rounds and --episodes must be >= 1, and 0 <= --learning-starts < 1000 x --episodes")
    bench_trial(args.task, args.episodes, args.learning_starts, args.rounds)
    return 0


def cmd_bench_group(args: argparse.Namespace) -> int:
    from qarl.bench.learner import bench_group, bench_group_trial

    if args.rounds < 1 or args.updates < 1 or min(args.k) < 1:
        raise UserError("--rounds, --updates and every --k must be >= 1")
    if args.trial:
        envs.spec(args.task)
        if len(args.k) != 1 or args.episodes < 1 or not 0 <= args.learning_starts < 1000 * args.episodes:
            raise UserError("--trial takes one --k, --episodes >= 1 and 0 <= --learning-starts < 1000 x --episodes")
        bench_group_trial(args.task, args.algo, args.k[0], args.episodes, args.learning_starts, args.rounds)
        return 0
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: torch sees no CUDA device here")
    bench_group(args.k, args.rounds, args.updates, args.device)
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from qarl.report.curves import write_curves

    try:
        png, table = write_curves(args.run_dirs, args.out, args.metric, args.threshold, args.title)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {png} and {table}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from qarl.evaluation import evaluate_trainer
    from qarl.experiment.trial import load_trainer

    out = Path(args.run_dir) / "eval.parquet"
    if out.exists() and not args.force:
        raise UserError(f"{out} exists; pass --force to overwrite it")
    config, trainer, iteration = load_trainer(args.run_dir)
    changes = {
        "episodes_per_cell": args.episodes,
        "nominal_episodes": args.nominal_episodes,
        "grid_points": args.grid_points,
        "worst_case_steps": args.worst_case_steps,
        "policy_modes": tuple(args.policy_modes) if args.policy_modes else None,
    }
    try:
        eval_cfg = dataclasses.replace(config.eval, **{k: v for k, v in changes.items() if v is not None})
        eval_cfg.validate()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    print(f"evaluating {args.run_dir} at iteration {iteration}", file=sys.stderr)
    df = evaluate_trainer(trainer, eval_cfg, out, log=lambda m: print(m, file=sys.stderr, flush=True))
    summary = df.groupby(["metric", "policy_mode"])["return"].agg(["size", "mean"]).reset_index()
    print(summary.to_string(index=False))
    print(f"wrote {out}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from qarl.report.leaderboard import LeaderboardError, main_leaderboard

    command = "qarl " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("qarl") else "qarl leaderboard"
    try:
        files = main_leaderboard(args.results, args.out, args.allow_mixed, args.policy_mode, command=command)
    except LeaderboardError as exc:
        raise UserError(str(exc)) from None
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def cmd_diagnose_testbed(args: argparse.Namespace) -> int:
    from qarl.diagnostics.testbed import run_testbed

    if any(not 0 <= lam <= 1 for lam in args.lams) or any(n < 10 for n in args.n) or not 0 <= args.gamma < 1:
        raise UserError("--lams must lie in [0, 1], --n must be >= 10 and --gamma in [0, 1)")
    df = run_testbed(lams=args.lams, ns=args.n, seeds=args.seeds, gamma=args.gamma, out=args.out)
    print(f"{len(df)} rows; wrote {args.out}/testbed.csv, testbed.md and testbed.png")
    return 0


def cmd_diagnose_overhead(args: argparse.Namespace) -> int:
    from qarl.bench.diagnostics import bench_overhead

    envs.spec(args.task)
    if args.iterations < 1 or args.seed < 0:
        raise UserError("--iterations must be at least 1 and --seed >= 0")
    bench_overhead(args.task, args.algo, args.scale, args.iterations, args.seed)
    return 0


def cmd_bench_grid(args: argparse.Namespace) -> int:
    from qarl.bench.loop import bench_grid

    for task in args.tasks:
        envs.spec(task)
    if args.horizon < 1 or args.points < 2:
        raise UserError("--horizon must be >= 1 and --points >= 2")
    if args.rounds < 1:
        raise UserError("--rounds must be at least 1")
    bench_grid(args.tasks, args.horizon, args.points, args.rounds)
    return 0


def cmd_algos(args: argparse.Namespace) -> int:
    from qarl.experiment.registry import get_algorithm, list_algorithms

    for name in list_algorithms():
        cls = get_algorithm(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:22s} {doc} [{cls.paper}]")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """One trial in its run directory; ``--resume`` continues an interrupted one."""
    import signal

    from qarl.config import parse_overrides
    from qarl.experiment.trial import resolve_config, run_dir_for, run_trial, trial_summary

    if args.seeds is not None:
        return _train_group(args)
    if args.seed is None:
        args.seed = 0
    if args.iterations is not None and args.iterations < 1:
        raise UserError(f"--iterations must be at least 1, got {args.iterations}")
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    run_dir = run_dir_for(args.out, args.experiment, args.task, args.algo, args.seed)
    if args.resume:
        if args.set:
            raise UserError("--set cannot change a run being resumed; it continues with its saved config.yaml")
        config = None
        envs.spec(args.task)
    else:
        try:
            config = resolve_config(args.task, args.algo, args.seed, args.scale, parse_overrides(args.set or []))
        except ValueError as exc:  # unknown task or method, bad --set values: the message names the key
            raise UserError(str(exc)) from None

    def _terminate(signum, frame):  # record "interrupted" in meta.json on SIGTERM as on Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    print(f"run directory: {run_dir}", file=sys.stderr)
    meta = run_trial(config, run_dir=run_dir, resume=args.resume, iterations=args.iterations)
    print(trial_summary(meta), file=sys.stderr)
    return 0 if meta["status"] == "completed" else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    """A sweep file's trials on Ray Tune (embedded local Ray, or the cluster at --address / RAY_ADDRESS)."""
    from qarl.sweep.config import load_sweep, plan_trials
    from qarl.sweep.launch import SweepError, format_plan, preflight, run_sweep

    sweep = load_sweep(args.config, storage=args.storage, max_concurrent=args.max_concurrent)
    trials = plan_trials(sweep, args.config)
    try:
        states = preflight(sweep, trials, args.resume or args.dry_run)
        if args.dry_run:
            print(format_plan(sweep, trials, states))
            print("dry run: nothing started, nothing written")
            return 0
        log = lambda m: print(m, flush=True)  # noqa: E731
        summary = run_sweep(sweep, trials, address=args.address, resume=args.resume, out=log, command=args.argv)
    except SweepError as exc:
        raise UserError(str(exc)) from None
    return 1 if summary["failed"] else 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run (or reuse) the sweep behind one paper figure and draw it; ``--list`` shows every figure."""
    from qarl.report.figures import FigureError
    from qarl.report.reproduce import FIGURES, ReproduceError, list_figures, reproduce
    from qarl.sweep.launch import SweepError

    if args.list:
        print(list_figures())
        return 0
    if not args.figure:
        raise UserError(f"name a figure (one of {', '.join(FIGURES)}) or pass --list")
    try:
        log = lambda m: print(m, flush=True)  # noqa: E731
        reproduce(args.figure, args.scale, args.out, address=args.address, log=log, command=args.argv)
    except (ReproduceError, FigureError, SweepError) as exc:
        raise UserError(str(exc)) from None
    return 0


def cmd_bench_sweep(args: argparse.Namespace) -> int:
    from qarl.bench.sweep import bench_sweep

    envs.spec(args.task)
    if args.iterations < 1 or args.horizon < 1:
        raise UserError("--iterations and --horizon must be at least 1")
    bench_sweep(args.task, args.algo, args.iterations, args.horizon, args.out)
    return 0


def _train_group(args: argparse.Namespace) -> int:
    """``qarl train --seeds ...``: K seeds of one (task, method) in this process, gradient steps batched.

    One ordinary run directory per seed (each resumes like a single-seed run); see :mod:`qarl.experiment.group`.
    """
    import signal

    from qarl.config import parse_overrides
    from qarl.experiment.group import run_group
    from qarl.experiment.trial import resolve_config, run_dir_for, trial_summary

    seeds = list(args.seeds)
    if args.seed is not None:
        raise UserError("give --seed or --seeds, not both")
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must be distinct integers >= 0, got {seeds}")
    if args.iterations is not None and args.iterations < 1:
        raise UserError(f"--iterations must be at least 1, got {args.iterations}")
    run_dirs = [run_dir_for(args.out, args.experiment, args.task, args.algo, s) for s in seeds]
    if args.resume:
        if args.set:
            raise UserError("--set cannot change runs being resumed; they continue with their saved config.yaml")
        envs.spec(args.task)
        configs = [None] * len(seeds)
    else:
        try:
            overrides = parse_overrides(args.set or [])
            configs = [resolve_config(args.task, args.algo, s, args.scale, overrides) for s in seeds]
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def _terminate(signum, frame):  # record "interrupted" in each meta.json on SIGTERM as on Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    print(f"run directories ({len(seeds)} seeds, gradient steps batched): {run_dirs[0].parent}/seed=*", file=sys.stderr)
    metas = run_group(configs, run_dirs, resume=args.resume, iterations=args.iterations)
    for meta in metas:
        print(trial_summary(meta), file=sys.stderr)
    return 0 if all(m["status"] == "completed" for m in metas) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qarl",
        description="Robust RL benchmark suite: QARL, RARL and baselines in two-player zero-sum MuJoCo games.",
    )
    parser.add_argument("--version", action="version", version=f"qarl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("tasks", help="list the registered games with their dimensions, forces and parameters")
    p.add_argument("--family", choices=["gym", "dmc"], help="only this family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("demo", help="play random protagonist vs random adversary on a few tasks")
    p.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), metavar="TASK", help="task ids (see `qarl tasks`)")
    p.add_argument("--episodes", type=int, default=2, help="episodes per task (default 2)")
    p.add_argument("--steps", type=int, default=200, help="control steps per episode (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of games and random players (default 0)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train one trial (task, method, seed) into its run directory")
    p.add_argument("--task", required=True, help="task id (see `qarl tasks`)")
    p.add_argument("--algo", required=True, help="method name (see `qarl algos`)")
    p.add_argument("--seed", type=int, default=None, help="trial seed (default 0)")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="train these seeds together in this process, gradient steps batched (one run directory each)",
    )
    p.add_argument(
        "--scale", choices=["smoke", "small", "paper"], default="smoke", help="budget preset (default smoke)"
    )
    p.add_argument("--iterations", type=int, help="override the scale's number of iterations")
    p.add_argument("--out", default="runs", help="storage folder (default ./runs)")
    p.add_argument("--experiment", default="default", help="experiment name, a sub-folder of --out")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. protagonist.actor_lr=3e-4"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory from its checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sweep", help="run a sweep file's trials (tasks x methods x seeds) on Ray Tune")
    p.add_argument("config", metavar="CONFIG", help="sweep file, e.g. configs/sweeps/smoke.yaml")
    p.add_argument("--address", help="join the Ray cluster at ADDR (default: RAY_ADDRESS, else embedded local Ray)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep; completed trials are skipped")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="trials running at once (overrides the file)")
    p.add_argument("--storage", metavar="PATH", help="folder of the run directories (overrides the file)")
    p.add_argument("--dry-run", action="store_true", help="print the trials and resources; start and write nothing")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("reproduce", help="run (or reuse) the sweep behind a paper figure or table and draw it")
    p.add_argument("figure", nargs="?", metavar="FIGURE", help="figure name (see --list)")
    p.add_argument("--list", action="store_true", help="list the figures with their sweeps and estimated cost")
    p.add_argument("--scale", choices=["smoke", "small", "paper"], default="smoke", help="budget (default smoke)")
    p.add_argument("--address", help="join the Ray cluster at ADDR (default: RAY_ADDRESS, else embedded local Ray)")
    p.add_argument("--out", default="results/figures", help="folder of runs and figures (default %(default)s)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser("bench", help="benchmarks that print side-by-side ratios")
    bench = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    b = bench.add_parser("loop", help="two-player loop vs plain stable-baselines3 SAC: env steps/s and time per update")
    b.add_argument("--task", default="dmc/cartpole-balance", help="task id (default dmc/cartpole-balance)")
    b.add_argument("--steps", type=int, default=6000, help="env steps per round, a multiple of 1000 (default 6000)")
    b.add_argument("--learning-starts", type=int, default=1000, help="transitions before updates (default 1000)")
    b.add_argument("--rounds", type=int, default=3, help="alternating rounds per path (default 3)")
    b.set_defaults(func=cmd_bench_loop)
    b = bench.add_parser("grid", help="batched grid evaluation vs a naive predict loop: episodes/s and speedup")
    b.add_argument("--tasks", nargs="+", default=["dmc/cheetah-run", "gym/HalfCheetah-v5"], help="task ids")
    b.add_argument("--horizon", type=int, default=200, help="episode length (default 200)")
    b.add_argument("--points", type=int, default=11, help="grid points per axis (default 11)")
    b.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians compared (default 3)")
    b.set_defaults(func=cmd_bench_grid)
    b = bench.add_parser("update", help="SAC updates/s (SB3 vs the fast update) against the matmul limit, one core")
    b.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    b.add_argument("--updates", type=int, default=60, help="updates per learner and round (default 60)")
    b.set_defaults(func=cmd_bench_update)
    b = bench.add_parser("trial", help="env steps/s of a short QARL trial, fast vs SB3 update; paper-scale projection")
    b.add_argument("--task", default="dmc/cheetah-run", help="task id (default dmc/cheetah-run)")
    b.add_argument("--episodes", type=int, default=2, help="episodes per phase, 1000 steps each (default 2)")
    b.add_argument("--learning-starts", type=int, default=1000, help="transitions before updates (default 1000)")
    b.add_argument("--rounds", type=int, default=3, help="alternating rounds per learner (default 3)")
    b.set_defaults(func=cmd_bench_trial)
    b = bench.add_parser("sweep", help="Ray sweep scaling: env steps/s of 1 vs 2 concurrent trials, start-up cost")
    b.add_argument("--task", default="dmc/cartpole-balance", help="task id (default dmc/cartpole-balance)")
    b.add_argument("--algo", default="sac", help="method (default sac)")
    b.add_argument("--iterations", type=int, default=3, help="iterations per trial (default 3)")
    b.add_argument("--horizon", type=int, default=200, help="episode length (default 200)")
    b.add_argument("--out", default="results/benchmarks/sweep.md", help="Markdown report (default %(default)s)")
    b.set_defaults(func=cmd_bench_sweep)


    b = bench.add_parser("group", help="total SAC updates/s of K seeds' models updated together vs one model's")
    b.add_argument("--k", type=int, nargs="+", default=[1, 4, 8], help="group sizes (default 1 4 8)")
    b.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    b.add_argument("--updates", type=int, default=20, help="steps per learner and round (default 20)")
    b.add_argument("--device", default="cpu", help="torch device of the models (default cpu; e.g. cuda)")
    b.add_argument("--trial", action="store_true", help="instead: K short trials, run_group vs run_trial one by one")
    b.add_argument("--task", default="dmc/cheetah-run", help="--trial: task id (default dmc/cheetah-run)")
    b.add_argument("--algo", default="sac", help="--trial: method (default sac)")
    b.add_argument("--episodes", type=int, default=2, help="--trial: episodes per phase, 1000 steps each (default 2)")
    b.add_argument("--learning-starts", type=int, default=1000, help="--trial: transitions before updates (1000)")
    b.set_defaults(func=cmd_bench_group)

    p = sub.add_parser("curves", help="plot learning curves of run directories (PNG + Markdown table)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="folder for curves.png and curves.md")
    p.add_argument(
        "--metric", default="eval_return_zero_force", help="progress column (default eval_return_zero_force)"
    )
    p.add_argument("--threshold", type=float, help="report the first protagonist step above this value")
    p.add_argument("--title", help="figure and page title")
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser("evaluate", help="robustness evaluation of a trained run directory (writes eval.parquet)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, help="K: episodes per grid cell and sweep point")
    p.add_argument("--nominal-episodes", type=int, help="episodes of the nominal, adversary and disturbance metrics")
    p.add_argument("--grid-points", type=int, help="points per parameter axis (default from config.yaml: 11)")
    p.add_argument("--worst-case-steps", type=int, help="training steps of the worst-case adversary (0 disables)")
    p.add_argument("--policy-modes", nargs="+", choices=["deterministic", "stochastic"], help="policy modes")
    p.add_argument("--force", action="store_true", help="overwrite an existing eval.parquet")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("leaderboard", help="leaderboard tables and heatmaps from run directories' eval.parquet")
    p.add_argument(
        "results", nargs="*", default=["runs"], metavar="RESULTS_DIR", help="folders to search (default runs)"
    )
    p.add_argument("--out", default="results", help="output folder (default results/)")
    p.add_argument("--policy-mode", choices=["deterministic", "stochastic"], default="stochastic")
    p.add_argument("--allow-mixed", action="store_true", help="accept runs with differing package or task versions")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("diagnose", help="realizability and Bellman-completeness diagnostics")
    diag = p.add_subparsers(dest="diagnose_command", metavar="WHAT", required=True)
    d = diag.add_parser("testbed", help="exact and sample-based diagnostics on MDPs of controllable incompleteness")
    d.add_argument("--lams", type=float, nargs="+", default=[0, 0.1, 0.2, 0.5, 1.0], help="mixing weights lam")
    d.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 20000], help="dataset sizes")
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="MDP seeds")
    d.add_argument("--gamma", type=float, default=0.9, help="discount (default 0.9)")
    d.add_argument("--out", default="results/diagnostics/testbed", help="folder for testbed.{csv,md,png}")
    d.set_defaults(func=cmd_diagnose_testbed)
    d = diag.add_parser("overhead", help="time of the neural critic diagnostics next to training, side by side")
    d.add_argument("--task", default="dmc/cheetah-run", help="task id (default dmc/cheetah-run)")
    d.add_argument("--algo", default="qarl", help="method name (default qarl)")
    d.add_argument(
        "--scale", choices=["smoke", "small", "paper"], default="small", help="budget preset (default small)"
    )
    d.add_argument("--iterations", type=int, default=2, help="training iterations of each trainer (default 2)")
    d.add_argument("--seed", type=int, default=0, help="trial seed (default 0)")
    d.set_defaults(func=cmd_diagnose_overhead)

    p = sub.add_parser("algos", help="list the registered methods")
    p.set_defaults(func=cmd_algos)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = ["qarl", *argv]  # recorded by sweeps as the command that produced their runs
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (UserError, envs.UnknownTaskError, *_trial_errors()) as exc:
        print(f"qarl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
