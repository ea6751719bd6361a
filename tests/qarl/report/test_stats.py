"""The reports' statistics (qarl.report.stats): rliable's functions, the seed minimum, reproducible intervals and the
fixed reference scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qarl.config import ConfigError
from qarl.report import stats


def test_rliable_imports_and_pandas_is_left_as_it_was():
    import pandas.util._decorators as decorators

    before = decorators.deprecate_kwarg
    stats.rliable_modules.cache_clear()
    library, metrics = stats.rliable_modules()
    assert decorators.deprecate_kwarg is before
    assert hasattr(library, "get_interval_estimates") and hasattr(metrics, "aggregate_iqm")


def test_iqm_interval_by_hand_and_the_seed_minimum():
    x = np.array([0.0, 1, 2, 3, 4, 5, 6, 100])  # trim 2 each side: mean of 2, 3, 4, 5
    point, low, high = stats.iqm_interval(x, reps=500)
    assert point == 3.5 and low < point < high
    four = stats.iqm_interval(x[:4], reps=500)
    assert four[0] == 1.5 and np.isnan(four[1]) and np.isnan(four[2])  # below MIN_SEEDS: no interval
    assert stats.enough_seeds(5, 6) and not stats.enough_seeds(5, 4)


def test_intervals_do_not_depend_on_earlier_random_draws():
    x = np.random.default_rng(0).normal(size=(6, 2))
    first = stats.iqm_interval(x, reps=300, seed=4)
    np.random.seed(99)
    np.random.random(1000)
    assert stats.iqm_interval(x, reps=300, seed=4) == first
    assert stats.iqm_interval(x, reps=300, seed=5) != first


def test_iqm_curve_equals_one_interval_per_point_at_its_point_estimates():
    x = np.random.default_rng(1).normal(size=(5, 1, 4))
    point, low, high = stats.iqm_curve(x, reps=300)
    for t in range(4):
        assert point[t] == pytest.approx(stats.iqm(x[:, 0, t]))
    assert (low <= point).all() and (point <= high).all()
    with pytest.raises(stats.StatsError, match="non-finite"):
        stats.iqm_curve(np.full((5, 1, 2), np.nan))


def test_bad_scores_are_refused():
    with pytest.raises(stats.StatsError, match="non-empty"):
        stats.iqm(np.array([]))
    with pytest.raises(stats.StatsError, match="leave a missing score out"):
        stats.iqm(np.array([1.0, np.nan]))


def test_reference_scores_scale_with_the_horizon_and_fall_back_to_the_family():
    table = stats.ReferenceScores({"dmc/*": {"low": 0, "high": 1000}, "gym/Hopper-v5": {"low": 100, "high": 3900}})
    assert table.range("dmc/walker-stand", 500) == (0.0, 500.0)
    assert table.range("gym/Hopper-v5", 1000) == (100.0, 3900.0)
    assert table.range("gym/Walker2d-v5", 1000) is None
    np.testing.assert_allclose(stats.normalise([0.0, 250.0, 500.0], "dmc/cartpole-balance", 500, table), [0, 0.5, 1])
    assert stats.normalise([1.0], "gym/Walker2d-v5", 1000, table) is None
    with pytest.raises(ConfigError, match="not above low"):
        stats.ReferenceScores({"a/b": {"low": 5, "high": 5}}, "ref.yaml")
    with pytest.raises(ConfigError, match="needs numbers low and high"):
        stats.ReferenceScores({"a/b": {"low": 0}}, "ref.yaml")


def test_the_committed_table_covers_every_task_but_the_one_without_a_reference():
    import envs

    table = stats.load_reference_scores()
    missing = [t for t in envs.list_tasks() if table.entry(t) is None]
    assert missing == ["gym/Walker2d-v5"]  # gymnasium gives it no reward_threshold (docs/results.md)
    assert all(source for _, _, source in table.entries.values())


def test_figure_bands_use_the_seeds_each_point_has():
    from qarl.report.figures import iqm_band

    table = pd.DataFrame(np.arange(30, dtype=float).reshape(5, 6))  # 5 points x 6 seeds
    table.iloc[2, 0] = np.nan  # one seed lacks point 2: that point uses the other 5
    point, low, high = iqm_band(table, n_boot=300)
    assert point[2] == pytest.approx(stats.iqm(table.iloc[2].dropna().to_numpy()))
    assert np.isfinite(low).all() and np.isfinite(high).all()
    few = iqm_band(table.iloc[:, :3], n_boot=300)
    assert np.isnan(few[1]).all() and np.isfinite(few[0]).all()  # 3 seeds: the IQM, no band
