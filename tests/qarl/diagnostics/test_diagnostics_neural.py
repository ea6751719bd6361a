"""Neural diagnostics of the SAC critics (qarl/diagnostics/neural.py, issue 6 part 2)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch as th

import envs
import qarl.diagnostics.neural as neural
from baselines.mixedne_ld import JOINT
from qarl.cli import main
from qarl.config import ConfigError
from qarl.diagnostics.neural import (
    GROUPS,
    DiagnosticsConfig,
    NeuralDiagnostics,
    effective_sample_size,
    erank,
    player_columns,
    soft_returns,
    srank,
)
from qarl.experiment.registry import get_method
from qarl.experiment.trial import resolve_config, run_dir_for, run_trial
from qarl.sac.learner import Player, SACConfig, squashed_log_prob
from qarl.training.checkpoint import list_checkpoints, load_checkpoint, player_state
from qarl.training.loop import ADVERSARY, PROTAGONIST

TASK = "dmc/cartpole-balance"
TIMING_COLUMNS = ["wall_time", "steps_per_s"]


def _quiet(msg: str) -> None:
    pass


def _trial(tmp_path: Path, algo: str, name: str, overrides: dict | None = None) -> Path:
    config = resolve_config(TASK, algo, 0, "smoke", {"eval": {"enabled": False}, **(overrides or {})})
    run_dir = run_dir_for(tmp_path / name, "test", TASK, algo, 0)
    assert run_trial(config, run_dir=run_dir, log=_quiet)["status"] == "completed"
    return run_dir


# ---------------------------------------------------------------------------------------------------------------
# acceptance: a smoke `qarl train` logs every documented column for both players; training is unchanged


def test_smoke_train_logs_every_documented_column_for_both_players(tmp_path):
    args = ["train", "--task", TASK, "--algo", "qarl", "--out", str(tmp_path), "--experiment", "d"]
    assert main([*args, "--set", "eval.enabled=false", "--set", "diagnostics.every=2"]) == 0
    df = pd.read_parquet(run_dir_for(tmp_path, "d", TASK, "qarl", 0) / "progress.parquet")
    expected = player_columns(PROTAGONIST) + player_columns(ADVERSARY)
    assert sorted(c for c in df.columns if c.startswith("diag/")) == sorted(expected)
    assert len(expected) == 2 * sum(len(v) for v in GROUPS.values())
    diagnosed = df[df["iteration"] == 2]
    assert len(diagnosed) == 1 and diagnosed[expected].notna().all(axis=None), diagnosed[expected].T
    assert df[df["iteration"] != 2][expected].isna().all(axis=None)  # the schema is stable, values only when due
    for group, names in GROUPS.items():  # every column is defined in the module docstring
        for name in names:
            assert f"``{group}/{name}``" in neural.__doc__
    row = diagnosed.iloc[0]
    assert row["diag/adversary/paired/states"] > 0 and row["diag/protagonist/feature_class/twin_gap"] >= 0
    assert 0 < row["diag/protagonist/shift/ess"] <= 1 and 0 < row["diag/adversary/shift/ess_recent"] <= 1
    assert -1 <= row["diag/protagonist/mc/spearman"] <= 1
    assert 1 <= row["diag/protagonist/representation/srank"] <= 32  # smoke critics: 32 hidden units


def test_diagnostics_do_not_change_training(tmp_path):
    on = _trial(tmp_path, "qarl", "on", {"diagnostics": {"enabled": True, "every": 1}})
    off = _trial(tmp_path, "qarl", "off", {"diagnostics": {"enabled": False}})
    df_on, df_off = pd.read_parquet(on / "progress.parquet"), pd.read_parquet(off / "progress.parquet")
    diag = [c for c in df_on.columns if c.startswith("diag/")]
    assert diag and not any(c.startswith("diag/") for c in df_off.columns)
    expected = df_off.drop(columns=TIMING_COLUMNS)
    pd.testing.assert_frame_equal(df_on.drop(columns=diag + TIMING_COLUMNS), expected, check_exact=True)
    # the final checkpoints agree too: networks, optimisers, buffers, behaviour log-probs and every generator
    a = load_checkpoint(list_checkpoints(on / "checkpoints")[-1][1])["trainer"]
    b = load_checkpoint(list_checkpoints(off / "checkpoints")[-1][1])["trainer"]
    _assert_same(a, b)


def _assert_same(a, b, path="trainer"):
    assert type(a) is type(b), path
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, th.Tensor):
        assert th.equal(a.nan_to_num(), b.nan_to_num()) and th.equal(a.isnan(), b.isnan()), path
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path


def test_methods_without_an_adversary_critic(tmp_path):
    # cat: the protagonist only (its MC rollouts go through the MAS attack, radius > 0 from iteration 2)
    df = pd.read_parquet(_trial(tmp_path, "cat", "cat", {"diagnostics": {"every": 1}}) / "progress.parquet")
    assert sorted(c for c in df.columns if c.startswith("diag/")) == sorted(player_columns(PROTAGONIST))
    curriculum = [c for c in player_columns(PROTAGONIST) if "/mc_curriculum/" in c]  # cat has no curriculum state
    assert df[curriculum].isna().all(axis=None)
    assert df[[c for c in player_columns(PROTAGONIST) if c not in curriculum]].notna().all(axis=None)


def test_mixedne_ld_shared_critic_is_diagnosed_without_changing_training(tmp_path):
    on = _trial(tmp_path, "mixedne_ld", "on", {"diagnostics": {"enabled": True, "every": 1}})
    off = _trial(tmp_path, "mixedne_ld", "off", {"diagnostics": {"enabled": False}})
    df, df_off = pd.read_parquet(on / "progress.parquet"), pd.read_parquet(off / "progress.parquet")
    joint = player_columns(JOINT)
    assert sorted(c for c in df.columns if c.startswith("diag/")) == sorted(joint)
    # no behaviour density of the mixed actions is stored, no other player to redraw, no curriculum state
    absent = [c for c in joint if any(f"/{g}/" in c for g in ("shift", "paired", "mc_curriculum"))]
    assert df[absent].isna().all(axis=None) and df[[c for c in joint if c not in absent]].notna().all(axis=None)
    pd.testing.assert_frame_equal(
        df.drop(columns=joint + TIMING_COLUMNS), df_off.drop(columns=TIMING_COLUMNS), check_exact=True
    )
    _assert_same(
        load_checkpoint(list_checkpoints(on / "checkpoints")[-1][1])["trainer"],
        load_checkpoint(list_checkpoints(off / "checkpoints")[-1][1])["trainer"],
    )


def test_joint_view_backup_and_soft_returns_by_hand():
    """The shared critic's backup is the method's own target (with the current critic), and the Monte-Carlo soft
    return adds -alpha log pi + alpha_adv log nu after each reward."""
    config = resolve_config(TASK, "mixedne_ld", 0, "smoke", {"eval": {"enabled": False}})
    trainer = get_method("mixedne_ld")(TASK, config.algo, config.loop, 0)
    trainer.run_iteration()
    view = trainer.critic_views()[JOINT]
    assert view.shared
    idx = np.arange(6)
    b = view.batch(idx)
    np.testing.assert_array_equal(b.actions.numpy(), trainer.buffer.a_exec[:6])
    np.testing.assert_array_equal(b.not_done.numpy(), 1.0 - trainer.buffer.terminated[:6])
    cfg = trainer.config
    with th.no_grad():
        th.manual_seed(5)
        y, a_first = view.backup(b, 1)
        th.manual_seed(5)  # the same draws, by hand: protagonist first, then adversary (as in the method's update)
        a_pi, logp = trainer.players[PROTAGONIST].actor(b.next_obs)
        a_adv, logq = trainer.players[ADVERSARY].actor(b.next_obs)
        a_mix = (1 - cfg.delta) * a_pi + cfg.delta * a_adv
        q = th.min(*trainer.critic(b.next_obs, a_mix))
        expected = b.rewards + cfg.protagonist.gamma * b.not_done * (q - cfg.alpha * logp + cfg.alpha_adv * logq)
    th.testing.assert_close(y, expected, rtol=1e-6, atol=1e-6)
    th.testing.assert_close(a_first, a_mix)
    th.testing.assert_close(view.f(b.obs, b.actions), th.min(*trainer.critic(b.obs, b.actions)).detach())


# ---------------------------------------------------------------------------------------------------------------
# behaviour log-probabilities, generator isolation, importance weights


def test_behaviour_log_probs_are_stored_at_buffer_positions_and_checkpointed():
    game = envs.make(TASK)
    cfg = SACConfig(net_arch=(8,), batch_size=4, learning_starts=10**6)
    player = Player(PROTAGONIST, cfg, game.observation_space, game.protagonist_action_space)
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(6, 5)).astype(np.float32)
    # act() samples exactly as the actor does (recording the log-probability changes no action)
    th.manual_seed(3)
    _, scaled = player.act(obs[0])
    th.manual_seed(3)
    with th.no_grad():
        direct = player.model.actor(th.as_tensor(obs[:1]))[0].numpy()
    np.testing.assert_array_equal(scaled, direct)
    stored = []
    for k in range(5):
        _, scaled = player.act(obs[k], deterministic=k == 3)
        player.observe(obs[k], obs[k + 1], scaled, 1.0, False, False)
        stored.append(scaled)
    with th.no_grad():
        mean, log_std, _ = player.model.actor.get_action_dist_params(th.as_tensor(obs[:5]))
        expected = squashed_log_prob(th.distributions.Normal(mean, log_std.exp()), th.as_tensor(np.stack(stored)))
    logp = player.behaviour_log_prob[:5]
    assert np.isnan(logp[3]) and np.isnan(player.behaviour_log_prob[5:]).all()  # deterministic: nothing to store
    np.testing.assert_allclose(np.delete(logp, 3), np.delete(expected.numpy(), 3), rtol=1e-6)
    # observe() without a preceding stochastic act() stores NaN, not a stale value
    player.observe(obs[0], obs[1], stored[0], 1.0, False, False)
    assert np.isnan(player.behaviour_log_prob[5])

    from qarl.training.checkpoint import load_player_state

    other = Player(PROTAGONIST, cfg, game.observation_space, game.protagonist_action_space)
    load_player_state(other, player_state(player))
    np.testing.assert_array_equal(other.behaviour_log_prob, player.behaviour_log_prob)


def test_diagnostics_leave_generators_and_players_untouched_and_weights_are_one_without_updates():
    # no gradient step (learning_starts beyond the data): the current policy is the behaviour policy, so every
    # importance weight is exactly 1; an off-by-one between log-probs and buffer positions would break this
    no_updates = {"learning_starts": 10**6}
    config = resolve_config(TASK, "rarl", 0, "smoke", {"protagonist": no_updates, "adversary": no_updates})
    trainer = get_method("rarl")(TASK, config.algo, config.loop, 0)
    trainer.run_iteration()
    diagnostics = NeuralDiagnostics(trainer, dataclasses.replace(config.diagnostics, every=1))
    np_state, th_state = np.random.get_state(), th.get_rng_state()
    before = {n: {k: v.clone() for k, v in p.model.policy.state_dict().items()} for n, p in trainer.players.items()}
    modes = {n: p.model.policy.training for n, p in trainer.players.items()}
    out = diagnostics.on_iteration_end(1)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and np.random.get_state()[2] == np_state[2]
    assert th.equal(th.get_rng_state(), th_state)
    for name, player in trainer.players.items():
        assert all(th.equal(before[name][k], v) for k, v in player.model.policy.state_dict().items())
        assert player.model.policy.training is modes[name]
    for name in (PROTAGONIST, ADVERSARY):
        assert out[f"diag/{name}/shift/ess"] == pytest.approx(1.0, abs=1e-6)
        assert out[f"diag/{name}/shift/ess_recent"] == pytest.approx(1.0, abs=1e-6)
        assert out[f"diag/{name}/shift/kl"] == pytest.approx(0.0, abs=1e-5)
    assert diagnostics.on_iteration_end(1) == out  # reproducible from (seed, iteration)
    not_due = NeuralDiagnostics(trainer, DiagnosticsConfig(every=2)).on_iteration_end(1)
    assert not_due.keys() == out.keys() and all(math.isnan(v) for v in not_due.values())


# ---------------------------------------------------------------------------------------------------------------
# the small estimators and the config


def test_soft_returns_by_hand():
    r, logp, tau, g = np.array([1.0, 2.0, 3.0]), np.array([-1.0, -2.0, -3.0]), np.array([0.5, 0.5, 0.1]), 0.9
    # G_2 = 3; G_1 = 2 + 0.9 (3 + 0.1*3); G_0 = 1 + 0.9 (2 + 0.5*2) + 0.81 (3 + 0.1*3)
    expected = [1 + 0.9 * 3.0 + 0.81 * 3.3, 2 + 0.9 * 3.3, 3.0]
    np.testing.assert_allclose(soft_returns(r, logp, tau, g), expected)


def test_rank_and_weight_statistics():
    assert srank(np.diag([1.0, 1.0, 1.0, 0.0])) == 3 and erank(np.diag([1.0, 1.0, 1.0, 0.0])) == pytest.approx(3.0)
    assert srank(np.diag([1.0, 1e-4])) == 1 and 1.0 < erank(np.diag([1.0, 1e-4])) < 1.01
    assert srank(np.zeros((4, 3))) == 0
    assert effective_sample_size(np.zeros(10)) == pytest.approx((1.0, 0.1))
    ess, w_max = effective_sample_size(np.array([0.0, -50.0, -50.0, -50.0]))
    assert ess == pytest.approx(0.25) and w_max == pytest.approx(1.0)
    assert all(math.isnan(x) for x in effective_sample_size(np.array([])))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"every": 0}, "diagnostics: every must be at least 1, got 0"),
        ({"recent_size": 1}, "diagnostics: recent_size must be at least 2, got 1"),
        ({"next_actions": 1}, "diagnostics: next_actions must be at least 2, got 1"),
        ({"ridge": -1}, "diagnostics: ridge must be a non-negative number, got -1.0"),
        ({"mc_tail": 1.0}, "diagnostics: mc_tail must lie in (0, 1), got 1.0"),
        ({"evry": 3}, "diagnostics.evry: unknown key (did you mean 'every'?)"),
        ({"mc_episodes": -1}, "diagnostics: mc_episodes must be at least 0, got -1"),
    ],
)
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        resolve_config(TASK, "rarl", 0, "smoke", {"diagnostics": override})
    assert str(info.value).startswith(message)


def test_scales_set_the_diagnostics():
    smoke, small, paper = (resolve_config(TASK, "qarl", 0, s).diagnostics for s in ("smoke", "small", "paper"))
    assert paper == DiagnosticsConfig() and paper.every == 10 and paper.enabled
    assert small.every == 5 and smoke.every == 3 and smoke.sample_size < paper.sample_size


def test_overhead_command_runs_side_by_side(capsys):
    args = ["diagnose", "overhead", "--task", TASK, "--algo", "rarl", "--scale", "smoke", "--iterations", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "overhead at every=1:" in out and "overhead at every=10:" in out
    assert "training rows with and without diagnostics identical: yes" in out
