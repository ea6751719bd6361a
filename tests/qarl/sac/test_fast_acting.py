"""The fast acting path (qarl.sac.fast.FastActing) against the actor's own forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from learner_pairs import ACT, OBS_DIM, _space  # tests/qarl/learner_pairs.py

from qarl.sac.alpha import AlphaConditionedSAC
from qarl.sac.fast import FastActing
from qarl.sac.learner import QSAC, Player, SACConfig, make_sac


def _module_path(actor, obs: th.Tensor, deterministic: bool) -> tuple[th.Tensor, th.distributions.Normal]:
    with th.no_grad():
        return actor(obs, deterministic=deterministic), actor.action_dist.distribution


@pytest.mark.parametrize("actor_std", ["shared", "separate"])
@pytest.mark.parametrize("model_cls", [QSAC, AlphaConditionedSAC])
def test_fast_acting_takes_the_module_paths_actions_and_random_draws_exactly(actor_std, model_cls):
    th.manual_seed(0)
    model = make_sac(SACConfig(actor_std=actor_std, net_arch=(32, 32)), _space(OBS_DIM), ACT, model_cls=model_cls)
    with th.no_grad():  # log-stds of both signs, some clamped: scale the heads up
        model.actor.log_std.weight.mul_(40.0)
        model.actor.mu.weight.mul_(5.0)
    fast = FastActing(model.actor)
    rng = np.random.default_rng(1)
    for batch in (1, 1, 7):
        for deterministic in (False, True, False):
            obs = th.as_tensor(rng.normal(size=(batch, OBS_DIM)), dtype=th.float32)
            th.manual_seed(10 + batch)
            ref_action, ref_dist = _module_path(model.actor, obs, deterministic)
            ref_state = th.get_rng_state()
            th.manual_seed(10 + batch)
            with th.no_grad():
                action, dist = fast(obs, deterministic)
            assert th.equal(th.get_rng_state(), ref_state)  # the same draws from torch's generator
            assert th.equal(action, ref_action)
            assert th.equal(dist.loc, ref_dist.loc) and th.equal(dist.scale, ref_dist.scale)
            if not deterministic:
                assert not th.equal(action, th.tanh(dist.loc))  # the noise was applied
            assert (dist.scale.log() <= 2.0 + 1e-6).all()  # clamped at LOG_STD_MAX = 2


def test_player_act_gives_the_module_paths_action_and_behaviour_density():
    cfg = SACConfig(net_arch=(32, 32))
    th.manual_seed(0)
    player = Player("protagonist", cfg, _space(OBS_DIM), ACT)
    assert player._acting is None  # built on the first act
    obs = np.random.default_rng(2).normal(size=OBS_DIM)
    th.manual_seed(5)
    action, scaled = player.act(obs)
    assert player._acting[0] is player.model.actor and isinstance(player._acting[1], FastActing)
    behaviour = player._behaviour
    th.manual_seed(5)
    ref_scaled, ref_dist = _module_path(player.model.actor, th.as_tensor(obs, dtype=th.float32)[None], False)
    np.testing.assert_array_equal(scaled, ref_scaled.numpy()[0])
    np.testing.assert_array_equal(action, player.model.policy.unscale_action(ref_scaled.numpy())[0])
    assert th.equal(behaviour.loc, ref_dist.loc) and th.equal(behaviour.scale, ref_dist.scale)
    # an optimiser step changes the actor in place: the fast path reads the new weights
    with th.no_grad():
        player.model.actor.mu.bias.add_(0.5)
    _, scaled_det = player.act(obs, deterministic=True)
    ref_det, _ = _module_path(player.model.actor, th.as_tensor(obs, dtype=th.float32)[None], True)
    np.testing.assert_array_equal(scaled_det, ref_det.numpy()[0])
    assert player._behaviour is None


def test_fast_acting_refuses_what_it_does_not_compute():
    th.manual_seed(0)
    plain = make_sac(SACConfig(net_arch=(16,)), _space(OBS_DIM), ACT)
    assert FastActing.supported(plain.actor)
    plain.actor.use_sde = True  # gSDE's noise is not a per-step Gaussian draw
    assert not FastActing.supported(plain.actor)
    plain.actor.use_sde = False
    plain.actor.latent_pi = th.nn.Sequential(th.nn.Linear(OBS_DIM, 16), th.nn.Tanh())
    assert not FastActing.supported(plain.actor)
    with pytest.raises(ValueError, match="fast acting does not support"):
        FastActing(plain.actor)


def test_a_player_with_an_unsupported_actor_keeps_acting_through_its_modules():
    th.manual_seed(0)
    player = Player("protagonist", SACConfig(net_arch=(16,)), _space(OBS_DIM), ACT)
    player.model.actor.latent_pi = th.nn.Sequential(th.nn.Linear(OBS_DIM, 16), th.nn.Tanh())
    obs = np.random.default_rng(3).normal(size=OBS_DIM)
    for _ in range(2):  # the second call reuses the cached decision
        th.manual_seed(7)
        _, scaled = player.act(obs)
        th.manual_seed(7)
        ref, ref_dist = _module_path(player.model.actor, th.as_tensor(obs, dtype=th.float32)[None], False)
        np.testing.assert_array_equal(scaled, ref.numpy()[0])
        assert th.equal(player._behaviour.loc, ref_dist.loc) and th.equal(player._behaviour.scale, ref_dist.scale)
    assert player._acting == (player.model.actor, None)
