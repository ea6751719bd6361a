"""The ``quadruped-navigate`` task: walk down a windy corridor through a gate.

This is the navigation task of the QARL paper (Reddi et al., "Robust
Adversarial Reinforcement Learning via Bounded Rationality Curricula",
ICLR 2024), built on the dm_control quadruped.  The quadruped starts near the
origin of a corridor along +x and must reach a goal at ``GOAL_XY``.  Between
``x = 4`` and ``x = 8`` a lateral (+y) "wind" force, whose magnitude is chosen
by an adversary through :meth:`NavigatePhysics.set_wind`, pushes it towards a
side wall; at ``x = 8`` a wall with a narrow opening (the gate) must be passed
before the goal is reached.

Design choices where the paper is silent (kept here so they are easy to find):

* **Geometry.**  The corridor walls are boxes whose *inner faces* lie at
  ``y = +-WALL_Y``, so the free corridor is exactly ``|y| < WALL_Y``; they
  span ``x`` in ``[-3, 12]``.  The gate is two boxes centred on
  ``x = GATE_X`` (0.2 m thick) that fill ``GATE_HALF_OPENING <= |y| <= WALL_Y``,
  leaving an opening of ``|y| < GATE_HALF_OPENING``.  All walls are 1.5 m tall
  so that the quadruped (torso at ~0.57 m) cannot step or tumble over them.
  The corridor is open at both ends: a policy that walks backwards out of it
  only loses reward.  The goal is a purely visual cylinder (``contype=0``,
  ``conaffinity=0``) so that it never perturbs the dynamics.
* **Wind.**  The wind is a uniform force field along world +y: body ``b`` of
  the robot receives ``force_y * m_b / sum(m)`` through ``xfrc_applied``
  (which MuJoCo applies at the body's centre of mass).  The total force is
  therefore exactly ``force_y`` and it exerts no torque about the robot's
  centre of mass, unlike a force applied to the torso alone, which would
  also make the robot topple.  Whether the wind blows is decided before every
  physics substep from the torso position (``WIND_X_RANGE``, inclusive), so
  entering or leaving the band mid control-step is resolved at the substep
  resolution.  ``xfrc_applied`` is zeroed after every :meth:`step` so that
  the wind never leaks into code that calls ``mj_forward``/``mj_step``
  directly.  The wind magnitude is physics state owned by the caller (e.g.
  an adversary wrapper): it persists across episode resets and is *not*
  clipped here; ``DEFAULT_MAX_WIND`` is the bound suggested to such callers.
* **Start pose.**  The torso is placed at ``(0, 0)`` upright, with a yaw drawn
  uniformly from ``+-START_YAW_RANGE`` (30 degrees) using the task's
  ``random``; the height is the lowest non-contacting one, found exactly like
  dm_control's quadruped tasks do (``_find_non_contacting_height``).  Only
  the yaw is randomised, so the robot always faces roughly towards the goal;
  the fully random orientation of ``quadruped-walk`` would spend much of the
  episode on getting up, which is not what this benchmark measures.
* **Observations.**  The quadruped's common observations, plus ``torso_xy``
  (world frame) and ``goal_vector``: the goal minus the torso position,
  rotated into the torso's *heading* frame (yaw only, from the horizontal
  projection of the torso x-axis), so that it stays meaningful when the torso
  pitches or rolls.
* **Reward/termination.**  ``upright * 5 * exp(-0.2 * distance)`` with the
  dm_control upright reward (``deviation_angle=0``); no early termination;
  :func:`success` is ``distance < SUCCESS_DISTANCE`` (1 m).
"""

from __future__ import annotations

import collections

import mujoco
import numpy as np
from dm_control.rl import control
from dm_control.suite import base, common, quadruped
from lxml import etree

# Task geometry (metres, world frame).
WALL_Y = 7.0
GATE_X = 8.0
GATE_HALF_OPENING = 2.0
GOAL_XY = (10.0, 0.0)
WIND_X_RANGE = (4.0, 8.0)
DEFAULT_MAX_WIND = 600.0  # Newtons; suggested bound for the adversary.

# Extent of the corridor walls along x.
CORRIDOR_X_RANGE = (-3.0, 12.0)
WALL_HALF_THICKNESS = 0.1
WALL_HALF_HEIGHT = 0.75
SUCCESS_DISTANCE = 1.0
START_YAW_RANGE = np.pi / 6
FLOOR_SIZE = 15.0
# Same control rate as the other dm_control quadruped tasks; the physics
# timestep (5 ms) comes unchanged from quadruped.xml, i.e. 4 substeps.
CONTROL_TIMESTEP = 0.02

