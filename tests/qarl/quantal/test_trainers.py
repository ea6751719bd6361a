"""QARL and its ablations on the two-player loop."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest

from qarl.experiment.registry import get_method, list_methods
from qarl.experiment.trial import resolve_config, run_dir_for, run_trial
from qarl.quantal.trainers import AlphaTrainer, QARLLinearTrainer
from qarl.sac.alpha import AlphaConditionedSAC
from qarl.training.loop import ADVERSARY, PROTAGONIST

# The registered methods that append the episode's alpha itself to both players' observations (force_curriculum, an
# AlphaTrainer too, appends its force budget instead: tests/baselines/test_baselines.py).
ALPHA_METHODS = [
    m for m in list_methods()
    if issubclass(cls := get_method(m), AlphaTrainer) and cls.observed_value is AlphaTrainer.observed_value
]  # fmt: skip
# Representative tasks for the default run: one per dm_control domain family and one gym task; every method on every
# task: tests/qarl/experiment/test_methods.py (-m slow).
SUBSET = ["dmc/cheetah-run", "dmc/walker-walk", "dmc/hopper-hop", "dmc/quadruped-navigate", "gym/Hopper-v5"]


def _trainer(algo: str, task: str = "dmc/cartpole-balance", seed: int = 0, **overrides):
    config = resolve_config(task, algo, seed, "smoke", overrides)
    return get_method(algo)(config.task, config.algo, config.loop, seed)


@pytest.mark.parametrize("algo", ALPHA_METHODS)
def test_alpha_is_appended_to_both_players_and_zero_at_evaluation(algo, monkeypatch):
    trainer = _trainer(algo)
    n = trainer.game.observation_space.shape[0]
    for p in trainer.players.values():
        assert p.model.observation_space.shape == (n + 1,)
    assert isinstance(trainer.players[ADVERSARY].model, AlphaConditionedSAC)
    assert isinstance(trainer.players[PROTAGONIST].model, AlphaConditionedSAC) == get_method(algo).homogeneous
    seen = []
    original = trainer.play_episode

    def spy(game, seed, learner, deterministic, adversary_on):
        seen.append((learner, trainer.alpha))
        return original(game, seed, learner, deterministic, adversary_on)

    monkeypatch.setattr(trainer, "play_episode", spy)
    trainer.run_iteration()
    train = [(phase, a) for phase, a in seen if phase is not None]
    evals = [a for phase, a in seen if phase is None]
    assert evals and all(a == 0.0 for a in evals)
    adv_alphas = [a for phase, a in train if phase == ADVERSARY]
    prot_alphas = [a for phase, a in train if phase == PROTAGONIST]
    assert adv_alphas == prot_alphas, "episode k of both phases shares alpha_k"
    assert all(a > 0 for a in adv_alphas)
    if algo == "qarl":
        assert len(set(adv_alphas)) == len(adv_alphas), "one alpha drawn per episode"
        assert all(1e-3 < a < 0.2 for a in adv_alphas)  # Gamma(50, rate 1000) has mean 0.05, sd 0.007
    if algo in ("qarl_single", "qarl_point", "qarl_linear", "fixed_temperature"):
        assert len(set(adv_alphas)) == 1
    if algo == "qarl_point":
        assert adv_alphas[0] == pytest.approx(0.05)
    if algo == "fixed_temperature":
        assert adv_alphas[0] == 0.001


def test_adversary_buffer_stores_the_alpha_of_its_episode():
    trainer = _trainer("qarl")
    trainer.run_iteration()
    buf = trainer.players[ADVERSARY].buffer
    stored = buf.observations[: buf.size(), 0, -1]
    assert set(np.unique(stored).round(12)) == set(np.round(trainer.episode_alphas, 12))


def test_linear_schedule():
    trainer = _trainer("qarl_linear", loop={"iterations": 30})
    alphas = [trainer.scheduled_alpha(i) for i in range(30)]
    assert alphas[:10] == [0.05] * 10
    assert alphas[20:] == [0.001] * 10
    assert alphas[10] == 0.05  # the linear part starts at the held value
    assert all(a > b for a, b in itertools.pairwise(alphas[10:21]))
    assert alphas[15] == pytest.approx(0.05 + 0.5 * (0.001 - 0.05))
    assert isinstance(trainer, QARLLinearTrainer)


def test_teacher_updates_every_30_pairs_and_logs_its_state(tmp_path):
    trainer = _trainer("qarl", loop={"episodes_per_phase": 5, "horizon": 20})
    rows = [trainer.run_iteration() for _ in range(3)]
    # 10 pairs per iteration (5 per phase): the first update after iteration 3
    assert [r["teacher_updates"] for r in rows] == [0, 0, 1]
    assert rows[0]["teacher_kappa"] == 50.0 and rows[0]["teacher_mean"] == pytest.approx(0.05)
    assert all(np.isnan(r["teacher_estimate"]) for r in rows[:2]) and np.isfinite(rows[2]["teacher_estimate"])


@pytest.mark.parametrize("task", SUBSET)
def test_qarl_trains_at_smoke_scale(tmp_path, task):
    run_dir = run_dir_for(tmp_path, "s", task, "qarl", 0)
    # few transitions before updates: on tasks whose episodes end early (InvertedPendulum) too
    over = {"loop": {"iterations": 2}, "protagonist": {"learning_starts": 8}, "adversary": {"learning_starts": 8}}
    meta = run_trial(resolve_config(task, "qarl", 0, "smoke", over), run_dir=run_dir, log=lambda m: None)
    assert meta["status"] == "completed"
    df = pd.read_parquet(run_dir / "progress.parquet")
    assert len(df) == 2 and df["updates_adversary"].iloc[-1] > 0


def test_xi_default_and_override():
    assert _trainer("qarl", task="dmc/hopper-hop").teacher.xi == 1.0
    assert _trainer("qarl", task="dmc/quadruped-walk").teacher.xi == 100.0
    assert _trainer("qarl", teacher={"xi": 3.5}).teacher.xi == 3.5
    cfg = resolve_config("dmc/cartpole-balance", "qarl", 0, "smoke")
    assert dataclasses.asdict(cfg.algo)["teacher"]["update_every"] == 30
