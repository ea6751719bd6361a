"""The fast SAC update is stable-baselines3's SAC update: same parameters after the same steps, same random draws."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch as th
from learner_pairs import ACT, OBS_DIM, _space  # tests/qarl/learner_pairs.py
from learner_pairs import pair as _pair

from qarl.sac.alpha import AlphaConditionedSAC
from qarl.sac.fast import unsupported_reason
from qarl.sac.learner import QSAC, SACConfig

pytestmark = pytest.mark.usefixtures("matmul_backend")  # every test: oneDNN and torch.mm (tests/qarl/conftest.py)


def _train(model: QSAC, steps: int, batch_size: int) -> tuple[tuple, th.Tensor]:
    np.random.seed(7)
    th.manual_seed(11)
    model.train(gradient_steps=steps, batch_size=batch_size)
    return np.random.get_state(), th.get_rng_state()


def _assert_same(fast: QSAC, ref: QSAC, atol: float) -> None:
    fast_state, ref_state = fast.policy.state_dict(), ref.policy.state_dict()
    assert fast_state.keys() == ref_state.keys()
    for name in fast_state:
        th.testing.assert_close(fast_state[name], ref_state[name], atol=atol, rtol=0, msg=lambda m, n=name: f"{n}: {m}")
    if ref.ent_coef_optimizer is not None:
        th.testing.assert_close(fast.log_ent_coef, ref.log_ent_coef, atol=atol, rtol=0)


QARL = SACConfig(batch_size=256)  # the paper's settings: 3x256 ReLU, lrs 1e-4 / 3e-4 / 3e-4, tau 0.005


@pytest.mark.parametrize(
    ("model_cls", "obs_dim"),
    [(QSAC, OBS_DIM), (AlphaConditionedSAC, OBS_DIM + 1)],
    ids=["protagonist-QSAC", "qarl-adversary-AlphaConditionedSAC"],
)
def test_one_update_matches_stable_baselines3(model_cls: type[QSAC], obs_dim: int) -> None:
    fast, ref = _pair(model_cls, QARL, obs_dim)
    before = {k: v.clone() for k, v in ref.policy.state_dict().items()}
    rng_fast = _train(fast, 1, QARL.batch_size)
    rng_ref = _train(ref, 1, QARL.batch_size)
    assert fast._fast is not None and fast.fast_fallback_reason is None  # the fast path really ran
    assert ref._fast is None
    _assert_same(fast, ref, atol=1e-5)
    # the update moved every parameter group (the comparison is not between two untouched models)
    for prefix in ("actor.latent_pi.0", "actor.mu", "actor.log_std", "critic.qf0.4", "critic.qf1.6"):
        moved = [k for k in before if k.startswith(prefix) and not th.equal(before[k], ref.policy.state_dict()[k])]
        assert moved, prefix
    if model_cls is QSAC:
        assert not np.isclose(fast.temperature, 0.05)
        assert fast.temperature == pytest.approx(ref.temperature, abs=1e-7)
    else:
        assert fast.temperature == pytest.approx(ref.temperature, rel=1e-6)
    # the same random draws: numpy's generator (buffer indices) and torch's (action noise) end in the same state
    assert all(np.array_equal(a, b) for a, b in zip(rng_fast[0][1:2], rng_ref[0][1:2], strict=True))
    assert rng_fast[0][2] == rng_ref[0][2]
    assert th.equal(rng_fast[1], rng_ref[1])
    for key in ("train/actor_loss", "train/critic_loss", "train/ent_coef"):
        assert fast.logger.name_to_value[key] == pytest.approx(ref.logger.name_to_value[key], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("model_cls", [QSAC, AlphaConditionedSAC])
def test_consecutive_updates_match_stable_baselines3(model_cls: type[QSAC]) -> None:
    config = SACConfig(net_arch=(64, 64), batch_size=32)
    obs_dim = OBS_DIM + (model_cls is AlphaConditionedSAC)
    fast, ref = _pair(model_cls, config, obs_dim)
    _train(fast, 5, config.batch_size)
    _train(ref, 5, config.batch_size)
    _assert_same(fast, ref, atol=1e-5)
    # and the Adam moments the checkpoints carry
    for name in ("actor", "critic"):
        opt_fast, opt_ref = getattr(fast, name).optimizer, getattr(ref, name).optimizer
        for p_fast, p_ref in zip(opt_fast.param_groups[0]["params"], opt_ref.param_groups[0]["params"], strict=True):
            s_fast, s_ref = opt_fast.state[p_fast], opt_ref.state[p_ref]
            assert float(s_fast["step"]) == float(s_ref["step"]) == 5
            th.testing.assert_close(s_fast["exp_avg"], s_ref["exp_avg"], atol=1e-6, rtol=1e-4)


def test_target_critics_follow_the_polyak_rule() -> None:
    config = SACConfig(net_arch=(16,), batch_size=8)
    fast, _ = _pair(QSAC, config, OBS_DIM)
    critic_before = [p.detach().clone() for p in fast.critic.parameters()]
    target_before = [p.detach().clone() for p in fast.critic_target.parameters()]
    _train(fast, 1, config.batch_size)
    for c0, t0, c1, t1 in zip(critic_before, target_before, fast.critic.parameters(), fast.critic_target.parameters(),
                              strict=True):  # fmt: skip
        assert not th.equal(c0, c1.detach())
        th.testing.assert_close(t1.detach(), (1 - config.tau) * t0 + config.tau * c1.detach())


def test_parameters_stay_sb3_parameters_and_state_dicts_load_back() -> None:
    config = SACConfig(net_arch=(16, 16), batch_size=8)
    fast, ref = _pair(QSAC, config, OBS_DIM)
    params = list(fast.policy.parameters())
    _train(fast, 2, config.batch_size)
    assert list(fast.policy.parameters()) == params  # the same Parameter objects the optimisers hold
    assert {id(p) for g in fast.critic.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in fast.critic.parameters()
    }
    # a state dict loaded into the fast model (as a checkpoint resume does) is what the next step starts from
    ref.policy.load_state_dict(fast.policy.state_dict())
    fast.policy.load_state_dict(ref.policy.state_dict())
    assert fast._fast is not None and fast._fast.is_current(config.batch_size)
    # deep copies: a loaded optimiser state would otherwise share its moment tensors with the source
    ref.critic.optimizer.load_state_dict(copy.deepcopy(fast.critic.optimizer.state_dict()))
    ref.actor.optimizer.load_state_dict(copy.deepcopy(fast.actor.optimizer.state_dict()))
    ref.ent_coef_optimizer.load_state_dict(copy.deepcopy(fast.ent_coef_optimizer.state_dict()))
    with th.no_grad():
        ref.log_ent_coef.copy_(fast.log_ent_coef)
    _train(fast, 1, config.batch_size)
    _train(ref, 1, config.batch_size)
    _assert_same(fast, ref, atol=1e-5)


def test_unsupported_models_fall_back_to_stable_baselines3() -> None:
    config = SACConfig(net_arch=(8,), batch_size=8)
    fast, _ = _pair(QSAC, config, OBS_DIM)
    assert unsupported_reason(fast) is None
    fast.target_update_interval = 2
    assert unsupported_reason(fast) == "target_update_interval != 1"
    _train(fast, 1, config.batch_size)
    assert fast.fast_fallback_reason == "target_update_interval != 1" and fast._fast is None
    assert fast._n_updates == 1



def test_models_off_the_cpu_are_not_taken_by_the_single_model_fast_update() -> None:
    config = SACConfig(net_arch=(8,), batch_size=8)
    fast, _ = _pair(QSAC, config, OBS_DIM)
    fast.policy.to("meta")  # a device other than the CPU that exists on every machine (no data, no arithmetic)
    assert unsupported_reason(fast) == "parameters on meta (it runs on the CPU only)"


def test_timing_the_kernels_leaves_the_generators_and_the_initialisation_alone(monkeypatch) -> None:
    """make_sac times the two kernels (when none is forced); the networks it then builds are initialised from the
    same torch generator state, so a run's weights do not depend on whether the kernel was measured or forced."""
    from qarl.sac import fast as fast_sac
    from qarl.sac.learner import make_sac

    space, act = _space(OBS_DIM), ACT
    config = SACConfig(net_arch=(64, 64), batch_size=128)
    weights = {}
    for mode in ("auto", "0"):
        monkeypatch.setattr(fast_sac, "_kernel_cache", {})
        if mode == "auto":
            monkeypatch.delenv("QARL_ONEDNN", raising=False)
        else:
            monkeypatch.setenv("QARL_ONEDNN", mode)
        th.manual_seed(3)
        model = make_sac(config, space, act)
        weights[mode] = [p.detach().clone() for p in model.policy.parameters()]
        assert model.matmul_kernel in fast_sac.KERNELS
        weights[f"next {mode}"] = th.rand(3)
    for a, b in zip(weights["auto"], weights["0"], strict=True):
        assert th.equal(a, b)
    assert th.equal(weights["next auto"], weights["next 0"])


