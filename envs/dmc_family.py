"""The dmc family: dm_control suite tasks as zero-sum games (the tasks of QARL, Reddi et al. 2024).

Each game owns one dm_control ``control.Environment`` loaded with an infinite time limit (the game keeps
its own horizon, 1000 control steps by default, which is also the suite's episode length) and calls its
``step`` unchanged: with zero adversary force and nominal parameters, observations (the observation dict
flattened in its own key order) and rewards equal the suite task's bit for bit for the same seed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from envs.core import FX, FY, FZ, TY, ForceDim, ParamSpec, ZeroSumGame, quiet_absl, quiet_model_load


def flatten_observation(obs: OrderedDict[str, Any]) -> np.ndarray:
    """dm_control observation dict -> one float64 vector, entries in the dict's own order."""
    return np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in obs.values()])


class DMCGame(ZeroSumGame):
    """Base class of the dmc family; a subclass names the domain, adversary forces and parameters."""

    family = "dmc"
    domain: ClassVar[str] = ""

    def __init__(
        self,
        task_id: str,
        *,
        task_name: str,
        adversary_bound: float | list[float] | None = None,
        horizon: int = 1000,
    ) -> None:
        self.task_name = task_name
        super().__init__(task_id, adversary_bound=adversary_bound, horizon=horizon)
        # Placeholder generator until the first reset; reset(seed=s) replaces it with RandomState(s),
        # which is exactly what ``suite.load(..., task_kwargs={"random": s})`` would use.
        self._env = self._load(np.random.RandomState(np.random.SeedSequence().generate_state(4)))
        self._physics = self._env.physics
        spec = self._env.action_spec()
        self.protagonist_action_space = spaces.Box(
            np.asarray(spec.minimum, dtype=np.float32), np.asarray(spec.maximum, dtype=np.float32), dtype=np.float32
        )
        n_obs = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
        self.observation_space = spaces.Box(-np.inf, np.inf, (n_obs,), dtype=np.float64)
        self.dt = float(self._env.control_timestep())
        self._finish_setup(self._physics.model.ptr, self._physics.data.ptr, self.param_specs_for(task_name))

    def _load(self, random: np.random.RandomState):
        with quiet_absl(), quiet_model_load():
            from dm_control import suite

            return suite.load(self.domain, self.task_name, task_kwargs={"random": random, "time_limit": float("inf")})

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        raise NotImplementedError

    def _task_reset(self, seed: int | None) -> np.ndarray:
        if seed is not None:
            self._env.task._random = np.random.RandomState(seed)
        ts = self._env.reset()
        return flatten_observation(ts.observation)

    def _task_step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, float], dict[str, Any]]:
        ts = self._env.step(action)
        reward = float(ts.reward)
        # dm_control rewards are products of tolerance terms, not sums: one term, the task's reward.
        return flatten_observation(ts.observation), reward, bool(ts.last()), {"task": reward}, {}

    def _task_rng_state(self) -> Any:
        return self._env.task.random.get_state()

    def _set_task_rng_state(self, state: Any) -> None:
        rs = np.random.RandomState()
        rs.set_state(state)
        self._env.task._random = rs

    def _task_extra_state(self) -> dict[str, Any]:
        return {"step_count": self._env._step_count, "reset_next_step": self._env._reset_next_step}

    def _set_task_extra_state(self, state: dict[str, Any]) -> None:
        self._env._step_count = state["step_count"]
        self._env._reset_next_step = state["reset_next_step"]


# The last sections of the dmc games' docstrings (quadruped-navigate writes its own). A class's documentation is its
# own text plus this tail, assigned to ``__doc__`` in the class body: a concatenation is an expression, which Python
# does not take as the docstring (the class's ``__doc__`` would be None, and ``help()`` would show the base class's).
_DOC_TAIL = """
    ## Episode end
    Never terminated early; truncated at ``horizon`` (default 1000 control steps, the suite's length).

    ## Version history
    - v0 (qarl 0.1): first release, on dm_control 1.0.50 / MuJoCo 3.17.
"""


def _planar(body: str) -> tuple[ForceDim, ForceDim]:
    return (ForceDim(body, FX), ForceDim(body, FZ))


