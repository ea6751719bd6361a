"""``qarl sweep``: a sweep file's trials on Ray Tune."""

from __future__ import annotations

import argparse

from qarl.cli.common import UserError


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
    if summary["interrupted_by"]:
        return 130  # as a shell reports a command that SIGINT ended
    return 1 if summary["failed"] else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a sweep file's trials (tasks x methods x seeds) on Ray Tune",
        epilog="example: qarl sweep configs/sweeps/smoke.yaml --dry-run",
    )
    p.add_argument("config", metavar="CONFIG", help="sweep file, e.g. configs/sweeps/smoke.yaml")
    p.add_argument("--address", help="join the Ray cluster at ADDR (default: RAY_ADDRESS, else embedded local Ray)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep; completed trials are skipped")
    p.add_argument("--max-concurrent", type=int, metavar="N", help="trials running at once (overrides the file)")
    p.add_argument("--storage", metavar="PATH", help="folder of the run directories (overrides the file)")
    p.add_argument("--dry-run", action="store_true", help="print the trials and resources; start and write nothing")
    p.set_defaults(func=cmd_sweep)
