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


AUTHORS = dict(actor_std="separate", init="xavier_relu")


@pytest.mark.parametrize("model_cls", [QSAC, AlphaConditionedSAC], ids=["QSAC", "qarl-adversary"])
@pytest.mark.usefixtures("matmul_backend")
def test_a_separate_log_std_network_matches_stable_baselines3(model_cls):
    """actor_std: separate. The log-std comes from a network of its own, the mean from latent_pi; the fast update's
    steps equal stable-baselines3's (1e-5) and move both trunks."""
    obs_dim = OBS_DIM + (model_cls is AlphaConditionedSAC)
    config = SACConfig(net_arch=(64, 64), batch_size=32, **AUTHORS)
    fast, ref = _pair(model_cls, config, obs_dim)
    actor = fast.actor
    assert len(list(actor.latent_std)) == len(list(actor.latent_pi)) and actor.log_std.in_features == 64
    x = th.randn(5, obs_dim)
    mean, log_std, _ = actor.get_action_dist_params(x)
    th.testing.assert_close(log_std, actor.log_std(actor.latent_std(x)).clamp(-20, 2))
    th.testing.assert_close(mean, actor.mu(actor.latent_pi(x)))
    with th.no_grad():  # the mean does not depend on the log-std network, nor the log-std on latent_pi
        for p in actor.latent_std.parameters():
            p.add_(1.0)
        assert th.equal(actor.get_action_dist_params(x)[0], mean)
        for p in actor.latent_std.parameters():
            p.sub_(1.0)
    ref.policy.load_state_dict(fast.policy.state_dict())
    before = {k: v.clone() for k, v in fast.policy.state_dict().items()}
    for model in (fast, ref):
        np.random.seed(7)
        th.manual_seed(11)
        for _ in range(3):
            model.train(gradient_steps=1, batch_size=32)
    assert fast._fast is not None and fast.fast_fallback_reason is None
    for name, value in fast.policy.state_dict().items():
        th.testing.assert_close(value, ref.policy.state_dict()[name], atol=1e-5, rtol=0, msg=name)
    for prefix in ("actor.latent_pi.0", "actor.latent_std.0", "actor.latent_std.2", "actor.mu", "actor.log_std"):
        assert not th.equal(fast.policy.state_dict()[f"{prefix}.weight"], before[f"{prefix}.weight"]), prefix


def test_the_three_choices_together_resume_exactly_and_stay_deterministic(tmp_path):
    """The three choices together through the trial runner (rarl, smoke scale): two runs of one seed are identical,
    and a run stopped at a checkpoint and resumed equals the uninterrupted one."""
    import pandas as pd

    from qarl.config import parse_overrides
    from qarl.experiment.trial import resolve_config, run_dir_for, run_trial

    sets = [f"{p}.{k}={v}" for p in ("protagonist", "adversary") for k, v in
            (("actor_std", "separate"), ("init", "xavier_relu"), ("actor_learning_starts", 90))]  # fmt: skip
    config = resolve_config("dmc/cartpole-balance", "rarl", 1, "smoke", parse_overrides([*sets, "eval.enabled=false"]))
    assert config.algo.protagonist.actor_std == "separate" and config.algo.adversary.actor_learning_starts == 90
    progress = {}
    for name, stop in (("a", None), ("b", None), ("part", 2)):
        run_dir = run_dir_for(tmp_path / name, "e", config.task, "rarl", 1)
        run_trial(config, run_dir=run_dir, log=lambda m: None, stop_after=stop)
        if stop is not None:
            run_trial(None, run_dir=run_dir, resume=True, log=lambda m: None)
        progress[name] = pd.read_parquet(run_dir / "progress.parquet").drop(columns=["wall_time", "steps_per_s"])
    assert len(progress["a"]) == config.loop.iterations
    for other in ("b", "part"):
        pd.testing.assert_frame_equal(progress["a"], progress[other], check_exact=True)


def test_the_qarl_authors_preset_sets_the_three_choices_and_is_recorded(tmp_path):
    import yaml

    from qarl.config import ConfigError
    from qarl.experiment.trial import parse_trial_config, resolve_config
    from qarl.report.reproduce import get_figure, plan_figure

    config = resolve_config("dmc/cartpole-balance", "qarl", 0, "small", learner="qarl-authors")
    for player in (config.algo.protagonist, config.algo.adversary):
        assert (player.actor_std, player.init, player.actor_learning_starts) == ("separate", "xavier_relu", 5000)
        assert player.learning_starts == 3000  # the critics' warm-up is the default's
    saved = config.to_dict()
    assert saved["learner"] == "qarl-authors" and parse_trial_config(saved) == config
    assert "learner" not in resolve_config("dmc/cartpole-balance", "qarl", 0, "small").to_dict()  # default unchanged
    over = resolve_config("dmc/cartpole-balance", "sac", 0, "small", {"protagonist": {"init": "torch_default"}},
                          learner="qarl-authors")  # fmt: skip
    assert over.algo.protagonist.init == "torch_default"  # --set comes after the preset
    with pytest.raises(ConfigError, match="unknown preset 'mushroom'"):
        resolve_config("dmc/cartpole-balance", "sac", 0, "small", learner="mushroom")
    sweep, trials = plan_figure(get_figure("qarl-table1"), "smoke", tmp_path, "qarl-authors")
    assert sweep.name.endswith("-qarl-authors") and sweep.learner == "qarl-authors"
    assert all(t.config.learner == "qarl-authors" and "-qarl-authors" in str(t.run_dir) for t in trials)
    from qarl.cli import main

    assert main(["train", "--task", "dmc/cartpole-balance", "--method", "sac", "--learner", "qarl-authors",
                 "--iterations", "1", "--set", "eval.enabled=false", "--out", str(tmp_path / "runs")]) == 0  # fmt: skip
    run = next((tmp_path / "runs").rglob("config.yaml"))
    data = yaml.safe_load(run.read_text())
    assert data["learner"] == "qarl-authors" and data["protagonist"]["actor_std"] == "separate"


def test_a_sweep_names_its_learner_preset():
    from qarl.config import ConfigError, configs_dir, load_yaml
    from qarl.sweep.config import parse_sweep

    data = load_yaml(configs_dir() / "sweeps" / "smoke.yaml")
    assert parse_sweep({**data, "learner": "qarl-authors"}).learner == "qarl-authors"
    with pytest.raises(ConfigError, match="unknown preset 'nope'"):
        parse_sweep({**data, "learner": "nope"})
