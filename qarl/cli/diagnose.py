"""``qarl diagnose``: realizability and Bellman-completeness diagnostics."""

from __future__ import annotations

import argparse

from qarl.cli.common import AtLeast, UserError, add_method_argument, task_id
from qarl.config import SCALES


def cmd_diagnose_testbed(args: argparse.Namespace) -> int:
    from qarl.diagnostics.testbed import run_testbed

    if any(not 0 <= lam <= 1 for lam in args.lams) or any(n < 10 for n in args.n) or not 0 <= args.gamma < 1:
        raise UserError("--lams must lie in [0, 1], --n must be >= 10 and --gamma in [0, 1)")
    df = run_testbed(
        lams=args.lams, ns=args.n, seeds=args.seeds, gamma=args.gamma, out=args.out, datasets=args.datasets
    )
    print(f"{len(df)} rows; wrote {args.out}/testbed.csv, testbed.md and testbed.png")
    return 0


SUBCOMMANDS = ("run", "testbed", "overhead")


def with_run_subcommand(argv: list[str]) -> list[str]:
    """``qarl diagnose RUN_DIR ...`` is ``qarl diagnose run RUN_DIR ...`` (a first argument that is no subcommand)."""
    if len(argv) >= 2 and argv[0] == "diagnose" and argv[1] not in SUBCOMMANDS and not argv[1].startswith("-"):
        return [argv[0], "run", *argv[1:]]
    return argv


def cmd_diagnose_run(args: argparse.Namespace) -> int:
    from qarl.experiment.rundir import RunDirError
    from qarl.report.diagnosis import DiagnosisError, diagnose_run

    try:
        files, verdicts = diagnose_run(args.run_dir, args.out)
    except (DiagnosisError, RunDirError) as exc:
        raise UserError(f"{args.run_dir}: {exc}") from None
    for text in verdicts:
        print(text)
    print("wrote " + ", ".join(str(p) for p in files))
    return 0


def cmd_diagnose_overhead(args: argparse.Namespace) -> int:
    from qarl.bench.diagnostics import bench_overhead

    bench_overhead(args.task, args.method, args.scale, args.iterations, args.seed)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diagnose",
        help="realizability and Bellman-completeness diagnostics",
        epilog="example: qarl diagnose runs/default/dmc/cartpole-balance/qarl/seed=0",
    )
    diag = p.add_subparsers(dest="diagnose_command", metavar="WHAT", required=True)
    d = diag.add_parser(
        "run",
        help="one trial's critic diagnostics as a figure and a verdict per player (also: qarl diagnose RUN_DIR)",
        epilog="example: qarl diagnose runs/my-exp/dmc/cartpole-balance/qarl/seed=0",
    )
    d.add_argument("run_dir", metavar="RUN_DIR", help="a trial's run directory (finished or running)")
    d.add_argument("--out", default=None, help="folder for diagnosis.{png,md,csv} (default RUN_DIR/diagnosis)")
    d.set_defaults(func=cmd_diagnose_run)
    d = diag.add_parser(
        "testbed",
        help="exact and sample-based diagnostics on MDPs of controllable incompleteness",
        epilog="example: qarl diagnose testbed --lams 0 0.5 1 --n 5000 --seeds 0 1 --out testbed",
    )
    d.add_argument("--lams", type=float, nargs="+", default=[0, 0.1, 0.2, 0.5, 1.0], help="mixing weights lam")
    d.add_argument("--n", type=int, nargs="+", default=[1000, 5000, 20000], help="dataset sizes")
    d.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="MDP seeds")
    d.add_argument("--gamma", type=float, default=0.9, help="discount (default 0.9)")
    d.add_argument("--datasets", type=AtLeast(1), default=50, help="sampled datasets per (lam, seed, n) (default 50)")
    d.add_argument("--out", default="testbed", help="folder for testbed.{csv,md,png} (default ./testbed)")
    d.set_defaults(func=cmd_diagnose_testbed)
    d = diag.add_parser(
        "overhead",
        help="time of the neural critic diagnostics next to training, side by side",
        epilog="example: qarl diagnose overhead --task dmc/cartpole-balance --method qarl --scale small",
    )
    d.add_argument("--task", type=task_id, default="dmc/cheetah-run", help="task id (default dmc/cheetah-run)")
    add_method_argument(d, default="qarl", help="method name (default qarl)")
    d.add_argument("--scale", choices=SCALES, default="small", help="budget preset (default small)")
    d.add_argument("--iterations", type=AtLeast(1), default=2, help="training iterations of each trainer (default 2)")
    d.add_argument("--seed", type=AtLeast(0), default=0, help="trial seed (default 0)")
    d.set_defaults(func=cmd_diagnose_overhead)
