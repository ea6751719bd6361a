"""The ``qarl`` command line.

One module per command family adds its sub-commands (``add_parsers``) and holds their handlers:
:mod:`~qarl.cli.games` (tasks, demo), :mod:`~qarl.cli.train` (train, evaluate, methods), :mod:`~qarl.cli.calibrate`,
:mod:`~qarl.cli.sweep`,
:mod:`~qarl.cli.report` (reproduce, curves, leaderboard), :mod:`~qarl.cli.bench` and :mod:`~qarl.cli.diagnose`;
:mod:`~qarl.cli.common` has what they share. This module assembles the parser and reports errors.

User errors (an unknown task id, a bad value) print one line saying what is wrong and exit with status 2,
without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import envs
from qarl import __version__
from qarl.cli import bench, calibrate, diagnose, games, policy, report, sweep, train
from qarl.cli.common import ArgumentParser, BadArgument, UserError
from qarl.cli.games import DEMO_TASKS, task_rows

__all__ = ["DEMO_TASKS", "UserError", "build_parser", "main", "task_rows"]

#: The command families, in the order of ``qarl --help``.
FAMILIES = (games, train, calibrate, sweep, report, bench, diagnose, policy)


def _trial_errors() -> tuple[type[Exception], ...]:
    from qarl.config import ConfigError
    from qarl.experiment.registry import UnknownMethodError
    from qarl.experiment.trial import TrialError
    from qarl.training.checkpoint import CheckpointError

    return (TrialError, CheckpointError, ConfigError, UnknownMethodError)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="qarl",
        description="Robust RL benchmark suite: QARL, RARL and baselines in two-player zero-sum MuJoCo games.",
    )
    parser.add_argument("--version", action="version", version=f"qarl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for family in FAMILIES:
        family.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(diagnose.with_run_subcommand(argv))
    except BadArgument as exc:  # a value an argument type refused (unknown task id, unknown method)
        print(f"{exc.command}: error: {exc}", file=sys.stderr)
        return 2
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
