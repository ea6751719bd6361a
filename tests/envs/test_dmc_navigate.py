"""Tests for the dm_control ``quadruped-navigate`` task (envs/dmc_navigate.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mujoco
import numpy as np
import pytest
from dm_control.suite import quadruped

from envs import dmc_navigate as nav

REPO_ROOT = Path(__file__).resolve().parents[2]
N_ACT = 12


@pytest.fixture
def env():
    """A fresh, reset environment (fixed seed)."""
    environment = nav.load(random=0)
    environment.reset()
    return environment


def _standing_z(physics) -> float:
    """Lowest non-contacting torso height for the upright, yaw-0 pose."""
    quadruped._find_non_contacting_height(physics, np.array([1.0, 0, 0, 0]))
    return float(physics.named.data.qpos["root"][2])


def _place(physics, x, y, *, yaw=0.0, roll=0.0, lift=0.0, z=None):
    """Resets the robot (zero velocity, default joints) to a given root pose."""
    z = _standing_z(physics) if z is None else z
    quat = np.zeros(4)
    # yaw about z, then roll about the body x axis.
    mujoco.mju_euler2Quat(quat, np.array([roll, 0.0, yaw]), "XYZ")
    with physics.reset_context():  # resets data and calls forward()
        physics.named.data.qpos["root"][:3] = x, y, z + lift
        physics.named.data.qpos["root"][3:] = quat


def _contact_geoms(physics) -> set[str]:
    """Names of all geoms currently in contact."""
    names = set()
    for c in physics.data.contact[: physics.data.ncon]:
        names.add(physics.model.id2name(c.geom1, "geom"))
        names.add(physics.model.id2name(c.geom2, "geom"))
    return names


def _expected_reward(physics) -> float:
    """Reward recomputed from raw physics state (no task code involved)."""
    zz = physics.named.data.xmat["torso", "zz"]
    # tolerance(bounds=(1, inf), margin=2, linear, value_at_margin=0)
    upright = 1.0 if zz >= 1.0 else max(0.0, 1.0 - (1.0 - zz) / 2.0)
    x, y = physics.named.data.xpos["torso"][:2]
    return upright * 5.0 * np.exp(-0.2 * np.hypot(x - 10.0, y))


def _robot_com_vy(physics) -> float:
    """Velocity (y) of the robot's centre of mass."""
    # subtree_linvel is only filled on demand, so compute it explicitly.
    mujoco.mj_subtreeVel(physics.model.ptr, physics.data.ptr)
    return float(physics.named.data.subtree_linvel["torso", "y"])


