"""One episode of a game: the rollout every episode loop of the project is built on.

``policy(obs) -> (protagonist action, adversary force)`` is called once per control step; ``on_step`` sees each
transition after the game has stepped (a learner stores it there). The two-player loop, the diagnostics' Monte-Carlo
rollouts, the evaluation's wind episodes and ``qarl demo`` all run their episodes through :func:`rollout`. The one
loop that differs is the evaluation's :func:`qarl.evaluation.runner.run_batch`, which steps many games in lock-step so
that each control step costs one batched forward pass per player.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Transition:
    """One control step as the game saw it."""

    obs: np.ndarray
    action: np.ndarray
    force: np.ndarray
    reward: float
    next_obs: np.ndarray
    terminated: bool
    truncated: bool
    info: dict[str, Any]


@dataclass
class Episode:
    """What a rollout returns."""

    ret: float = 0.0
    """Undiscounted return of the protagonist."""
    discounted: float = 0.0
    """Return discounted by ``gamma``."""
    length: int = 0
    """Control steps."""
    terminated: bool = False
    """Whether the episode ended by termination (not by the time limit)."""
    info: dict[str, Any] = field(default_factory=dict)
    """The last step's ``info`` (e.g. a goal task's final distance)."""


def rollout(
    game: Any,
    policy: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    seed: int | None = None,
    gamma: float = 1.0,
    on_reset: Callable[[np.ndarray], None] | None = None,
    on_step: Callable[[Transition], None] | None = None,
) -> Episode:
    """Reset ``game`` with ``seed`` and play one episode until it terminates or is truncated.

    ``on_reset(obs)`` runs right after the reset, before the first action (e.g. a method's per-episode physics).
    """
    obs, _ = game.reset(seed=seed)
    if on_reset is not None:
        on_reset(obs)
    ep, discount, done = Episode(), 1.0, False
    while not done:
        action, force = policy(obs)
        next_obs, r, terminated, truncated, info = game.step(action, force)
        done = terminated or truncated
        if on_step is not None:
            on_step(Transition(obs, action, force, r, next_obs, terminated, truncated, info))
        ep.ret += r
        ep.discounted += discount * r
        discount *= gamma
        ep.length += 1
        obs = next_obs
        ep.info, ep.terminated = info, terminated
    return ep
