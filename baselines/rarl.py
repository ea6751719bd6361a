"""``rarl``: Robust Adversarial RL (Pinto et al., ICML 2017) with soft actor-critic players.

Both players are SAC with auto-tuned temperatures; each iteration the adversary learns first (protagonist
frozen), then the protagonist (adversary frozen), as in the QARL paper's RARL baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qarl.sac.learner import Player, SACConfig
from qarl.training.loop import ADVERSARY, PROTAGONIST, TwoPlayerTrainer


@dataclass(frozen=True)
class RARLConfig:
    """Config of the ``rarl`` method."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """The protagonist's learner (reward r)."""
    adversary: SACConfig = field(default_factory=SACConfig)
    """The adversary's learner (reward -r)."""


class RARLTrainer(TwoPlayerTrainer):
    """Alternating SAC vs SAC, adversary phase first."""

    paper = "Pinto et al., ICML 2017 (RARL)"

    name = "rarl"
    config_cls = RARLConfig
    phases = (ADVERSARY, PROTAGONIST)

    def build_players(self) -> dict[str, Player]:
        return {
            PROTAGONIST: self.make_player(PROTAGONIST, self.config.protagonist),
            ADVERSARY: self.make_player(ADVERSARY, self.config.adversary),
        }