def test_the_kernel_travels_with_the_checkpoint(monkeypatch) -> None:
    """A resumed model keeps the kernel of the run it resumes, whatever it would have chosen itself."""
    from qarl.sac.learner import Player
    from qarl.training.checkpoint import load_player_state, player_state

    monkeypatch.delenv("QARL_ONEDNN", raising=False)
    space, act = _space(OBS_DIM), ACT
    config = SACConfig(net_arch=(32, 32), batch_size=32, learning_starts=0)
    a, b = Player("protagonist", config, space, act), Player("protagonist", config, space, act)
    a.model.matmul_kernel, b.model.matmul_kernel = "onednn", "mm"
    state = player_state(a)
    assert state["matmul_kernel"] == "onednn"
    load_player_state(b, state)
    assert b.model.matmul_kernel == "onednn" and b.model._fast is None


def test_a_checkpoint_of_an_earlier_version_resumes_on_the_kernel_that_version_used(monkeypatch) -> None:
    """Checkpoints written before the kernel was measured hold none: the size rule of that version decides."""
    from qarl.sac import fast as fast_sac
    from qarl.sac.learner import Player
    from qarl.training.checkpoint import load_player_state, player_state

    if fast_sac.onednn_linear() is None:
        pytest.skip("this torch build has no usable oneDNN linear op")
    monkeypatch.delenv("QARL_ONEDNN", raising=False)
    space, act = _space(OBS_DIM), ACT
    for net_arch, batch, expected in (((256, 256), 256, "onednn"), ((64, 64), 128, "mm")):
        config = SACConfig(net_arch=net_arch, batch_size=batch)
        player = Player("protagonist", config, space, act)
        state = player_state(player)
        del state["matmul_kernel"]
        player.model.matmul_kernel = "onednn" if expected == "mm" else "mm"  # whatever it measured
        load_player_state(player, state)
        assert player.model.matmul_kernel == expected, net_arch
    monkeypatch.setenv("QARL_ONEDNN", "0")  # that version's off switch
    config = SACConfig(net_arch=(256, 256), batch_size=256)
    player = Player("protagonist", config, space, act)
    state = player_state(player)
    del state["matmul_kernel"]
    load_player_state(player, state)
    assert player.model.matmul_kernel == "mm"


