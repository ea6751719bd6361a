"""Exact and sample-based off-policy diagnostics on finite MDPs (qarl.diagnostics.finite) and the testbed."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from qarl.diagnostics.finite import (
    FiniteMDP,
    bellman_residual,
    controllable_alpha_mdp,
    exact,
    local_ibe,
    lstd,
    lstd_asymptotic_error,
    occupancy,
    p_pi,
    q_pi,
    sample_bellman_residual,
    sample_dataset,
    sample_local_ibe,
    sample_ratio,
    td_fixed_point,
)
from qarl.diagnostics.testbed import COLUMNS, run_testbed

# ---------------------------------------------------------------------------------------------------------------
# Independent references (explicit loops, no matrices from the module)


def _policy_evaluation_loops(mdp: FiniteMDP, pi: np.ndarray, tol: float = 1e-13) -> np.ndarray:
    """Q_pi by iterating V(s) <- sum_a pi(a|s) [r(s,a) + gamma sum_s' P(s,a,s') V(s')] with plain loops."""
    S, A = pi.shape
    V = np.zeros(S)
    for _ in range(10_000):
        V_new = np.array(
            [
                sum(
                    pi[s, a] * (mdp.r[s, a] + mdp.gamma * sum(mdp.P[s, a, t] * V[t] for t in range(S)))
                    for a in range(A)
                )
                for s in range(S)
            ]
        )
        if np.max(np.abs(V_new - V)) < tol:
            break
        V = V_new
    return np.array(
        [mdp.r[s, a] + mdp.gamma * sum(mdp.P[s, a, t] * V_new[t] for t in range(S)) for s in range(S) for a in range(A)]
    )


def _random_tiny(seed: int, S: int = 3, A: int = 2, gamma: float = 0.5):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A))
    mdp = FiniteMDP(P, rng.uniform(size=(S, A)), gamma, rng.dirichlet(np.ones(S)))
    pi = rng.dirichlet(np.ones(A), size=S)
    mu = rng.dirichlet(np.ones(S * A)) * 0.9 + 0.1 / (S * A)
    return mdp, pi, mu / mu.sum()


# ---------------------------------------------------------------------------------------------------------------
# exact() against hand computations


def test_swap_mdp_all_quantities_by_hand():
    # 2 states, 1 action, P swaps the states; r = (1, 0); rho0 = (1, 0); mu = (1/2, 1/2); phi = indicator of state 0.
    # Hand computations (g = gamma): Q = (1, g) / (1 - g^2). Proj x = x_0 phi. (I - Proj) P phi = (0, 1), mu-norm^2
    # 1/2; (I - g P) phi = (1, -g), mu-norm^2 (1 + g^2) / 2, so alpha = g / sqrt(1 + g^2). G = 1/2, so kappa =
    # ||D^1/2 (0, 1) sqrt(2)|| = 1. theta_td = (1/2)^-1 (1/2) = 1, error (1 - Q0, -Q1). d_pi = (1, g) / (1 + g).
    g = 0.5
    mdp = FiniteMDP(np.array([[[0.0, 1.0]], [[1.0, 0.0]]]), np.array([[1.0], [0.0]]), g, np.array([1.0, 0.0]))
    pi, Phi, mu = np.ones((2, 1)), np.array([[1.0], [0.0]]), np.array([0.5, 0.5])
    e = exact(mdp, pi, Phi, mu)
    Q0, Q1 = 1 / (1 - g**2), g / (1 - g**2)
    assert e["v_pi"] == pytest.approx(Q0, abs=1e-12)
    assert e["realizability_err"] == pytest.approx(Q1 / np.sqrt(2), abs=1e-12)
    assert e["alpha"] == pytest.approx(g / np.sqrt(1 + g**2), abs=1e-12)
    assert e["kappa"] == pytest.approx(1.0, abs=1e-12)
    assert e["td_fixed_point_err"] == pytest.approx(np.sqrt(((1 - Q0) ** 2 + Q1**2) / 2), abs=1e-12)
    assert e["td_fixed_point_err_dpi"] == pytest.approx(g * np.sqrt(g) / (1 - g**2), abs=1e-12)
    assert e["td_stability_margin"] == pytest.approx(0.5, abs=1e-12)
    assert e["conc_inf"] == pytest.approx(2 / (1 + g), abs=1e-12)
    assert e["conc_chi2"] == pytest.approx(2 * (1 + g**2) / (1 + g) ** 2, abs=1e-12)
    assert e["conc_restricted"] == pytest.approx(2 / (1 + g) ** 2, abs=1e-12)
    assert all(isinstance(v, float) for v in e.values())
    # f = c phi: f - r - g P f = (c - 1, -g c); r + g P f = (1, g c), whose part outside span(phi) is (0, g c).
    c = 3.0
    f = c * Phi[:, 0]
    assert bellman_residual(mdp, pi, Phi, mu, f) == pytest.approx(np.sqrt(((c - 1) ** 2 + (g * c) ** 2) / 2))
    assert local_ibe(mdp, pi, Phi, mu, f) == pytest.approx(g * c / np.sqrt(2))


