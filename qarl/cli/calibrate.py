"""``qarl calibrate``: a task's adversary strength ladder and its b50 (:mod:`qarl.evaluation.calibration`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qarl.cli.common import AtLeast, UserError, add_method_argument, task_id
from qarl.config import SCALES


def _fraction(value: str) -> float:
    from fractions import Fraction

    from qarl.cli.common import BadValue

    try:
        return float(Fraction(value))
    except (ValueError, ZeroDivisionError):
        raise BadValue(f"must be a number or a fraction such as 1/16, got {value!r}", named=True) from None


def cmd_calibrate(args: argparse.Namespace) -> int:
    import pandas as pd

    from qarl.evaluation.calibration import (
        DEFAULT_FRACTIONS,
        CalibrationError,
        Protagonist,
        calibrate,
        default_bound,
        write_entry,
    )
    from qarl.experiment import rundir
    from qarl.experiment.trial import load_trainer
    from qarl.files import atomic_write_text
    from qarl.provenance import command_line
    from qarl.report.calibration import table_entry, write_calibration

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    out = Path(args.out or Path("calibration") / args.task.replace("/", "_"))
    fractions = tuple(args.fractions or DEFAULT_FRACTIONS)
    if args.runs:
        run_dirs = [rundir.require_run_dir(d) for d in args.runs]
        configs = [rundir.read_config(d) for d in run_dirs]
        other = sorted({c["task"] for c in configs} - {args.task})
        if other:
            raise UserError(f"--runs hold runs of {other}, not {args.task}")
        method = ", ".join(sorted({c["method"] for c in configs}))
        scale = ", ".join(sorted({c["scale"] for c in configs}))
    else:
        run_dirs = _train(args, out / "runs", log)
        method, scale = args.method, args.scale

    points_file = out / "points.csv"
    done = pd.read_csv(points_file) if points_file.exists() else None
    if done is not None:
        log(f"reusing the points measured in {points_file}")
    out.mkdir(parents=True, exist_ok=True)

    protagonists = []
    for d in run_dirs:
        config, trainer, _ = load_trainer(d)
        protagonists.append(Protagonist(str(d), config.seed, trainer, config.eval))

    def save(frame: pd.DataFrame) -> None:
        atomic_write_text(points_file, frame.to_csv(index=False))

    try:
        points = calibrate(
            protagonists,
            fractions,
            episodes=args.episodes,
            worst_case_steps=args.worst_case_steps,
            policy_mode=args.policy_mode,
            done=done,
            on_point=save,
            log=log,
        )
        save(points)
        setting = {
            "method": method,
            "scale": scale,
            "default_bound": float(default_bound(args.task).max()),
            "worst_case_steps": int(points["worst_case_steps"].iloc[0]),
            "policy_mode": points["policy_mode"].iloc[0],
            "episodes": int(points.groupby(["run_dir", "fraction"]).size().iloc[0]),
            "command": command_line(args.argv),
        }
        result, paths = write_calibration(args.task, points, out, setting)
    except CalibrationError as exc:
        raise UserError(str(exc)) from None
    b50 = result["b50"]
    print(f"{args.task}: b50 = {'beyond the ladder' if b50 is None else f'{b50:.4g}'}")
    print("wrote " + ", ".join(str(p) for p in [points_file, *paths]))
    if args.write:
        table = write_entry(args.task, table_entry(args.task, points, result, setting), args.table)
        print(f"wrote {args.task}'s entry in {table}")
    return 0


def _train(args: argparse.Namespace, runs: Path, log) -> list[Path]:
    """The protagonists: ``--method`` at ``--scale`` for ``--seeds`` under ``runs`` (completed runs reused,
    interrupted ones resumed), seeds trained together."""
    from qarl.experiment import rundir
    from qarl.experiment.group import run_group
    from qarl.experiment.trial import resolve_config, run_dir_for

    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds must be distinct, got {args.seeds}")
    dirs = [run_dir_for(runs, "calibration", args.task, args.method, s) for s in args.seeds]
    todo = [
        (s, d)
        for s, d in zip(args.seeds, dirs, strict=True)
        if rundir.read_meta(d, missing_ok=True).get("status") != "completed"
    ]
    if not todo:
        log(f"reusing the completed protagonists under {runs}")
        return dirs
    log(f"training {args.method} at scale {args.scale}, seeds {[s for s, _ in todo]}, into {runs}")
    started = [d for _, d in todo if (d / rundir.CONFIG_FILE).exists()]
    new = [(s, d) for s, d in todo if d not in started]
    no_eval = {"eval": {"enabled": False}}  # the calibration is their evaluation
    metas = run_group([None] * len(started), started, resume=True) if started else []
    if new:
        metas += run_group(
            [resolve_config(args.task, args.method, s, args.scale, no_eval) for s, _ in new], [d for _, d in new]
        )
    bad = [(m["seed"], m["status"]) for m in metas if m["status"] != "completed"]
    if bad:
        raise UserError(f"the protagonists' training did not complete (seed, status): {bad}")
    return dirs


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="a task's worst-case return over a ladder of adversary bounds, and its b50",
        description="Play trained protagonists against a fresh worst-case adversary at each bound of a ladder "
        "(fractions of the task's default bound) and find b50, the bound at which the worst-case return falls to half "
        "of the nominal return. Writes calibration.{csv,md,png} and points.csv (reused when run again).",
        epilog="example: qarl calibrate dmc/cartpole-balance --scale small --seeds 0 1 2 --write",
    )
    p.add_argument("task", type=task_id, metavar="TASK", help="task id (see `qarl tasks`)")
    p.add_argument("--runs", nargs="+", metavar="RUN_DIR", help="protagonists to calibrate with (default: train them)")
    add_method_argument(p, default="sac", help="method of the protagonists trained without --runs (default sac)")
    p.add_argument("--scale", choices=SCALES, default="smoke", help="their budget preset (default smoke)")
    p.add_argument("--seeds", type=AtLeast(0), nargs="+", default=[0, 1, 2], help="their seeds (default 0 1 2)")
    p.add_argument(
        "--fractions",
        type=_fraction,
        nargs="+",
        metavar="F",
        help="the ladder, fractions of the default bound (default 0 1/16 1/8 1/4 1/2 1 2)",
    )
    p.add_argument("--episodes", type=AtLeast(1), help="episodes per point (default: the runs' nominal_episodes)")
    p.add_argument("--worst-case-steps", type=AtLeast(1), help="worst-case budget (default: the runs' own)")
    p.add_argument(
        "--policy-mode",
        choices=["deterministic", "stochastic"],
        help="the protagonists' policy mode (default: the first of the runs' policy_modes)",
    )
    p.add_argument("--out", help="output folder (default ./calibration/<task>)")
    p.add_argument("--write", action="store_true", help="put the result in the calibration table")
    p.add_argument("--table", help="the calibration table to write (default configs/tasks/calibration.yaml)")
    p.set_defaults(func=cmd_calibrate)
