"""force_curriculum, cat and domain_randomization: mechanisms and smoke training on each family (their determinism and
resume, as every registered method's: tests/qarl/experiment/test_methods.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch as th

import envs
from baselines.cat import CATConfig, mas_attack, radius_schedule
from baselines.domain_randomization import draw_params
from baselines.force_curriculum import budget_fraction
from qarl.experiment.registry import get_method
from qarl.experiment.trial import resolve_config, run_dir_for, run_trial
from qarl.training.loop import ADVERSARY, PROTAGONIST

# The methods whose mechanisms this file tests (a list on purpose: the subject of the file, not every method; every
# registered method on every task: tests/qarl/experiment/test_methods.py, -m slow).
METHODS = ["force_curriculum", "cat", "domain_randomization"]


def _trainer(algo: str, task: str = "dmc/cartpole-balance", seed: int = 0, **overrides):
    config = resolve_config(task, algo, seed, "smoke", overrides)
    return get_method(algo)(config.task, config.algo, config.loop, seed)


# ----------------------------------------------------------------------------------------- force_curriculum
def test_force_budget_formula():
    assert budget_fraction(0.05) == pytest.approx(0.001 / 0.05)  # the teacher's initial mean: 2% of Fmax
    assert budget_fraction(0.001) == pytest.approx(1.0)  # the target mean: the full bound
    assert budget_fraction(0.0) == 1.0 and budget_fraction(0.2) == 0.0  # clipped to [0, 1]
    assert budget_fraction(0.026) == pytest.approx((-0.026 + 0.051) / 0.05)


def test_force_curriculum_clips_the_adversary_and_appends_the_budget():
    trainer = _trainer("force_curriculum", task="gym/HalfCheetah-v5")
    trainer.alpha = 0.026  # budget 0.5 of the bound (5 N)
    force = trainer.adversary_force(np.array([4.0, -4.0, 1.0, -1.0, 0.0, 2.6]))
    np.testing.assert_allclose(force, [2.5, -2.5, 1.0, -1.0, 0.0, 2.5])
    obs = np.zeros(17)
    assert trainer.player_obs(PROTAGONIST, obs)[-1] == pytest.approx(0.5)
    assert trainer.player_obs(ADVERSARY, obs)[-1] == pytest.approx(0.5)
    trainer.alpha = 0.0  # evaluation: the full bound
    np.testing.assert_allclose(trainer.adversary_force(np.full(6, 9.0)), np.full(6, 5.0))


def test_force_curriculum_forces_in_training_respect_the_budget(monkeypatch):
    trainer = _trainer("force_curriculum")
    seen = []
    original = trainer.game.step

    def spy(a, b):
        seen.append((budget_fraction(trainer.alpha), np.abs(b).max()))
        return original(a, b)

    monkeypatch.setattr(trainer.game, "step", spy)
    trainer.run_iteration()
    assert seen and all(f <= frac * 2.0 + 1e-12 for frac, f in seen)  # cartpole bound 2 N
    assert all(frac < 0.2 for frac, _ in seen)  # T ~ Gamma(50, 1000): budget near 2% of Fmax


# ----------------------------------------------------------------------------------------- cat
def test_radius_schedule():
    cfg = CATConfig(max_radius=0.4)
    radii = [radius_schedule(cfg, i, 10) for i in range(10)]
    assert radii[:2] == [0.0, 0.0] and radii[8:] == [0.4, 0.4]
    assert radii[2] == 0.0 and all(a < b for a, b in itertools.pairwise(radii[2:9]))
    assert radii[5] == pytest.approx(0.4 * (0.5 - 0.2) / 0.6)


def test_mas_attack_lowers_log_prob_within_the_radius():
    trainer = _trainer("cat")
    actor = trainer.players[PROTAGONIST].model.actor
    rng = np.random.default_rng(0)
    cfg = CATConfig()
    lowered = 0
    for _ in range(10):
        obs = rng.normal(size=5)
        a = np.clip(rng.normal(scale=0.3, size=1), -0.9, 0.9).astype(np.float32)
        for radius in (0.05, 0.3):
            perturbed = mas_attack(actor, obs, a, radius, cfg)
            assert np.linalg.norm(perturbed - a) <= radius + 1e-6
            with th.no_grad():
                mean, log_std, kw = actor.get_action_dist_params(th.as_tensor(obs, dtype=th.float32)[None])
                dist = actor.action_dist.proba_distribution(mean, log_std, **kw)
                before = dist.log_prob(th.as_tensor(a)[None]).item()
                after = dist.log_prob(th.as_tensor(perturbed)[None]).item()
            assert after <= before
            lowered += after < before
    # (a stays put only where log pi has a local minimum in a: the squashing Jacobian makes some)
    assert lowered >= 15, f"the attack lowered log pi in only {lowered} of 20 cases"
    assert np.array_equal(mas_attack(actor, obs, a, 0.0, cfg), a)


def test_cat_buffer_keeps_intended_actions_and_executes_attacked_ones(monkeypatch):
    trainer = _trainer("cat")
    trainer._radius = 0.3
    executed = []
    original = trainer.game.step
    monkeypatch.setattr(trainer.game, "step", lambda a, b: executed.append(np.array(a)) or original(a, b))
    monkeypatch.setattr(trainer, "begin_iteration", lambda: None)
    trainer.run_iteration()
    buf = trainer.players[PROTAGONIST].buffer
    stored = buf.actions[: buf.size(), 0, 0]
    train_exec = np.array(executed[: buf.size()])[:, 0]
    assert np.all(np.abs(stored - train_exec) > 0)  # every training action was perturbed
    assert np.all(np.abs(stored - train_exec) <= 0.3 + 1e-6)  # cartpole's action range is [-1, 1]


# ----------------------------------------------------------------------------------------- domain_randomization
def test_domain_randomisation_draws_cover_the_range_and_are_reproducible():
    game = envs.make("dmc/walker-walk")
    draws = [draw_params(game, np.random.default_rng(3)) for _ in range(2)]
    assert draws[0] == draws[1]
    rng = np.random.default_rng(0)
    many = pd.DataFrame([draw_params(game, rng) for _ in range(2000)])
    for name, (low, high) in game.param_bounds().items():
        assert many[name].min() >= low and many[name].max() <= high
        assert many[name].min() < low + 0.02 * (high - low) and many[name].max() > high - 0.02 * (high - low)
        assert abs(many[name].mean() - (low + high) / 2) < 0.05 * (high - low)


def test_domain_randomisation_sets_params_per_training_episode_and_nominal_at_eval(monkeypatch):
    trainer = _trainer("domain_randomization", task="dmc/cheetah-run")
    seen = []
    original = trainer.play_episode

    def spy(game, seed, learner, det, adv):
        out = original(game, seed, learner, det, adv)
        seen.append((learner, game.get_params()))
        return out

    monkeypatch.setattr(trainer, "play_episode", spy)
    row = trainer.run_iteration()
    train = [p for learner, p in seen if learner is not None]
    evals = [p for learner, p in seen if learner is None]
    assert len({tuple(p.values()) for p in train}) == len(train) == 2
    assert all(p == trainer.game.nominal_params() for p in evals)
    bounds = trainer.game.param_bounds()
    assert all(bounds[k][0] <= v <= bounds[k][1] for p in train for k, v in p.items())
    assert np.isfinite(row["dr_torso_mass_mean"])
    # reproducible from the trial seed
    again = _trainer("domain_randomization", task="dmc/cheetah-run")
    again.run_iteration()
    assert again.game.get_params() == train[-1]


# ----------------------------------------------------------------------------------------- each family
@pytest.mark.parametrize("algo", METHODS)
@pytest.mark.parametrize("task", ["dmc/walker-walk", "gym/Hopper-v5"])
def test_smoke_training_on_each_family(tmp_path, algo, task):
    over = {"loop": {"iterations": 2}, "protagonist": {"learning_starts": 16}}
    run_dir = run_dir_for(tmp_path, "s", task, algo, 0)
    meta = run_trial(resolve_config(task, algo, 0, "smoke", over), run_dir=run_dir, log=lambda m: None)
    assert meta["status"] == "completed"
    df = pd.read_parquet(run_dir / "progress.parquet")
    assert df["updates_protagonist"].iloc[-1] > 0 and np.isfinite(df["critic_loss_protagonist"].iloc[-1])
