"""Single-agent views and the PettingZoo wrapper, over every registered task."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from pettingzoo.test import parallel_api_test
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.pettingzoo import parallel_env
from envs.views import AdversaryView, ProtagonistView

ALL_TASKS = envs.list_tasks()


def _random_policy(space, seed: int):
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(space.low, space.high).astype(space.dtype)


def _linear_policy(obs_dim: int, space, seed: int):
    """A fixed random linear policy: deterministic in the observation, as the checkers' seeding tests need."""
    w = np.random.default_rng(seed).normal(size=(space.shape[0], obs_dim))
    scale = (space.high - space.low) / 2
    return lambda obs: (
        np.tanh(w @ np.nan_to_num(obs) / np.sqrt(obs_dim)) * scale + (space.high + space.low) / 2
    ).astype(space.dtype)


def _views(task_id: str):
    game_p, game_a = envs.make(task_id), envs.make(task_id)
    n = game_p.observation_space.shape[0]
    adversary = _linear_policy(n, game_p.adversary_action_space, 0)
    protagonist = _linear_policy(n, game_a.protagonist_action_space, 1)
    return ProtagonistView(game_p, adversary), AdversaryView(game_a, protagonist)


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_gymnasium_env_checker_passes_on_both_views(task_id):
    for view in _views(task_id):
        with warnings.catch_warnings():
            # gymnasium recommends a symmetric [-1, 1] action box; the adversary's is in physical units.
            warnings.filterwarnings("ignore", message=".*symmetric.*")
            gym_check_env(view, skip_render_check=True)


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_sb3_env_checker_passes_on_both_views(task_id):
    for view in _views(task_id):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(symmetric|normalized|action space).*")
            sb3_check_env(view, warn=True)


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_pettingzoo_parallel_api(task_id):
    parallel_api_test(parallel_env(task_id, horizon=200), num_cycles=300)


def test_adversary_view_reward_is_negated_and_protagonist_embedded():
    task = "dmc/cheetah-run"
    game, ref = envs.make(task), envs.make(task)
    protagonist = _random_policy(game.protagonist_action_space, 3)
    protagonist_ref = _random_policy(game.protagonist_action_space, 3)
    view = AdversaryView(game, protagonist)
    obs, _ = view.reset(seed=4)
    obs_ref, _ = ref.reset(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        b = rng.uniform(-1, 1, size=6)
        obs, r, *_ = view.step(b)
        obs_ref, r_ref, *_ = ref.step(protagonist_ref(obs_ref), b)
        np.testing.assert_array_equal(obs, obs_ref)
        assert r == -r_ref


def test_protagonist_view_without_adversary_applies_zero_force():
    view = ProtagonistView(envs.make("gym/HalfCheetah-v5"))
    view.reset(seed=0)
    *_, info = view.step(view.action_space.sample())
    assert np.all(info["adversary_force"] == 0)


def test_view_errors():
    with pytest.raises(TypeError, match="ZeroSumGame"):
        ProtagonistView("gym/Hopper-v5")
    with pytest.raises(TypeError, match="callable"):
        AdversaryView(envs.make("gym/Hopper-v5"), protagonist=None)
    view = ProtagonistView(envs.make("gym/Hopper-v5"))
    with pytest.raises(RuntimeError, match="reset"):
        view.step(view.action_space.sample())


def test_pettingzoo_rewards_are_zero_sum_and_agents_end_together():
    env = parallel_env("dmc/walker-walk", horizon=5)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"protagonist", "adversary"}
    for _t in range(5):
        actions = {a: env.action_space(a).sample() for a in env.agents}
        _, rewards, _terms, truncs, _ = env.step(actions)
        assert rewards["protagonist"] == -rewards["adversary"]
    assert all(truncs.values()) and env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step(actions)


def test_navigate_wind_only_in_its_band_and_reported():
    game = envs.make("dmc/quadruped-navigate")
    assert game.adversary_action_space.low[0] == 0 and game.adversary_action_space.high[0] == 600
    zero = np.zeros(12)
    results = {}
    for x in (0.0, 6.0):
        for wind in (0.0, 600.0, 5000.0):
            game.reset(seed=2)
            game.data.qpos[0] = x  # torso x (free joint)
            _, _r, _, _, info = game.step(zero, [wind])
            results[x, wind] = (game.data.qvel[1], game.data.qpos.copy(), info)
    assert results[6.0, 600.0][0] > results[6.0, 0.0][0], "wind must push +y inside the band"
    np.testing.assert_array_equal(results[0.0, 600.0][1], results[0.0, 0.0][1])  # no wind outside the band
    np.testing.assert_array_equal(results[6.0, 5000.0][1], results[6.0, 600.0][1])  # clipped to the bound
    info = results[6.0, 600.0][2]
    assert info["adversary_force"][0] == 600.0
    assert info["distance_to_goal"] > 1 and info["success"] is False
    assert np.all(game.data.xfrc_applied == 0)
