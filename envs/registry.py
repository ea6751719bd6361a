"""The task registry: pure data, no MuJoCo import.

Every task id maps to a :class:`TaskSpec` whose ``entry_point`` is an import string
(``"envs.gym_family:HalfCheetahGame"``); the class is imported only when a game is made,
so ``import envs`` stays light and builds no MuJoCo model.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskSpec:
    """Static description of one registered task."""

    task_id: str
    """Registry id, ``<family>/<name>``."""
    family: str
    """``gym`` (gymnasium MuJoCo v5, RARL's tasks) or ``dmc`` (dm_control suite, QARL's tasks)."""
    entry_point: str
    """``module:Class`` of the :class:`envs.core.ZeroSumGame` subclass."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments fixed by the registration (e.g. the dm_control task name)."""
    summary: str = ""
    """One line for ``qarl tasks``."""


class UnknownTaskError(ValueError):
    """Raised for a task id that is not registered; the message lists close matches."""


_REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> None:
    """Add a task to the registry (ids must be unique)."""
    if spec.task_id in _REGISTRY:
        raise ValueError(f"task id {spec.task_id!r} is already registered")
    if spec.family not in ("gym", "dmc"):
        raise ValueError(f"unknown family {spec.family!r} for {spec.task_id!r}")
    _REGISTRY[spec.task_id] = spec


def list_tasks(family: str | None = None) -> list[str]:
    """All registered task ids (optionally of one family), in registration order."""
    return [t for t, s in _REGISTRY.items() if family is None or s.family == family]


def spec(task_id: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``task_id``; unknown ids raise :class:`UnknownTaskError`."""
    try:
        return _REGISTRY[task_id]
    except (KeyError, TypeError):
        pass
    close = difflib.get_close_matches(str(task_id), list(_REGISTRY), n=3, cutoff=0.5)
    if not close:
        # Also try matching on the part after the family prefix ("cheetah-run" -> "dmc/cheetah-run").
        tails = {t.split("/", 1)[1]: t for t in _REGISTRY}
        close = [tails[t] for t in difflib.get_close_matches(str(task_id), list(tails), n=3, cutoff=0.5)]
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownTaskError(
        f"unknown task id {task_id!r}{hint} (run `qarl tasks` for the list of {len(_REGISTRY)} tasks)"
    )


def make(task_id: str, **kwargs: Any) -> Any:
    """Build the game ``task_id``: an :class:`envs.core.ZeroSumGame` (not imported here, so that the registry stays
    free of MuJoCo and of an import cycle with the games).

    Keyword arguments go to the game's constructor, e.g. ``adversary_bound`` (float or one value
    per adversary dimension) and ``horizon`` (control steps per episode).
    """
    s = spec(task_id)
    module_name, _, class_name = s.entry_point.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    clash = sorted(set(kwargs) & set(s.kwargs))
    if clash:
        raise ValueError(f"{task_id}: argument(s) {clash} are fixed by the registration and cannot be overridden")
    return cls(task_id=task_id, **s.kwargs, **kwargs)


# --- gym family: gymnasium MuJoCo v5 (RARL's tasks) ---------------------------------------------
for _name, _cls, _summary in [
    ("InvertedPendulum-v5", "InvertedPendulumGame", "cart-pole balance; forces on the pole"),
    ("HalfCheetah-v5", "HalfCheetahGame", "planar runner; forces on torso and both feet"),
    ("Swimmer-v5", "SwimmerGame", "3-link swimmer in viscous fluid; force on the torso"),
    ("Hopper-v5", "HopperGame", "planar one-legged hopper; force on the foot"),
    ("Walker2d-v5", "Walker2dGame", "planar biped; forces on both feet"),
    ("Ant-v5", "AntGame", "quadruped; 3-D force on the torso"),
]:
    register(TaskSpec(f"gym/{_name}", "gym", f"envs.gym_family:{_cls}", {}, _summary))

# --- dmc family: dm_control suite (QARL's tasks) -------------------------------------------------
for _domain, _tasks, _cls, _summary in [
    ("cheetah", ["run"], "CheetahGame", "planar runner; forces on torso and both feet"),
    ("hopper", ["hop", "stand"], "HopperGame", "planar hopper; force on the foot"),
    ("walker", ["walk", "run", "stand"], "WalkerGame", "planar biped; forces on both feet"),
    ("quadruped", ["walk", "run"], "QuadrupedGame", "3-D quadruped; force and pitch torque on the torso"),
    (
        "cartpole",
        ["balance", "swingup", "balance_sparse", "swingup_sparse"],
        "CartpoleGame",
        "cart-pole; force on the pole",
    ),
    ("pendulum", ["swingup"], "PendulumGame", "pendulum swing-up; force on the pole"),
    ("acrobot", ["swingup", "swingup_sparse"], "AcrobotGame", "acrobot swing-up; force on the upper arm"),
    ("reacher", ["easy", "hard"], "ReacherGame", "planar 2-link reacher; force on the arm"),
    ("ball_in_cup", ["catch"], "BallInCupGame", "ball-in-cup; force on the ball"),
]:
    for _task in _tasks:
        register(
            TaskSpec(
                f"dmc/{_domain}-{_task}",
                "dmc",
                f"envs.dmc_family:{_cls}",
                {"task_name": _task},
                _summary,
            )
        )
register(
    TaskSpec(
        "dmc/quadruped-navigate",
        "dmc",
        "envs.dmc_family:QuadrupedNavigateGame",
        {},
        "quadruped through a gate to a goal; +y wind in 4 <= x <= 8",
    )
)
