"""``qarl train``, ``qarl evaluate`` and ``qarl methods``: one trial (or K seeds batched), its robustness evaluation,
and the registered methods."""

from __future__ import annotations

import argparse
import sys

from qarl.cli.common import AtLeast, UserError, add_method_argument, task_id
from qarl.config import SCALES


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT stop the trial and record it as interrupted (meta.json names the signal). SIGINT is set
    explicitly: a process started in the background of a non-interactive shell (``nohup``, ``cmd &`` in a script)
    inherits SIGINT ignored, and Python then leaves it ignored."""
    import signal

    from qarl.experiment.trial import Interrupted

    def _terminate(signum, frame):
        raise Interrupted("SIGTERM")

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt, which the trial records as SIGINT


def cmd_train(args: argparse.Namespace) -> int:
    """One trial in its run directory; ``--resume`` continues an interrupted one."""
    from qarl.config import parse_overrides
    from qarl.experiment.trial import resolve_config, run_dir_for, run_trial, trial_summary

    if args.seeds is not None:
        return _train_group(args)
    if args.seed is None:
        args.seed = 0
    run_dir = run_dir_for(args.out, args.experiment, args.task, args.method, args.seed)
    if args.resume:
        if args.set:
            raise UserError("--set cannot change a run being resumed; it continues with its saved config.yaml")
        config = None  # the task id was checked while parsing
    else:
        try:
            config = resolve_config(
                args.task, args.method, args.seed, args.scale, parse_overrides(args.set or []), args.learner
            )
        except ValueError as exc:  # bad --set values (task and method were checked while parsing): names the key
            raise UserError(str(exc)) from None

    _stop_on_signals()
    print(f"run directory: {run_dir}", file=sys.stderr)
    meta = run_trial(config, run_dir=run_dir, resume=args.resume, iterations=args.iterations)
    print(trial_summary(meta), file=sys.stderr)
    return 0 if meta["status"] == "completed" else 1


def _train_group(args: argparse.Namespace) -> int:
    """``qarl train --seeds ...``: K seeds of one (task, method) in this process, gradient steps batched.

    One ordinary run directory per seed (each resumes like a single-seed run); see :mod:`qarl.experiment.group`.
    """
    from qarl.config import parse_overrides
    from qarl.experiment.group import run_group
    from qarl.experiment.trial import resolve_config, run_dir_for, trial_summary

    seeds = list(args.seeds)
    if args.seed is not None:
        raise UserError("give --seed or --seeds, not both")
    if min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds must be distinct integers >= 0, got {seeds}")
    run_dirs = [run_dir_for(args.out, args.experiment, args.task, args.method, s) for s in seeds]
    if args.resume:
        if args.set:
            raise UserError("--set cannot change runs being resumed; they continue with their saved config.yaml")
        configs = [None] * len(seeds)
    else:
        try:
            overrides = parse_overrides(args.set or [])
            configs = [resolve_config(args.task, args.method, s, args.scale, overrides, args.learner) for s in seeds]
        except ValueError as exc:
            raise UserError(str(exc)) from None

    _stop_on_signals()
    print(f"run directories ({len(seeds)} seeds, gradient steps batched): {run_dirs[0].parent}/seed=*", file=sys.stderr)
    metas = run_group(configs, run_dirs, resume=args.resume, iterations=args.iterations)
    for meta in metas:
        print(trial_summary(meta), file=sys.stderr)
    return 0 if all(m["status"] == "completed" for m in metas) else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from qarl.evaluation import evaluate_trainer
    from qarl.experiment import rundir
    from qarl.experiment.trial import load_trainer

    out = Path(args.run_dir) / rundir.EVAL_FILE
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
    df = evaluate_trainer(trainer, eval_cfg, log=lambda m: print(m, file=sys.stderr, flush=True))
    rundir.write_eval(args.run_dir, df)
    summary = df.groupby(["metric", "policy_mode"])["return"].agg(["size", "mean"]).reset_index()
    print(summary.to_string(index=False))
    print(f"wrote {out}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    """One line per registered method: name, first line of its docstring, paper."""
    from qarl.experiment.registry import get_method, list_methods

    for name in list_methods():
        cls = get_method(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:22s} {doc} [{cls.paper}]")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one trial (task, method, seed) into its run directory",
        epilog="example: qarl train --task dmc/cartpole-balance --method rarl --seed 0 --scale small",
    )
    p.add_argument("--task", required=True, type=task_id, help="task id (see `qarl tasks`)")
    add_method_argument(p, required=True, help="method name (see `qarl methods`)")
    p.add_argument("--seed", type=AtLeast(0), default=None, help="trial seed (default 0)")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        metavar="SEED",
        help="train these seeds together in this process, gradient steps batched (one run directory each)",
    )
    p.add_argument("--scale", choices=SCALES, default="smoke", help="budget preset (default smoke)")
    p.add_argument("--learner", default="default",
                   help="learner preset of configs/learners.yaml for every SAC player (default: default; "
                        "qarl-authors: the QARL authors' choices)")  # fmt: skip
    p.add_argument("--iterations", type=AtLeast(1), help="override the scale's number of iterations")
    p.add_argument("--out", default="runs", help="storage folder (default ./runs)")
    p.add_argument("--experiment", default="default", help="experiment name, a sub-folder of --out")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. protagonist.actor_lr=3e-4"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in the run directory from its checkpoint")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="robustness evaluation of a trained run directory (writes eval.parquet)",
        epilog="example: qarl evaluate runs/default/dmc/cartpole-balance/rarl/seed=0",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, help="K: episodes per grid cell and sweep point")
    p.add_argument("--nominal-episodes", type=int, help="episodes of the nominal, adversary and disturbance metrics")
    p.add_argument("--grid-points", type=int, help="points per parameter axis (default from config.yaml: 11)")
    p.add_argument("--worst-case-steps", type=int, help="training steps of the worst-case adversary (0 disables)")
    p.add_argument("--policy-modes", nargs="+", choices=["deterministic", "stochastic"], help="policy modes")
    p.add_argument("--force", action="store_true", help="overwrite an existing eval.parquet")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "methods",
        help="list the registered methods",
        description="List the registered methods.",
        epilog="example: qarl methods",
    )
    p.set_defaults(func=cmd_methods)
    # the old name of `qarl methods`, still accepted; without a help= it is not listed in `qarl --help`
    p = sub.add_parser(
        "algos",
        description="List the registered methods (the old name of `qarl methods`).",
        epilog="example: qarl algos",
    )
    p.set_defaults(func=cmd_methods)
