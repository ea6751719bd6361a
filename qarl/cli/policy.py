"""``qarl export`` and ``qarl play``: a run's trained policy outside the training loop (:mod:`qarl.policy`)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from qarl.cli.common import AtLeast, UserError


def _load(run_dir: str):
    from qarl.experiment.trial import TrialError
    from qarl.policy import load
    from qarl.training.checkpoint import CheckpointError

    try:
        return load(run_dir)
    except (TrialError, CheckpointError) as exc:
        raise UserError(str(exc)) from None


def cmd_export(args: argparse.Namespace) -> int:
    from qarl.policy import PolicyError, export_sb3

    policy = _load(args.run_dir)
    try:
        path = export_sb3(policy, args.out, player=args.player)
    except PolicyError as exc:
        raise UserError(str(exc)) from None
    print(
        f"wrote {path}: the {args.player} of {policy.task} {policy.method} seed {policy.seed} at iteration "
        f"{policy.iteration}; load it with stable_baselines3.SAC.load({str(path)!r})"
    )
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    if args.video:
        os.environ.setdefault("MUJOCO_GL", "egl")  # before MuJoCo is first imported (by loading the run's games)
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise UserError("--video needs imageio and imageio-ffmpeg: pip install -e '.[video]'") from None
    import numpy as np

    from qarl.training.rollout import rollout

    policy = _load(args.run_dir)
    game = policy.make_game()
    frames: list[np.ndarray] = []
    zero = np.zeros(game.adversary_action_space.shape)

    def act(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if args.video:
            frames.append(game.render_frame(args.width, args.height))
        action = policy.predict(obs, deterministic=not args.stochastic)
        force = policy.predict(obs, deterministic=not args.stochastic, player="adversary") if args.adversary else zero
        return action, force

    returns = []
    try:
        for k in range(args.episodes):
            ep = rollout(game, act, seed=args.seed + k)
            returns.append(ep.ret)
            print(f"episode {k + 1}: return {ep.ret:.2f}, {ep.length} steps")
        if args.video:
            frames.append(game.render_frame(args.width, args.height))  # the last state
    except RuntimeError as exc:
        if "cannot render" in str(exc):
            raise UserError(str(exc)) from None
        raise
    finally:
        game.close()
    pushed = "with the adversary" if args.adversary else "no force"
    print(f"mean return {np.mean(returns):.2f} over {len(returns)} episode(s), {pushed}")
    if args.video:
        out = Path(args.video)
        out.parent.mkdir(parents=True, exist_ok=True)
        fps = args.fps or max(1, round(1.0 / game.dt))
        with imageio.get_writer(out, fps=fps) as writer:
            for frame in frames:
                writer.append_data(frame)
        print(f"wrote {out} ({len(frames)} frames at {fps} fps)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's trained player as a stable-baselines3 SAC .zip",
        epilog="example: qarl export runs/default/dmc/cartpole-balance/qarl/seed=0 --out protagonist.zip",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trial's run directory (its newest checkpoint is used)")
    p.add_argument("--out", required=True, help="the .zip to write")
    p.add_argument("--player", choices=("protagonist", "adversary"), default="protagonist", help="default protagonist")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser(
        "play",
        help="run a trained policy for a few episodes (optionally recording an MP4)",
        epilog="example: qarl play runs/default/dmc/cartpole-balance/qarl/seed=0 --episodes 2 --video play.mp4",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trial's run directory (its newest checkpoint is used)")
    p.add_argument("--episodes", type=AtLeast(1), default=1, help="episodes to run (default 1)")
    p.add_argument("--seed", type=AtLeast(0), default=0, help="reset seed of the first episode (default 0)")
    p.add_argument("--adversary", action="store_true", help="the co-trained adversary pushes (default: no force)")
    p.add_argument("--stochastic", action="store_true", help="sample actions (default: the mean action)")
    p.add_argument("--video", metavar="MP4", help="record the episodes (needs an OpenGL backend, MUJOCO_GL=egl)")
    p.add_argument("--width", type=AtLeast(16), default=640, help="video width (default 640)")
    p.add_argument("--height", type=AtLeast(16), default=480, help="video height (default 480)")
    p.add_argument("--fps", type=AtLeast(1), default=None, help="video frame rate (default: the game's control rate)")
    p.set_defaults(func=cmd_play)
