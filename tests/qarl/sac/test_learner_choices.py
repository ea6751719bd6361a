"""The learner's optional choices of the QARL authors' implementation (SACConfig.init, actor_learning_starts): each
changes what it should and nothing else, on every update path."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch as th
from learner_pairs import ACT, OBS_DIM, _space  # tests/qarl/learner_pairs.py
from learner_pairs import pair as _pair

from qarl.sac.alpha import AlphaConditionedSAC
from qarl.sac.learner import QSAC, SACConfig, make_sac


def _linears(model: QSAC) -> dict[str, th.nn.Linear]:
    return {n: m for n, m in model.policy.named_modules() if isinstance(m, th.nn.Linear)}


def test_xavier_relu_gives_the_expected_weight_variance_and_changes_nothing_else():
    config = SACConfig()  # 3x256 actor and critics
    th.manual_seed(5)
    default = make_sac(config, _space(OBS_DIM), ACT)
    th.manual_seed(5)
    xavier = make_sac(dataclasses.replace(config, init="xavier_relu"), _space(OBS_DIM), ACT)
    for name, layer in _linears(xavier).items():
        if name.startswith("critic_target."):
            continue
        fan_out, fan_in = layer.weight.shape
        output = name.endswith(("mu", "log_std")) or name.endswith(f".{len(config.net_arch) * 2}")
        gain = 1.0 if output else math.sqrt(2.0)
        expected = gain**2 * 2.0 / (fan_in + fan_out)  # Xavier-uniform: U(-a, a), a = gain sqrt(6 / (in + out))
        bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
        assert float(layer.weight.detach().abs().max()) <= bound
        if layer.weight.numel() >= 1500:  # enough draws for the sample variance to be within 10%
            assert float(layer.weight.detach().var()) == pytest.approx(expected, rel=0.1), name
        assert th.equal(layer.bias, _linears(default)[name].bias), name  # biases: PyTorch's, untouched
        assert not th.equal(layer.weight, _linears(default)[name].weight), name
    for (n, p), (_, q) in zip(xavier.critic.named_parameters(), xavier.critic_target.named_parameters(), strict=True):
        assert th.equal(p, q), n  # the target critics start as the critics
    # the optimisers hold the re-initialised parameters themselves
    assert xavier.actor.optimizer.param_groups[0]["params"][0] is next(xavier.actor.parameters())
    with pytest.raises(ValueError, match="init must be one of"):
        SACConfig(init="he").validate()


@pytest.mark.parametrize("model_cls", [QSAC, AlphaConditionedSAC], ids=["QSAC", "qarl-adversary"])
@pytest.mark.usefixtures("matmul_backend")
def test_actor_learning_starts_holds_only_the_actor_and_temperature(model_cls):
    """Below actor_learning_starts a step moves the critics only (fast update = stable-baselines3's, 1e-5), with the
    same random draws as a full step; from it on, the actor and the temperature move too."""
    obs_dim = OBS_DIM + (model_cls is AlphaConditionedSAC)
    config = SACConfig(net_arch=(64, 64), batch_size=32, learning_starts=100, actor_learning_starts=700)
    fast, ref = _pair(model_cls, config, obs_dim)  # 600 transitions stored: critic-only
    full_fast, _ = _pair(model_cls, dataclasses.replace(config, actor_learning_starts=None), obs_dim)
    assert fast.critic_only() and ref.critic_only() and not full_fast.critic_only()
    before = {k: v.clone() for k, v in fast.policy.state_dict().items()}
    log_alpha = fast.log_ent_coef.detach().clone() if fast.ent_coef_optimizer is not None else None
    rngs = []
    for model in (fast, ref, full_fast):
        np.random.seed(7)
        th.manual_seed(11)
        model.train(gradient_steps=2, batch_size=32)
        rngs.append((np.random.get_state()[1].copy(), th.get_rng_state()))
    assert fast._fast is not None and ref._fast is None
    for name, value in fast.policy.state_dict().items():
        th.testing.assert_close(value, ref.policy.state_dict()[name], atol=1e-5, rtol=0)
        if name.startswith("actor."):
            assert th.equal(value, before[name]), name  # held
        elif name.startswith("critic."):
            assert not th.equal(value, before[name]), name  # trained
    if log_alpha is not None:  # a learned temperature: held too
        assert th.equal(fast.log_ent_coef.detach(), log_alpha) and th.equal(ref.log_ent_coef.detach(), log_alpha)
    assert all(not s for s in fast.actor.optimizer.state.values())  # no Adam step taken: no moments
    assert any(not th.equal(v, before[k]) for k, v in full_fast.policy.state_dict().items() if k.startswith("actor."))
    for a, b in ((rngs[0], rngs[2]), (rngs[1], rngs[2])):  # a critic-only step draws as a full one, on both paths
        assert np.array_equal(a[0], b[0]) and th.equal(a[1], b[1])
    for key in ("train/actor_loss", "train/critic_loss"):
        assert fast.logger.name_to_value[key] == pytest.approx(ref.logger.name_to_value[key], rel=1e-5, abs=1e-6)
    for m in (fast, ref):  # from the threshold on, full steps
        m.actor_learning_starts = 600
        np.random.seed(8)
        th.manual_seed(12)
        m.train(1, 32)
    for name, value in fast.policy.state_dict().items():
        th.testing.assert_close(value, ref.policy.state_dict()[name], atol=1e-5, rtol=0)
    assert not th.equal(fast.policy.state_dict()["actor.mu.weight"], before["actor.mu.weight"])


def test_actor_learning_starts_is_checked():
    with pytest.raises(ValueError, match="at least learning_starts"):
        SACConfig(learning_starts=3000, actor_learning_starts=2000).validate()
    SACConfig(learning_starts=3000, actor_learning_starts=5000).validate()