@pytest.mark.parametrize("seed", [0, 1])
def test_tabular_features_are_complete_and_exact(seed):
    mdp, pi, mu = _random_tiny(seed)
    Phi = np.eye(mdp.n_pairs)  # one-hot features: F is every function, so Bellman complete and realizable
    e = exact(mdp, pi, Phi, mu)
    assert e["alpha"] < 1e-10 and e["kappa"] < 1e-10
    assert e["realizability_err"] < 1e-10
    assert e["td_fixed_point_err"] < 1e-10 and e["td_fixed_point_err_dpi"] < 1e-10
    Q = _policy_evaluation_loops(mdp, pi)
    np.testing.assert_allclose(Phi @ td_fixed_point(mdp, pi, Phi, mu), Q, atol=1e-10)
    # Restricted concentrability over all functions is the chi^2 one (equality case of Cauchy-Schwarz).
    assert e["conc_restricted"] == pytest.approx(e["conc_chi2"], rel=1e-10)
    # d_pi by hand: (1 - g) sum_t g^t rho_t with rho_{t+1} = P_pi^T rho_t, truncated where g^t < 1e-16.
    rho = (mdp.rho0[:, None] * pi).ravel()
    d_pi = np.zeros_like(rho)
    for t in range(60):
        d_pi += (1 - mdp.gamma) * mdp.gamma**t * rho
        rho = np.array(
            [sum(rho[i] * mdp.P.reshape(-1, 3)[i, j // 2] * pi[j // 2, j % 2] for i in range(6)) for j in range(6)]
        )
    np.testing.assert_allclose(occupancy(mdp, pi), d_pi, atol=1e-12)
    assert e["conc_inf"] == pytest.approx(np.max(d_pi / mu), rel=1e-10)
    assert e["conc_chi2"] == pytest.approx(np.sum(d_pi**2 / mu), rel=1e-10)


def test_constant_feature_misses_q_pi():
    mdp, pi, mu = _random_tiny(3)
    Phi = np.ones((mdp.n_pairs, 1))
    Q = _policy_evaluation_loops(mdp, pi)
    e = exact(mdp, pi, Phi, mu)
    # The mu-projection onto constants is the mu-mean: realizability error = mu-weighted standard deviation of Q.
    sd = np.sqrt(np.sum(mu * (Q - mu @ Q) ** 2))
    assert sd > 0.01
    assert e["realizability_err"] == pytest.approx(sd, rel=1e-9) and e["realizable"] == 0.0
    # P_pi 1 = 1, so constants are closed under P_pi: alpha = kappa = 0 although Q_pi is not realizable.
    assert e["alpha"] < 1e-8 and e["kappa"] < 1e-10
    # TD on constants: theta (1 - g) = mu . r.
    theta = mu @ mdp.r.ravel() / (1 - mdp.gamma)
    assert e["td_fixed_point_err"] == pytest.approx(np.sqrt(np.sum(mu * (theta - Q) ** 2)), rel=1e-9)
    assert e["td_stability_margin"] == pytest.approx(1 - mdp.gamma, abs=1e-12)
    # Restricted concentrability over constants is (sum d_pi)^2 / (sum mu) = 1.
    assert e["conc_restricted"] == pytest.approx(1.0, abs=1e-10)


def test_v_pi_against_policy_evaluation_and_monte_carlo():
    mdp, pi, _ = _random_tiny(5)
    Q = _policy_evaluation_loops(mdp, pi)
    v = exact(mdp, pi, np.eye(mdp.n_pairs), np.full(mdp.n_pairs, 1 / mdp.n_pairs))["v_pi"]
    assert v == pytest.approx(sum(mdp.rho0[s] * pi[s] @ Q[2 * s : 2 * s + 2] for s in range(3)), abs=1e-10)
    # Monte Carlo: 20,000 rollouts truncated at 50 steps (0.5^50 ~ 1e-15).
    rng = np.random.default_rng(0)
    m = 20_000
    s = rng.choice(3, size=m, p=mdp.rho0)
    ret = np.zeros(m)
    for t in range(50):
        a = (rng.uniform(size=m)[:, None] > np.cumsum(pi[s], axis=1)).sum(axis=1)
        ret += mdp.gamma**t * mdp.r[s, a]
        s = np.minimum((rng.uniform(size=m)[:, None] > np.cumsum(mdp.P[s, a], axis=1)).sum(axis=1), 2)
    assert abs(ret.mean() - v) < 4 * ret.std() / np.sqrt(m)


# ---------------------------------------------------------------------------------------------------------------
# The controllable-alpha family

LAMS = (0.0, 0.2, 0.5, 1.0)
SEEDS = range(5)


@pytest.fixture(scope="module")
def family():
    return {(lam, seed): controllable_alpha_mdp(20, 3, 5, lam, seed) for lam in (*LAMS, 0.1) for seed in SEEDS}


def test_family_is_realizable_and_complete_at_zero(family):
    for (lam, _seed), (mdp, pi, Phi, mu) in family.items():
        e = exact(mdp, pi, Phi, mu)
        assert e["realizability_err"] < 1e-8 and e["realizable"] == 1.0, lam
        # Realizable => Q_pi solves the TD equations, so the TD fixed point is exact for every lam.
        assert e["td_fixed_point_err"] < 1e-8, lam
        np.testing.assert_allclose(Phi.T @ (mu[:, None] * Phi), np.eye(Phi.shape[1]), atol=1e-10)
        assert Phi.shape[1] == 6  # the same dimension for every lam (at lam = 0 the direction u replaces Q_pi)
        if lam == 0.0:
            assert e["alpha"] < 1e-8 and e["kappa"] < 1e-8
            assert np.linalg.matrix_rank(mdp.P.reshape(60, 20)) <= 5  # a linear MDP


def test_family_is_a_homotopy_in_lam(family):
    for seed in SEEDS:
        m0, pi0, _, mu0 = family[(0.0, seed)]
        m1, _, _, mu1 = family[(1.0, seed)]
        mh, pih, _, _ = family[(0.5, seed)]
        np.testing.assert_array_equal(pi0, pih)
        np.testing.assert_array_equal(mu0, mu1)
        np.testing.assert_array_equal(m0.rho0, mh.rho0)
        np.testing.assert_array_equal(m0.r, m1.r)
        np.testing.assert_allclose(mh.P, (m0.P + m1.P) / 2, atol=1e-14)
        assert np.all((m1.P > 0).sum(axis=2) == 3)  # lam = 1: pure Garnet with 3 next states


def test_alpha_grows_with_lam(family):
    means = [np.mean([exact(*family[(lam, s)])["alpha"] for s in SEEDS]) for lam in LAMS]
    # Observed (20 states, 3 actions, d = 5, gamma = 0.9): ~0, 0.104, 0.249, 0.460.
    assert means[0] < 1e-8
    assert all(b > a for a, b in itertools.pairwise(means))
    assert means[-1] > 0.1


@pytest.mark.parametrize("lam", [0.2, 1.0])
def test_ratio_never_exceeds_alpha_and_attains_it(family, lam):
    import scipy.linalg

    for seed in (0, 1):
        mdp, pi, Phi, mu = family[(lam, seed)]
        e = exact(mdp, pi, Phi, mu)
        Q = q_pi(mdp, pi)
        rng = np.random.default_rng(seed)
        for _ in range(50):
            f = Q + Phi @ (rng.standard_normal(Phi.shape[1]) * rng.uniform(0.1, 10))
            ratio = local_ibe(mdp, pi, Phi, mu, f) / bellman_residual(mdp, pi, Phi, mu, f)
            assert ratio <= e["alpha"] + 1e-9
        # The supremum is attained at the top generalized eigenvector (built here from local_ibe/bellman_residual's
        # own quadratic forms, evaluated column by column).
        Ppi = p_pi(mdp, pi)
        N = mdp.n_pairs
        Proj = Phi @ Phi.T * mu[None, :]  # G = I for this family
        RA = np.sqrt(mu)[:, None] * ((np.eye(N) - Proj) @ (mdp.gamma * Ppi @ Phi))
        RB = np.sqrt(mu)[:, None] * ((np.eye(N) - mdp.gamma * Ppi) @ Phi)
        _, V = scipy.linalg.eigh(RA.T @ RA, RB.T @ RB)
        f = Q + Phi @ V[:, -1]
        ratio = local_ibe(mdp, pi, Phi, mu, f) / bellman_residual(mdp, pi, Phi, mu, f)
        assert ratio == pytest.approx(e["alpha"], rel=1e-8)


def test_kappa_sandwiches_alpha(family):
    # gamma kappa / b_hi <= alpha <= gamma kappa / b_lo with b = singular values of D^1/2 (I - gamma P_pi) Phi G^-1/2
    # (G = I for this family): bound numerator and denominator of the Rayleigh quotient separately.
    for (lam, _seed), (mdp, pi, Phi, mu) in family.items():
        e = exact(mdp, pi, Phi, mu)
        b = np.linalg.svd(np.sqrt(mu)[:, None] * ((np.eye(60) - mdp.gamma * p_pi(mdp, pi)) @ Phi), compute_uv=False)
        g = mdp.gamma
        assert g * e["kappa"] / b[0] - 1e-12 <= e["alpha"] <= g * e["kappa"] / b[-1] + 1e-12, lam


# ---------------------------------------------------------------------------------------------------------------
# Sample-based estimators


def test_sample_dataset_marginals():
    mdp, pi, mu = _random_tiny(7)
    data = sample_dataset(mdp, pi, mu, 200_000, seed=0, n_next=3)
    assert data["next_s"].shape == (200_000, 3)
    np.testing.assert_array_equal(data["sa"], data["s"] * 2 + data["a"])
    np.testing.assert_array_equal(data["r"], mdp.r[data["s"], data["a"]])
    freq = np.bincount(data["sa"], minlength=6) / 200_000
    np.testing.assert_allclose(freq, mu, atol=5 * np.sqrt(mu.max() / 200_000))
    i = int(np.argmax(mu))
    for k in range(3):
        nxt = data["next_s"][data["sa"] == i, k]
        np.testing.assert_allclose(np.bincount(nxt, minlength=3) / len(nxt), mdp.P.reshape(6, 3)[i], atol=0.02)
    # Same seed, same data; independent columns of next states.
    np.testing.assert_array_equal(
        sample_dataset(mdp, pi, mu, 100, seed=1)["next_s"], sample_dataset(mdp, pi, mu, 100, 1)["next_s"]
    )
    assert np.mean(data["next_s"][:, 0] == data["next_s"][:, 1]) < 0.9


# Configuration for the convergence checks: controllable_alpha_mdp(20, 3, 5, lam=1.0, seed), f = Q_pi + Phi delta with
# delta ~ N(0, I) (seed [seed, 3]), data seed [seed, 4]. Observed relative errors at n = 20,000, seeds 0-4:
# local IBE <= 3.9%, Bellman residual <= 1.1%; the single-sample (biased) versions are off by 4-20% (BR) and
# 40-140% (IBE).
@pytest.mark.parametrize("seed", range(5))
def test_sample_estimators_converge(family, seed):
    mdp, pi, Phi, mu = family[(1.0, seed)]
    Q = q_pi(mdp, pi)
    f = Q + Phi @ np.random.default_rng([seed, 3]).standard_normal(Phi.shape[1])
    ibe, br = local_ibe(mdp, pi, Phi, mu, f), bellman_residual(mdp, pi, Phi, mu, f)
    data = sample_dataset(mdp, pi, mu, 20_000, seed=[seed, 4])
    ibe_hat = sample_local_ibe(data, mdp, pi, Phi, f)
    br_hat = sample_bellman_residual(data, mdp, pi, Phi, f)
    assert abs(ibe_hat / ibe - 1) < 0.1
    assert abs(br_hat / br - 1) < 0.1
    assert sample_ratio(data, mdp, pi, Phi, f) == pytest.approx(ibe_hat / br_hat)
    # Without double sampling (same next state in both factors) the squared estimates are biased upwards.
    one = {**data, "next_s": data["next_s"][:, [0, 0]]}
    assert sample_local_ibe(one, mdp, pi, Phi, f) > 1.2 * ibe
    assert sample_bellman_residual(one, mdp, pi, Phi, f) > br


def test_lstd_converges_to_td_fixed_point(family):
    errs = {1000: [], 20_000: []}
    for seed in SEEDS:
        mdp, pi, Phi, mu = family[(1.0, seed)]
        theta_td = td_fixed_point(mdp, pi, Phi, mu)
        scale = np.sqrt(mu @ (Phi @ theta_td) ** 2)
        for n in errs:
            theta = lstd(sample_dataset(mdp, pi, mu, n, seed=[seed, n]), mdp, pi, Phi)
            errs[n].append(np.sqrt(mu @ (Phi @ (theta - theta_td)) ** 2) / scale)
    assert max(errs[20_000]) < 0.01  # observed <= 0.16% (n = 1000: <= 0.66%)
    assert np.mean(errs[20_000]) < 0.5 * np.mean(errs[1000])


def test_lstd_exact_with_noise_free_tabular_data():
    # Deterministic transitions and one-hot features: with every pair in the data, LSTD solves the Bellman equation.
    mdp = FiniteMDP(np.array([[[0.0, 1.0]], [[1.0, 0.0]]]), np.array([[1.0], [0.0]]), 0.5, np.array([1.0, 0.0]))
    pi, Phi = np.ones((2, 1)), np.eye(2)
    data = sample_dataset(mdp, pi, np.array([0.5, 0.5]), 50, seed=0)
    np.testing.assert_allclose(lstd(data, mdp, pi, Phi), [1 / 0.75, 0.5 / 0.75], atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# Validation


def test_validation_errors():
    P = np.full((2, 1, 2), 0.5)
    r, rho0 = np.zeros((2, 1)), np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="rows of P must sum to 1"):
        FiniteMDP(np.array([[[0.5, 0.6]], [[0.5, 0.5]]]), r, 0.9, rho0)
    with pytest.raises(ValueError, match="negative"):
        FiniteMDP(np.array([[[1.5, -0.5]], [[0.5, 0.5]]]), r, 0.9, rho0)
    with pytest.raises(ValueError, match="gamma"):
        FiniteMDP(P, r, 1.0, rho0)
    with pytest.raises(ValueError, match="r must have shape"):
        FiniteMDP(P, np.zeros((2, 2)), 0.9, rho0)
    with pytest.raises(ValueError, match="rho0"):
        FiniteMDP(P, r, 0.9, np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="non-finite"):
        FiniteMDP(P, np.array([[np.nan], [0.0]]), 0.9, rho0)
    mdp = FiniteMDP(P, r, 0.9, rho0)
    pi, Phi, mu = np.ones((2, 1)), np.eye(2), np.array([0.5, 0.5])
    with pytest.raises(ValueError, match="strictly positive"):
        exact(mdp, pi, Phi, np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="sum to 1"):
        exact(mdp, pi, Phi, np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="rank deficient"):
        exact(mdp, pi, np.array([[1.0, 2.0], [1.0, 2.0]]), mu)
    with pytest.raises(ValueError, match="rows of pi"):
        exact(mdp, np.full((2, 1), 0.7), Phi, mu)
    with pytest.raises(ValueError, match="Phi must have shape"):
        local_ibe(mdp, pi, np.eye(3), mu, np.zeros(2))
    with pytest.raises(ValueError, match="n_next"):
        sample_bellman_residual(sample_dataset(mdp, pi, mu, 10, 0, n_next=1), mdp, pi, Phi, np.zeros(2))


# ---------------------------------------------------------------------------------------------------------------
# Testbed


def test_run_testbed_tiny_grid_writes_outputs(tmp_path):
    df = run_testbed(lams=(0, 1.0), ns=(300, 600), seeds=(0, 1), n_states=5, n_actions=2, d=3, out=tmp_path, datasets=4)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 2 * 2 * 2
    assert set(df["lam"]) == {0.0, 1.0} and set(df["n"]) == {300, 600}
    np.testing.assert_allclose(df.loc[df["lam"] == 0, ["amplification_exact", "amplification_sampled"]], 1.0)
    assert (df["td_err_rms_low"] <= df["td_err_rms"]).all() and (df["td_err_rms"] <= df["td_err_rms_high"]).all()
    assert (df["amplification_low"] <= df["amplification_high"]).all() and (df["realizable"] == 1.0).all()
    assert (df.loc[df["lam"] == 0, "alpha"] < 1e-8).all() and (df.loc[df["lam"] == 1, "alpha"] > 0).all()
    assert (df["realizability_err"] < 1e-8).all() and (df["ratio_exact"] <= df["alpha"] + 1e-9).all()
    for name in ("testbed.csv", "testbed.md", "testbed.png"):
        assert (tmp_path / name).stat().st_size > 0
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "testbed.csv"), df, check_dtype=False)
    md = (tmp_path / "testbed.md").read_text()
    assert f"numpy {np.__version__}" in md and "scipy" in md
    assert "qarl diagnose testbed --lams 0.0 1.0 --n 300 600 --seeds 0 1 --datasets 4" in md
    assert md.count("| 1 | 600 | 2 |") == 1  # one row of means per (lam, n), over 2 seeds
    assert (tmp_path / "testbed.png").read_bytes()[:4] == b"\x89PNG"


def test_run_testbed_reference_without_zero():
    kwargs = {"ns": (400,), "seeds": (2,), "n_states": 5, "n_actions": 2, "d": 3, "datasets": 3}
    df = run_testbed(lams=(0.5,), **kwargs)
    ref = run_testbed(lams=(0.0,), **kwargs)
    assert df["amplification_sampled"].iloc[0] == pytest.approx(df["td_err_rms"].iloc[0] / ref["td_err_rms"].iloc[0])
    assert df["amplification_exact"].iloc[0] == pytest.approx(
        df["td_err_asymptotic"].iloc[0] / ref["td_err_asymptotic"].iloc[0]
    )


def test_lstd_asymptotic_error_matches_the_sampled_rms_and_the_value_bound_holds():
    """The closed-form asymptotic LSTD error against 300 sampled datasets, and the residual-transfer bound
    |v_f - v_pi| <= sqrt(conc_residual) BR(f) / (1 - gamma) on random critics of the class."""
    mdp, pi, Phi, mu = controllable_alpha_mdp(20, 3, 5, 1.0, 0)
    Q = q_pi(mdp, pi)
    errs = []
    for k in range(300):
        data = sample_dataset(mdp, pi, mu, 2000, [0, k], n_next=2)
        errs.append(mu @ (Phi @ lstd(data, mdp, pi, Phi) - Q) ** 2)
    rms = float(np.sqrt(np.mean(errs)))
    assert lstd_asymptotic_error(mdp, pi, Phi, mu, 2000) == pytest.approx(rms, rel=0.12)
    e = exact(mdp, pi, Phi, mu)
    rho0_pi = (mdp.rho0[:, None] * pi).ravel()
    rng = np.random.default_rng(1)
    for _ in range(20):
        f = Q + Phi @ rng.standard_normal(Phi.shape[1])
        gap = abs(rho0_pi @ (f - Q))
        assert gap <= np.sqrt(e["conc_residual"]) * bellman_residual(mdp, pi, Phi, mu, f) / (1 - mdp.gamma) + 1e-12
