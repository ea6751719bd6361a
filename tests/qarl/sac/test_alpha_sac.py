"""The per-sample temperature of QARL's adversary learner."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from qarl.sac.alpha import AlphaConditionedSAC
from qarl.sac.learner import Player, SACConfig

OBS = spaces.Box(-np.inf, np.inf, (3,), np.float64)  # two state entries, then alpha
ACT = spaces.Box(-2.0, 2.0, (2,), np.float32)


def _model() -> AlphaConditionedSAC:
    th.manual_seed(0)
    return Player("adversary", SACConfig(net_arch=(16, 16)), OBS, ACT, AlphaConditionedSAC).model


def test_soft_target_uses_each_samples_alpha():
    model = _model()
    next_obs = th.tensor([[0.3, -0.2, 0.5], [0.3, -0.2, 0.0]])  # same state, alpha 0.5 and 0
    rewards = th.tensor([[1.0], [1.0]])
    dones = th.tensor([[0.0], [0.0]])
    th.manual_seed(7)
    target = model.soft_target(rewards, dones, next_obs, 0.99)
    # by hand, with the same noise draw
    th.manual_seed(7)
    with th.no_grad():
        a, logp = model.actor.action_log_prob(next_obs)
        q1, q2 = model.critic_target(next_obs, a)
        min_q = th.minimum(q1, q2)
        expected = rewards + 0.99 * (min_q - next_obs[:, -1:] * logp.reshape(-1, 1))
    th.testing.assert_close(target, expected)
    # the alpha = 0 sample's target has no entropy term at all
    th.testing.assert_close(target[1], rewards[1] + 0.99 * min_q[1])
    assert not th.allclose(target[0], rewards[0] + 0.99 * min_q[0])
    # a terminal transition bootstraps nothing
    th.manual_seed(7)
    assert model.soft_target(rewards, th.tensor([[1.0], [1.0]]), next_obs, 0.99).tolist() == [[1.0], [1.0]]


def test_actor_loss_weighs_entropy_by_each_samples_alpha():
    model = _model()
    obs = th.tensor([[0.1, 0.2, 0.25], [0.1, 0.2, 0.0]])
    actions = th.tensor([[0.5, -0.5], [0.5, -0.5]])
    log_prob = th.tensor([[-1.5], [-1.5]])
    with th.no_grad():
        loss = model.actor_loss(obs, actions, log_prob)
        q1, q2 = model.critic(obs, actions)
        expected = ((0.25 * -1.5 - th.minimum(q1, q2)[0]) + (0.0 - th.minimum(q1, q2)[1])) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_training_has_no_temperature_optimiser_and_reports_batch_alpha():
    player = Player("adversary", SACConfig(net_arch=(8,), batch_size=16, learning_starts=16, train_every=1), OBS, ACT,
                    AlphaConditionedSAC)  # fmt: skip
    assert player.model.ent_coef_optimizer is None
    rng = np.random.default_rng(0)
    for _ in range(20):
        obs = np.array([*rng.normal(size=2), 0.02])
        player.observe(obs, obs, rng.uniform(-1, 1, 2).astype(np.float32), -1.0, False, False)
    assert player.updates == 5
    assert player.model.temperature == pytest.approx(0.02)
    stats = player.pop_stats()
    assert np.isfinite(stats["actor_loss"]) and stats["temperature"] == pytest.approx(0.02)