WALL_GEOMS = ("corridor_wall_pos_y", "corridor_wall_neg_y")
GATE_GEOMS = ("gate_pos_y", "gate_neg_y")
GOAL_GEOM = "goal"


def _box(name: str, center: tuple[float, float], half: tuple[float, float]):
    """Returns an MJCF box geom standing on the floor."""
    return etree.Element(
        "geom",
        name=name,
        type="box",
        pos=f"{center[0]} {center[1]} {WALL_HALF_HEIGHT}",
        size=f"{half[0]} {half[1]} {WALL_HALF_HEIGHT}",
        rgba=".45 .4 .35 1",
    )


def make_model() -> bytes:
    """Returns the MJCF XML of the navigate arena (quadruped + walls + goal)."""
    xml = quadruped.make_model(floor_size=FLOOR_SIZE)
    mjcf = etree.fromstring(xml, etree.XMLParser(remove_blank_text=True))
    worldbody = mjcf.find("worldbody")

    x_lo, x_hi = CORRIDOR_X_RANGE
    wall_half = ((x_hi - x_lo) / 2, WALL_HALF_THICKNESS)
    wall_cx = (x_lo + x_hi) / 2
    # Offset by the half thickness so the inner faces sit exactly at +-WALL_Y.
    wall_cy = WALL_Y + WALL_HALF_THICKNESS
    worldbody.append(_box(WALL_GEOMS[0], (wall_cx, wall_cy), wall_half))
    worldbody.append(_box(WALL_GEOMS[1], (wall_cx, -wall_cy), wall_half))

    # Each gate half fills GATE_HALF_OPENING <= |y| <= WALL_Y.
    gate_half = (WALL_HALF_THICKNESS, (WALL_Y - GATE_HALF_OPENING) / 2)
    gate_cy = (WALL_Y + GATE_HALF_OPENING) / 2
    worldbody.append(_box(GATE_GEOMS[0], (GATE_X, gate_cy), gate_half))
    worldbody.append(_box(GATE_GEOMS[1], (GATE_X, -gate_cy), gate_half))

    # Visual only: it must never collide with (or push) the robot.
    worldbody.append(
        etree.Element(
            "geom",
            name=GOAL_GEOM,
            type="cylinder",
            pos=f"{GOAL_XY[0]} {GOAL_XY[1]} 0.01",
            size=f"{SUCCESS_DISTANCE} 0.01",
            rgba=".2 .8 .2 .5",
            contype="0",
            conaffinity="0",
        )
    )
    return etree.tostring(mjcf, pretty_print=True)


