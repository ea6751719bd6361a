"""Registry-wide properties of the games (docs/games.md), parametrized over every task id."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings

import mujoco
import numpy as np
import pytest

import envs
from envs.core import ZeroSumGame

ALL_TASKS = envs.list_tasks()
NAVIGATE = "dmc/quadruped-navigate"
# The swimmer moves in the x-y plane (its joints allow no z motion), so the z force of
# its adversary has no effect; kept for the contract, checked to be inert.
INERT_FORCE_DIMS = {("gym/Swimmer-v5", "torso.fz")}


def _actions(game: ZeroSumGame, n: int, seed: int, adversary: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fixed sequence of random actions (adversary within its bounds, or zero)."""
    rng = np.random.default_rng(seed)
    pa, aa = game.protagonist_action_space, game.adversary_action_space
    out = []
    for _ in range(n):
        a = rng.uniform(pa.low, pa.high).astype(np.float32)
        b = rng.uniform(aa.low, aa.high).astype(np.float32) if adversary else np.zeros(aa.shape, np.float32)
        out.append((a, b))
    return out


def _rollout(game: ZeroSumGame, seed: int, actions) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = game.reset(seed=seed)
    observations, rewards = [obs], []
    for a, b in actions:
        obs, r, terminated, truncated, _ = game.step(a, b)
        observations.append(obs)
        rewards.append(r)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards)


# The suite's specified tasks (README "Tasks"): RARL's gymnasium MuJoCo games plus Ant, QARL's dm_control games plus
# its navigation task. A literal on purpose: the specification, not the registry, is the source of truth here; a
# subset check, so that a new task needs no edit.
SPECIFIED_TASKS = {
    "gym": ["InvertedPendulum-v5", "HalfCheetah-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"],
    "dmc": [
        "cheetah-run", "hopper-hop", "hopper-stand", "walker-walk", "walker-run", "walker-stand", "quadruped-walk",
        "quadruped-run", "cartpole-balance", "cartpole-swingup", "cartpole-balance_sparse", "cartpole-swingup_sparse",
        "pendulum-swingup", "acrobot-swingup", "acrobot-swingup_sparse", "reacher-easy", "reacher-hard",
        "ball_in_cup-catch", "quadruped-navigate",
    ],
}  # fmt: skip


@pytest.mark.parametrize("family", SPECIFIED_TASKS)
def test_registry_holds_the_specified_tasks(family):
    assert sorted({f"{family}/{name}" for name in SPECIFIED_TASKS[family]} - set(envs.list_tasks(family))) == []


def test_families_partition_the_registry():
    assert len(set(ALL_TASKS)) == len(ALL_TASKS)
    for task_id in ALL_TASKS:
        assert task_id.split("/", 1)[0] == envs.spec(task_id).family and envs.spec(task_id).task_id == task_id
    families = {envs.spec(t).family for t in ALL_TASKS}
    assert sorted(t for f in families for t in envs.list_tasks(f)) == sorted(ALL_TASKS)


def test_unknown_task_id_suggests_close_matches():
    with pytest.raises(envs.UnknownTaskError, match="dmc/cheetah-run"):
        envs.make("dmc/cheetah-runn")
    with pytest.raises(ValueError, match="dmc/walker-walk"):
        envs.make("walker-walk")


