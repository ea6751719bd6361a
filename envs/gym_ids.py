"""Gymnasium ids for every task, from each player's side.

Importing this module registers, for every task of :func:`envs.list_tasks` and both single-agent views of
:mod:`envs.views`, the id ``qarl/<task id with '/' as '-'>-<view>-v<game version>``, e.g.
``qarl/dmc-cartpole-balance-protagonist-v0`` and ``qarl/gym-Hopper-v5-adversary-v0``::

    import gymnasium
    import envs.gym_ids  # noqa: F401  (registers the ids)

    env = gymnasium.make("qarl/dmc-cartpole-balance-protagonist-v0", adversary=None)
    vec = gymnasium.make_vec("qarl/dmc-cartpole-balance-protagonist-v0", num_envs=4)

or, without the import, ``gymnasium.make("envs.gym_ids:qarl/dmc-cartpole-balance-protagonist-v0")``. Keyword
arguments of ``gymnasium.make``: ``adversary`` (protagonist view: a policy obs -> force, default None = no force),
``protagonist`` (adversary view: a policy obs -> action, default None = the zero action), ``horizon`` (default 1000;
the game truncates its episodes itself, so no ``TimeLimit`` is added) and ``adversary_bound`` (default the task's).
The reward is the protagonist's r in the protagonist view and -r in the adversary view. ``render_mode="rgb_array"``
renders through MuJoCo offscreen (set ``MUJOCO_GL=egl`` on a machine without a display).
"""

from __future__ import annotations

from typing import Any

import gymnasium

from envs.registry import list_tasks, spec

NAMESPACE = "qarl"
VIEWS = ("protagonist", "adversary")
GAME_VERSION = 0
"""The version of every game (``ZeroSumGame.version``, "v0"): an id's ``-v<N>`` suffix."""


def gym_id(task_id: str, view: str) -> str:
    """The gymnasium id of one task's view."""
    spec(task_id)  # an unknown task id raises UnknownTaskError with close matches
    if view not in VIEWS:
        raise ValueError(f"view must be one of {list(VIEWS)}, got {view!r}")
    return f"{NAMESPACE}/{task_id.replace('/', '-')}-{view}-v{GAME_VERSION}"


def make_view(
    task_id: str,
    view: str,
    *,
    adversary: Any = None,
    protagonist: Any = None,
    horizon: int = 1000,
    adversary_bound: Any = None,
    render_mode: str | None = None,
) -> gymnasium.Env:
    """One view of a game as a ``gymnasium.Env`` (the entry point of every registered id)."""
    import numpy as np

    import envs
    from envs.views import AdversaryView, ProtagonistView

    game = envs.make(task_id, horizon=horizon, adversary_bound=adversary_bound)
    if game.version != f"v{GAME_VERSION}":
        raise RuntimeError(f"{task_id}: the game is {game.version}, its gymnasium ids say v{GAME_VERSION}")
    if view == "protagonist":
        if protagonist is not None:
            raise TypeError("protagonist= is for the adversary view; the protagonist view takes adversary=")
        return ProtagonistView(game, adversary, render_mode=render_mode)
    if view == "adversary":
        if adversary is not None:
            raise TypeError("adversary= is for the protagonist view; the adversary view takes protagonist=")
        if protagonist is None:
            zero = np.zeros(game.protagonist_action_space.shape, dtype=np.float32)
            protagonist = lambda obs: zero  # noqa: E731 - the zero action
        return AdversaryView(game, protagonist, render_mode=render_mode)
    raise ValueError(f"view must be one of {list(VIEWS)}, got {view!r}")


def register_all() -> list[str]:
    """Register every id (those already registered are left as they are); returns the ids."""
    ids = []
    for task_id in list_tasks():
        for view in VIEWS:
            env_id = gym_id(task_id, view)
            ids.append(env_id)
            if env_id not in gymnasium.registry:
                gymnasium.register(
                    id=env_id,
                    entry_point="envs.gym_ids:make_view",
                    kwargs={"task_id": task_id, "view": view},
                    disable_env_checker=False,
                )
    return ids


IDS = register_all()
