"""``qarl bench ...``: benchmarks that print side-by-side ratios."""

from __future__ import annotations

import argparse

from qarl.cli.common import AtLeast, UserError, add_method_argument, task_id


def cmd_bench_loop(args: argparse.Namespace) -> int:
    from qarl.bench.loop import bench_loop

    if args.steps % 1000 or not args.learning_starts < args.steps:
        raise UserError("--steps must be a positive multiple of 1000 and --learning-starts < --steps")
    bench_loop(args.task, args.steps, args.learning_starts, args.rounds)
    return 0


def cmd_bench_grid(args: argparse.Namespace) -> int:
    from qarl.bench.loop import bench_grid

    bench_grid(args.tasks, args.horizon, args.points, args.rounds)
    return 0


def cmd_bench_update(args: argparse.Namespace) -> int:
    from qarl.bench.learner import bench_update

    bench_update(args.rounds, args.updates)
    return 0


def cmd_bench_trial(args: argparse.Namespace) -> int:
    from qarl.bench.learner import bench_trial

    if not args.learning_starts < 1000 * args.episodes:
        raise UserError("--learning-starts must be below 1000 x --episodes")
    bench_trial(args.task, args.episodes, args.learning_starts, args.rounds)
    return 0


def cmd_bench_sweep(args: argparse.Namespace) -> int:
    from qarl.bench.sweep import bench_sweep

    bench_sweep(args.task, args.method, args.iterations, args.horizon, args.out)
    return 0


def cmd_bench_group(args: argparse.Namespace) -> int:
    from qarl.bench.learner import bench_group, bench_group_trial

    if args.trial:
        if len(args.k) != 1 or not args.learning_starts < 1000 * args.episodes:
            raise UserError("--trial takes one --k, and --learning-starts below 1000 x --episodes")
        bench_group_trial(args.task, args.method, args.k[0], args.episodes, args.learning_starts, args.rounds)
        return 0
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {args.device}: torch sees no CUDA device here")
    bench_group(args.k, args.rounds, args.updates, args.device)
    return 0


def _task_and_schedule(b: argparse.ArgumentParser, task: str, rounds: str) -> None:
    """--task, --learning-starts and --rounds of the benchmarks that time short training runs."""
    b.add_argument("--task", type=task_id, default=task, help="task id (default %(default)s)")
    b.add_argument("--learning-starts", type=AtLeast(0), default=1000, help="transitions before updates (default 1000)")
    b.add_argument("--rounds", type=AtLeast(1), default=3, help=f"alternating rounds {rounds} (default 3)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="benchmarks that print side-by-side ratios", epilog="example: qarl bench update"
    )
    bench = p.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    b = bench.add_parser(
        "loop",
        help="two-player loop vs plain stable-baselines3 SAC: env steps/s and time per update",
        epilog="example: qarl bench loop",
    )
    _task_and_schedule(b, "dmc/cartpole-balance", "per path")
    b.add_argument("--steps", type=AtLeast(1000), default=6000, help="env steps per round, a multiple of 1000 (6000)")
    b.set_defaults(func=cmd_bench_loop)
    b = bench.add_parser(
        "grid",
        help="batched grid evaluation vs a naive predict loop: episodes/s and speedup",
        epilog="example: qarl bench grid",
    )
    b.add_argument(
        "--tasks", nargs="+", type=task_id, default=["dmc/cheetah-run", "gym/HalfCheetah-v5"], help="task ids"
    )
    b.add_argument("--horizon", type=AtLeast(1), default=200, help="episode length (default 200)")
    b.add_argument("--points", type=AtLeast(2), default=11, help="grid points per axis (default 11)")
    b.add_argument("--rounds", type=AtLeast(1), default=3, help="alternating rounds; medians compared (default 3)")
    b.set_defaults(func=cmd_bench_grid)
    b = bench.add_parser(
        "update",
        help="SAC updates/s (SB3 vs the fast update) against the matmul limit, one core",
        epilog="example: qarl bench update",
    )
    b.add_argument("--rounds", type=AtLeast(1), default=5, help="alternating rounds (default 5)")
    b.add_argument("--updates", type=AtLeast(1), default=60, help="updates per learner and round (default 60)")
    b.set_defaults(func=cmd_bench_update)
    b = bench.add_parser(
        "trial",
        help="env steps/s of a short QARL trial, fast vs SB3 update; paper-scale projection",
        epilog="example: qarl bench trial",
    )
    _task_and_schedule(b, "dmc/cheetah-run", "per learner")
    b.add_argument("--episodes", type=AtLeast(1), default=2, help="episodes per phase, 1000 steps each (default 2)")
    b.set_defaults(func=cmd_bench_trial)
    b = bench.add_parser(
        "sweep",
        help="Ray sweep scaling: env steps/s of 1 vs 2 concurrent trials, start-up cost",
        epilog="example: qarl bench sweep --out my-benchmarks/sweep.md",
    )
    b.add_argument("--task", type=task_id, default="dmc/cartpole-balance", help="task id (default %(default)s)")
    add_method_argument(b, default="sac", help="method (default sac)")
    b.add_argument("--iterations", type=AtLeast(1), default=3, help="iterations per trial (default 3)")
    b.add_argument("--horizon", type=AtLeast(1), default=200, help="episode length (default 200)")
    b.add_argument("--out", default="benchmarks/sweep.md", help="Markdown report (default %(default)s)")
    b.set_defaults(func=cmd_bench_sweep)
    b = bench.add_parser(
        "group",
        help="total SAC updates/s of K seeds' models updated together vs one model's",
        epilog="example: qarl bench group",
    )
    b.add_argument("--k", type=AtLeast(1), nargs="+", default=[1, 4, 8], help="group sizes (default 1 4 8)")
    b.add_argument("--rounds", type=AtLeast(1), default=5, help="alternating rounds (default 5)")
    b.add_argument("--updates", type=AtLeast(1), default=20, help="steps per learner and round (default 20)")
    b.add_argument("--device", default="cpu", help="torch device of the models (default cpu; e.g. cuda)")
    b.add_argument("--trial", action="store_true", help="instead: K short trials, run_group vs run_trial one by one")
    b.add_argument("--task", type=task_id, default="dmc/cheetah-run", help="--trial: task id (default dmc/cheetah-run)")
    add_method_argument(b, default="sac", help="--trial: method (default sac)")
    b.add_argument("--episodes", type=AtLeast(1), default=2, help="--trial: episodes per phase of 1000 steps (2)")
    b.add_argument("--learning-starts", type=AtLeast(0), default=1000, help="--trial: transitions before updates")
    b.set_defaults(func=cmd_bench_group)
