"""The two-player zero-sum game contract (docs/games.md) and the machinery every task shares.

A :class:`ZeroSumGame` wraps one MuJoCo task. The protagonist drives the task's actuators; the adversary
applies external forces (N) or torques (N·m) to listed bodies through ``data.xfrc_applied``, held for every
physics substep of a control step and zeroed afterwards. The protagonist's reward is the task's reward; the
adversary's is its negative. Physical parameters (masses, friction, damping, viscosity) are changed in
memory on the compiled model and persist across resets.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np
from gymnasium import spaces

from envs.registry import TaskSpec
from envs.registry import spec as _spec

# xfrc_applied columns: force x, y, z then torque x, y, z (world frame, applied at the body's CoM).
FX, FY, FZ, TX, TY, TZ = range(6)
_COMPONENT_NAMES = ("fx", "fy", "fz", "tx", "ty", "tz")

# Model fields that dm_control tasks may rewrite in ``initialize_episode`` (e.g. the reacher's target
# position); they are part of a game's pickled state so that an unpickled game continues exactly.
_EPISODE_MODEL_FIELDS = ("body_pos", "body_quat", "geom_pos", "geom_quat", "geom_size", "site_pos", "site_quat")
# Quantities MuJoCo derives from the state. After ``mj_step`` they describe the state *before* the last
# integration, and tasks read them between steps (gymnasium's Ant takes its "x before" from ``xpos``), so
# a pickled game restores them as they were instead of recomputing them.
_DERIVED_DATA_FIELDS = (
    "xpos", "xquat", "xmat", "xipos", "ximat", "geom_xpos", "geom_xmat", "site_xpos", "site_xmat",
    "subtree_com", "cinert", "cdof", "cvel", "cacc", "cfrc_int", "cfrc_ext", "sensordata", "qacc",
    "actuator_force", "qfrc_actuator", "ten_length", "actuator_length", "actuator_velocity",
)  # fmt: skip


@contextlib.contextmanager
def quiet_absl():
    """Silence absl's compile-time warnings (dm_control's cheetah model uses the deprecated 'settotalmass')."""
    from absl import logging as absl_logging

    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


_KNOWN_COMPILE_WARNINGS = ("compiler attribute 'settotalmass' is deprecated",)


@contextlib.contextmanager
def quiet_model_load():
    """Build a task's model without known, harmless noise on the terminal.

    gymnasium's and dm_control's models use MuJoCo's deprecated ``settotalmass`` (MuJoCo prints a warning for
    each compile), and importing their renderers on a machine without a display warns that there is none
    (rendering is never used). Other MuJoCo warnings are re-raised as Python ``RuntimeWarning``s.
    """

    def forward(message: str) -> None:
        if not message.startswith(_KNOWN_COMPILE_WARNINGS):
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(forward)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*DISPLAY environment variable is missing")
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


@dataclass(frozen=True)
class ForceDim:
    """One adversary action dimension: a component of ``xfrc_applied`` on one body."""

    body: str
    component: int  # FX..TZ

    @property
    def label(self) -> str:
        return f"{self.body}.{_COMPONENT_NAMES[self.component]}"


@dataclass(frozen=True)
class ParamSpec:
    """A physical parameter of a task, with its robustness range.

    ``kind`` is one of

    - ``body_mass``: ``model.body_mass`` of body ``target`` (kg); the subtree masses of its ancestors are
      updated with it. Inertia tensors keep their nominal values (as in RARL and RRLS).
    - ``friction``: the floor's tangential friction coefficient (geom ``floor`` or ``ground``). Every geom's
      tangential friction is scaled by ``value / nominal``: when all geoms share one coefficient (most
      tasks) this is exactly "the coefficient applied to all geoms"; otherwise (e.g. the quadruped's toes,
      the cheetah's body) the ratios between geoms are kept, and the nominal value reproduces the task
      exactly.
    - ``dof_damping``: damping of joint ``target`` (N·m·s/rad or N·s/m).
    - ``viscosity``: ``model.opt.viscosity`` of the medium (Pa·s).

    ``low``/``high`` are absolute unless ``relative`` is true, in which case they multiply the nominal value.
    """

    name: str
    kind: str
    target: str | None
    low: float
    high: float
    relative: bool = False
    doc: str = ""


class ZeroSumGame:
    """Base class of every game. Subclasses build the MuJoCo task and implement the ``_task_*`` hooks.

    Attributes:
        task_id: registry id.
        observation_space: Box, the observation both players see.
        protagonist_action_space: Box, the task's actuator commands.
        adversary_action_space: Box in physical units (N for forces, N·m for torques).
        adversary_labels: ``body.component`` name of each adversary dimension.
        horizon: control steps per episode (``truncated`` is set at this step).
        dt: control time step in seconds.
        np_random: the game's own generator for suite-level randomness (e.g. domain randomisation),
            seeded by ``reset(seed=...)`` independently of the task's own generator.
    """

    family: ClassVar[str] = ""
    version: ClassVar[str] = "v0"  # bump when a game's dynamics, rewards or observations change (see docstrings)
    force_dims: ClassVar[tuple[ForceDim, ...]] = ()
    default_bound: ClassVar[float] = 1.0
    # A goal task: ``info`` holds ``distance_to_goal`` and ``success``, and the adversary is a wind (the end-of-trial
    # evaluation then adds its wind metric: episodes at multiples of the trial's wind bound).
    goal_task: ClassVar[bool] = False

    def __init__(
        self,
        task_id: str,
        *,
        adversary_bound: float | Sequence[float] | None = None,
        horizon: int = 1000,
    ) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
            raise ValueError(f"{task_id}: horizon must be a positive integer, got {horizon!r}")
        self.task_id = task_id
        self.spec: TaskSpec = _spec(task_id)
        self.horizon = int(horizon)
        self._init_kwargs: dict[str, Any] = {"adversary_bound": adversary_bound, "horizon": horizon}
        self.adversary_bound = self._resolve_bound(adversary_bound)
        self._elapsed = 0
        self._needs_reset = True
        self.np_random = np.random.default_rng()
        self._params: dict[str, float] = {}

    # ------------------------------------------------------------------ construction helpers
    def _resolve_bound(self, bound: float | Sequence[float] | None) -> np.ndarray:
        k = len(self.force_dims)
        if bound is None:
            bound = self.default_bound
        arr = np.asarray(bound, dtype=np.float64)
        if arr.ndim == 0:
            arr = np.full(k, float(arr))
        if arr.shape != (k,):
            raise ValueError(
                f"{self.task_id}: adversary_bound must be a number or {k} numbers "
                f"({', '.join(d.label for d in self.force_dims)}), got shape {arr.shape}"
            )
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ValueError(f"{self.task_id}: adversary_bound must be finite and >= 0, got {arr.tolist()}")
        return arr

    def _adversary_low_high(self) -> tuple[np.ndarray, np.ndarray]:
        return -self.adversary_bound, self.adversary_bound

    def _finish_setup(self, model: mujoco.MjModel, data: mujoco.MjData, param_specs: Sequence[ParamSpec]) -> None:
        """Called by subclasses once the model exists: resolves bodies, spaces and parameters."""
        self._model = model
        self._data = data
        self.adversary_labels = tuple(d.label for d in self.force_dims)
        ids = []
        for d in self.force_dims:
            bid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, d.body)
            if bid < 0:
                raise RuntimeError(f"{self.task_id}: body {d.body!r} not found in the model")
            ids.append(bid)
        self._force_body_ids = np.asarray(ids, dtype=np.intp)
        self._force_components = np.asarray([d.component for d in self.force_dims], dtype=np.intp)
        low, high = self._adversary_low_high()
        self.adversary_action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self._adv_low, self._adv_high = low, high

        self._orig_model = {
            "body_mass": model.body_mass.copy(),
            "body_subtreemass": model.body_subtreemass.copy(),
            "geom_friction": model.geom_friction.copy(),
            "dof_damping": model.dof_damping.copy(),
            "viscosity": float(model.opt.viscosity),
        }
        self._param_specs: dict[str, ParamSpec] = {}
        self._param_index: dict[str, int] = {}
        self._nominal: dict[str, float] = {}
        self._bounds: dict[str, tuple[float, float]] = {}
        for p in param_specs:
            nominal, index = self._read_nominal(p)
            low_p, high_p = (p.low * nominal, p.high * nominal) if p.relative else (p.low, p.high)
            self._param_specs[p.name] = p
            self._param_index[p.name] = index
            self._nominal[p.name] = nominal
            self._bounds[p.name] = (float(low_p), float(high_p))
        self._params = dict(self._nominal)

    def _read_nominal(self, p: ParamSpec) -> tuple[float, int]:
        m = self._model
        if p.kind == "body_mass":
            bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, p.target)
            if bid < 0:
                raise RuntimeError(f"{self.task_id}: body {p.target!r} of parameter {p.name!r} not found")
            return float(m.body_mass[bid]), bid
        if p.kind == "friction":
            for floor in ("floor", "ground"):
                gid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, floor)
                if gid >= 0:
                    return float(m.geom_friction[gid, 0]), gid
            raise RuntimeError(f"{self.task_id}: parameter {p.name!r} needs a geom named 'floor' or 'ground'")
        if p.kind == "dof_damping":
            jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, p.target)
            if jid < 0:
                raise RuntimeError(f"{self.task_id}: joint {p.target!r} of parameter {p.name!r} not found")
            dof = int(m.jnt_dofadr[jid])
            return float(m.dof_damping[dof]), dof
        if p.kind == "viscosity":
            return float(m.opt.viscosity), -1
        raise RuntimeError(f"{self.task_id}: unknown parameter kind {p.kind!r}")

    @property
    def model(self) -> mujoco.MjModel:
        """The compiled MuJoCo model (shared, not a copy: prefer :meth:`set_params` to editing it)."""
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        """The MuJoCo data of the running episode."""
        return self._data

    # ------------------------------------------------------------------ perturbations
    def get_params(self) -> dict[str, float]:
        """Current physical parameters (absolute values)."""
        return dict(self._params)

    def nominal_params(self) -> dict[str, float]:
        """The task's unmodified parameters."""
        return dict(self._nominal)

    def param_bounds(self) -> dict[str, tuple[float, float]]:
        """The robustness range ``(low, high)`` of each parameter (both ends included)."""
        return dict(self._bounds)

    def set_params(self, **params: float) -> None:
        """Set physical parameters in memory; they persist across ``reset``.

        Each value must lie in ``param_bounds()`` or equal the nominal value (some published ranges exclude
        the nominal, e.g. cartpole-balance's pole mass). Nothing changes if any value is rejected.
        """
        for name, value in params.items():
            if name not in self._param_specs:
                raise ValueError(
                    f"{self.task_id}: unknown parameter {name!r}; this task has {sorted(self._param_specs)}"
                )
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"{self.task_id}: parameter {name!r} must be a number, got {value!r}") from None
            low, high = self._bounds[name]
            if not math.isfinite(v) or not (low <= v <= high or v == self._nominal[name]):
                raise ValueError(
                    f"{self.task_id}: {name}={value!r} is outside its allowed range [{low:g}, {high:g}] "
                    f"(nominal {self._nominal[name]:g})"
                )
        new = dict(self._params)
        new.update({k: float(v) for k, v in params.items()})
        self._apply_params(new)
        self._params = new

    def _apply_params(self, values: Mapping[str, float]) -> None:
        # Always rebuild from the original arrays so that nominal values reproduce the task bit for bit.
        m, orig = self._model, self._orig_model
        m.body_mass[:] = orig["body_mass"]
        m.body_subtreemass[:] = orig["body_subtreemass"]
        m.geom_friction[:] = orig["geom_friction"]
        m.dof_damping[:] = orig["dof_damping"]
        m.opt.viscosity = orig["viscosity"]
        for name, v in values.items():
            p, idx = self._param_specs[name], self._param_index[name]
            if p.kind == "body_mass":
                delta = v - orig["body_mass"][idx]
                m.body_mass[idx] = v
                b = idx
                while True:  # a body's mass counts in the subtree mass of itself and every ancestor
                    m.body_subtreemass[b] += delta
                    if b == 0:
                        break
                    b = int(m.body_parentid[b])
            elif p.kind == "friction":
                m.geom_friction[:, 0] = orig["geom_friction"][:, 0] * (v / self._nominal[name])
            elif p.kind == "dof_damping":
                m.dof_damping[idx] = v
            elif p.kind == "viscosity":
                m.opt.viscosity = v

    # ------------------------------------------------------------------ the game
    def reset(
        self, *, seed: int | None = None, options: Mapping[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``seed`` seeds the task's generator and the game's ``np_random``.

        ``options`` may hold ``{"params": {...}}``, applied with :meth:`set_params` before the reset.
        """
        if options:
            unknown = sorted(set(options) - {"params"})
            if unknown:
                raise ValueError(f"{self.task_id}: unknown reset option(s) {unknown}; supported: ['params']")
            if options.get("params"):
                self.set_params(**options["params"])
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
                raise ValueError(f"{self.task_id}: seed must be a non-negative integer, got {seed!r}")
            # Spawned child: independent of the task's own stream, which is seeded with ``seed`` itself
            # so that the game matches the underlying task for the same seed.
            self.np_random = np.random.default_rng(np.random.SeedSequence(int(seed)).spawn(1)[0])
        self._clear_force()
        obs = self._task_reset(None if seed is None else int(seed))
        self._elapsed = 0
        self._needs_reset = False
        info = {"adversary_force": np.zeros(len(self.force_dims)), "params": self.get_params()}
        return obs, info

    def step(
        self, protagonist_action: Any, adversary_action: Any
    ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Advance one control step. Returns the protagonist's reward; the adversary's is ``-reward``."""
        if self._needs_reset:
            raise RuntimeError(f"{self.task_id}: call reset() before step() (and after an episode ends)")
        a_p = self._check_action(protagonist_action, self.protagonist_action_space, "protagonist")
        a_adv = self._check_action(adversary_action, self.adversary_action_space, "adversary")
        force = np.clip(a_adv.astype(np.float64), self._adv_low, self._adv_high)
        self._write_force(force)
        try:
            obs, reward, terminated, terms, extra = self._task_step(a_p)
        finally:
            self._clear_force()
        self._elapsed += 1
        truncated = (not terminated) and self._elapsed >= self.horizon
        self._needs_reset = terminated or truncated
        info = dict(extra)
        info["reward_terms"] = terms
        info["adversary_force"] = force
        info["params"] = self.get_params()
        return obs, float(reward), bool(terminated), bool(truncated), info

    def step_lean(
        self, protagonist_action: np.ndarray, adversary_action: np.ndarray | None
    ) -> tuple[np.ndarray, float, bool, bool]:
        """:meth:`step` without the info dict, for batched evaluation: (obs, reward, terminated, truncated).

        The caller guarantees float arrays of the spaces' shapes with finite entries (the batched evaluator checks
        a whole batch at once); ``adversary_action`` None means no force (a zero force). The force is clipped to the
        bound as in :meth:`step`, and the trajectory is identical to the one :meth:`step` produces.
        """
        if self._needs_reset:
            raise RuntimeError(f"{self.task_id}: call reset() before step() (and after an episode ends)")
        if adversary_action is not None and adversary_action.any():
            self._write_force(np.minimum(np.maximum(adversary_action, self._adv_low), self._adv_high))
            try:
                obs, reward, terminated = self._task_step_lean(protagonist_action)
            finally:
                self._clear_force()
        else:  # no force: nothing to write (forces are cleared after each step and at reset)
            obs, reward, terminated = self._task_step_lean(protagonist_action)
        self._elapsed += 1
        truncated = (not terminated) and self._elapsed >= self.horizon
        self._needs_reset = terminated or truncated
        return obs, reward, terminated, truncated

    def _check_action(self, action: Any, space: spaces.Box, who: str) -> np.ndarray:
        a = action if isinstance(action, np.ndarray) else np.asarray(action)
        if a.shape != space.shape:
            if a.size != space.shape[0]:
                raise ValueError(
                    f"{self.task_id}: {who} action must have {space.shape[0]} entries, got shape {a.shape}"
                )
            a = a.reshape(space.shape)
        # fast path: the sum is finite when every entry is (an overflowing sum falls through to the full check)
        if not math.isfinite(float(a.sum())) and not np.all(np.isfinite(a)):
            raise ValueError(f"{self.task_id}: {who} action contains NaN or inf: {a}")
        return a

    def _write_force(self, force: np.ndarray) -> None:
        # xfrc_applied persists through mj_step, so one write covers every substep of the control step.
        self._data.xfrc_applied[self._force_body_ids, self._force_components] = force

    def _clear_force(self) -> None:
        if hasattr(self, "_data"):
            self._data.xfrc_applied[:] = 0.0

    def close(self) -> None:
        """Release resources: the renderer of :meth:`render_frame`, if one was made."""
        renderer = getattr(self, "_renderer", None)
        if renderer is not None:
            renderer.close()
            self._renderer = None

    # ------------------------------------------------------------------ subclass hooks
    protagonist_action_space: spaces.Box
    observation_space: spaces.Box
    dt: float

    def _task_reset(self, seed: int | None) -> np.ndarray:
        raise NotImplementedError

    def _task_step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, dict[str, float], dict[str, Any]]:
        """Step the task with the adversary force in place: obs, reward, terminated, reward terms, info."""
        raise NotImplementedError

    def _task_step_lean(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """:meth:`_task_step` without reward terms and info (families override it where that saves time)."""
        obs, reward, terminated, _, _ = self._task_step(action)
        return obs, float(reward), bool(terminated)

    def _task_rng_state(self) -> Any:
        raise NotImplementedError

    def _set_task_rng_state(self, state: Any) -> None:
        raise NotImplementedError

    def _task_extra_state(self) -> dict[str, Any]:
        return {}

    def _set_task_extra_state(self, state: dict[str, Any]) -> None:
        pass

    # ------------------------------------------------------------------ rendering
    def render_frame(self, width: int = 480, height: int = 360, camera: int | str | None = None) -> np.ndarray:
        """An RGB image (height, width, 3) of the current state from ``camera`` (default: the model's first camera,
        else MuJoCo's free camera). Needs an OpenGL backend: set ``MUJOCO_GL=egl`` (or ``osmesa``) before MuJoCo is
        imported on a machine without a display; without one, RuntimeError says so."""
        renderer = getattr(self, "_renderer", None)
        if renderer is None or (renderer.width, renderer.height) != (width, height):
            try:
                renderer = mujoco.Renderer(self._model, height, width)
            except Exception as exc:  # the GL backends raise several types (FatalError, AttributeError, ...)
                raise RuntimeError(
                    f"{self.task_id}: MuJoCo cannot render here ({type(exc).__name__}: {exc}); on a machine without a "
                    "display set MUJOCO_GL=egl (or osmesa) before starting Python"
                ) from None
            self._renderer = renderer
        if camera is None:
            camera = 0 if self._model.ncam > 0 else -1
        renderer.update_scene(self._data, camera=camera)
        return renderer.render()

    # ------------------------------------------------------------------ state
    def save_state(self) -> dict[str, Any]:
        """The game's full state (physics, episode parameters, step count, generators): :meth:`restore_state` puts the
        game back exactly, so that the same actions give the same trajectory (e.g. to branch from one state)."""
        return self._snapshot()

    def restore_state(self, state: dict[str, Any]) -> None:
        """Return to a state saved by :meth:`save_state` on this game."""
        self._restore(state)

    # ------------------------------------------------------------------ pickling
    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_game, (type(self), self.task_id, self._init_kwargs, self._snapshot()))

    def _snapshot(self) -> dict[str, Any]:
        m, d = self._model, self._data
        sig = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(m, sig))
        mujoco.mj_getState(m, d, physics, sig)
        return {
            "params": self.get_params(),
            "model": {f: getattr(m, f).copy() for f in _EPISODE_MODEL_FIELDS},
            "physics": physics,
            "derived": {f: getattr(d, f).copy() for f in _DERIVED_DATA_FIELDS},
            "elapsed": self._elapsed,
            "needs_reset": self._needs_reset,
            "np_random": self.np_random.bit_generator.state,
            "task_rng": self._task_rng_state(),
            "extra": self._task_extra_state(),
        }

    def _restore(self, snap: dict[str, Any]) -> None:
        self.set_params(**snap["params"])
        m, d = self._model, self._data
        for f, v in snap["model"].items():
            getattr(m, f)[:] = v
        mujoco.mj_setState(m, d, snap["physics"], mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(m, d)
        for f, v in snap["derived"].items():
            getattr(d, f)[:] = v
        self._elapsed = snap["elapsed"]
        self._needs_reset = snap["needs_reset"]
        self.np_random = np.random.default_rng()
        self.np_random.bit_generator.state = snap["np_random"]
        self._set_task_rng_state(snap["task_rng"])
        self._set_task_extra_state(snap["extra"])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.task_id!r} horizon={self.horizon}>"


def _restore_game(cls: type[ZeroSumGame], task_id: str, init_kwargs: dict[str, Any], snap: dict[str, Any]):
    game = cls(task_id=task_id, **_spec(task_id).kwargs, **init_kwargs)
    game._restore(snap)
    return game
