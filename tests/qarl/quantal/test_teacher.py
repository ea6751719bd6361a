"""The self-paced Gamma teacher over QARL's adversary temperature alpha (qarl/quantal/teacher.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from qarl.quantal import teacher as teacher_mod
from qarl.quantal.teacher import (
    GammaTeacher,
    TeacherConfig,
    default_xi,
    gamma_kl,
    gamma_kl_grad,
    gamma_logpdf,
    gamma_logpdf_grad,
    importance_estimate,
    importance_estimate_grad,
)

RATE = 1000.0
# The trust-region schedule (KL bound 0.5 per update) from kappa 50 to the target 1, to 2 decimals.
SCHEDULE = [50.0, 43.29, 37.08, 31.36, 26.13, 21.40, 17.15, 13.40, 10.13, 7.35, 5.05, 3.23, 1.88, 1.00]


def central_diff(f, x: float, h: float) -> float:
    return (f(x + h) - f(x - h)) / (2 * h)


def k_low(kappa_old: float, bound: float = 0.5, kappa_target: float = 1.0) -> float:
    """The lowest kappa the trust region allows, solved independently of the teacher's code path."""
    if gamma_kl(kappa_target, kappa_old) <= bound:
        return kappa_target
    return optimize.brentq(lambda k: gamma_kl(k, kappa_old) - bound, kappa_target, kappa_old, xtol=1e-14)


def feed(teacher: GammaTeacher, n: int, returns) -> list[float]:
    """n episodes: sample alpha, add (alpha, returns(alpha)); the sampled alphas."""
    alphas = []
    for _ in range(n):
        alpha = teacher.sample()
        alphas.append(alpha)
        teacher.add(alpha, returns(alpha))
    return alphas


# ------------------------------------------------------------------------------------------------------------ config


def test_config_defaults() -> None:
    cfg = TeacherConfig()
    assert (cfg.kappa_init, cfg.kappa_target, cfg.rate, cfg.update_every, cfg.kl_bound) == (50.0, 1.0, 1000.0, 30, 0.5)
    assert cfg.xi is None and cfg.kappa_max is None
    cfg.validate()
    teacher = GammaTeacher(cfg, xi=10.0, seed=0)
    assert teacher.kappa == 50.0 and teacher.mean == pytest.approx(0.05) and teacher.kappa_max == 50.0
    assert teacher.n_updates == 0 and not teacher.frozen and math.isnan(teacher.last_estimate)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate": 0.0},
        {"rate": -1.0},
        {"rate": math.nan},
        {"kappa_init": 0.0},
        {"kappa_target": -1.0},
        {"kappa_max": 0.0},
        {"kappa_max": 10.0},  # below kappa_init
        {"kl_bound": 0.0},
        {"kl_bound": -0.5},
        {"update_every": 0},
        {"kappa_target": 60.0},  # above kappa_init
        {"xi": math.inf},
    ],
)
def test_config_validation(kwargs: dict) -> None:
    cfg = TeacherConfig(**kwargs)
    with pytest.raises(ValueError):
        cfg.validate()
    with pytest.raises(ValueError):
        GammaTeacher(cfg, xi=10.0, seed=0)


@pytest.mark.parametrize(
    ("task_id", "xi"),
    [
        ("dmc/cheetah-run", 10.0),
        ("dmc/walker-walk", 10.0),
        ("dmc/walker-run", 10.0),
        ("dmc/walker-stand", 10.0),
        ("dmc/hopper-hop", 1.0),
        ("dmc/hopper-stand", 1.0),
        ("dmc/cartpole-balance", 10.0),
        ("dmc/cartpole-swingup_sparse", 10.0),
        ("dmc/quadruped-walk", 100.0),
        ("dmc/quadruped-run", 100.0),
        ("dmc/quadruped-navigate", 100.0),
        ("gym/HalfCheetah-v5", 10.0),
        ("gym/Hopper-v5", 1.0),
        ("gym/Walker2d-v5", 10.0),
        # Not in the paper: the suite's default.
        ("gym/Ant-v5", 10.0),
        ("gym/InvertedPendulum-v5", 10.0),
        ("dmc/pendulum-swingup", 10.0),
        ("dmc/ball_in_cup-catch", 10.0),
        ("dmc/reacher-hard", 10.0),
    ],
)
def test_default_xi(task_id: str, xi: float) -> None:
    assert default_xi(task_id) == xi