class CheetahGame(DMCGame):
    __doc__ = (
        """dmc/cheetah-run: run forward while the adversary pushes the torso and both feet.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (6,))``.
    - Adversary: ``Box(-b, b, (6,))``, default ``b = 1`` N: ``(fx, fz)`` on ``torso``, ``bfoot``, ``ffoot``.

    ## Observation
    ``(17,)``: ``position`` (8) then ``velocity`` (9).

    ## Rewards
    dm_control's run reward, ``tolerance(speed, [10, inf], margin 10)`` in [0, 1].

    ## Perturbations
    - ``torso_mass``: nominal 6.25 kg, range [3, 9].
    - ``friction``: nominal 1.0 (the floor's; robot geoms are 0.4 and scale alike), range [0.1, 1.9].
    """
        + _DOC_TAIL
    )

    domain = "cheetah"
    force_dims = _planar("torso") + _planar("bfoot") + _planar("ffoot")

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return (
            ParamSpec("torso_mass", "body_mass", "torso", 3.0, 9.0),
            ParamSpec("friction", "friction", None, 0.1, 1.9),
        )


class HopperGame(DMCGame):
    __doc__ = (
        """dmc/hopper-hop, dmc/hopper-stand: a planar hopper; the adversary pushes the foot.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (4,))``.
    - Adversary: ``Box(-b, b, (2,))``, default ``b = 1`` N: ``(fx, fz)`` on ``foot``.

    ## Observation
    ``(15,)``: ``position`` (6), ``velocity`` (7), ``touch`` (2).

    ## Rewards
    dm_control's stand or hop reward in [0, 1].

    ## Perturbations
    - ``torso_mass``: nominal 4.83 kg, range [1, 9].
    - ``friction``: all geoms' coefficient, nominal 1.0, range [0.1, 1.9].
    """
        + _DOC_TAIL
    )

    domain = "hopper"
    force_dims = _planar("foot")

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return (
            ParamSpec("torso_mass", "body_mass", "torso", 1.0, 9.0),
            ParamSpec("friction", "friction", None, 0.1, 1.9),
        )


class WalkerGame(DMCGame):
    __doc__ = (
        """dmc/walker-walk, -run, -stand: a planar biped; the adversary pushes both feet.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (6,))``.
    - Adversary: ``Box(-b, b, (4,))``, default ``b = 1`` N: ``(fx, fz)`` on ``right_foot`` and ``left_foot``.

    ## Observation
    ``(24,)``: ``orientations`` (14), ``height`` (1), ``velocity`` (9).

    ## Rewards
    dm_control's stand, walk or run reward in [0, 1].

    ## Perturbations
    - ``torso_mass``: nominal 10.67 kg, range [5, 15].
    - ``friction``: all geoms' coefficient, nominal 0.7, range [0.1, 1.3].
    """
        + _DOC_TAIL
    )

    domain = "walker"
    force_dims = _planar("right_foot") + _planar("left_foot")

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return (
            ParamSpec("torso_mass", "body_mass", "torso", 5.0, 15.0),
            ParamSpec("friction", "friction", None, 0.1, 1.3),
        )


class QuadrupedGame(DMCGame):
    __doc__ = (
        """dmc/quadruped-walk, dmc/quadruped-run: a 3-D quadruped; the adversary pushes and pitches the torso.

    ## Action spaces
    - Protagonist: ``Box(-1/-0.8, 1/1.1/0.8, (12,))``, the suite's actuator ranges.
    - Adversary: ``Box(-b, b, (3,))``, default ``b = 10``: ``fx``, ``fz`` (N) and ``torque_y`` (N·m) on ``torso``.

    ## Observation
    ``(78,)``: ``egocentric_state`` (44), ``torso_velocity`` (3), ``torso_upright`` (1), ``imu`` (6),
    ``force_torque`` (24).

    ## Rewards
    dm_control's move reward (upright x speed tolerance) in [0, 1].

    ## Perturbations
    - ``torso_mass``: nominal 67.86 kg, range [65, 75].
    - ``friction``: the floor's coefficient, nominal 1.0 (the toes' 1.5 scales alike), range [0.95, 1.05].
    """
        + _DOC_TAIL
    )

    domain = "quadruped"
    default_bound = 10.0
    force_dims = (ForceDim("torso", FX), ForceDim("torso", FZ), ForceDim("torso", TY))

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return (
            ParamSpec("torso_mass", "body_mass", "torso", 65.0, 75.0),
            ParamSpec("friction", "friction", None, 0.95, 1.05),
        )


