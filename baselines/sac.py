"""``sac``: the protagonist alone, soft actor-critic with zero adversary force (one phase per iteration)."""

from __future__ import annotations

from dataclasses import dataclass, field

from qarl.sac.learner import Player, SACConfig
from qarl.training.loop import PROTAGONIST, TwoPlayerTrainer


@dataclass(frozen=True)
class SACMethodConfig:
    """Config of the ``sac`` method."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """The protagonist's learner."""


class SACTrainer(TwoPlayerTrainer):
    """Plain SAC on the game with the adversary switched off: the robustness baseline of every table."""

    paper = "Haarnoja et al., ICML 2018 (soft actor-critic)"

    name = "sac"
    config_cls = SACMethodConfig
    phases = (PROTAGONIST,)

    def build_players(self) -> dict[str, Player]:
        return {PROTAGONIST: self.make_player(PROTAGONIST, self.config.protagonist)}
