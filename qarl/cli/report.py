"""``qarl reproduce``, ``qarl curves`` and ``qarl leaderboard``: figures, learning curves and tables from runs."""

from __future__ import annotations

import argparse

from qarl.cli.common import AtLeast, UserError
from qarl.config import SCALES


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
        reproduce(
            args.figure, args.scale, args.out, address=args.address, log=log, command=args.argv, learner=args.learner
        )
    except (ReproduceError, FigureError, SweepError) as exc:
        raise UserError(str(exc)) from None
    return 0


def cmd_curves(args: argparse.Namespace) -> int:
    from qarl.report.curves import write_curves

    try:
        png, table = write_curves(args.run_dirs, args.out, args.metric, args.threshold, args.title)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(str(exc)) from None
    print(f"wrote {png} and {table}")
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from qarl.provenance import command_line
    from qarl.report.leaderboard import LeaderboardError, main_leaderboard

    command = command_line(args.argv)  # as typed, also when run as `python -m qarl`
    try:
        files = main_leaderboard(
            args.results, args.out, args.allow_mixed, args.policy_mode, command=command, n_boot=args.n_boot
        )
    except LeaderboardError as exc:
        raise UserError(str(exc)) from None
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def cmd_verdicts(args: argparse.Namespace) -> int:
    """The verdict table (probability of improvement, its interval, the rule) of claims between methods."""
    from pathlib import Path

    from qarl.provenance import command_line
    from qarl.report.figures import FigureError, load_runs
    from qarl.report.leaderboard import LeaderboardError, find_runs
    from qarl.report.verdicts import CLAIMS, parse_claim, write_verdicts

    try:
        claims = [parse_claim(c) for c in args.claim] if args.claim else list(CLAIMS)
        run_dirs = find_runs(args.results)
        if not run_dirs:
            raise UserError(f"no run directories under {', '.join(args.results)}")
        files = write_verdicts(load_runs(run_dirs), Path(args.out), claims=claims, command=command_line(args.argv))
    except (ValueError, FigureError, LeaderboardError) as exc:
        raise UserError(str(exc)) from None
    print("wrote " + ", ".join(str(f) for f in files))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="run (or reuse) the sweep behind a paper figure or table and draw it",
        epilog="example: qarl reproduce qarl-table1 --scale smoke --out quickstart",
    )
    p.add_argument("figure", nargs="?", metavar="FIGURE", help="figure name (see --list)")
    p.add_argument("--list", action="store_true", help="list the figures with their sweeps and estimated cost")
    p.add_argument("--scale", choices=SCALES, default="smoke", help="budget (default smoke)")
    p.add_argument("--learner", default="default",
                   help="learner preset (configs/learners.yaml) for every trial; not default: the sweep and figure "
                        "get the preset's name appended (e.g. qarl-main-qarl-authors)")  # fmt: skip
    p.add_argument("--address", help="join the Ray cluster at ADDR (default: RAY_ADDRESS, else embedded local Ray)")
    p.add_argument("--out", default="reproduced", help="folder of runs and figures (default ./%(default)s)")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser(
        "curves",
        help="plot learning curves of run directories (PNG + Markdown table)",
        epilog="example: qarl curves runs/default --out curves",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", required=True, help="folder for curves.png and curves.md")
    p.add_argument(
        "--metric", default="eval_return_zero_force", help="progress column (default eval_return_zero_force)"
    )
    p.add_argument("--threshold", type=float, help="report the first protagonist step above this value")
    p.add_argument("--title", help="figure and page title")
    p.set_defaults(func=cmd_curves)

    p = sub.add_parser(
        "leaderboard",
        help="leaderboard tables and heatmaps from run directories' eval.parquet",
        epilog="example: qarl leaderboard runs/my-sweep --out board",
    )
    p.add_argument(
        "results", nargs="*", default=["runs"], metavar="RESULTS_DIR", help="folders to search (default runs)"
    )
    p.add_argument("--out", default="leaderboard", help="output folder (default ./leaderboard)")
    p.add_argument(
        "--policy-mode",
        choices=["deterministic", "stochastic"],
        default=None,
        help="episodes of this policy mode (default: stochastic where the runs have it, else their one mode)",
    )
    p.add_argument("--allow-mixed", action="store_true", help="accept runs with differing package or task versions")
    p.add_argument("--n-boot", type=AtLeast(100), default=2000,
                   help="bootstrap resamples of every interval (default 2000)")  # fmt: skip
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser(
        "verdicts",
        help="probability of improvement, its interval and a verdict for claims 'X beats Y' (nominal, worst case, "
        "grid mean)",
        epilog="example: qarl verdicts runs/robust-small runs/qarl-learner --claim 'qarl [qarl-authors]>qarl' "
        "--out verdicts",
    )
    p.add_argument("results", nargs="+", metavar="RESULTS_DIR", help="folders to search for run directories")
    p.add_argument("--claim", action="append", metavar="X>Y",
                   help="a claim 'X beats Y' between method names as the reports show them (repeatable; default: "
                        "the robust-RL claims of qarl reproduce robust-small)")  # fmt: skip
    p.add_argument("--out", required=True, help="folder for verdicts.{md,csv,png} and scores.{csv,png}")
    p.set_defaults(func=cmd_verdicts)