class NavigatePhysics(quadruped.Physics):
    """Quadruped physics with a +y wind inside ``WIND_X_RANGE``."""

    def _reload_from_data(self, data) -> None:
        super()._reload_from_data(data)
        # Keep the wind across reloads (e.g. `copy()`); default is calm.
        if not hasattr(self, "_wind_force_y"):
            self._wind_force_y = 0.0
        torso_id = self.model.name2id("torso", "body")
        # Every body of the robot's kinematic tree (world body excluded).
        self._robot_body_ids = np.flatnonzero(self.model.body_rootid == torso_id)

    def set_wind(self, force_y: float) -> None:
        """Sets the total wind force (N, along world +y) used from now on."""
        self._wind_force_y = float(force_y)

    @property
    def wind(self) -> float:
        """The total wind force (N) applied while the wind is active."""
        return self._wind_force_y

    def torso_xy(self) -> np.ndarray:
        """Torso position in the world xy plane."""
        # qpos of the free joint (not xpos) so it is current even when the
        # derived quantities have not been recomputed since the last step.
        return self.named.data.qpos["root"][:2].copy()

    def goal_distance(self) -> float:
        """Euclidean xy distance from the torso to the goal."""
        return float(np.linalg.norm(np.asarray(GOAL_XY) - self.torso_xy()))

    def goal_vector(self) -> np.ndarray:
        """Goal relative to the torso, in the torso's heading (yaw) frame."""
        delta = np.asarray(GOAL_XY) - self.torso_xy()
        x_axis = self.named.data.xmat["torso"].reshape(3, 3)[:, 0]
        yaw = np.arctan2(x_axis[1], x_axis[0])
        cos, sin = np.cos(yaw), np.sin(yaw)
        # Rotate by -yaw: world -> heading frame.
        return np.array([cos * delta[0] + sin * delta[1], -sin * delta[0] + cos * delta[1]])

    def wind_active(self) -> bool:
        """Whether the torso is inside the windy band of x."""
        x = self.named.data.qpos["root"][0]
        return bool(WIND_X_RANGE[0] <= x <= WIND_X_RANGE[1])

    def wind_forces(self) -> np.ndarray:
        """Per-body +y forces (shape ``(nbody,)``) the wind applies right now.

        Zero everywhere when the wind is inactive.  Otherwise the robot bodies
        share ``force_y`` in proportion to their mass (a uniform field).
        """
        forces = np.zeros(self.model.nbody)
        if self._wind_force_y != 0.0 and self.wind_active():
            masses = self.model.body_mass[self._robot_body_ids]
            forces[self._robot_body_ids] = self._wind_force_y * masses / masses.sum()
        return forces

    def step(self, nstep: int = 1) -> None:
        """Advances ``nstep`` substeps, re-evaluating the wind before each.

        Mirrors ``dm_control.mujoco.Physics.step`` (the same sequence of
        ``mj_step1``/``mj_step2``/``mj_step`` calls in legacy and non-legacy
        mode, one ``check_invalid_state`` around the whole call) but splits it
        into single substeps so the wind can switch on and off at substep
        resolution.
        """
        model, data = self.model.ptr, self.data.ptr
        # `legacy_step` is set by control.Environment; default as it does.
        legacy = getattr(self, "legacy_step", True)
        euler_like = self.model.opt.integrator != mujoco.mjtIntegrator.mjINT_RK4.value
        xfrc = self.data.xfrc_applied
        with self.check_invalid_state():
            try:
                for _ in range(nstep):
                    # In legacy mode mj_step1 already ran for the current state
                    # (positions/velocities are current), so only step2 is left;
                    # xfrc_applied is consumed there (mj_fwdAcceleration).
                    xfrc[:, 1] = self.wind_forces()
                    if legacy and euler_like:
                        mujoco.mj_step2(model, data)
                        mujoco.mj_step1(model, data)
                    else:
                        mujoco.mj_step(model, data, 1)
                        if legacy:
                            mujoco.mj_step1(model, data)
            finally:
                # Never leave the wind behind for other callers of MuJoCo.
                xfrc[:, 1] = 0.0


def success(physics: NavigatePhysics) -> bool:
    """True when the torso is within ``SUCCESS_DISTANCE`` of the goal (xy)."""
    return physics.goal_distance() < SUCCESS_DISTANCE


def upright_reward(physics: NavigatePhysics) -> float:
    """dm_control's quadruped upright reward with ``deviation_angle=0``."""
    return float(quadruped._upright_reward(physics, deviation_angle=0))


class Navigate(base.Task):
    """Reach ``GOAL_XY`` through the gate while staying upright."""

    def initialize_episode(self, physics: NavigatePhysics) -> None:
        """Places the robot upright at the origin with a small random yaw."""
        yaw = self.random.uniform(-START_YAW_RANGE, START_YAW_RANGE)
        orientation = np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])
        quadruped._find_non_contacting_height(physics, orientation, 0.0, 0.0)
        super().initialize_episode(physics)

    def get_observation(self, physics: NavigatePhysics) -> collections.OrderedDict:
        """Common quadruped observations plus ``torso_xy`` and ``goal_vector``."""
        obs = quadruped._common_observations(physics)
        obs["torso_xy"] = physics.torso_xy()
        obs["goal_vector"] = physics.goal_vector()
        return obs

    def get_reward(self, physics: NavigatePhysics) -> float:
        """``upright * 5 * exp(-0.2 * distance_to_goal)``."""
        return upright_reward(physics) * 5.0 * np.exp(-0.2 * physics.goal_distance())

    def get_termination(self, physics: NavigatePhysics) -> None:
        """Episodes only end at the time limit (no early termination)."""

    def success(self, physics: NavigatePhysics) -> bool:
        """See :func:`success`."""
        return success(physics)


def load(
    random: int | np.random.RandomState | None = None,
    time_limit: float = float("inf"),
    environment_kwargs: dict | None = None,
) -> control.Environment:
    """Builds the ``quadruped-navigate`` environment.

    Args:
      random: seed int, ``np.random.RandomState`` or None (as suite loaders).
      time_limit: episode length in seconds (default: unbounded).
      environment_kwargs: extra kwargs for ``control.Environment``.
    """
    physics = NavigatePhysics.from_xml_string(make_model(), common.ASSETS)
    task = Navigate(random=random)
    return control.Environment(
        physics,
        task,
        time_limit=time_limit,
        control_timestep=CONTROL_TIMESTEP,
        **(environment_kwargs or {}),
    )
