"""Robustness evaluation: batched episodes, grid layout, eval.parquet schema, qarl evaluate."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import envs
from qarl.evaluation import EvalConfig, Evaluator, run_batch
from qarl.experiment.trial import load_trainer, resolve_config, run_dir_for, run_trial

COLUMNS = ["task", "task_version", "method", "seed", "metric", "param_x", "value_x", "param_y", "value_y",
           "force_bound", "policy_mode", "episode", "return", "length"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    run_dir = run_dir_for(tmp, "e", "dmc/cartpole-balance", "rarl", 0)
    meta = run_trial(resolve_config("dmc/cartpole-balance", "rarl", 0, "smoke"), run_dir=run_dir, log=lambda m: None)
    return run_dir, meta


def test_end_of_trial_evaluation_writes_the_documented_schema(trained):
    run_dir, meta = trained
    assert meta["status"] == "completed" and meta["eval_seconds"] >= 0
    df = pd.read_parquet(run_dir / "eval.parquet")
    assert list(df.columns) == COLUMNS
    counts = df.groupby(["metric", "policy_mode"]).size()
    for mode in ("deterministic", "stochastic"):  # both policy modes recorded
        assert counts["grid", mode] == 3 * 3  # smoke: 3 x 3 grid, 1 episode per cell
        assert counts["sweep_x", mode] == counts["sweep_y", mode] == 3
        for metric in ("nominal", "adversary", "worst_case", "disturbance_uniform", "disturbance_step"):
            assert counts[metric, mode] == 1
    game = envs.make("dmc/cartpole-balance")
    (lx, hx), (ly, hy) = game.param_bounds().values()
    grid = df[(df.metric == "grid") & (df.policy_mode == "deterministic")]
    assert sorted(grid.value_x.unique()) == pytest.approx([lx, (lx + hx) / 2, hx])  # both ends included
    assert sorted(grid.value_y.unique()) == pytest.approx([ly, (ly + hy) / 2, hy])
    nominal = df[df.metric == "nominal"]
    assert (nominal.value_x == game.nominal_params()["pole_mass"]).all()
    assert (df.length == 50).all() and (df.task_version == "v0").all()


def test_batched_episodes_equal_one_at_a_time(trained):
    run_dir, _ = trained
    _, trainer, _ = load_trainer(run_dir)
    params = game_params = envs.make("dmc/cartpole-balance").nominal_params()
    cells = [dict(params, pole_mass=m) for m in (1.0, 5.0, 20.0)]
    act = lambda o: trainer.eval_actions(o, True, True)  # noqa: E731
    batch_games = [envs.make("dmc/cartpole-balance", horizon=50) for _ in cells]
    rets, lens = run_batch(batch_games, [3, 4, 5], cells, act)
    for k, cell in enumerate(cells):
        single = envs.make("dmc/cartpole-balance", horizon=50)
        r1, l1 = run_batch([single], [3 + k], [cell], act)
        assert r1[0] == pytest.approx(rets[k], rel=1e-6) and l1[0] == lens[k]
    assert game_params == envs.make("dmc/cartpole-balance").nominal_params()


def test_run_batch_rejects_non_finite_or_misshapen_actions():
    games = [envs.make("dmc/cartpole-balance", horizon=5) for _ in range(2)]
    nominal = games[0].nominal_params()

    def act(o, bad):
        a, f = np.zeros((len(o), 1)), np.zeros((len(o), 2))
        if bad == "nan":
            a[-1, 0] = np.nan
        elif bad == "shape":
            f = np.zeros((len(o), 3))
        return a, f

    with pytest.raises(ValueError, match="protagonist actions contain NaN"):
        run_batch(games, [0, 1], [nominal, nominal], lambda o: act(o, "nan"))
    with pytest.raises(ValueError, match=r"adversary forces must have shape \(2, 2\)"):
        run_batch(games, [0, 1], [nominal, nominal], lambda o: act(o, "shape"))
    rets, lens = run_batch(games, [0, 1], [nominal, nominal], lambda o: act(o, None))
    assert list(lens) == [5, 5] and np.all(rets > 0)


def test_evaluator_reuses_games_and_restores_nominal_params(trained):
    run_dir, _ = trained
    config, trainer, _ = load_trainer(run_dir)
    cfg = dataclasses.replace(config.eval, worst_case_steps=0, policy_modes=("deterministic",), batch_size=3)
    ev = Evaluator(trainer, cfg)
    df = ev.run()
    assert len(ev.pool.games) == 3  # a pool of batch_size games served all cells
    assert all(g.get_params() == g.nominal_params() for g in ev.pool.games)
    assert set(df.metric) == {
        "nominal",
        "adversary",
        "grid",
        "sweep_x",
        "sweep_y",
        "disturbance_uniform",
        "disturbance_step",
    }


def test_worst_case_at_another_bound(trained):
    """``worst_case_bound`` (and ``Evaluator.worst_case``'s bound) trains and plays the adversary at that bound; bound 0
    is the protagonist alone."""
    run_dir, _ = trained
    config, trainer, _ = load_trainer(run_dir)
    cfg = dataclasses.replace(config.eval, policy_modes=("deterministic",), worst_case_bound=0.5, nominal_episodes=2)
    ev = Evaluator(trainer, cfg)
    rows = ev._worst_case()
    assert [r["force_bound"] for r in rows] == [0.5, 0.5] and {r["metric"] for r in rows} == {"worst_case"}
    assert ev.force_bound == 2.0  # the trial's own bound, as the other metrics record it
    zero = ev.worst_case("deterministic", 0.0)
    alone = ev._episodes("worst_case", "deterministic", [dict(ev.nominal)], 2, False)
    assert [r["return"] for r in zero] == [r["return"] for r in alone] and {r["force_bound"] for r in zero} == {0.0}
    with pytest.raises(ValueError, match="worst_case_bound must be a finite number > 0"):
        EvalConfig(worst_case_bound=-1.0).validate()


def test_step_disturbance_hurts_more_than_none_on_a_weak_policy(trained):
    run_dir, _ = trained
    df = pd.read_parquet(run_dir / "eval.parquet")
    det = df[df.policy_mode == "deterministic"].groupby("metric")["return"].mean()
    # a constant push at the bound on the pole from mid-episode must cost return vs no push at all
    assert det["disturbance_step"] < det["nominal"]


def test_qarl_evaluate_cli(trained, tmp_path):
    run_dir, _ = trained
    base = [sys.executable, "-m", "qarl", "evaluate", str(run_dir)]
    proc = subprocess.run(base, capture_output=True, text=True)
    assert proc.returncode == 2 and "--force" in proc.stderr and "Traceback" not in proc.stderr
    args = ["--force", "--episodes", "2", "--worst-case-steps", "0", "--policy-modes", "stochastic"]
    proc = subprocess.run([*base, *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_parquet(run_dir / "eval.parquet")
    assert set(df.policy_mode) == {"stochastic"} and "worst_case" not in set(df.metric)
    assert (df[df.metric == "grid"].groupby(["value_x", "value_y"]).size() == 2).all()
    proc = subprocess.run([sys.executable, "-m", "qarl", "evaluate", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "not a run directory" in proc.stderr


def test_eval_config_validation():
    with pytest.raises(ValueError, match="policy_modes"):
        EvalConfig(policy_modes=("greedy",)).validate()
    with pytest.raises(ValueError, match="grid_points"):
        EvalConfig(grid_points=0).validate()
    assert np.isclose(EvalConfig().grid_points, 11)


def test_the_whole_evaluation_is_a_function_of_the_trial_seed(trained):
    """Evaluating the same checkpoint twice gives identical rows, the worst-case adversary's included (its first
    learning_starts actions come from its action space's generator, which the evaluation seeds)."""
    run_dir, _ = trained
    config, _, _ = load_trainer(run_dir)
    cfg = dataclasses.replace(config.eval, worst_case_learning_starts=config.eval.worst_case_steps)  # random actions
    frames = [Evaluator(load_trainer(run_dir)[1], cfg).run() for _ in range(2)]
    assert (frames[0].metric == "worst_case").any()
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