def test_for_task_resolves_xi() -> None:
    assert GammaTeacher.for_task(TeacherConfig(), "dmc/quadruped-run", seed=0).xi == 100.0
    assert GammaTeacher.for_task(TeacherConfig(xi=3.5), "dmc/quadruped-run", seed=0).xi == 3.5


# ------------------------------------------------------------------------------------------------------ closed forms


@pytest.mark.parametrize(("k1", "k0"), [(43.29, 50.0), (1.0, 1.88), (5.0, 2.0), (1.0, 50.0)])
def test_gamma_kl_matches_quadrature(k1: float, k0: float) -> None:
    def integrand(alpha: float) -> float:
        log_p1 = stats.gamma.logpdf(alpha, k1, scale=1 / RATE)
        return math.exp(log_p1) * (log_p1 - stats.gamma.logpdf(alpha, k0, scale=1 / RATE))

    hi = stats.gamma.ppf(1 - 1e-14, k1, scale=1 / RATE)
    numeric, _ = integrate.quad(integrand, 0.0, hi, limit=200, epsabs=1e-11, epsrel=1e-10)
    assert float(gamma_kl(k1, k0)) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


@settings(max_examples=50, deadline=None)
@given(st.floats(0.2, 200.0), st.floats(0.2, 200.0))
def test_gamma_kl_nonnegative_and_zero_on_diagonal(k1: float, k0: float) -> None:
    assert float(gamma_kl(k1, k0)) >= -1e-12
    assert float(gamma_kl(k1, k1)) == 0.0
    assert np.sign(gamma_kl_grad(k1, k0)) == np.sign(k1 - k0)


def test_gamma_logpdf_matches_scipy_and_vectorises() -> None:
    alpha = np.array([1e-4, 1e-3, 0.02, 0.05, 0.2])
    for kappa in (1.0, 7.35, 50.0):
        np.testing.assert_allclose(
            gamma_logpdf(alpha, kappa, RATE), stats.gamma.logpdf(alpha, kappa, scale=1 / RATE), rtol=1e-12, atol=1e-12
        )
    np.testing.assert_allclose(gamma_kl(np.array([1.0, 2.0]), 50.0), [gamma_kl(1.0, 50.0), gamma_kl(2.0, 50.0)])


@pytest.mark.parametrize("kappa", [1.3, 7.35, 26.13, 49.0])
def test_gradients_match_finite_differences(kappa: float) -> None:
    h = 1e-4 * kappa
    for k0 in (1.0, 50.0, 20.0):
        assert float(gamma_kl_grad(kappa, k0)) == pytest.approx(
            central_diff(lambda k, k0=k0: float(gamma_kl(k, k0)), kappa, h), rel=1e-5, abs=1e-9
        )
        assert teacher_mod._gamma_kl_hess(kappa, k0) == pytest.approx(
            central_diff(lambda k, k0=k0: float(gamma_kl_grad(k, k0)), kappa, h), rel=1e-5, abs=1e-9
        )
    for alpha in (1e-3, 0.01, 0.05):
        assert float(gamma_logpdf_grad(alpha, kappa, RATE)) == pytest.approx(
            central_diff(lambda k, alpha=alpha: float(gamma_logpdf(alpha, k, RATE)), kappa, h), rel=1e-5, abs=1e-9
        )

    rng = np.random.default_rng(3)
    kappa_old = kappa * 1.1
    alphas = rng.gamma(kappa_old, 1 / RATE, 50)
    returns = 1000.0 * alphas + rng.normal(0.0, 3.0, 50)
    est = teacher_mod._Estimate(alphas, returns, kappa_old, RATE)
    assert importance_estimate_grad(alphas, returns, kappa, kappa_old, RATE) == pytest.approx(
        central_diff(lambda k: importance_estimate(alphas, returns, k, kappa_old, RATE), kappa, h), rel=1e-5
    )
    assert est.hess(kappa) == pytest.approx(central_diff(est.grad, kappa, h), rel=1e-5)


