"""Single-agent views of a zero-sum game, so any single-agent library can train either player.

``ProtagonistView(game, adversary)`` is a ``gymnasium.Env`` whose actions are the protagonist's; the
adversary is embedded as a policy callable (``None``: zero force). ``AdversaryView(game, protagonist)``
is the mirror image; its reward is ``-r``. A policy is any callable ``obs -> action``, e.g.
``lambda obs: model.predict(obs, deterministic=False)[0]`` for a stable-baselines3 model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium
import numpy as np

from envs.core import ZeroSumGame

Policy = Callable[[np.ndarray], Any]


class _GameView(gymnasium.Env):
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(self, game: ZeroSumGame, render_mode: str | None = None) -> None:
        if not isinstance(game, ZeroSumGame):
            raise TypeError(f"expected a ZeroSumGame (from envs.make), got {type(game).__name__}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.game = game
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": max(1, round(1.0 / game.dt))}
        self.observation_space = game.observation_space
        self._obs: np.ndarray | None = None

    def render(self) -> np.ndarray | None:
        """With ``render_mode="rgb_array"``: an RGB frame of the current state (``ZeroSumGame.render_frame``; needs
        an OpenGL backend, e.g. ``MUJOCO_GL=egl``)."""
        return self.game.render_frame() if self.render_mode == "rgb_array" else None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._obs, info = self.game.reset(seed=seed, options=options)
        return self._obs, info

    def close(self) -> None:
        self.game.close()


class ProtagonistView(_GameView):
    """The game from the protagonist's side: reward ``r``; the adversary is a fixed policy (or zero force)."""

    def __init__(self, game: ZeroSumGame, adversary: Policy | None = None, render_mode: str | None = None) -> None:
        super().__init__(game, render_mode)
        self.action_space = game.protagonist_action_space
        self.adversary = adversary

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        if self.adversary is None:
            adv = np.zeros(self.game.adversary_action_space.shape, dtype=np.float32)
        else:
            adv = self.adversary(self._obs)
        obs, reward, terminated, truncated, info = self.game.step(action, adv)
        self._obs = obs
        return obs, reward, terminated, truncated, info


class AdversaryView(_GameView):
    """The game from the adversary's side: reward ``-r``; the protagonist is a fixed policy."""

    def __init__(self, game: ZeroSumGame, protagonist: Policy, render_mode: str | None = None) -> None:
        super().__init__(game, render_mode)
        if not callable(protagonist):
            raise TypeError("AdversaryView needs the protagonist as a callable obs -> action")
        self.action_space = game.adversary_action_space
        self.protagonist = protagonist

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        obs, reward, terminated, truncated, info = self.game.step(self.protagonist(self._obs), action)
        self._obs = obs
        return obs, -reward, terminated, truncated, info