class CartpoleGame(DMCGame):
    __doc__ = (
        """dmc/cartpole-balance, -swingup, -balance_sparse, -swingup_sparse; the adversary pushes the pole.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (1,))``.
    - Adversary: ``Box(-b, b, (2,))``, default ``b = 2`` N: ``(fx, fz)`` on ``pole_1``.

    ## Observation
    ``(5,)``: ``position`` (3: cart x, cos and sin of the pole angle), ``velocity`` (2).

    ## Rewards
    dm_control's smooth or sparse cartpole reward in [0, 1].

    ## Perturbations
    - ``pole_mass``: nominal 0.1 kg; range [1, 20] for the balance tasks and [0.05, 0.15] for the
      swing-up tasks. The balance range follows the QARL authors' and deliberately excludes the nominal
      value (the nominal is still accepted by ``set_params``).
    - ``cart_mass``: nominal 1.0 kg, range [0.5, 1.5].
    """
        + _DOC_TAIL
    )

    domain = "cartpole"
    default_bound = 2.0
    force_dims = _planar("pole_1")

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        low, high = (1.0, 20.0) if task_name.startswith("balance") else (0.05, 0.15)
        return (
            ParamSpec("pole_mass", "body_mass", "pole_1", low, high),
            ParamSpec("cart_mass", "body_mass", "cart", 0.5, 1.5),
        )


class PendulumGame(DMCGame):
    __doc__ = (
        """dmc/pendulum-swingup: swing a pendulum up; the adversary pushes the pole.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (1,))``.
    - Adversary: ``Box(-b, b, (2,))``, default ``b = 1`` N: ``(fx, fz)`` on ``pole``.

    ## Observation
    ``(3,)``: ``orientation`` (2), ``velocity`` (1).

    ## Rewards
    dm_control's sparse upright reward (1 within 30 degrees of upright).

    ## Perturbations
    The current dm_control pendulum has a single body ``pole``, so the parameters are its mass and the
    hinge's damping.
    - ``pole_mass``: nominal 1.0 kg, range [0.5, 1.5].
    - ``hinge_damping``: nominal 0.1, range [0.05, 0.15].
    """
        + _DOC_TAIL
    )

    domain = "pendulum"
    force_dims = _planar("pole")

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return (
            ParamSpec("pole_mass", "body_mass", "pole", 0.5, 1.5),
            ParamSpec("hinge_damping", "dof_damping", "hinge", 0.05, 0.15),
        )


class AcrobotGame(DMCGame):
    __doc__ = (
        """dmc/acrobot-swingup, dmc/acrobot-swingup_sparse; the adversary pushes the upper arm.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (1,))``, the elbow torque.
    - Adversary: ``Box(-b, b, (2,))``, default ``b = 1`` N: ``(fx, fz)`` on ``upper_arm``.

    ## Observation
    ``(6,)``: ``orientations`` (4), ``velocity`` (2).

    ## Rewards
    dm_control's smooth or sparse tip-to-target reward in [0, 1].

    ## Perturbations
    - ``upper_arm_mass``: nominal 1.0 kg, range [0.95, 1.05].
    - ``lower_arm_mass``: nominal 1.0 kg, range [0.95, 1.05].
    """
        + _DOC_TAIL
    )

    domain = "acrobot"
    force_dims = _planar("upper_arm")

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return (
            ParamSpec("upper_arm_mass", "body_mass", "upper_arm", 0.95, 1.05),
            ParamSpec("lower_arm_mass", "body_mass", "lower_arm", 0.95, 1.05),
        )


class ReacherGame(DMCGame):
    __doc__ = (
        """dmc/reacher-easy, dmc/reacher-hard: reach a target in the plane; the adversary pushes the arm.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (2,))``.
    - Adversary: ``Box(-b, b, (2,))``, default ``b = 0.1`` N: ``(fx, fy)`` on ``arm`` (the arm moves in x-y).

    ## Observation
    ``(6,)``: ``position`` (2), ``to_target`` (2), ``velocity`` (2).

    ## Rewards
    dm_control's sparse reward: 1 while the finger touches the target.

    ## Perturbations
    - ``arm_mass``: nominal 0.042 kg, range [0.02, 0.06].
    - ``hand_mass``: nominal 0.036 kg, range [0.02, 0.05].
    """
        + _DOC_TAIL
    )

    domain = "reacher"
    default_bound = 0.1
    force_dims = (ForceDim("arm", FX), ForceDim("arm", FY))

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return (
            ParamSpec("arm_mass", "body_mass", "arm", 0.02, 0.06),
            ParamSpec("hand_mass", "body_mass", "hand", 0.02, 0.05),
        )


