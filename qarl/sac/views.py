"""Read-only views of a learner's critic, policy and replay data, for the diagnostics (:mod:`qarl.diagnostics.neural`).

A trainer lists the critics it has with ``TwoPlayerTrainer.critic_views()``: by default one :class:`SACCriticView`
per SAC player; a method with another learner returns views of its own (a subclass of :class:`CriticView`, or of
:class:`SharedCriticView` for one critic of the executed joint action shared by both players). The estimators read
only what a view offers, so they need not know the method.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from torch import nn

from qarl.sac.learner import Player, squashed_log_prob

CHUNK = 8192  # rows per forward pass when evaluating many (s, a) pairs


@dataclass
class CriticBatch:
    """Transitions of a critic's replay data as tensors (actions scaled to [-1, 1])."""

    obs: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    next_obs: th.Tensor
    not_done: th.Tensor  # 1 - d: 0 only for true terminations
    behaviour_log_prob: th.Tensor


class CriticView:
    """What the estimators read of one diagnosed critic (all under no_grad); subclasses set ``q1`` (the first twin
    critic's MLP) and ``gamma``, and define ``critic_input``, ``f`` and ``soft_value_terms``."""

    q1: nn.Module
    gamma: float
    size: int  # transitions stored
    pos: int  # the buffer's next write position (the newest transition is at pos - 1)
    capacity: int
    has_behaviour_density = False  # whether the buffer's actions carry behaviour log-probabilities (the shift group)
    shared = False  # one critic of the executed joint action, shared by both players (see SharedCriticView)

    def batch(self, idx: np.ndarray) -> CriticBatch:
        """The transitions at buffer positions ``idx``."""
        raise NotImplementedError

    def policies(self) -> list[Any]:
        """Policy modules to put in evaluation mode while the critic is diagnosed."""
        return []

    def critic_input(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        raise NotImplementedError

    def f(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        raise NotImplementedError

    def soft_value_terms(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """(next action a' sampled by the current policy, the entropy term added to f(s', a') in the backup)."""
        raise NotImplementedError

    def features(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """Penultimate (last hidden) layer of Q_1, (B, h)."""
        hidden = self.q1[:-1]
        chunks = range(0, len(obs), CHUNK)
        return th.cat([hidden(self.critic_input(obs[i : i + CHUNK], actions[i : i + CHUNK])) for i in chunks])

    def backup(self, b: CriticBatch, k: int) -> tuple[th.Tensor, th.Tensor]:
        """(expected backups y (B,), the first sampled next action a'_1 (B, |A|)); actions from torch's generator."""
        n = len(b.obs)
        next_rep = b.next_obs.repeat_interleave(k, dim=0)
        values, first = [], []
        for i in range(0, len(next_rep), CHUNK):
            s = next_rep[i : i + CHUNK]
            a, entropy = self.soft_value_terms(s)
            values.append(self.f(s, a) + entropy)
            first.append(a)
        v = th.cat(values).reshape(n, k).mean(dim=1)
        return b.rewards + self.gamma * b.not_done * v, th.cat(first).reshape(n, k, -1)[:, 0]

    def fresh_network(self) -> nn.Module:
        """Q_1's MLP with every layer re-initialised (torch's default initialisation, as both critics are built)."""
        net = copy.deepcopy(self.q1)
        for layer in net.modules():
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        return net.requires_grad_(True)


class SACCriticView(CriticView):
    """Read-only access to a ``Player``'s critic, policy and buffer for the estimators (all under no_grad)."""

    has_behaviour_density = True  # the buffer's actions carry their behaviour log-probabilities

    def __init__(self, player: Player) -> None:
        self.player, self.model = player, player.model
        self.gamma = float(self.model.gamma)
        self.q1 = self.model.critic.q_networks[0]
        buf = player.buffer
        self.size, self.pos, self.capacity = buf.size(), buf.pos, buf.buffer_size

    def policies(self) -> list[Any]:
        return [self.model.policy]

    def batch(self, idx: np.ndarray) -> CriticBatch:
        buf = self.player.buffer
        f = lambda a: th.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        dones, timeouts = buf.dones[idx, 0], buf.timeouts[idx, 0]
        return CriticBatch(
            obs=f(buf.observations[idx, 0]),
            actions=f(buf.actions[idx, 0]),
            rewards=f(buf.rewards[idx, 0]),
            next_obs=f(buf.next_observations[idx, 0]),
            not_done=f(1.0 - dones * (1.0 - timeouts)),
            behaviour_log_prob=f(self.player.behaviour_log_prob[idx]),
        )

    def temperature(self, obs: th.Tensor) -> th.Tensor:
        """tau(s) per row: the last observation entry (alpha) for alpha-conditioned learners, else the temperature."""
        return self.model.entropy_temperature(obs)

    def critic_input(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        critic = self.model.critic
        return th.cat([critic.extract_features(obs, critic.features_extractor), actions], dim=1)

    def f(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """min_j Q_j(s, a), (B,)."""
        out = []
        for i in range(0, len(obs), CHUNK):
            qs = self.model.critic(obs[i : i + CHUNK], actions[i : i + CHUNK])
            out.append(th.min(th.cat(qs, dim=1), dim=1)[0])
        return th.cat(out)

    def log_prob(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """log pi(a|s) of given actions in [-1, 1] under the current policy (same density as at collection)."""
        mean, log_std, _ = self.model.actor.get_action_dist_params(obs)
        return squashed_log_prob(th.distributions.Normal(mean, log_std.exp()), actions)

    def soft_value_terms(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """(a ~ pi(.|s), -tau(s) log pi(a|s)): SAC's soft value terms."""
        a, logp = self.model.actor.action_log_prob(obs)
        return a, -self.temperature(obs) * logp.reshape(-1)


class SharedCriticView(CriticView):
    """A critic Q(s, a) of the executed action, shared by both players (its diagnostics columns are ``diag/joint/``).

    Its Monte-Carlo rollouts execute :meth:`soft_value_terms`'s action (both actors sampled and combined), mapped to
    the game's action space by :meth:`to_env`, with zero adversary force.
    """

    shared = True

    def to_env(self, scaled: np.ndarray) -> np.ndarray:
        """An executed action in [-1, 1] as the game's protagonist action."""
        raise NotImplementedError
