"""Soft actor-critic whose entropy temperature is given per sample, read from the observation.

QARL's adversary maximises ``E[sum_t gamma^t (-r_t + alpha H(nu(.|s_t)))]`` with the curriculum's alpha,
drawn per episode and appended as the last observation entry. Its SAC therefore has no temperature
optimiser: each sample's alpha (the last entry of its observation) weighs the entropy term of the actor loss,
and the next state's alpha (the last entry of the next observation, equal within an episode) weighs the entropy
bonus of the soft Bellman target:

    y_i = r_i + gamma (1 - d_i) (min_j Q'_j(s'_i, a'_i) - alpha'_i log nu(a'_i | s'_i)),   a'_i ~ nu(.|s'_i)
    L_actor = mean_i (alpha_i log nu(a_i | s_i) - min_j Q_j(s_i, a_i)),                    a_i ~ nu(.|s_i)
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.utils import polyak_update
from torch.nn import functional as F

from qarl.sac.learner import QSAC


class AlphaConditionedSAC(QSAC):
    """SAC with a per-sample temperature from the last observation entry (no temperature learning)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ent_coef"] = 1.0  # unused: the temperature comes with each sample
        super().__init__(*args, **kwargs)

    @property
    def temperature(self) -> float:
        """Mean alpha of the last minibatch (NaN before the first update)."""
        return self.last_temperature

    def entropy_temperature(self, obs: th.Tensor) -> th.Tensor:
        """Each row's alpha, the last observation entry (B,)."""
        return obs[:, -1]

    def soft_target(self, rewards: th.Tensor, dones: th.Tensor, next_obs: th.Tensor, discounts: Any) -> th.Tensor:
        """Per-sample soft Bellman target y_i (see the module docstring)."""
        with th.no_grad():
            next_actions, next_log_prob = self.actor.action_log_prob(next_obs)
            next_q = th.min(th.cat(self.critic_target(next_obs, next_actions), dim=1), dim=1, keepdim=True)[0]
            alpha_next = next_obs[:, -1:]
            next_q = next_q - alpha_next * next_log_prob.reshape(-1, 1)
            return rewards + (1 - dones) * discounts * next_q

    def actor_loss(self, obs: th.Tensor, actions_pi: th.Tensor, log_prob: th.Tensor) -> th.Tensor:
        """mean_i (alpha_i log nu(a_i|s_i) - min_j Q_j(s_i, a_i)) with alpha_i = obs[i, -1]."""
        min_q_pi = th.min(th.cat(self.critic(obs, actions_pi), dim=1), dim=1, keepdim=True)[0]
        return (obs[:, -1:] * log_prob.reshape(-1, 1) - min_q_pi).mean()

    def _fast_temperatures(self, obs: th.Tensor, next_obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Each sample's alpha for the actor loss, each next state's alpha for the soft target (fast update)."""
        return obs[:, -1:], next_obs[:, -1:]

    def reference_train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """The update written like SB3's ``SAC.train`` with per-sample alpha (the fast path's reference)."""
        with self.holding_actor():
            self._reference_steps(gradient_steps, batch_size)

    def _reference_steps(self, gradient_steps: int, batch_size: int) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate([self.actor.optimizer, self.critic.optimizer])
        actor_losses, critic_losses, alphas = [], [], []
        for _ in range(gradient_steps):
            data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)
            discounts = data.discounts if getattr(data, "discounts", None) is not None else self.gamma
            alpha = data.observations[:, -1:]
            # actions for the actor loss are drawn before the critic step, as in stable-baselines3's SAC
            actions_pi, log_prob = self.actor.action_log_prob(data.observations)
            log_prob = log_prob.reshape(-1, 1)

            target = self.soft_target(data.rewards, data.dones, data.next_observations, discounts)
            current = self.critic(data.observations, data.actions)
            critic_loss = 0.5 * sum(F.mse_loss(q, target) for q in current)
            self.critic.optimizer.zero_grad()
            critic_loss.backward()
            self.critic.optimizer.step()

            actor_loss = self.actor_loss(data.observations, actions_pi, log_prob)
            self.actor.optimizer.zero_grad()
            actor_loss.backward()
            self.actor.optimizer.step()

            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)
            actor_losses.append(actor_loss.item())
            critic_losses.append(critic_loss.item())
            alphas.append(alpha.mean().item())
        self._n_updates += gradient_steps
        self.record_train(actor_losses, critic_losses, [], alphas)
