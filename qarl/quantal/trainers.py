"""QARL (Quantal Adversarial RL, Reddi et al., ICLR 2024) and its ablations, on the two-player loop.

The game is entropy-regularised: ``E[sum_t gamma^t (r + beta H(pi) - alpha H(nu))]``. The protagonist is a
max-entropy SAC on ``r`` with its temperature beta auto-tuned; the adversary is a max-entropy SAC on ``-r``
whose temperature alpha is set by a self-paced curriculum (:class:`qarl.quantal.teacher.GammaTeacher`): alpha is drawn
per episode from ``Gamma(kappa, rate 1000)`` and appended as the last observation entry of both players; the
adversary's learner reads it per sample (:class:`qarl.sac.alpha.AlphaConditionedSAC`). Each iteration draws
one alpha per episode of a phase; episode k of the adversary phase and episode k of the protagonist phase share
alpha_k. Every training episode gives the teacher one (alpha, discounted protagonist return) pair (both phases:
our reading of "collected pairs"), and the teacher updates every 30 pairs. At evaluation alpha = 0.

Ablations (docs/methods.md):
- ``qarl_linear``: no teacher; alpha held at 0.05 for the first third of training, linear to 0.001 by two thirds,
  then 0.001 (the hold length is our choice: the paper says "held, then linear by 2/3").
- ``qarl_point``: the teacher's distribution collapsed to a point: every episode uses the current mean
  kappa / rate, and the teacher updates kappa from those pairs under the same constraints.
- ``qarl_single``: one alpha per iteration, shared by all its episodes.
- ``qarl_homogeneous``: the protagonist's temperature is the curriculum's alpha too (no auto-tuning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from qarl.quantal.teacher import GammaTeacher, TeacherConfig
from qarl.sac.alpha import AlphaConditionedSAC
from qarl.sac.learner import Player, SACConfig
from qarl.training.loop import ADVERSARY, PROTAGONIST, LoopConfig, TwoPlayerTrainer
from qarl.training.seeds import stream_sequence


@dataclass(frozen=True)
class QARLConfig:
    """Config of ``qarl`` and of the teacher-based ablations."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """The protagonist's learner (reward r, auto-tuned temperature beta)."""
    adversary: SACConfig = field(default_factory=SACConfig)
    """The adversary's learner (reward -r, temperature alpha from the curriculum; its temperature fields are unused)."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The self-paced Gamma teacher (xi: None means the task's default, see ``qarl.quantal.teacher.default_xi``)."""


@dataclass(frozen=True)
class LinearScheduleConfig:
    """Config of ``qarl_linear``."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """The protagonist's learner."""
    adversary: SACConfig = field(default_factory=SACConfig)
    """The adversary's learner (temperature from the schedule)."""
    alpha_start: float = 0.05
    """alpha while held (the mean of the teacher's initial Gamma(50, 1000))."""
    alpha_end: float = 0.001
    """alpha at and after ``end_fraction`` of training (the mean of the target Gamma(1, 1000))."""
    hold_fraction: float = 1 / 3
    """Fraction of the iterations at ``alpha_start``."""
    end_fraction: float = 2 / 3
    """Fraction of the iterations by which alpha reaches ``alpha_end``."""

    def validate(self) -> None:
        if not (self.alpha_start > 0 and self.alpha_end >= 0):
            raise ValueError("alpha_start must be > 0 and alpha_end >= 0")
        if not 0 <= self.hold_fraction <= self.end_fraction <= 1:
            raise ValueError("need 0 <= hold_fraction <= end_fraction <= 1")