def test_the_critic_forwards_share_one_set_of_activation_buffers() -> None:
    """The target, critic-loss and actor-loss forwards of a step write into the same buffers (each is dead before the
    next begins); buffers of other shapes are refused."""
    from torch import nn

    from qarl.sac.fast import FastSACUpdate, _StackedMLP

    model, _ = _pair(QSAC, SACConfig(net_arch=(16, 16), batch_size=32), OBS_DIM)
    update = FastSACUpdate(model, batch_size=32)
    assert update.targets.acts is update.critics.acts and len(update.critics.acts) == 1
    nets = [nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 1)) for _ in range(2)]
    wrong = [[th.empty(2, 32, 8), th.empty(2, 32, 1)]]
    with pytest.raises(ValueError, match="shapes"):
        _StackedMLP(nets, batch_size=16, slots=1, acts=wrong)
    assert _StackedMLP(nets, batch_size=32, slots=1, acts=wrong).acts is wrong


def test_adam_step_counters_count_every_step_and_survive_a_checkpoint(tmp_path) -> None:
    """The counters of the direct Adam call are views of one tensor (one add_ per step); their values are the steps
    taken, as stable-baselines3's own optimiser steps count them, also after a save and a reload of the state."""
    config = SACConfig(net_arch=(16, 16), batch_size=8)
    fast, ref = _pair(QSAC, config, OBS_DIM)
    _train(fast, 5, config.batch_size)
    _train(ref, 5, config.batch_size)
    for opt, opt_ref in ((fast.critic.optimizer, ref.critic.optimizer), (fast.actor.optimizer, ref.actor.optimizer)):
        steps = [opt.state[p]["step"] for p in opt.param_groups[0]["params"]]
        assert [float(s) for s in steps] == [float(opt_ref.state[q]["step"]) for q in opt_ref.param_groups[0]["params"]]
        assert [float(s) for s in steps] == [5.0] * len(steps)
        assert len({s.untyped_storage().data_ptr() for s in steps}) == 1  # one tensor under all the counters
        th.save(opt.state_dict(), tmp_path / "opt.pt")
        opt.load_state_dict(th.load(tmp_path / "opt.pt", weights_only=True))
    _train(fast, 2, config.batch_size)
    for opt in (fast.critic.optimizer, fast.actor.optimizer):
        params = opt.param_groups[0]["params"]
        assert [float(opt.state[p]["step"]) for p in params] == [7.0] * len(params)
