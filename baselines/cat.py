"""``cat``: curriculum adversarial training with the MAS action attack; no force adversary.

Before each training step is executed, the protagonist's sampled action ``a`` (in the actor's squashed
space [-1, 1]) is moved by the MAS attack (minimise the policy's own log-likelihood of the executed action):
up to ``attack_steps`` gradient steps ``delta <- delta - lr * grad_delta log pi(a + delta | s)`` with the
perturbation projected on the L2 ball of radius ``b`` (and ``a + delta`` kept inside the squashing range),
stopping early when log pi changes by less than ``tolerance``. The curriculum sets ``b`` by iteration: 0 for
the first ``start_fraction`` of training, linear to ``max_radius`` at ``full_fraction``, then constant.
The replay buffer keeps the intended action ``a``: the attack is part of the environment from the learner's
point of view. The radius is in the squashed action space (a fraction of each actuator's half-range);
``max_radius`` = 0.3 is this suite's default (the paper's value for these tasks is not known to us).
Evaluation: ``eval_return_adversary`` is the return under the attack at ``max_radius``; zero-force
evaluation runs unattacked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch as th

from qarl.sac.learner import Player, SACConfig
from qarl.training.loop import PROTAGONIST, LoopConfig, TwoPlayerTrainer
from qarl.training.seeds import stream_seed

_EDGE = 0.999  # tanh-squashed log-likelihoods are finite only strictly inside (-1, 1)


@dataclass(frozen=True)
class CATConfig:
    """Config of ``cat``."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """The protagonist's learner."""
    max_radius: float = 0.3
    """Largest L2 radius of the action perturbation, in the squashed action space."""
    attack_steps: int = 25
    """Most gradient steps of the MAS attack per action."""
    attack_lr: float = 3.0
    """Step size of the attack's gradient steps."""
    tolerance: float = 1e-3
    """Stop the attack when log pi changes by less than this."""
    start_fraction: float = 0.2
    """Radius 0 before this fraction of the iterations."""
    full_fraction: float = 0.8
    """Radius max_radius from this fraction of the iterations on."""

    def validate(self) -> None:
        if self.max_radius < 0 or self.attack_lr <= 0 or self.tolerance < 0 or self.attack_steps < 0:
            raise ValueError("max_radius, tolerance and attack_steps must be >= 0 and attack_lr > 0")
        if not 0 <= self.start_fraction <= self.full_fraction <= 1:
            raise ValueError("need 0 <= start_fraction <= full_fraction <= 1")


def radius_schedule(config: CATConfig, iteration: int, iterations: int) -> float:
    """The curriculum radius for 0-based ``iteration`` of ``iterations``."""
    frac = iteration / iterations
    if frac < config.start_fraction:
        return 0.0
    if frac >= config.full_fraction:
        return config.max_radius
    return config.max_radius * (frac - config.start_fraction) / (config.full_fraction - config.start_fraction)


def mas_attack(actor, obs: np.ndarray, scaled_action: np.ndarray, radius: float, config: CATConfig) -> np.ndarray:
    """The MAS-perturbed action (squashed space): gradient descent on log pi(a + delta | s), ||delta|| <= radius.

    Returns the iterate with the lowest log-likelihood (``a`` itself if no step lowered it), so the attack never
    raises log pi. ``attack_steps`` gradient steps at most.
    """
    if radius <= 0 or config.attack_steps == 0:
        return scaled_action
    obs_t = th.as_tensor(obs, dtype=th.float32).reshape(1, -1)
    a = th.as_tensor(scaled_action, dtype=th.float32).reshape(1, -1).clamp(-_EDGE, _EDGE)
    with th.no_grad():
        mean, log_std, kwargs = actor.get_action_dist_params(obs_t)
    dist = actor.action_dist.proba_distribution(mean, log_std, **kwargs)
    delta = th.zeros_like(a, requires_grad=True)
    best_logp, best = None, a.clone()
    prev = None
    for _ in range(config.attack_steps + 1):
        logp = dist.log_prob((a + delta).clamp(-_EDGE, _EDGE)).sum()
        value = float(logp.detach())
        # keep the lowest-likelihood iterate: near the squashing edges the tanh Jacobian raises log pi, so a
        # plain gradient step is not guaranteed to lower it
        if best_logp is None or value < best_logp:
            best_logp, best = value, (a + delta).detach().clamp(-_EDGE, _EDGE)
        if prev is not None and abs(prev - value) < config.tolerance:
            break
        prev = value
        (grad,) = th.autograd.grad(logp, delta)
        with th.no_grad():
            delta -= config.attack_lr * grad
            norm = delta.norm()
            if norm > radius:
                delta *= radius / norm
            delta.copy_((a + delta).clamp(-_EDGE, _EDGE) - a)  # stay inside the squashing range
    return best.numpy()[0]


class CATTrainer(TwoPlayerTrainer):
    """SAC protagonist trained under a curriculum of MAS action attacks."""

    paper = "Lee et al., AAAI 2020 (MAS action attack); curriculum: the QARL paper's CAT baseline"

    name = "cat"
    config_cls = CATConfig
    phases = (PROTAGONIST,)

    def __init__(self, task_id: str, config: CATConfig, loop: LoopConfig, seed: int) -> None:
        super().__init__(task_id, config, loop, seed)
        self._radius = 0.0

    def build_players(self) -> dict[str, Player]:
        return {PROTAGONIST: self.make_player(PROTAGONIST, self.config.protagonist)}

    def begin_iteration(self) -> None:
        self._radius = radius_schedule(self.config, self.iteration, self.loop.iterations)

    def protagonist_action(
        self, obs: np.ndarray, action: np.ndarray, scaled: np.ndarray, learner: str | None
    ) -> np.ndarray:
        if self._radius <= 0:
            return action
        player = self.players[PROTAGONIST]
        return player.model.policy.unscale_action(
            mas_attack(player.model.actor, obs, scaled, self._radius, self.config)
        )

    def evaluate(self) -> dict[str, float]:
        radius, self._radius = self._radius, 0.0
        out = super().evaluate()  # zero-force evaluation, unattacked
        self._radius = self.config.max_radius
        n, det = self.loop.eval_episodes, self.loop.eval_deterministic
        rets = [
            self.play_episode(self.eval_game, stream_seed(self.seed, "eval_adversary", k), None, det, False)[0]
            for k in range(n)
        ]
        out["eval_return_adversary"] = float(np.mean(rets)) if n else float("nan")
        self._radius = radius
        return out

    evaluates_adversary = True  # the MAS attack at max_radius plays the adversary

    def eval_actions(self, obs: np.ndarray, deterministic: bool, adversary_on: bool) -> tuple[np.ndarray, np.ndarray]:
        """Batched evaluation actions; ``adversary_on``: each action MAS-attacked at ``max_radius`` (row by row)."""
        actions, forces = super().eval_actions(obs, deterministic, False)
        if adversary_on and self.config.max_radius > 0:
            policy, actor = self.players[PROTAGONIST].model.policy, self.players[PROTAGONIST].model.actor
            scaled = policy.scale_action(actions)
            actions = np.stack(
                [
                    policy.unscale_action(mas_attack(actor, o, a, self.config.max_radius, self.config))
                    for o, a in zip(obs, scaled, strict=True)
                ]
            )
        return actions, forces

    def extra_stats(self) -> dict[str, float]:
        return {"attack_radius": self._radius}