@pytest.mark.parametrize(
    ("name", "returns", "exact"),
    [
        # E[exp(-c alpha)] = (rate / (rate + c))^kappa (Gamma's Laplace transform); E[1000 alpha] = 1000 kappa / rate.
        ("exp", lambda a: np.exp(-200.0 * a), lambda k: (RATE / (RATE + 200.0)) ** k),
        ("linear", lambda a: 1000.0 * a, lambda k: 1000.0 * k / RATE),
    ],
)
def test_importance_estimate_matches_monte_carlo(name: str, returns, exact) -> None:
    rng = np.random.default_rng(12345)
    m, kappa_old, kappa = 20000, 20.0, 17.0
    alphas_old = rng.gamma(kappa_old, 1 / RATE, m)
    j_old = returns(alphas_old)
    weights = np.exp(gamma_logpdf(alphas_old, kappa, RATE) - gamma_logpdf(alphas_old, kappa_old, RATE))
    is_est = importance_estimate(alphas_old, j_old, kappa, kappa_old, RATE)
    assert is_est == pytest.approx(np.mean(weights * j_old), rel=1e-10)  # the log-space sum is the plain one
    is_se = np.std(weights * j_old, ddof=1) / math.sqrt(m)

    j_new = returns(rng.gamma(kappa, 1 / RATE, m))
    mc_est, mc_se = np.mean(j_new), np.std(j_new, ddof=1) / math.sqrt(m)
    assert abs(is_est - mc_est) < 3 * math.hypot(is_se, mc_se)
    assert abs(is_est - exact(kappa)) < 3 * is_se
    assert abs(mc_est - exact(kappa)) < 3 * mc_se


def test_importance_estimate_survives_extreme_weights() -> None:
    # alpha = 1e-9 lies far in the tail of Gamma(50): its weight towards kappa = 1 is exp(821), beyond the float
    # range, so the plain mean of w J gives inf even where the estimate itself is finite.
    alphas, returns = np.array([1e-9, 0.05, 0.05]), np.array([1e-300, 1.0, 1.0])
    log_w = gamma_logpdf(alphas, 1.0, RATE) - gamma_logpdf(alphas, 50.0, RATE)
    assert log_w[0] > 800
    with np.errstate(over="ignore"):
        assert np.isinf(np.mean(np.exp(log_w) * returns))
    expected = math.exp(log_w[0] + math.log(1e-300) - math.log(3)) + 2 * math.exp(log_w[1]) / 3
    assert importance_estimate(alphas, returns, 1.0, 50.0, RATE) == pytest.approx(expected, rel=1e-12)
    assert importance_estimate(alphas, np.ones(3), 1.0, 50.0, RATE) == math.inf
    assert importance_estimate(alphas, -np.ones(3), 1.0, 50.0, RATE) == -math.inf
    assert importance_estimate(alphas, np.array([0.0, 2.0, 4.0]), 50.0, 50.0, RATE) == pytest.approx(2.0)


# ----------------------------------------------------------------------------------------------------------- teacher


def test_sampling_uses_own_generator() -> None:
    before = np.random.get_state()[1].copy()
    a, b = GammaTeacher(TeacherConfig(), 10.0, seed=7), GammaTeacher(TeacherConfig(), 10.0, seed=7)
    draws = [a.sample() for _ in range(4000)]
    assert draws == [b.sample() for _ in range(4000)]
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    se = math.sqrt(50.0) / RATE / math.sqrt(len(draws))
    assert abs(np.mean(draws) - 0.05) < 4 * se


