"""``force_curriculum``: the QARL teacher's curriculum applied to the adversary's force budget.

The baseline of the QARL paper that anneals the adversary's strength instead of its rationality: the
teacher's sampled value T (alpha's Gamma curriculum, unchanged) is mapped to a force budget

    f = clip((-T + 0.05 + 0.001) * Fmax / 0.05, 0, Fmax)

(T = 0.05, the initial mean, gives 2% of Fmax; T -> 0.001, the target mean, gives Fmax). The adversary's
action is clipped to +-f (per dimension, Fmax being the task's bound of that dimension) and the budget is
appended to both players' observations as the fraction f / Fmax in [0, 1] (the same information, scale-free).
The adversary is ordinary auto-temperature SAC. At evaluation T = 0, i.e. the full budget Fmax.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qarl.quantal.teacher import TeacherConfig
from qarl.quantal.trainers import QARLTrainer
from qarl.sac.learner import Player, SACConfig
from qarl.training.loop import ADVERSARY, PROTAGONIST


@dataclass(frozen=True)
class ForceCurriculumConfig:
    """Config of ``force_curriculum``."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """The protagonist's learner."""
    adversary: SACConfig = field(default_factory=SACConfig)
    """The adversary's learner (auto-tuned temperature)."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The self-paced Gamma teacher over T (as QARL's over alpha)."""


def budget_fraction(t: float) -> float:
    """f / Fmax for the teacher's value T: clip((-T + 0.05 + 0.001) / 0.05, 0, 1)."""
    return float(np.clip((-t + 0.05 + 0.001) / 0.05, 0.0, 1.0))


class ForceCurriculumTrainer(QARLTrainer):
    """SAC vs SAC with the adversary's force budget on the self-paced curriculum."""

    paper = "Reddi et al., ICLR 2024 (QARL paper, force-curriculum baseline)"

    name = "force_curriculum"
    config_cls = ForceCurriculumConfig

    def build_players(self) -> dict[str, Player]:
        return {
            PROTAGONIST: self.make_player(PROTAGONIST, self.config.protagonist),
            ADVERSARY: self.make_player(ADVERSARY, self.config.adversary),
        }

    def observed_value(self) -> float:
        return budget_fraction(self.alpha)

    def adversary_forces(self, actions: np.ndarray) -> np.ndarray:
        budget = budget_fraction(self.alpha) * self.game.adversary_bound
        return np.clip(actions, -budget, budget)

    def extra_stats(self) -> dict[str, float]:
        stats = super().extra_stats()
        stats["budget_fraction_mean"] = float(np.mean([budget_fraction(t) for t in self.episode_alphas]))
        return stats
