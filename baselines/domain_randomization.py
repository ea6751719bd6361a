"""``domain_randomization``: SAC on games whose physics is redrawn every training episode; no adversary.

After each training episode's reset, every robustness parameter of the task (``game.param_bounds()``, the
ranges of docs/games.md) is drawn uniformly from its range with the game's own generator, which the
reset has just seeded (so the draws are reproducible from the trial seed). The new masses and friction act
from the first control step; the initial state is drawn before them (it does not depend on these
parameters in any task). Evaluation episodes run at the nominal parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qarl.sac.learner import Player, SACConfig
from qarl.training.loop import PROTAGONIST, LoopConfig, TwoPlayerTrainer


@dataclass(frozen=True)
class DomainRandomizationConfig:
    """Config of ``domain_randomization``."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """The protagonist's learner."""


def draw_params(game, rng: np.random.Generator) -> dict[str, float]:
    """One uniform draw of every robustness parameter of ``game`` (both ends of each range reachable)."""
    return {name: float(rng.uniform(low, high)) for name, (low, high) in game.param_bounds().items()}


class DomainRandomizationTrainer(TwoPlayerTrainer):
    """Domain randomisation over the task's robustness ranges (mass and friction or their stand-ins)."""

    paper = "Tobin et al., IROS 2017 (domain randomisation)"

    name = "domain_randomization"
    config_cls = DomainRandomizationConfig
    phases = (PROTAGONIST,)

    def __init__(self, task_id: str, config: DomainRandomizationConfig, loop: LoopConfig, seed: int) -> None:
        super().__init__(task_id, config, loop, seed)
        self._draws: list[dict[str, float]] = []

    def build_players(self) -> dict[str, Player]:
        return {PROTAGONIST: self.make_player(PROTAGONIST, self.config.protagonist)}

    def after_reset(self, game, learner: str | None) -> None:
        if learner is None:
            game.set_params(**game.nominal_params())
            return
        params = draw_params(game, game.np_random)
        game.set_params(**params)
        self._draws.append(params)

    def extra_stats(self) -> dict[str, float]:
        stats = {}
        for name in self.game.param_bounds():
            stats[f"dr_{name}_mean"] = float(np.mean([d[name] for d in self._draws])) if self._draws else float("nan")
        self._draws = []
        return stats