def test_trust_region_schedule_when_returns_are_high() -> None:
    teacher = GammaTeacher(TeacherConfig(), xi=10.0, seed=0)
    kappas, flags = [teacher.kappa], []
    for _ in range(16):
        for _ in range(30):
            alpha = teacher.sample()
            flags.append(teacher.add(alpha, 1e4))
        kappas.append(teacher.kappa)
    assert flags == ([False] * 29 + [True]) * 16
    assert [round(k, 2) for k in kappas[:14]] == SCHEDULE
    assert kappas[13:] == [1.0] * 4  # the target reached after 13 updates, and kept
    assert kappas[12] > 1.0
    assert teacher.n_updates == 16 and not teacher.frozen and teacher.mean == 1.0 / RATE
    for record, old, new in zip(teacher.history, kappas, kappas[1:], strict=False):
        assert record["kappa_old"] == old and record["kappa_new"] == new and not record["frozen"]
        assert record["kl_to_old"] <= 0.5 + 1e-6
        assert record["kl_to_old"] == pytest.approx(float(gamma_kl(new, old)))
        assert record["kl_to_target"] == pytest.approx(float(gamma_kl(new, 1.0)), abs=1e-12)
        assert new == pytest.approx(k_low(old), abs=1e-9)  # the constrained optimum, to far more than 2 decimals
        assert record["solver_success"] and isinstance(record["message"], str)
    assert teacher.last_estimate == teacher.history[-1]["estimate_new"]


def test_frozen_when_returns_are_below_xi() -> None:
    teacher = GammaTeacher(TeacherConfig(update_every=10), xi=10.0, seed=1)
    feed(teacher, 50, lambda alpha: 9.99)
    assert teacher.kappa == 50.0 and teacher.frozen and teacher.n_updates == 5
    for record in teacher.history:
        assert record["frozen"] and record["kappa_new"] == record["kappa_old"] == 50.0 and record["kl_to_old"] == 0.0
        assert record["estimate_old"] == record["estimate_new"] == pytest.approx(9.99)
    assert teacher.last_estimate == pytest.approx(9.99)
    # Returns recover: the next update moves again and clears the flag.
    feed(teacher, 10, lambda alpha: 1e4)
    assert not teacher.frozen and round(teacher.kappa, 2) == 43.29


@pytest.mark.parametrize(
    ("returns", "fraction"),
    [
        (lambda a: 1000.0 * a, 0.5),  # J(alpha) = c alpha: E_kappa[J] = c kappa / rate falls with kappa
        (lambda a: 1000.0 * a, 0.1),
        (lambda a: 100.0 * (1.0 - np.exp(-20.0 * a)), 0.7),  # saturating, still increasing in alpha
    ],
)
def test_performance_constraint_binds(returns, fraction: float) -> None:
    m, kappa_old = 30, 50.0
    # Deterministic draws: the m quantile midpoints of Gamma(50, rate).
    alphas = stats.gamma.ppf((np.arange(m) + 0.5) / m, kappa_old, scale=1 / RATE)
    j = returns(alphas)
    lo = k_low(kappa_old)
    est_lo = importance_estimate(alphas, j, lo, kappa_old, RATE)
    # xi between the estimate at the trust-region edge and at kappa_old: the performance constraint must bind.
    assert est_lo < np.mean(j)
    xi = est_lo + fraction * (np.mean(j) - est_lo)
    teacher = GammaTeacher(TeacherConfig(), xi=xi, seed=0)
    for alpha, ret in zip(alphas, j, strict=True):
        teacher.add(float(alpha), float(ret))
    record = teacher.history[-1]
    kappa = teacher.kappa
    assert lo < kappa < kappa_old and not record["frozen"]
    assert record["kl_to_old"] <= 0.5 + 1e-6
    assert importance_estimate(alphas, j, kappa, kappa_old, RATE) == pytest.approx(xi, rel=1e-6)
    assert record["estimate_new"] == pytest.approx(xi, rel=1e-6) and teacher.last_estimate == record["estimate_new"]
    # The constrained optimum: any smaller kappa misses xi.
    assert importance_estimate(alphas, j, kappa - 1e-3, kappa_old, RATE) < xi


