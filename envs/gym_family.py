"""The gym family: gymnasium MuJoCo v5 tasks as zero-sum games (the tasks of RARL, Pinto et al. 2017).

Each game owns one unwrapped gymnasium environment and calls its ``step`` unchanged, so with zero
adversary force and nominal parameters the game reproduces ``gymnasium.make(<id>)`` bit for bit.
The adversary's force is written to ``data.xfrc_applied`` before ``env.step`` (which runs ``frame_skip``
physics substeps) and zeroed right after it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.core import FX, FY, FZ, ForceDim, ParamSpec, ZeroSumGame, quiet_model_load

# RARL's robustness ranges: 0.5x to 1.5x of the nominal value.
_REL_LOW, _REL_HIGH = 0.5, 1.5


class GymGame(ZeroSumGame):
    """Base class of the gym family; a subclass names the gymnasium id, adversary forces and parameters."""

    family = "gym"
    gym_id: ClassVar[str] = ""
    default_bound: ClassVar[float] = 5.0
    param_specs: ClassVar[tuple[ParamSpec, ...]] = ()

    def __init__(
        self,
        task_id: str,
        *,
        adversary_bound: float | list[float] | None = None,
        horizon: int = 1000,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(task_id, adversary_bound=adversary_bound, horizon=horizon)
        self._init_kwargs["env_kwargs"] = dict(env_kwargs or {})
        # ``.unwrapped`` drops gymnasium's TimeLimit/OrderEnforcing/checker wrappers; the game keeps its
        # own horizon and order checks, and the raw env's step is what gymnasium.make would call.
        with quiet_model_load():
            self._env = gymnasium.make(self.gym_id, **(env_kwargs or {})).unwrapped
        self.observation_space: spaces.Box = self._env.observation_space
        self.protagonist_action_space: spaces.Box = self._env.action_space
        self.dt = float(self._env.dt)
        self._env_dt = self._env.dt  # model.opt.timestep * frame_skip, as gymnasium's property computes it
        self._finish_setup(self._env.model, self._env.data, self.param_specs)

    def _task_reset(self, seed: int | None) -> np.ndarray:
        obs, _ = self._env.reset(seed=seed)
        return obs

    def _task_step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, float], dict[str, Any]]:
        obs, reward, terminated, _, info = self._env.step(action)
        # gymnasium reports each additive reward term as ``reward_<name>`` (costs already negative).
        terms = {k[len("reward_") :]: float(v) for k, v in info.items() if k.startswith("reward_")}
        extra = {k: v for k, v in info.items() if not k.startswith("reward_")}
        return obs, float(reward), bool(terminated), terms, extra

    def _task_step_lean(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        obs, reward, terminated, _, _ = self._env.step(action)
        return obs, float(reward), bool(terminated)

    # Lean steps of the locomotion tasks: the env's own ``step`` minus what only the info dict needs, its per-call
    # action-shape check (the game has checked the shape) and the ``dt`` property (the time step is constant).
    # They call the env's own simulation, observation, reward and health methods in the order ``step`` does, so the
    # trajectory is the same bit for bit (tested on every task against ``step``).

    def _simulate(self, action: np.ndarray) -> None:
        self._env._step_mujoco_simulation(action, self._env.frame_skip)

    def _lean_x_velocity(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        qpos = self._env.data.qpos
        x_before = qpos[0]
        self._simulate(action)
        obs = self._env._get_obs()
        reward, _ = self._env._get_rew((qpos[0] - x_before) / self._env_dt, action)
        return obs, float(reward)

    def _unhealthy_end(self) -> bool:
        return bool((not self._env.is_healthy) and self._env._terminate_when_unhealthy)

    def _task_rng_state(self) -> Any:
        return self._env.np_random.bit_generator.state

    def _set_task_rng_state(self, state: Any) -> None:
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        self._env.np_random = rng


def _torso_and_friction(torso: str = "torso") -> tuple[ParamSpec, ...]:
    return (
        ParamSpec("torso_mass", "body_mass", torso, _REL_LOW, _REL_HIGH, relative=True, doc="torso mass (kg)"),
        ParamSpec("friction", "friction", None, _REL_LOW, _REL_HIGH, relative=True, doc="floor friction"),
    )


class InvertedPendulumGame(GymGame):
    """gym/InvertedPendulum-v5: balance a pole on a cart while the adversary pushes the pole.

    ## Description
    gymnasium's ``InvertedPendulum-v5``: a cart on a rail carries a hinged pole; the protagonist moves the
    cart to keep the pole upright.

    ## Action spaces
    - Protagonist: ``Box(-3, 3, (1,))``, the cart's motor command.
    - Adversary: ``Box(-b, b, (2,))`` with default ``b = 5`` N: forces ``(fx, fz)`` on the ``pole`` body.

    ## Observation
    ``(4,)``: cart position, pole angle, and their velocities (gymnasium v5).

    ## Rewards
    ``+1`` per step while the pole is upright (term ``survive``); the adversary receives ``-reward``.

    ## Episode end
    Terminated when ``|angle| > 0.2`` rad or the state is not finite; truncated at ``horizon`` (1000).

    ## Perturbations
    The model has no contacts, so friction has no effect; RARL's mass ranges are applied to both bodies.
    - ``pole_mass``: nominal 5.02 kg, range 0.5x-1.5x of nominal.
    - ``cart_mass``: nominal 10.47 kg, range 0.5x-1.5x of nominal.

    ## Version history
    - v0 (qarl 0.1): first release, on gymnasium 1.x ``InvertedPendulum-v5``.
    """

    gym_id = "InvertedPendulum-v5"
    force_dims = (ForceDim("pole", FX), ForceDim("pole", FZ))
    param_specs = (
        ParamSpec("pole_mass", "body_mass", "pole", _REL_LOW, _REL_HIGH, relative=True, doc="pole mass (kg)"),
        ParamSpec("cart_mass", "body_mass", "cart", _REL_LOW, _REL_HIGH, relative=True, doc="cart mass (kg)"),
    )

    def _task_step_lean(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        self._simulate(action)
        obs = self._env._get_obs()
        terminated = bool(not np.isfinite(obs).all() or (np.abs(obs[1]) > 0.2))  # InvertedPendulumEnv.step's test
        return obs, float(not terminated), terminated


class HalfCheetahGame(GymGame):
    """gym/HalfCheetah-v5: run forward while the adversary pushes the torso and both feet.

    ## Description
    gymnasium's ``HalfCheetah-v5``, a planar 2-legged runner (the RARL HalfCheetah game).

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (6,))``, joint torques.
    - Adversary: ``Box(-b, b, (6,))``, default ``b = 5`` N: ``(fx, fz)`` on ``torso``, ``bfoot``, ``ffoot``.

    ## Observation
    ``(17,)``: joint positions (without root x) and velocities (gymnasium v5).

    ## Rewards
    ``forward`` (x velocity) + ``ctrl`` (``-0.1 |a|^2``), reported in ``info["reward_terms"]``.

    ## Episode end
    Never terminated; truncated at ``horizon`` (1000).

    ## Perturbations
    - ``torso_mass``: nominal 6.25 kg, range 0.5x-1.5x.
    - ``friction``: tangential friction of all geoms (the floor's), nominal 0.4, range 0.5x-1.5x.

    ## Version history
    - v0 (qarl 0.1): first release, on gymnasium 1.x ``HalfCheetah-v5``.
    """

    gym_id = "HalfCheetah-v5"
    force_dims = tuple(ForceDim(b, c) for b in ("torso", "bfoot", "ffoot") for c in (FX, FZ))
    param_specs = _torso_and_friction()

    def _task_step_lean(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        return (*self._lean_x_velocity(action), False)


class SwimmerGame(GymGame):
    """gym/Swimmer-v5: swim forward in a viscous fluid while the adversary pushes the torso.

    ## Description
    gymnasium's ``Swimmer-v5``: a 3-link swimmer moving in the x-y plane.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (2,))``, joint torques.
    - Adversary: ``Box(-b, b, (3,))``, default ``b = 5`` N: ``(fx, fy, fz)`` on ``torso``.

    ## Observation
    ``(8,)``: joint angles (without root x, y) and velocities (gymnasium v5).

    ## Rewards
    ``forward`` (x velocity) + ``ctrl`` (``-1e-4 |a|^2``).

    ## Episode end
    Never terminated; truncated at ``horizon`` (1000).

    ## Perturbations
    The swimmer makes no contacts, so the medium's viscosity stands in for friction.
    - ``torso_mass``: nominal 35.6 kg, range 0.5x-1.5x.
    - ``viscosity``: fluid viscosity, nominal 0.1, range 0.5x-1.5x.

    ## Version history
    - v0 (qarl 0.1): first release, on gymnasium 1.x ``Swimmer-v5``.
    """

    gym_id = "Swimmer-v5"
    force_dims = (ForceDim("torso", FX), ForceDim("torso", FY), ForceDim("torso", FZ))
    param_specs = (
        ParamSpec("torso_mass", "body_mass", "torso", _REL_LOW, _REL_HIGH, relative=True, doc="torso mass (kg)"),
        ParamSpec("viscosity", "viscosity", None, _REL_LOW, _REL_HIGH, relative=True, doc="fluid viscosity"),
    )

    def _task_step_lean(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        qpos = self._env.data.qpos
        xy_before = qpos[0:2].copy()
        self._simulate(action)
        x_velocity = ((qpos[0:2] - xy_before) / self._env_dt)[0]
        obs = self._env._get_obs()
        reward, _ = self._env._get_rew(x_velocity, action)
        return obs, float(reward), False


class HopperGame(GymGame):
    """gym/Hopper-v5: hop forward while the adversary pushes the foot.

    ## Description
    gymnasium's ``Hopper-v5``, a planar one-legged hopper.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (3,))``, joint torques.
    - Adversary: ``Box(-b, b, (2,))``, default ``b = 5`` N: ``(fx, fz)`` on ``foot``.

    ## Observation
    ``(11,)``: joint positions (without root x) and clipped velocities (gymnasium v5).

    ## Rewards
    ``forward`` + ``survive`` (1 while healthy) + ``ctrl`` (``-1e-3 |a|^2``).

    ## Episode end
    Terminated when unhealthy (gymnasium v5 rules); truncated at ``horizon`` (1000).

    ## Perturbations
    - ``torso_mass``: nominal 3.67 kg, range 0.5x-1.5x.
    - ``friction``: the floor's coefficient, nominal 1.0, range 0.5x-1.5x; every geom's coefficient (the
      foot's 2.0, the body's 0.9) is scaled by the same factor.

    ## Version history
    - v0 (qarl 0.1): first release, on gymnasium 1.x ``Hopper-v5``.
    """

    gym_id = "Hopper-v5"
    force_dims = (ForceDim("foot", FX), ForceDim("foot", FZ))
    param_specs = _torso_and_friction()

    def _task_step_lean(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        obs, reward = self._lean_x_velocity(action)
        return obs, reward, self._unhealthy_end()


class Walker2dGame(GymGame):
    """gym/Walker2d-v5: walk forward while the adversary pushes both feet.

    ## Description
    gymnasium's ``Walker2d-v5``, a planar biped.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (6,))``, joint torques.
    - Adversary: ``Box(-b, b, (4,))``, default ``b = 5`` N: ``(fx, fz)`` on ``foot`` and ``foot_left``.

    ## Observation
    ``(17,)``: joint positions (without root x) and clipped velocities (gymnasium v5).

    ## Rewards
    ``forward`` + ``survive`` + ``ctrl`` (``-1e-3 |a|^2``).

    ## Episode end
    Terminated when unhealthy (gymnasium v5 rules); truncated at ``horizon`` (1000).

    ## Perturbations
    - ``torso_mass``: nominal 3.67 kg, range 0.5x-1.5x.
    - ``friction``: the floor's coefficient, nominal 0.7, range 0.5x-1.5x; all geoms (feet 1.9, body 0.9)
      scaled alike.

    ## Version history
    - v0 (qarl 0.1): first release, on gymnasium 1.x ``Walker2d-v5``.
    """

    gym_id = "Walker2d-v5"
    force_dims = tuple(ForceDim(b, c) for b in ("foot", "foot_left") for c in (FX, FZ))
    param_specs = _torso_and_friction()

    def _task_step_lean(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        obs, reward = self._lean_x_velocity(action)
        return obs, reward, self._unhealthy_end()


class AntGame(GymGame):
    """gym/Ant-v5: walk forward while the adversary pushes the torso in 3-D.

    ## Description
    gymnasium's ``Ant-v5``, a 3-D quadruped. Not in the RARL paper; the adversary follows RRLS's RARL set.

    ## Action spaces
    - Protagonist: ``Box(-1, 1, (8,))``, joint torques.
    - Adversary: ``Box(-b, b, (3,))``, default ``b = 3`` N: ``(fx, fy, fz)`` on ``torso``.

    ## Observation
    ``(105,)``: joint positions (without root x, y), velocities and clipped contact forces (gymnasium v5).

    ## Rewards
    ``forward`` + ``survive`` + ``ctrl`` + ``contact`` (costs negative).

    ## Episode end
    Terminated when unhealthy (gymnasium v5 rules); truncated at ``horizon`` (1000).

    ## Perturbations
    - ``torso_mass``: nominal 0.33 kg, range 0.5x-1.5x.
    - ``friction``: tangential friction of all geoms (the floor's), nominal 1.0, range 0.5x-1.5x.

    ## Version history
    - v0 (qarl 0.1): first release, on gymnasium 1.x ``Ant-v5``.
    """

    gym_id = "Ant-v5"
    default_bound = 3.0
    force_dims = (ForceDim("torso", FX), ForceDim("torso", FY), ForceDim("torso", FZ))
    param_specs = _torso_and_friction()

    def _task_step_lean(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        xpos = self._env.data.body(self._env._main_body).xpos
        xy_before = xpos[:2].copy()
        self._simulate(action)
        x_velocity = ((xpos[:2] - xy_before) / self._env_dt)[0]
        obs = self._env._get_obs()
        reward, _ = self._env._get_rew(x_velocity, action)
        return obs, float(reward), self._unhealthy_end()
