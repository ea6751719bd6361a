"""The zero-sum games as PettingZoo ``ParallelEnv``s with agents ``protagonist`` and ``adversary``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from envs.core import ZeroSumGame
from envs.registry import make

PROTAGONIST, ADVERSARY = "protagonist", "adversary"


class ZeroSumParallelEnv(ParallelEnv):
    """A :class:`envs.core.ZeroSumGame` under the PettingZoo parallel API.

    Both agents observe the game's observation; the protagonist gets ``r``, the adversary ``-r``; both
    are done together when the episode terminates or is truncated.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": [], "name": "qarl_zero_sum_v0", "is_parallelizable": True}

    def __init__(self, game: ZeroSumGame) -> None:
        self.game = game
        self.possible_agents = [PROTAGONIST, ADVERSARY]
        self.agents: list[str] = []
        self.render_mode = None
        self._action_spaces = {PROTAGONIST: game.protagonist_action_space, ADVERSARY: game.adversary_action_space}

    def observation_space(self, agent: str) -> spaces.Box:
        self._check_agent(agent)
        return self.game.observation_space

    def action_space(self, agent: str) -> spaces.Box:
        self._check_agent(agent)
        return self._action_spaces[agent]

    def _check_agent(self, agent: str) -> None:
        if agent not in self.possible_agents:
            raise ValueError(f"unknown agent {agent!r}; agents are {self.possible_agents}")

    def reset(
        self, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
        # PettingZoo's API test passes arbitrary options; forward the game's own ("params"), ignore others.
        game_options = {"params": options["params"]} if options and "params" in options else None
        obs, info = self.game.reset(seed=seed, options=game_options)
        self.agents = list(self.possible_agents)
        return {a: obs for a in self.agents}, {a: dict(info) for a in self.agents}

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        if not self.agents:
            raise RuntimeError("the episode is over: call reset()")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise ValueError(f"actions missing for agent(s) {missing}")
        obs, reward, terminated, truncated, info = self.game.step(actions[PROTAGONIST], actions[ADVERSARY])
        agents = self.agents
        rewards = {PROTAGONIST: reward, ADVERSARY: -reward}
        out = (
            {a: obs for a in agents},
            {a: rewards[a] for a in agents},
            {a: terminated for a in agents},
            {a: truncated for a in agents},
            {a: dict(info) for a in agents},
        )
        if terminated or truncated:
            self.agents = []
        return out

    def render(self) -> None:
        return None

    def close(self) -> None:
        self.game.close()

    def state(self) -> np.ndarray:
        raise NotImplementedError("the games expose no global state beyond the shared observation")


def parallel_env(task_id: str, **kwargs: Any) -> ZeroSumParallelEnv:
    """The game ``task_id`` (built with ``envs.make(task_id, **kwargs)``) as a PettingZoo ParallelEnv."""
    return ZeroSumParallelEnv(make(task_id, **kwargs))