class AlphaTrainer(TwoPlayerTrainer):
    """The loop with a per-episode adversary temperature appended to both players' observations."""

    phases = (ADVERSARY, PROTAGONIST)
    homogeneous = False  # protagonist temperature = alpha too

    def __init__(self, task_id: str, config: Any, loop: LoopConfig, seed: int) -> None:
        self.alpha = 0.0  # the current episode's adversary temperature (0 at evaluation)
        self.episode_alphas: list[float] = []  # this iteration's values, one per episode of each phase
        self._episode_index = {ADVERSARY: 0, PROTAGONIST: 0}
        super().__init__(task_id, config, loop, seed)

    def observation_space(self, player: str) -> spaces.Box:
        base = self.game.observation_space
        low = np.append(base.low, 0.0).astype(base.dtype)
        high = np.append(base.high, np.inf).astype(base.dtype)
        return spaces.Box(low, high, dtype=base.dtype)

    def player_obs_batch(self, player: str, obs: np.ndarray) -> np.ndarray:
        return np.concatenate([obs, np.full((len(obs), 1), self.observed_value())], axis=1)

    def observed_value(self) -> float:
        """The value appended to both players' observations: the episode's alpha (subclasses may map it)."""
        return self.alpha

    def build_players(self) -> dict[str, Player]:
        cls = AlphaConditionedSAC if self.homogeneous else None
        protagonist = (
            self.make_player(PROTAGONIST, self.config.protagonist, cls)
            if cls
            else self.make_player(PROTAGONIST, self.config.protagonist)
        )
        return {
            PROTAGONIST: protagonist,
            ADVERSARY: self.make_player(ADVERSARY, self.config.adversary, AlphaConditionedSAC),
        }

    def iteration_alphas(self) -> list[float]:
        raise NotImplementedError

    def begin_iteration(self) -> None:
        self.episode_alphas = [float(a) for a in self.iteration_alphas()]
        self._episode_index = {ADVERSARY: 0, PROTAGONIST: 0}

    def begin_episode(self, phase: str) -> None:
        self.alpha = self.episode_alphas[self._episode_index[phase]]
        self._episode_index[phase] += 1

    def evaluate(self) -> dict[str, float]:
        self.alpha = 0.0  # evaluation against the Nash-limit adversary (docs/methods.md)
        return super().evaluate()

    def prepare_evaluation(self) -> None:
        self.alpha = 0.0

    def prepare_training_state(self, episode: int) -> bool:
        if not self.episode_alphas:
            return False
        self.alpha = self.episode_alphas[episode % len(self.episode_alphas)]
        return True

    def extra_stats(self) -> dict[str, float]:
        return {"alpha_mean": float(np.mean(self.episode_alphas)) if self.episode_alphas else math.nan}


class QARLTrainer(AlphaTrainer):
    """QARL: the self-paced Gamma curriculum on the adversary's temperature."""

    paper = "Reddi et al., ICLR 2024 (QARL)"

    name = "qarl"
    config_cls = QARLConfig

    def __init__(self, task_id: str, config: QARLConfig, loop: LoopConfig, seed: int) -> None:
        super().__init__(task_id, config, loop, seed)
        self.teacher = GammaTeacher.for_task(config.teacher, task_id, stream_sequence(seed, "teacher"))

    def iteration_alphas(self) -> list[float]:
        return [self.teacher.sample() for _ in range(self.loop.episodes_per_phase)]

    def end_episode(self, phase: str, ret: float, discounted_return: float) -> None:
        self.teacher.add(self.alpha, discounted_return)

    def extra_stats(self) -> dict[str, float]:
        return {
            **super().extra_stats(),
            "teacher_kappa": self.teacher.kappa,
            "teacher_mean": self.teacher.mean,
            "teacher_estimate": self.teacher.last_estimate,
            "teacher_updates": float(self.teacher.n_updates),
            "teacher_frozen": float(self.teacher.frozen),
        }

    def method_state(self) -> dict[str, Any]:
        return {"teacher": self.teacher.state_dict()}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.teacher.load_state_dict(state["teacher"])


class QARLSingleTrainer(QARLTrainer):
    """Ablation: one alpha per iteration, shared by all its episodes."""

    paper = "Reddi et al., ICLR 2024 (QARL ablation)"

    name = "qarl_single"

    def iteration_alphas(self) -> list[float]:
        return [self.teacher.sample()] * self.loop.episodes_per_phase


class QARLPointTrainer(QARLTrainer):
    """Ablation: every episode uses the teacher's current mean alpha (a point curriculum)."""

    paper = "Reddi et al., ICLR 2024 (QARL ablation)"

    name = "qarl_point"

    def iteration_alphas(self) -> list[float]:
        return [self.teacher.mean] * self.loop.episodes_per_phase


class QARLHomogeneousTrainer(QARLTrainer):
    """Ablation: both players' temperatures follow the curriculum."""

    paper = "Reddi et al., ICLR 2024 (QARL ablation)"

    name = "qarl_homogeneous"
    homogeneous = True


class QARLLinearTrainer(AlphaTrainer):
    """Ablation: alpha on a fixed schedule instead of the teacher."""

    paper = "Reddi et al., ICLR 2024 (QARL ablation)"

    name = "qarl_linear"
    config_cls = LinearScheduleConfig

    def scheduled_alpha(self, iteration: int) -> float:
        """alpha for 0-based ``iteration`` of ``loop.iterations``."""
        c, frac = self.config, iteration / self.loop.iterations
        if frac < c.hold_fraction:
            return c.alpha_start
        if frac >= c.end_fraction:
            return c.alpha_end
        t = (frac - c.hold_fraction) / (c.end_fraction - c.hold_fraction)
        return c.alpha_start + t * (c.alpha_end - c.alpha_start)

    def iteration_alphas(self) -> list[float]:
        return [self.scheduled_alpha(self.iteration)] * self.loop.episodes_per_phase
