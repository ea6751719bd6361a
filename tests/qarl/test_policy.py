"""Trained policies outside the loop (qarl/policy.py): load, predict, export to stable-baselines3, play."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch as th

from qarl.cli import main
from qarl.experiment.trial import load_trainer, resolve_config, run_dir_for, run_trial
from qarl.policy import PolicyError, export_sb3, load

TASK = "dmc/cartpole-balance"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("runs")
    dirs = {}
    for method in ("qarl", "rarl", "sac"):
        config = resolve_config(
            TASK, method, 0, "smoke", {"eval": {"enabled": False}, "diagnostics": {"enabled": False}}
        )
        dirs[method] = run_dir_for(out, "p", TASK, method, 0)
        run_trial(config, run_dir=dirs[method], log=lambda m: None)
    return dirs


def _observations(policy, n: int = 6) -> np.ndarray:
    game = policy.make_game()
    obs = [game.reset(seed=k)[0] for k in range(n)]
    for _ in range(5):  # and a few states off the initial distribution
        obs.append(
            game.step(np.full(game.protagonist_action_space.shape, 0.3), np.zeros(game.adversary_action_space.shape))[0]
        )
    return np.stack(obs)


@pytest.mark.parametrize("method", ["qarl", "rarl"])
def test_predict_gives_the_evaluations_actions(runs, method):
    policy = load(runs[method])
    assert (policy.task, policy.method, policy.seed, policy.iteration) == (TASK, method, 0, 3)
    obs = _observations(policy)
    _, trainer, _ = load_trainer(runs[method])
    trainer.prepare_evaluation()
    for deterministic in (True, False):
        th.manual_seed(1)
        expected_actions, expected_forces = trainer.eval_actions(obs, deterministic, True)
        th.manual_seed(1)
        actions = policy.predict(obs, deterministic=deterministic)
        forces = policy.predict(obs, deterministic=deterministic, player="adversary")
        if deterministic:
            np.testing.assert_array_equal(actions, expected_actions)
            np.testing.assert_array_equal(forces, expected_forces)
    np.testing.assert_array_equal(policy.predict(obs[0]), policy.predict(obs)[0])  # one observation, no batch axis
    with pytest.raises(PolicyError, match="observations must have shape"):
        policy.predict(np.zeros(3))


@pytest.mark.parametrize("method", ["qarl", "rarl"])
def test_exported_zip_loads_with_plain_sb3_and_acts_the_same(runs, method, tmp_path):
    from stable_baselines3 import SAC

    policy = load(runs[method])
    path = export_sb3(policy, tmp_path / "protagonist.zip")
    model = SAC.load(path)
    obs = _observations(policy)
    assert model.observation_space.shape == policy.make_game().observation_space.shape  # alpha is folded in
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(actions, policy.predict(obs), atol=1e-6)
    # the critics too: Q(s, a) of the exported model equals the trained critic's (alpha = 0 appended)
    learner = policy.trainer.players["protagonist"].model
    a = th.as_tensor(learner.policy.scale_action(actions), dtype=th.float32)
    own_obs = th.as_tensor(policy.trainer.player_obs_batch("protagonist", obs), dtype=th.float32)
    with th.no_grad():
        mine = th.cat(learner.critic(own_obs, a), dim=1)
        theirs = th.cat(model.critic(th.as_tensor(obs, dtype=th.float32), a), dim=1)
    th.testing.assert_close(theirs, mine, atol=1e-5, rtol=1e-5)


def test_export_refuses_what_it_cannot_express(runs, tmp_path):
    with pytest.raises(PolicyError, match="sac has no adversary SAC player"):
        export_sb3(load(runs["sac"]), tmp_path / "adv.zip", player="adversary")
    assert main(["export", str(runs["sac"]), "--out", str(tmp_path / "a.zip"), "--player", "adversary"]) == 2


def test_cli_export_and_play(runs, tmp_path, capsys):
    assert main(["export", str(runs["qarl"]), "--out", str(tmp_path / "p.zip")]) == 0
    assert (tmp_path / "p.zip").exists() and "SAC.load" in capsys.readouterr().out
    assert main(["play", str(runs["rarl"]), "--episodes", "2", "--adversary"]) == 0
    out = capsys.readouterr().out
    assert "episode 2: return" in out and "with the adversary" in out
    assert main(["play", str(tmp_path / "missing")]) == 2


@pytest.mark.slow
def test_play_records_a_video_or_says_why_not(runs, tmp_path):
    """In a fresh process (MuJoCo picks its GL backend at import): an MP4 with one frame per step and a final one,
    or, where no OpenGL backend works, exit status 2 with the reason."""
    video = tmp_path / "play.mp4"
    env = {**os.environ, "MUJOCO_GL": "egl"}
    cmd = [
        sys.executable,
        "-m",
        "qarl",
        "play",
        str(runs["rarl"]),
        "--video",
        str(video),
        "--width",
        "64",
        "--height",
        "48",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode == 0:
        import imageio.v3 as iio

        frames = iio.imread(video)
        assert frames.shape[0] == 51 and frames.shape[1:3] == (48, 64), frames.shape  # 50 steps + the last state
        assert frames.std() > 0  # not a blank image
    else:
        assert proc.returncode == 2 and "cannot render" in proc.stderr, proc.stderr[-2000:]
