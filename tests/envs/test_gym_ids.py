"""Gymnasium ids of every task's two views (envs/gym_ids.py)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
import envs.gym_ids as gym_ids

ALL_IDS = [(t, v) for t in envs.list_tasks() for v in gym_ids.VIEWS]
QUICK = [(t, v) for t, v in ALL_IDS if t in ("dmc/cartpole-balance", "gym/Hopper-v5")]


def _check(task_id: str, view: str) -> None:
    env = gymnasium.make(gym_ids.gym_id(task_id, view))
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs.astype(env.observation_space.dtype))
    env.close()


@pytest.mark.parametrize(("task_id", "view"), QUICK)
def test_gymnasium_make_passes_check_env(task_id, view):
    _check(task_id, view)


@pytest.mark.slow
@pytest.mark.parametrize(("task_id", "view"), ALL_IDS)
def test_every_registered_id_passes_check_env(task_id, view):
    _check(task_id, view)


def test_ids_cover_every_task_and_view_and_follow_the_naming():
    assert len(gym_ids.IDS) == 2 * len(envs.list_tasks()) == len(set(gym_ids.IDS))
    assert gym_ids.gym_id("dmc/cartpole-balance", "protagonist") == "qarl/dmc-cartpole-balance-protagonist-v0"
    assert all(i in gymnasium.registry for i in gym_ids.IDS)
    assert gym_ids.register_all() == gym_ids.IDS  # idempotent


def test_views_match_the_game_and_take_the_other_player_as_a_kwarg():
    game = envs.make("dmc/cartpole-balance")
    push = np.full(game.adversary_action_space.shape, 0.5, dtype=np.float32)
    prot = gymnasium.make("qarl/dmc-cartpole-balance-protagonist-v0", adversary=lambda obs: push)
    adv = gymnasium.make("qarl/dmc-cartpole-balance-adversary-v0", protagonist=lambda obs: np.zeros(1, np.float32))
    obs_p, _ = prot.reset(seed=5)
    obs_a, _ = adv.reset(seed=5)
    np.testing.assert_array_equal(obs_a, obs_p)
    game_obs, _ = game.reset(seed=5)
    np.testing.assert_array_equal(obs_p, game_obs)
    a = np.zeros(1, dtype=np.float32)
    _, r_p, *_ = prot.step(a)
    _, r_a, *_ = adv.step(push)
    _, r_g, *_ = game.step(a, push)
    assert r_p == r_g and r_a == -r_g


def test_vector_env_and_module_prefixed_id():
    vec = gymnasium.make_vec("qarl/dmc-cartpole-balance-protagonist-v0", num_envs=2)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 5)
    vec.close()
    env = gymnasium.make("envs.gym_ids:qarl/dmc-cartpole-balance-adversary-v0")
    assert env.action_space.shape == envs.make("dmc/cartpole-balance").adversary_action_space.shape


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="render_mode must be None or 'rgb_array'"):
        gymnasium.make("qarl/dmc-cartpole-balance-protagonist-v0", render_mode="human")
    with pytest.raises(TypeError, match="protagonist view takes adversary="):
        gymnasium.make("qarl/dmc-cartpole-balance-protagonist-v0", protagonist=lambda o: 0)
    with pytest.raises(ValueError, match="view must be one of"):
        gym_ids.gym_id("dmc/cartpole-balance", "referee")
    with pytest.raises(envs.UnknownTaskError):
        gym_ids.gym_id("dmc/cartpole-balence", "protagonist")


def test_rgb_array_rendering_in_a_fresh_process():
    """MuJoCo picks its GL backend at import, hence a subprocess with MUJOCO_GL=egl; where no backend works, the
    game's error names the fix."""
    import os
    import subprocess
    import sys

    code = (
        "import gymnasium, envs.gym_ids\n"
        "env = gymnasium.make('qarl/dmc-cartpole-balance-protagonist-v0', render_mode='rgb_array')\n"
        "env.reset(seed=0)\n"
        "try:\n"
        "    frame = env.render()\n"
        "except RuntimeError as exc:\n"
        "    print('NO-GL', exc)\n"
        "else:\n"
        "    print('FRAME', frame.shape, frame.dtype, int(frame.std() > 0))\n"
        "env.close()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "MUJOCO_GL": "egl"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "FRAME (360, 480, 3) uint8 1" in proc.stdout or ("NO-GL" in proc.stdout and "MUJOCO_GL" in proc.stdout)