def test_import_is_lazy():
    # Importing must not build a model: make building impossible and import.
    code = (
        "from dm_control.suite import quadruped\n"
        "def boom(*a, **k): raise AssertionError('model built at import')\n"
        "quadruped.make_model = boom\n"
        "import envs.dmc_navigate\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_observation_spec_and_geometry(env):
    obs = env.reset().observation
    assert list(obs)[-2:] == ["torso_xy", "goal_vector"]
    assert list(obs)[:5] == [
        "egocentric_state",
        "torso_velocity",
        "torso_upright",
        "imu",
        "force_torque",
    ]
    assert obs["torso_xy"].shape == (2,)
    assert obs["goal_vector"].shape == (2,)
    assert env.action_spec().shape == (N_ACT,)
    assert env.control_timestep() == pytest.approx(0.02)
    assert env.physics.timestep() == pytest.approx(0.005)
    model = env.physics.named.model
    assert model.geom_contype[nav.GOAL_GEOM] == 0
    assert model.geom_conaffinity[nav.GOAL_GEOM] == 0
    for name in nav.WALL_GEOMS + nav.GATE_GEOMS:
        assert model.geom_contype[name] and model.geom_conaffinity[name]
    for name, sign in zip(nav.WALL_GEOMS, (1, -1), strict=True):
        inner = sign * (model.geom_pos[name][1] - sign * model.geom_size[name][1])
        assert inner == pytest.approx(nav.WALL_Y)
        x_lo = model.geom_pos[name][0] - model.geom_size[name][0]
        x_hi = model.geom_pos[name][0] + model.geom_size[name][0]
        assert x_lo <= -3.0 and x_hi >= 12.0
    for name, sign in zip(nav.GATE_GEOMS, (1, -1), strict=True):
        y_c, half_y = sign * model.geom_pos[name][1], model.geom_size[name][1]
        # Each gate half fills GATE_HALF_OPENING <= |y| <= WALL_Y at x = GATE_X.
        assert y_c - half_y == pytest.approx(nav.GATE_HALF_OPENING)
        assert y_c + half_y == pytest.approx(nav.WALL_Y)
        assert model.geom_pos[name][0] == pytest.approx(nav.GATE_X)


def test_goal_vector_is_egocentric(env):
    physics = env.physics
    _place(physics, 0.0, 0.0, yaw=np.pi / 2)
    # Facing +y, a goal 10 m ahead along world +x lies to the robot's right.
    np.testing.assert_allclose(physics.goal_vector(), [0.0, -10.0], atol=1e-9)
    _place(physics, 4.0, 3.0, yaw=0.0)
    np.testing.assert_allclose(physics.goal_vector(), [6.0, -3.0], atol=1e-9)
    np.testing.assert_allclose(physics.torso_xy(), [4.0, 3.0])
    assert physics.goal_distance() == pytest.approx(np.hypot(6.0, 3.0))


def test_seeded_rollouts_are_deterministic():
    def rollout(seed):
        environment = nav.load(random=seed)
        ts = environment.reset()
        spec = environment.action_spec()
        rng = np.random.default_rng(123)
        obs, rewards = [ts.observation], []
        for _ in range(50):
            ts = environment.step(rng.uniform(spec.minimum, spec.maximum))
            obs.append(ts.observation)
            rewards.append(ts.reward)
        return obs, rewards

    obs_a, rew_a = rollout(7)
    obs_b, rew_b = rollout(np.random.RandomState(7))
    assert rew_a == rew_b
    for oa, ob in zip(obs_a, obs_b, strict=True):
        for key in oa:
            np.testing.assert_array_equal(oa[key], ob[key])
    # The actions really moved the joints (else equality would be vacuous).
    assert not np.array_equal(obs_a[0]["egocentric_state"], obs_a[-1]["egocentric_state"])

    starts = []
    for seed in (1, 2):
        environment = nav.load(random=seed)
        environment.reset()
        starts.append(environment.physics.named.data.qpos["root"].copy())
    assert not np.array_equal(starts[0], starts[1])
    for qpos in starts:
        # Upright at the origin, yaw within the documented +-30 degrees.
        np.testing.assert_allclose(qpos[:2], 0.0)
        assert qpos[3] > 0 and np.allclose(qpos[4:6], 0.0)
        yaw = 2 * np.arctan2(qpos[6], qpos[3])
        assert abs(yaw) <= nav.START_YAW_RANGE + 1e-12


def test_reward_matches_independent_formula(env):
    physics = env.physics
    # A tilted pose makes the upright factor non-trivial.
    _place(physics, 3.0, -2.0, roll=np.pi / 3, lift=1.0)
    assert physics.named.data.xmat["torso", "zz"] == pytest.approx(0.5)
    assert env.task.get_reward(physics) == pytest.approx(_expected_reward(physics))
    assert _expected_reward(physics) == pytest.approx(0.75 * 5 * np.exp(-0.2 * np.hypot(7, 2)))
    # And along a real rollout.
    env.reset()
    rng = np.random.default_rng(0)
    spec = env.action_spec()
    for _ in range(10):
        ts = env.step(rng.uniform(spec.minimum, spec.maximum))
        assert ts.reward == pytest.approx(_expected_reward(physics), rel=1e-12)
        assert ts.discount == 1.0  # no early termination


def test_reward_decreases_away_from_goal(env):
    physics = env.physics
    rewards = []
    for x in (10.0, 9.0, 6.0, 2.0, -2.0):
        _place(physics, x, 0.0)
        rewards.append(env.task.get_reward(physics))
    assert rewards[0] == pytest.approx(5.0)
    assert np.all(np.diff(rewards) < 0)


@pytest.mark.parametrize(("distance", "expected"), [(0.0, True), (0.99, True), (1.01, False), (3.0, False)])
def test_success_only_within_one_metre(env, distance, expected):
    physics = env.physics
    _place(physics, 10.0 - distance / np.sqrt(2), distance / np.sqrt(2))
    assert nav.success(physics) is expected
    assert env.task.success(physics) is expected


def _one_control_step(env, x, wind, action=None):
    physics = env.physics
    _place(physics, x, 0.0, lift=0.1)  # airborne: no contact forces this step
    physics.set_wind(wind)
    env.step(np.zeros(N_ACT) if action is None else action)
    return physics


def test_wind_pushes_inside_band_only(env):
    physics = _one_control_step(env, 6.0, 600.0)
    vy_wind, com_vy_wind = physics.named.data.qvel["root"][1], _robot_com_vy(physics)
    assert not np.any(physics.data.xfrc_applied)  # zeroed after the step
    physics = _one_control_step(env, 6.0, 0.0)
    vy_calm, com_vy_calm = physics.named.data.qvel["root"][1], _robot_com_vy(physics)
    assert vy_wind > vy_calm + 0.05
    # Free flight: momentum change of the whole robot equals F * dt, i.e. the
    # whole force reaches the robot, not only the torso's share.
    mass = physics.named.model.body_subtreemass["torso"]
    assert com_vy_wind - com_vy_calm == pytest.approx(600.0 * 0.02 / mass, rel=0.02)

    # Outside the band the wind must make no difference at all.
    rng = np.random.default_rng(1)
    actions = rng.uniform(-0.8, 0.8, size=(5, N_ACT))
    states = []
    for wind in (600.0, 0.0):
        physics = env.physics
        _place(physics, 0.0, 0.0)
        physics.set_wind(wind)
        for action in actions:
            env.step(action)
        assert not np.any(physics.data.xfrc_applied)
        states.append((physics.data.qpos.copy(), physics.data.qvel.copy()))
    np.testing.assert_array_equal(states[0][0], states[1][0])
    np.testing.assert_array_equal(states[0][1], states[1][1])


def test_wind_force_sums_to_force_y_during_substeps(env):
    physics = env.physics
    seen = []

    def record(model, data):  # called by MuJoCo inside every substep
        seen.append(data.xfrc_applied.copy())

    previous = mujoco.get_mjcb_control()
    mujoco.set_mjcb_control(record)
    try:
        _one_control_step(env, 6.0, 600.0)
        inside = list(seen)
        seen.clear()
        _one_control_step(env, 0.0, 600.0)
        outside = list(seen)
    finally:
        mujoco.set_mjcb_control(previous)

    assert len(inside) == 4  # one per substep of the 0.02 s control step
    masses = physics.model.body_mass
    robot = physics.model.body_rootid == physics.model.name2id("torso", "body")
    for xfrc in inside:
        assert xfrc[:, 1].sum() == pytest.approx(600.0)
        np.testing.assert_allclose(xfrc[robot, 1] / masses[robot], 600.0 / masses[robot].sum())
        assert not np.any(xfrc[~robot])  # world body untouched
        assert not np.any(xfrc[:, [0, 2, 3, 4, 5]])  # only +y force
    assert len(outside) == 4
    assert all(not np.any(xfrc) for xfrc in outside)

    # The helper agrees with what was applied and is off outside the band.
    _place(physics, 5.0, 0.0)
    physics.set_wind(-250.0)
    assert physics.wind_active()
    assert physics.wind_forces().sum() == pytest.approx(-250.0)
    _place(physics, 8.5, 0.0)
    assert not physics.wind_active()
    assert not np.any(physics.wind_forces())


def test_corridor_wall_blocks_wind(env):
    physics = env.physics
    _place(physics, 6.0, 6.0)
    physics.set_wind(5 * nav.DEFAULT_MAX_WIND)
    touched_wall = False
    max_y = -np.inf
    for _ in range(50):
        env.step(np.zeros(N_ACT))
        touched_wall |= nav.WALL_GEOMS[0] in _contact_geoms(physics)
        robot_geoms = physics.model.geom_bodyid > 0  # excludes the walls
        max_y = max(max_y, physics.data.geom_xpos[robot_geoms, 1].max())
    assert touched_wall
    # Without the wall 3000 N would have carried the robot metres away.
    assert physics.named.data.qpos["root"][1] < nav.WALL_Y
    assert max_y < nav.WALL_Y + 0.05


def test_gate_opening(env):
    physics = env.physics
    _place(physics, nav.GATE_X, 0.0)
    assert not _contact_geoms(physics) & set(nav.GATE_GEOMS + nav.WALL_GEOMS)
    _place(physics, nav.GATE_X, 4.0)
    assert nav.GATE_GEOMS[0] in _contact_geoms(physics)
    _place(physics, nav.GATE_X, -4.0)
    assert nav.GATE_GEOMS[1] in _contact_geoms(physics)
    # The goal marker is visual only: standing on it creates no contact.
    _place(physics, *nav.GOAL_XY)
    assert nav.GOAL_GEOM not in _contact_geoms(physics)
