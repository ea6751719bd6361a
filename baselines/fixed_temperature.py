"""``fixed_temperature``: a quantal-response adversary with a fixed temperature alpha (no curriculum).

The QARL game with alpha held constant: the adversary is a max-entropy SAC on ``-r`` with temperature
``alpha`` (appended to both players' observations, as in QARL, and 0 at evaluation); the protagonist is
auto-temperature SAC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qarl.quantal.trainers import AlphaTrainer
from qarl.sac.learner import SACConfig


@dataclass(frozen=True)
class FixedTemperatureConfig:
    """Config of ``fixed_temperature``."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """The protagonist's learner."""
    adversary: SACConfig = field(default_factory=SACConfig)
    """The adversary's learner (temperature ``alpha``)."""
    alpha: float = 0.001
    """The adversary's fixed temperature (default: the mean of QARL's target Gamma(1, 1000))."""

    def validate(self) -> None:
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")


class FixedTemperatureTrainer(AlphaTrainer):
    """The entropy-regularised game with a fixed adversary temperature."""

    paper = "Reddi et al., ICLR 2024 (QARL paper, QRE baseline)"

    name = "fixed_temperature"
    config_cls = FixedTemperatureConfig

    def iteration_alphas(self) -> list[float]:
        return [self.config.alpha] * self.loop.episodes_per_phase