class BallInCupGame(DMCGame):
    __doc__ = (
        """dmc/ball_in_cup-catch: swing a tethered ball into the cup; the adversary pushes the ball.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (2,))``, the cup's x and z motors.
    - Adversary: ``Box(-b, b, (2,))``, default ``b = 0.005`` N: ``(fx, fz)`` on ``ball``.

    ## Observation
    ``(8,)``: ``position`` (4), ``velocity`` (4).

    ## Rewards
    dm_control's sparse reward: 1 while the ball is in the cup.

    ## Perturbations
    - ``ball_mass``: nominal 0.065 kg, range [0.01, 0.11].
    - ``cup_mass``: nominal 0.065 kg, range [0.01, 0.11].
    """
        + _DOC_TAIL
    )

    domain = "ball_in_cup"
    default_bound = 0.005
    force_dims = _planar("ball")

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return (
            ParamSpec("ball_mass", "body_mass", "ball", 0.01, 0.11),
            ParamSpec("cup_mass", "body_mass", "cup", 0.01, 0.11),
        )


class QuadrupedNavigateGame(DMCGame):
    """dmc/quadruped-navigate: walk through a gate to a goal while a +y wind blows in part of the corridor.

    ## Description
    The QARL paper's navigation task (see :mod:`envs.dmc_navigate` for the geometry): a corridor with walls
    at ``y = +-7``, a gate at ``x = 8`` with an opening ``|y| < 2`` and a goal at ``(10, 0)``.

    ## Action spaces
    - Protagonist: ``Box(-1/-0.8, 1/1.1/0.8, (12,))``, the quadruped's actuators.
    - Adversary: ``Box(0, b, (1,))``, default ``b = 600`` N: the total +y wind force, shared over all bodies
      in proportion to their mass, acting only while the torso's x lies in [4, 8].

    ## Observation
    The quadruped's common observations followed by ``torso_xy`` (2) and ``goal_vector`` (2).

    ## Rewards
    ``upright * 5 * exp(-0.2 * distance to goal)``; ``info["success"]`` is ``distance < 1``.

    ## Perturbations
    - ``torso_mass``: nominal 67.86 kg, range [65, 75].
    - ``friction``: the floor's coefficient, nominal 1.0 (the toes' 1.5 scales alike), range [0.95, 1.05].

    ## Episode end
    Never terminated early; truncated at ``horizon`` (default 1000 control steps, 20 s).

    ## Version history
    - v0 (qarl 0.1): first release, on dm_control 1.0.50 / MuJoCo 3.17. The wind bound is the QARL
      authors' public code default; the paper's own bound is not known, so it is a config value.
    """

    domain = "quadruped"
    default_bound = 600.0
    goal_task = True
    # Placeholder so that the base class resolves one adversary dimension; the force is not written
    # through this entry (see _write_force) but shared over all bodies by the physics.
    force_dims = (ForceDim("torso", FY),)

    def __init__(
        self,
        task_id: str,
        *,
        adversary_bound: float | list[float] | None = None,
        horizon: int = 1000,
    ) -> None:
        super().__init__(task_id, task_name="navigate", adversary_bound=adversary_bound, horizon=horizon)

    def _adversary_low_high(self) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros_like(self.adversary_bound), self.adversary_bound

    def _load(self, random: np.random.RandomState):
        with quiet_absl(), quiet_model_load():
            from envs import dmc_navigate

            return dmc_navigate.load(random=random, time_limit=float("inf"))

    @classmethod
    def param_specs_for(cls, task_name: str) -> tuple[ParamSpec, ...]:
        return QuadrupedGame.param_specs_for(task_name)

    def _write_force(self, force: np.ndarray) -> None:
        self._physics.set_wind(float(force[0]))

    def _clear_force(self) -> None:
        if hasattr(self, "_physics"):
            self._physics.set_wind(0.0)
        super()._clear_force()

    def _task_step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, float], dict[str, Any]]:
        obs, reward, terminated, _, _ = super()._task_step(action)
        distance = float(self._physics.goal_distance())
        extra = {"distance_to_goal": distance, "success": distance < 1.0}
        return obs, reward, terminated, {"navigate": reward}, extra