def test_trust_region_binds_just_below_the_performance_edge() -> None:
    m, kappa_old = 30, 50.0
    alphas = stats.gamma.ppf((np.arange(m) + 0.5) / m, kappa_old, scale=1 / RATE)
    j = 1000.0 * alphas
    lo = k_low(kappa_old)
    teacher = GammaTeacher(TeacherConfig(), xi=importance_estimate(alphas, j, lo, kappa_old, RATE) - 1e-3, seed=0)
    for alpha, ret in zip(alphas, j, strict=True):
        teacher.add(float(alpha), float(ret))
    assert teacher.kappa == pytest.approx(lo, abs=1e-9)


def test_solver_failure_keeps_kappa_unless_the_returned_point_is_good(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(x):
        return lambda *args, **kwargs: optimize.OptimizeResult(x=np.array([x]), success=False, message="fake failure")

    # An infeasible point (outside the trust region): rejected, kappa kept, message recorded.
    teacher = GammaTeacher(TeacherConfig(), xi=10.0, seed=0)
    monkeypatch.setattr(teacher_mod.optimize, "minimize", fake(30.0))
    feed(teacher, 30, lambda alpha: 1e4)
    record = teacher.history[-1]
    assert teacher.kappa == 50.0 and not record["frozen"] and not record["solver_success"]
    assert record["message"].startswith("fake failure") and "rejected" in record["message"]

    # A feasible, improved point from a failed solve is kept (and polished onto the trust-region edge).
    monkeypatch.setattr(teacher_mod.optimize, "minimize", fake(45.0))
    feed(teacher, 30, lambda alpha: 1e4)
    assert teacher.kappa == pytest.approx(k_low(50.0), abs=1e-9) and not teacher.history[-1]["solver_success"]


def test_add_and_update_validate_input() -> None:
    teacher = GammaTeacher(TeacherConfig(), xi=10.0, seed=0)
    with pytest.raises(ValueError):
        teacher.update()
    for alpha, ret in [(0.0, 1.0), (-0.1, 1.0), (math.nan, 1.0), (0.05, math.nan), (0.05, math.inf)]:
        with pytest.raises(ValueError):
            teacher.add(alpha, ret)
    assert teacher.n_buffered == 0


def test_state_dict_round_trip() -> None:
    cfg = TeacherConfig(update_every=20)

    def returns(alpha: float) -> float:
        return 1000.0 * alpha  # mean kappa: the performance constraint binds now and then

    a = GammaTeacher(cfg, xi=20.0, seed=np.random.SeedSequence(2024))
    feed(a, 50, returns)  # two updates and 10 buffered pairs
    state = json.loads(json.dumps(a.state_dict()))  # plain values only
    snapshot = a.state_dict()
    b = GammaTeacher(cfg, xi=99.0, seed=5)  # different xi and seed: both come from the state
    b.load_state_dict(state)
    assert b.kappa == a.kappa and b.history == a.history and b.n_buffered == 10 and b.xi == 20.0

    samples_a, samples_b = feed(a, 70, returns), feed(b, 70, returns)
    assert samples_a == samples_b
    assert [r["kappa_new"] for r in a.history] == [r["kappa_new"] for r in b.history]
    assert a.history == b.history and a.kappa == b.kappa and a.n_updates == b.n_updates == 6
    assert len({r["kappa_new"] for r in a.history}) > 2  # the curriculum did move
    assert snapshot["history"] != a.history  # state_dict is a snapshot, not a view