def test_import_envs_is_light():
    code = (
        "import sys, time; t = time.perf_counter(); import envs; dt = time.perf_counter() - t; "
        "heavy = [m for m in ('mujoco', 'dm_control', 'gymnasium', 'torch') if m in sys.modules]; "
        "print(repr(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # No MuJoCo (so no model), no dm_control, no gymnasium loaded by `import envs`.
    assert out.stdout.strip() == "[]"


def test_building_games_prints_nothing_without_a_display():
    """No MuJoCo 'settotalmass' deprecation lines and no 'DISPLAY is missing' renderer warnings on the terminal."""
    code = "import envs\nfor t in ('gym/HalfCheetah-v5', 'dmc/cheetah-run', 'dmc/quadruped-navigate'): envs.make(t)"
    env = {k: v for k, v in os.environ.items() if k != "DISPLAY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_spaces_and_basic_contract(task_id):
    game = envs.make(task_id)
    assert game.observation_space.shape[0] > 0
    assert len(game.adversary_labels) == game.adversary_action_space.shape[0]
    obs, info = game.reset(seed=0)
    assert game.observation_space.contains(obs)
    assert set(info["params"]) == set(game.nominal_params())
    with pytest.raises(ValueError, match="protagonist action"):
        game.step(np.zeros(game.protagonist_action_space.shape[0] + 1), np.zeros(game.adversary_action_space.shape))
    with pytest.raises(ValueError, match="NaN"):
        game.step(game.protagonist_action_space.sample(), np.full(game.adversary_action_space.shape, np.nan))
    a, b = _actions(game, 1, 0)[0]
    obs, r, _terminated, _truncated, info = game.step(a, b)
    assert game.observation_space.contains(obs)
    assert isinstance(r, float)
    assert np.all(game.data.xfrc_applied == 0.0), "forces must be zeroed outside a control step"
    assert info["params"] == game.nominal_params()
    np.testing.assert_array_equal(
        info["adversary_force"], np.clip(b, game.adversary_action_space.low, game.adversary_action_space.high)
    )


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_step_before_reset_and_after_end_is_an_error(task_id):
    game = envs.make(task_id, horizon=3)
    with pytest.raises(RuntimeError, match="reset"):
        game.step(game.protagonist_action_space.sample(), game.adversary_action_space.sample())
    game.reset(seed=1)
    zero_p = np.zeros(game.protagonist_action_space.shape)
    zero_a = np.zeros(game.adversary_action_space.shape)
    for _ in range(3):
        *_, terminated, truncated, _ = game.step(zero_p, zero_a)
        if terminated:
            break
    assert terminated or truncated
    with pytest.raises(RuntimeError, match="reset"):
        game.step(zero_p, zero_a)


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_same_seed_same_trajectory(task_id):
    acts = _actions(envs.make(task_id), 60, seed=3)
    o1, r1 = _rollout(envs.make(task_id), 7, acts)
    o2, r2 = _rollout(envs.make(task_id), 7, acts)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(r1, r2)
    # reseeding the same game reproduces it too
    game = envs.make(task_id)
    _rollout(game, 99, acts[:10])
    o3, r3 = _rollout(game, 7, acts)
    np.testing.assert_array_equal(o1, o3)
    np.testing.assert_array_equal(r1, r3)
    o4, _ = _rollout(envs.make(task_id), 8, acts[:1])
    assert not np.array_equal(o1[0], o4[0]), "a different seed should give a different initial state"


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_step_lean_follows_step_exactly(task_id):
    """The batched evaluator's info-free step produces the trajectory of ``step`` (forces beyond the bound clipped)."""
    game = envs.make(task_id, horizon=40)
    acts = [(a, 1.5 * b) for a, b in _actions(game, 40, seed=5)]
    o1, r1 = _rollout(game, 11, acts)
    obs = [game.reset(seed=11)[0]]
    rewards, ends = [], []
    for a, b in acts:
        o, r, terminated, truncated = game.step_lean(a, b)
        obs.append(o)
        rewards.append(r)
        ends.append((terminated, truncated))
        if terminated or truncated:
            break
    np.testing.assert_array_equal(o1, np.array(obs))
    np.testing.assert_array_equal(r1, np.array(rewards))
    assert ends[-1][0] or ends[-1][1]
    with pytest.raises(RuntimeError, match="reset"):
        game.step_lean(acts[0][0], acts[0][1])
    # no force (None, as the batched evaluator passes for an all-zero batch) follows step with a zero force
    zero = np.zeros(game.adversary_action_space.shape)
    o1, r1 = _rollout(game, 12, [(a, zero) for a, _ in acts])
    game.reset(seed=12)
    for k, (a, _) in enumerate(acts[: len(r1)]):
        o, r, _, _ = game.step_lean(a, None)
        np.testing.assert_array_equal(o, o1[k + 1])
        assert r == r1[k]


def test_step_lean_applies_the_navigation_wind():
    """quadruped-navigate's force is the corridor wind (not xfrc on a body): step_lean must apply it like step."""
    runs = []
    for lean in (False, True, None):  # None: step without wind, to see that the wind matters here
        game = envs.make(NAVIGATE, horizon=10)
        game.reset(seed=3)
        game.data.qpos[0] = 6.0  # torso inside the wind band x in [4, 8]
        mujoco.mj_forward(game.model, game.data)
        wind = np.array([0.0 if lean is None else 600.0])
        zero = np.zeros(game.protagonist_action_space.shape)
        for _ in range(5):
            obs = game.step_lean(zero, wind)[0] if lean else game.step(zero, wind)[0]
        runs.append(obs)
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_pickle_mid_episode_continues_exactly(task_id):
    game = envs.make(task_id, horizon=500)
    acts = _actions(game, 40, seed=5)
    game.reset(seed=11)
    game.set_params(**{k: (lo + hi) / 2 for k, (lo, hi) in game.param_bounds().items()})
    game.reset(seed=11)
    for a, b in acts[:20]:
        if game.step(a, b)[2]:
            game.reset()
    clone = pickle.loads(pickle.dumps(game))
    assert clone.get_params() == game.get_params()
    assert len(pickle.dumps(game)) < 1_000_000
    for a, b in acts[20:]:
        if game._needs_reset:  # an unseeded reset continues the task's generator in both copies
            np.testing.assert_array_equal(game.reset()[0], clone.reset()[0])
        s1 = game.step(a, b)
        s2 = clone.step(a, b)
        np.testing.assert_array_equal(s1[0], s2[0])
        assert s1[1:4] == s2[1:4]
    # the game's own generator is carried over as well
    assert game.np_random.random() == clone.np_random.random()


@pytest.mark.parametrize("task_id", ["dmc/cartpole-balance", "dmc/walker-walk", "gym/HalfCheetah-v5", NAVIGATE])
def test_restore_state_branches_exactly(task_id):
    """save_state / restore_state: two branches from one state with the same actions are identical, a branch with
    other actions differs, and the main line continues as if no branch had been taken."""
    game = envs.make(task_id, horizon=500)
    acts = _actions(game, 30, seed=3)
    other = _actions(game, 10, seed=4)
    game.reset(seed=2)
    for a, b in acts[:10]:
        game.step(a, b)
    state = game.save_state()

    def branch(actions):
        game.restore_state(state)
        return [game.step(a, b)[:2] for a, b in actions]

    first, again, different = branch(acts[10:20]), branch(acts[10:20]), branch(other)
    for (o1, r1), (o2, r2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2
    assert not np.array_equal(first[-1][0], different[-1][0])
    game.restore_state(state)
    main_line = [game.step(a, b)[0] for a, b in acts[10:20]]
    fresh = envs.make(task_id, horizon=500)
    fresh.reset(seed=2)
    for a, b in acts[:10]:
        fresh.step(a, b)
    for obs, (a, b) in zip(main_line, acts[10:20], strict=True):
        np.testing.assert_array_equal(obs, fresh.step(a, b)[0])


@pytest.mark.parametrize("task_id", [t for t in ALL_TASKS if t.startswith("gym/")])
def test_gym_family_equals_gymnasium_with_zero_force(task_id):
    import gymnasium

    gym_id = task_id.split("/", 1)[1]
    ref = gymnasium.make(gym_id)
    game = envs.make(task_id)
    acts = _actions(game, 200, seed=4, adversary=False)
    obs_r, _ = ref.reset(seed=123)
    obs_g, _ = game.reset(seed=123)
    np.testing.assert_array_equal(obs_r, obs_g)
    for t, (a, b) in enumerate(acts):
        obs_r, rew_r, term_r, _, _info_r = ref.step(a)
        obs_g, rew_g, term_g, _, info_g = game.step(a, b)
        np.testing.assert_array_equal(obs_r, obs_g, err_msg=f"step {t}")
        assert rew_r == rew_g and term_r == term_g, f"step {t}"
        # the reward terms add up to the reward
        assert sum(info_g["reward_terms"].values()) == pytest.approx(rew_g, rel=1e-6, abs=1e-6)
        if term_r:
            obs_r, _ = ref.reset(seed=t)
            obs_g, _ = game.reset(seed=t)
            np.testing.assert_array_equal(obs_r, obs_g)


def _flat(obs) -> np.ndarray:
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in obs.values()])


@pytest.mark.parametrize("task_id", [t for t in ALL_TASKS if t.startswith("dmc/")])
def test_dmc_family_equals_dm_control_with_zero_force(task_id):
    if task_id == NAVIGATE:
        from envs import dmc_navigate

        ref = dmc_navigate.load(random=123)
    else:
        from dm_control import suite

        domain, task = task_id.split("/", 1)[1].split("-", 1)
        ref = suite.load(domain, task, task_kwargs={"random": 123})
    game = envs.make(task_id)
    acts = _actions(game, 200, seed=4, adversary=False)
    ts = ref.reset()
    obs_g, _ = game.reset(seed=123)
    np.testing.assert_array_equal(_flat(ts.observation), obs_g)
    for t, (a, b) in enumerate(acts):
        ts = ref.step(a)
        obs_g, rew_g, *_ = game.step(a, b)
        np.testing.assert_array_equal(_flat(ts.observation), obs_g, err_msg=f"step {t}")
        assert float(ts.reward) == rew_g, f"step {t}"


def _body_velocity(game: ZeroSumGame, body: str) -> np.ndarray:
    """(angular, linear) velocity of a body's CoM in the world frame."""
    bid = mujoco.mj_name2id(game.model, mujoco.mjtObj.mjOBJ_BODY, body)
    res = np.zeros(6)
    mujoco.mj_objectVelocity(game.model, game.data, mujoco.mjtObj.mjOBJ_BODY, bid, res, 0)
    return res


@pytest.mark.parametrize("task_id", [t for t in ALL_TASKS if t != NAVIGATE])
def test_force_pushes_in_its_direction_and_is_clipped(task_id):
    game = envs.make(task_id)
    zero_p = np.zeros(game.protagonist_action_space.shape, np.float32)
    dims = game.adversary_action_space.shape[0]
    for i, dim in enumerate(game.force_dims):
        results = {}
        for label, scale in (("zero", 0.0), ("push", 1.0), ("huge", 100.0)):
            game.reset(seed=21)
            adv = np.zeros(dims)
            adv[i] = scale * game.adversary_bound[i]
            _, _, _, _, info = game.step(zero_p, adv)
            results[label] = (_body_velocity(game, dim.body).copy(), game.data.qpos.copy(), info["adversary_force"])
        # rotational components of xfrc_applied (3..5) map to angular velocity (0..2) and vice versa.
        k = dim.component - 3 if dim.component >= 3 else dim.component + 3
        gain = results["push"][0][k] - results["zero"][0][k]
        if (task_id, dim.label) in INERT_FORCE_DIMS:
            assert gain == 0.0
            continue
        assert gain > 0, f"{dim.label}: a positive force should raise that velocity component (gain {gain})"
        # clipped to the bound: a 100x action is exactly the bound
        np.testing.assert_array_equal(results["huge"][1], results["push"][1])
        assert results["huge"][2][i] == game.adversary_bound[i]


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_params_change_the_trajectory_and_persist(task_id):
    game = envs.make(task_id)
    acts = _actions(game, 40, seed=9)
    base_obs, base_rew = _rollout(game, 5, acts)
    nominal = game.nominal_params()
    for name, (low, high) in game.param_bounds().items():
        assert low < high
        for value in (low, high):
            game.set_params(**{name: value})
            game.reset(seed=5)
            assert game.get_params()[name] == value, "set_params must survive reset"
            obs, rew = _rollout(game, 5, acts)
            n = min(len(obs), len(base_obs))
            assert not np.array_equal(obs[:n], base_obs[:n]), f"{name}={value} did not change the trajectory"
        game.set_params(**{name: nominal[name]})
    # back at nominal values the task is reproduced exactly
    obs, rew = _rollout(game, 5, acts)
    np.testing.assert_array_equal(obs, base_obs)
    np.testing.assert_array_equal(rew, base_rew)


@pytest.mark.parametrize("task_id", ALL_TASKS)
def test_bad_params_raise_clear_errors_and_change_nothing(task_id):
    game = envs.make(task_id)
    name, (low, high) = next(iter(game.param_bounds().items()))
    before = game.get_params()
    with pytest.raises(ValueError, match=rf"{name}=.*outside.*\[{low:g}, {high:g}\]"):
        game.set_params(**{name: high + (high - low)})
    with pytest.raises(ValueError, match="unknown parameter 'no_such_param'"):
        game.set_params(no_such_param=1.0)
    with pytest.raises(ValueError, match=name):
        game.set_params(**{name: float("nan")})
    # an invalid entry rejects the whole call, valid entries included
    other = list(game.param_bounds())[1]
    with pytest.raises(ValueError):
        game.set_params(**{other: game.param_bounds()[other][0], name: -1.0})
    assert game.get_params() == before


def test_mass_parameter_updates_subtree_masses():
    game = envs.make("dmc/cheetah-run")
    world_total = game.model.body_subtreemass[0]
    game.set_params(torso_mass=9.0)
    assert game.model.body_mass[1] == 9.0
    assert game.model.body_subtreemass[0] == pytest.approx(world_total + 9.0 - game.nominal_params()["torso_mass"])


def test_reset_options_set_params():
    game = envs.make("gym/Hopper-v5")
    game.reset(seed=0, options={"params": {"friction": 1.2}})
    assert game.get_params()["friction"] == 1.2
    with pytest.raises(ValueError, match="unknown reset option"):
        game.reset(options={"frobnicate": 1})


def test_adversary_bound_is_configurable():
    game = envs.make("dmc/walker-walk", adversary_bound=[1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(game.adversary_action_space.high, [1, 2, 3, 4])
    game = envs.make("gym/HalfCheetah-v5", adversary_bound=0.5)
    assert np.all(game.adversary_action_space.high == 0.5)
    with pytest.raises(ValueError, match="adversary_bound"):
        envs.make("gym/Hopper-v5", adversary_bound=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="horizon"):
        envs.make("gym/Hopper-v5", horizon=0)


def test_horizon_truncates():
    game = envs.make("dmc/cartpole-balance", horizon=7)
    game.reset(seed=0)
    flags = [game.step(np.zeros(1), np.zeros(2))[3] for _ in range(7)]
    assert flags == [False] * 6 + [True]


def test_views_and_game_pickle_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        pickle.loads(pickle.dumps(envs.make("gym/Ant-v5")))
