"""``qarl tasks`` and ``qarl demo``: the registered games, and random play in a few of them."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import envs
from qarl.cli.common import UserError, task_id
from qarl.training.rollout import Transition, rollout

DEMO_TASKS = ("gym/HalfCheetah-v5", "dmc/cheetah-run")


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def task_rows(family: str | None = None) -> list[dict]:
    """One row per registered task, built from the games themselves (so the table cannot drift)."""
    rows = []
    for task in envs.list_tasks(family):
        game = envs.make(task)
        nominal, bounds = game.nominal_params(), game.param_bounds()
        rows.append(
            {
                "id": task,
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
    """Random protagonist vs random adversary: returns, applied forces and parameters per episode.

    The task ids were checked while parsing (:func:`~qarl.cli.common.task_id`): unknown ids fail before anything runs.
    """
    if args.episodes < 1 or args.steps < 1:
        raise UserError("--episodes and --steps must be at least 1")
    for task in args.tasks:
        game = envs.make(task, horizon=args.steps)
        rng = np.random.default_rng(args.seed)
        print(f"\n== {task}: {type(game).__name__}, dt={game.dt:g}s, horizon {game.horizon} steps")
        print(f"   adversary: {', '.join(game.adversary_labels)} within +-{game.adversary_bound.tolist()}")
        bounds = game.param_bounds()
        for ep in range(args.episodes):
            # episode 0 at nominal parameters, later ones at a random point of the robustness range
            params = (
                game.nominal_params() if ep == 0 else {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in bounds.items()}
            )
            game.set_params(**params)
            force_abs, t0 = np.zeros(len(game.adversary_labels)), time.perf_counter()

            def random_actions(obs: np.ndarray, game=game, rng=rng) -> tuple[np.ndarray, np.ndarray]:
                a = rng.uniform(game.protagonist_action_space.low, game.protagonist_action_space.high)
                return a, rng.uniform(game.adversary_action_space.low, game.adversary_action_space.high)

            def add_force(t: Transition, force_abs=force_abs) -> None:
                force_abs += np.abs(t.info["adversary_force"])

            episode = rollout(game, random_actions, seed=args.seed + ep, on_step=add_force)
            info, steps = episode.info, episode.length
            mean_force = ", ".join(
                f"{lab}={_fmt(f)}" for lab, f in zip(game.adversary_labels, force_abs / steps, strict=True)
            )
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in info["params"].items())
            speed = steps / (time.perf_counter() - t0)
            print(
                f"   episode {ep}: return {episode.ret:9.3f} over {steps} steps ({speed:.0f} steps/s)"
                f"{' [terminated]' if episode.terminated else ''}\n"
                f"      params: {shown}\n      mean |force|: {mean_force}"
            )
        game.close()
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tasks",
        help="list the registered games with their dimensions, forces and parameters",
        epilog="example: qarl tasks",
    )
    p.add_argument("--family", choices=["gym", "dmc"], help="only this family")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser(
        "demo", help="play random protagonist vs random adversary on a few tasks", epilog="example: qarl demo"
    )
    p.add_argument(
        "--tasks", nargs="+", type=task_id, default=list(DEMO_TASKS), metavar="TASK", help="task ids (see `qarl tasks`)"
    )
    p.add_argument("--episodes", type=int, default=2, help="episodes per task (default 2)")
    p.add_argument("--steps", type=int, default=200, help="control steps per episode (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of games and random players (default 0)")
    p.set_defaults(func=cmd_demo)
