"""Exact and sample-based off-policy evaluation diagnostics on finite MDPs with linear features.

Motivation: Zanette, "When is Realizability Sufficient for Off-Policy Reinforcement Learning?" (ICML 2023)
bounds the error of off-policy TD-style estimators through the metric entropy of the function class F, a
concentrability coefficient, and a factor measuring how far F is from Bellman complete; without completeness
the misalignment *amplifies* the statistical error (a 1/(1 - alpha) factor) instead of adding an
inherent-Bellman-error bias. The paper's full text was not available when this module was written: every
definition below is this project's own, chosen to mirror that story on finite MDPs where everything can be
computed exactly. None of the quantities is claimed to equal a constant of the paper.

Notation (all quantities exact, numpy arrays):

* S states, A actions, N = S*A, state-action index ``s*A + a``; ``P[s, a, s']``, ``r[s, a]``, ``gamma``,
  ``rho0[s]``; policy ``pi[s, a]``; features ``Phi`` (N x d), F = {Phi theta}; data distribution ``mu``
  (N, positive, sums to 1); D = diag(mu); ||x||_mu = sqrt(x^T D x).
* Pi (S x N) with Pi[s, s*A + a] = pi[s, a]; P_pi = P.reshape(N, S) @ Pi (N x N), so
  (P_pi f)(s, a) = E_{s' ~ P(.|s,a), a' ~ pi(.|s')} f(s', a').
* Q_pi = (I - gamma P_pi)^-1 r; T f = r + gamma P_pi f (the policy-evaluation Bellman operator).
* G = Phi^T D Phi; Proj = Phi G^-1 Phi^T D (the mu-orthogonal projection onto F).
* rho0_pi[s*A + a] = rho0[s] pi[s, a]; d_pi = (1 - gamma) (I - gamma P_pi)^-T rho0_pi (the normalised discounted
  state-action occupancy of pi, a distribution); v_pi = rho0_pi . Q_pi.

Diagnostics (see :func:`exact`):

* Bellman residual  BR(f)  = ||f - T f||_mu;  local inherent Bellman error  IBE(f) = ||(I - Proj) T f||_mu.
* realizability error ||(I - Proj) Q_pi||_mu.
* incompleteness factor alpha = sup_{f in Q_pi + F} IBE(f) / BR(f) (a generalized eigenvalue problem).
* kappa = sup_{f in F} ||(I - Proj) P_pi f||_mu / ||f||_mu, the mu-norm of the part of P_pi F outside F.
* TD (LSTD) fixed point, its error in the mu and d_pi norms, the stability margin of expected TD.
* concentrability coefficients of d_pi with respect to mu (sup-ratio, chi^2 and F-restricted).

The sample-based linear estimators (:func:`sample_dataset`, :func:`lstd`, :func:`sample_bellman_residual`,
:func:`sample_local_ibe`, :func:`sample_ratio`) use datasets of (s, a) ~ mu with ``n_next`` independent next states
per pair (double sampling), so that squared conditional expectations can be estimated without the
target-noise bias (the "double sampling" problem of residual minimisation; Baird 1995, Sutton & Barto 2018 §11.5).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import numpy as np
import scipy.linalg

_TOL = 1e-8  # tolerance for "sums to one" checks, as the project brief specifies


@dataclasses.dataclass(frozen=True, eq=False)
class FiniteMDP:
    """A finite discounted MDP: ``P[s, a, s']`` transition kernel, ``r[s, a]`` rewards, ``gamma`` in [0, 1),
    ``rho0[s]`` initial distribution. Validated on construction (ValueError naming the problem)."""

    P: np.ndarray
    r: np.ndarray
    gamma: float
    rho0: np.ndarray

    def __post_init__(self) -> None:
        P = np.array(self.P, dtype=float)
        r = np.array(self.r, dtype=float)
        rho0 = np.array(self.rho0, dtype=float)
        if P.ndim != 3 or P.shape[0] != P.shape[2] or P.shape[0] < 1 or P.shape[1] < 1:
            raise ValueError(f"P must have shape (S, A, S) with S, A >= 1, got {P.shape}")
        S, A, _ = P.shape
        if r.shape != (S, A):
            raise ValueError(f"r must have shape (S, A) = {(S, A)} to match P, got {r.shape}")
        if rho0.shape != (S,):
            raise ValueError(f"rho0 must have shape (S,) = {(S,)} to match P, got {rho0.shape}")
        for name, x in (("P", P), ("r", r), ("rho0", rho0)):
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{name} has non-finite entries")
        if np.any(P < 0):
            raise ValueError("P has negative entries")
        row_err = np.abs(P.sum(axis=2) - 1.0)
        if np.any(row_err > _TOL):
            s, a = np.unravel_index(int(np.argmax(row_err)), row_err.shape)
            raise ValueError(f"rows of P must sum to 1: P[{s}, {a}, :] sums to {P[s, a].sum():.12g}")
        if np.any(rho0 < 0) or abs(rho0.sum() - 1.0) > _TOL:
            raise ValueError(f"rho0 must be a distribution (non-negative, sums to 1), sums to {rho0.sum():.12g}")
        gamma = float(self.gamma)
        if not (np.isfinite(gamma) and 0.0 <= gamma < 1.0):
            raise ValueError(f"gamma must satisfy 0 <= gamma < 1, got {self.gamma}")
        # Frozen dataclass: store the validated float copies (so later mutation of the caller's arrays is harmless).
        for name, value in (("P", P), ("r", r), ("gamma", gamma), ("rho0", rho0)):
            object.__setattr__(self, name, value)
        for x in (P, r, rho0):
            x.setflags(write=False)

    @property
    def n_states(self) -> int:
        return int(self.P.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.P.shape[1])

    @property
    def n_pairs(self) -> int:
        """N = S * A, the number of state-action pairs."""
        return self.n_states * self.n_actions


# ---------------------------------------------------------------------------------------------------------------
# Validation and shared linear algebra


def _check_pi(mdp: FiniteMDP, pi: np.ndarray) -> np.ndarray:
    pi = np.asarray(pi, dtype=float)
    if pi.shape != (mdp.n_states, mdp.n_actions):
        raise ValueError(f"pi must have shape (S, A) = {(mdp.n_states, mdp.n_actions)}, got {pi.shape}")
    if not np.all(np.isfinite(pi)) or np.any(pi < 0):
        raise ValueError("pi must have finite, non-negative entries")
    row_err = np.abs(pi.sum(axis=1) - 1.0)
    if np.any(row_err > _TOL):
        s = int(np.argmax(row_err))
        raise ValueError(f"rows of pi must sum to 1: pi[{s}, :] sums to {pi[s].sum():.12g}")
    return pi


def _check_mu(mdp: FiniteMDP, mu: np.ndarray) -> np.ndarray:
    mu = np.asarray(mu, dtype=float)
    if mu.shape != (mdp.n_pairs,):
        raise ValueError(f"mu must have shape (N,) = {(mdp.n_pairs,)} (N = S*A), got {mu.shape}")
    if not np.all(np.isfinite(mu)) or np.any(mu <= 0):
        raise ValueError("mu must be strictly positive (and finite) on every state-action pair")
    if abs(mu.sum() - 1.0) > _TOL:
        raise ValueError(f"mu must sum to 1, sums to {mu.sum():.12g}")
    return mu


def _check_phi(mdp: FiniteMDP, Phi: np.ndarray, mu: np.ndarray | None = None) -> np.ndarray:
    Phi = np.asarray(Phi, dtype=float)
    if Phi.ndim == 1:
        Phi = Phi[:, None]
    if Phi.ndim != 2 or Phi.shape[0] != mdp.n_pairs or Phi.shape[1] < 1:
        raise ValueError(f"Phi must have shape (N, d) with N = S*A = {mdp.n_pairs} and d >= 1, got {Phi.shape}")
    if not np.all(np.isfinite(Phi)):
        raise ValueError("Phi has non-finite entries")
    if mu is not None:
        # G = Phi^T D Phi is invertible iff D^1/2 Phi has full column rank (mu > 0, so iff Phi has).
        rank = np.linalg.matrix_rank(np.sqrt(mu)[:, None] * Phi)
        if rank < Phi.shape[1]:
            raise ValueError(
                f"Phi is rank deficient under mu (rank {rank} < d = {Phi.shape[1]}): G = Phi^T D Phi is singular"
            )
    return Phi


def _check_f(mdp: FiniteMDP, f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=float)
    if f.shape != (mdp.n_pairs,) or not np.all(np.isfinite(f)):
        raise ValueError(f"f must be a finite vector of shape (N,) = {(mdp.n_pairs,)}, got {f.shape}")
    return f


def policy_matrix(mdp: FiniteMDP, pi: np.ndarray) -> np.ndarray:
    """Pi (S x N) with Pi[s, s*A + a] = pi[s, a]."""
    pi = _check_pi(mdp, pi)
    S, A = pi.shape
    Pi = np.zeros((S, S * A))
    Pi[np.repeat(np.arange(S), A), np.arange(S * A)] = pi.ravel()
    return Pi


def p_pi(mdp: FiniteMDP, pi: np.ndarray) -> np.ndarray:
    """P_pi = P.reshape(N, S) @ Pi (N x N): (P_pi f)(s, a) = sum_{s', a'} P[s, a, s'] pi[s', a'] f(s', a')."""
    return mdp.P.reshape(mdp.n_pairs, mdp.n_states) @ policy_matrix(mdp, pi)


def q_pi(mdp: FiniteMDP, pi: np.ndarray) -> np.ndarray:
    """Q_pi = (I - gamma P_pi)^-1 r (r flattened to N)."""
    N = mdp.n_pairs
    return np.linalg.solve(np.eye(N) - mdp.gamma * p_pi(mdp, pi), mdp.r.ravel())


def projection(Phi: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Proj = Phi G^-1 Phi^T D with G = Phi^T D Phi: the mu-orthogonal projection onto span(Phi)."""
    G = Phi.T @ (mu[:, None] * Phi)
    return Phi @ np.linalg.solve(G, Phi.T * mu[None, :])


def _norm(x: np.ndarray, w: np.ndarray) -> float:
    """||x||_w = sqrt(sum_i w_i x_i^2)."""
    return float(np.sqrt(np.sum(w * x * x)))


def _sqrtm_inv_psd(G: np.ndarray) -> np.ndarray:
    """G^-1/2 for symmetric positive definite G (by eigendecomposition)."""
    w, V = np.linalg.eigh(G)
    return (V / np.sqrt(w)) @ V.T


# ---------------------------------------------------------------------------------------------------------------
# Exact diagnostics


def bellman_residual(mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray, mu: np.ndarray, f: np.ndarray) -> float:
    """BR(f) = ||f - r - gamma P_pi f||_mu (``Phi`` is validated but not used: the residual does not depend on F)."""
    mu = _check_mu(mdp, mu)
    _check_phi(mdp, Phi, mu)
    f = _check_f(mdp, f)
    return _norm(f - mdp.r.ravel() - mdp.gamma * p_pi(mdp, pi) @ f, mu)


def local_ibe(mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray, mu: np.ndarray, f: np.ndarray) -> float:
    """Local inherent Bellman error IBE(f) = ||(I - Proj)(r + gamma P_pi f)||_mu: the distance of T f from F."""
    mu = _check_mu(mdp, mu)
    Phi = _check_phi(mdp, Phi, mu)
    f = _check_f(mdp, f)
    Tf = mdp.r.ravel() + mdp.gamma * p_pi(mdp, pi) @ f
    return _norm(Tf - projection(Phi, mu) @ Tf, mu)


def occupancy(mdp: FiniteMDP, pi: np.ndarray) -> np.ndarray:
    """d_pi = (1 - gamma) (I - gamma P_pi)^-T rho0_pi with rho0_pi[s*A + a] = rho0[s] pi[s, a] (sums to 1)."""
    pi = _check_pi(mdp, pi)
    rho0_pi = (mdp.rho0[:, None] * pi).ravel()
    M = np.eye(mdp.n_pairs) - mdp.gamma * p_pi(mdp, pi)
    return (1.0 - mdp.gamma) * np.linalg.solve(M.T, rho0_pi)


def exact(mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray, mu: np.ndarray) -> dict[str, float]:
    """Exact diagnostics of (mdp, pi, F = span(Phi), mu). Returns a dict of Python floats:

    * ``realizability_err`` = ||(I - Proj) Q_pi||_mu.
    * ``alpha`` = sqrt(lambda_max(Amat, Bmat)), the largest generalized eigenvalue (scipy.linalg.eigh) of
      Amat = gamma^2 Phi^T P_pi^T (I - Proj)^T D (I - Proj) P_pi Phi and
      Bmat = Phi^T (I - gamma P_pi)^T D (I - gamma P_pi) Phi
      (Bmat is positive definite: I - gamma P_pi is invertible and Phi has full column rank).
      Why it is the incompleteness factor: for f = Q_pi + Phi delta, T f = Q_pi + gamma P_pi Phi delta because
      T Q_pi = Q_pi, so BR(f) = ||(I - gamma P_pi) Phi delta||_mu exactly; when Q_pi is in F, (I - Proj) Q_pi = 0,
      so IBE(f) = ||(I - Proj) gamma P_pi Phi delta||_mu. Hence IBE(f)^2 / BR(f)^2 = delta^T Amat delta /
      delta^T Bmat delta, a generalized Rayleigh quotient whose supremum over delta is lambda_max(Amat, Bmat):
      alpha = sup_{f in F} IBE(f) / BR(f). alpha = 0 iff P_pi F is contained in F (F is then Bellman complete
      for pi, since T f = r + gamma P_pi f with r = (I - gamma P_pi) Q_pi in F). Without realizability the number
      is still computed the same way (the sup over perturbation directions), but the identity with IBE / BR fails.
    * ``kappa`` = sigma_max(D^1/2 (I - Proj) P_pi Phi G^-1/2) = sup_{f in F} ||(I - Proj) P_pi f||_mu / ||f||_mu
      (since ||Phi x||_mu = ||G^1/2 x||_2). With sigma_min/max(D^1/2 (I - gamma P_pi) Phi G^-1/2) =: b_lo, b_hi,
      gamma kappa / b_hi <= alpha <= gamma kappa / b_lo (bound the numerator and denominator of the Rayleigh
      quotient separately), so alpha = 0 iff kappa = 0.
    * ``td_fixed_point_err`` = ||Phi theta_td - Q_pi||_mu with theta_td = (Phi^T D (I - gamma P_pi) Phi)^-1 Phi^T D r
      (the LSTD / TD(0) fixed point, Tsitsiklis & Van Roy 1997); ``td_fixed_point_err_dpi`` = the same error in
      the d_pi-weighted norm sqrt(sum d_pi e^2). NaN when the TD matrix is singular. If Q_pi = Phi theta* is
      in F, theta* solves the TD equations, so the TD fixed point is exact whenever it is unique.
    * ``td_stability_margin`` = min Re eig(Phi^T D (I - gamma P_pi) Phi): expected TD(0), theta <- theta +
      eta (b - A theta), is stable for small eta iff this is > 0. It depends on the basis of F (not only on F);
      for mu-orthonormal Phi (G = I, as :func:`controllable_alpha_mdp` builds) it is basis-free up to rotations.
    * ``conc_inf`` = max(d_pi / mu); ``conc_chi2`` = sum(d_pi^2 / mu) (= 1 + chi^2(d_pi || mu));
      ``conc_restricted`` = nu^T G^-1 nu with nu = Phi^T d_pi, which equals sup_{f in F} (E_{d_pi} f)^2 / ||f||_mu^2
      (Cauchy-Schwarz in the G inner product) and is at most conc_chi2 (Cauchy-Schwarz in L2(mu)), with equality
      for tabular features.
    * ``realizable`` = 1.0 when ``realizability_err`` <= 1e-8 max(||Q_pi||_mu, 1), else 0.0: ``alpha`` is the
      incompleteness factor only when it is 1 (see ``alpha``).
    * ``conc_residual`` = nu_r^T (Phi_r^T D Phi_r)^-1 nu_r with Phi_r = (I - gamma P_pi) Phi and nu_r = Phi_r^T d_pi:
      the residual-transfer concentrability sup_{f in Q_pi + F} (E_{d_pi}[f - T f])^2 / BR(f)^2 (Cauchy-Schwarz in
      the G_r inner product, as for ``conc_restricted``). It enters the bound
      |v_f - v_pi| = |E_{d_pi}[f - T f]| / (1 - gamma) <= sqrt(conc_residual) BR(f) / (1 - gamma) for realizable
      classes (v_f = rho0_pi . f; the equality is the telescoping identity f - Q_pi = (I - gamma P_pi)^-1 (f - T f)).
    * ``v_pi`` = sum_s rho0[s] sum_a pi[s, a] Q_pi[s*A + a].
    """
    pi = _check_pi(mdp, pi)
    mu = _check_mu(mdp, mu)
    Phi = _check_phi(mdp, Phi, mu)
    N = mdp.n_pairs
    gamma = mdp.gamma
    r = mdp.r.ravel()
    Ppi = p_pi(mdp, pi)
    M = np.eye(N) - gamma * Ppi
    Q = np.linalg.solve(M, r)
    G = Phi.T @ (mu[:, None] * Phi)
    Proj = projection(Phi, mu)
    I_Proj = np.eye(N) - Proj
    sqrt_mu = np.sqrt(mu)[:, None]

    # Build Amat and Bmat as R^T R from their "square roots": symmetric and PSD up to rounding by construction.
    RA = gamma * sqrt_mu * (I_Proj @ Ppi @ Phi)
    RB = sqrt_mu * (M @ Phi)
    Amat, Bmat = RA.T @ RA, RB.T @ RB
    lam_max = scipy.linalg.eigh(Amat, Bmat, eigvals_only=True)[-1]
    alpha = float(np.sqrt(max(lam_max, 0.0)))  # clip the rounding-level negatives when alpha = 0

    G_mhalf = _sqrtm_inv_psd(G)
    kappa = float(np.linalg.svd(sqrt_mu * (I_Proj @ Ppi @ Phi) @ G_mhalf, compute_uv=False)[0])

    A_td = Phi.T @ (mu[:, None] * (M @ Phi))
    d_pi = (1.0 - gamma) * np.linalg.solve(M.T, (mdp.rho0[:, None] * pi).ravel())
    try:
        theta_td = np.linalg.solve(A_td, Phi.T @ (mu * r))
        err = Phi @ theta_td - Q
        td_err, td_err_dpi = _norm(err, mu), _norm(err, d_pi)
    except np.linalg.LinAlgError:
        td_err = td_err_dpi = float("nan")
    margin = float(np.min(np.linalg.eigvals(A_td).real))

    nu = Phi.T @ d_pi
    # Residual-transfer concentrability: the residuals of the class, f - T f = (I - gamma P_pi) Phi delta for
    # f = Q_pi + Phi delta, are measured under mu and transferred to d_pi.
    Phi_res = M @ Phi
    nu_res = Phi_res.T @ d_pi
    realizability_err = _norm(I_Proj @ Q, mu)
    return {
        "realizability_err": realizability_err,
        "realizable": float(realizability_err <= 1e-8 * max(_norm(Q, mu), 1.0)),
        "alpha": alpha,
        "kappa": kappa,
        "td_fixed_point_err": td_err,
        "td_fixed_point_err_dpi": td_err_dpi,
        "td_stability_margin": margin,
        "conc_inf": float(np.max(d_pi / mu)),
        "conc_chi2": float(np.sum(d_pi**2 / mu)),
        "conc_restricted": float(nu @ np.linalg.solve(G, nu)),
        "conc_residual": float(nu_res @ np.linalg.solve(Phi_res.T @ (mu[:, None] * Phi_res), nu_res)),
        "v_pi": float((mdp.rho0[:, None] * pi).ravel() @ Q),
    }


def td_fixed_point(mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """theta_td = (Phi^T D (I - gamma P_pi) Phi)^-1 Phi^T D r."""
    mu = _check_mu(mdp, mu)
    Phi = _check_phi(mdp, Phi, mu)
    M = np.eye(mdp.n_pairs) - mdp.gamma * p_pi(mdp, pi)
    return np.linalg.solve(Phi.T @ (mu[:, None] * (M @ Phi)), Phi.T @ (mu * mdp.r.ravel()))


def lstd_asymptotic_error(
    mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray, mu: np.ndarray, n: int, n_next: int = 2
) -> float:
    """The asymptotic root-mean-square error sqrt(E ||Phi (theta_hat - theta_td)||_mu^2) of :func:`lstd` on n
    transitions with ``n_next`` next states each, in closed form.

    theta_hat - theta_td = A_hat^-1 (1/n) sum_i phi_i delta_i with delta_i = r_i + gamma phibar_i theta_td -
    phi_i theta_td, and E[phi delta] = 0 at the TD fixed point, so sqrt(n) (theta_hat - theta_td) -> N(0,
    A^-1 Sigma A^-T) with A = Phi^T D (I - gamma P_pi) Phi and Sigma = E[phi phi^T delta^2] =
    Phi^T D diag(m^2 + v) Phi, where m = r + gamma P_pi Phi theta_td - Phi theta_td (the mean TD error given (s, a))
    and v = gamma^2 Var_{s' ~ P(.|s, a)}[V(s')] / n_next with V(s') = sum_a' pi(a'|s') (Phi theta_td)(s', a')
    (rewards are deterministic; the next action is averaged exactly). Hence the error is
    sqrt(trace(G A^-1 Sigma A^-T) / n), G = Phi^T D Phi: first order in 1/sqrt(n), exact as n grows.
    """
    mu = _check_mu(mdp, mu)
    Phi = _check_phi(mdp, Phi, mu)
    if n < 1 or n_next < 1:
        raise ValueError(f"need n >= 1 and n_next >= 1, got n={n}, n_next={n_next}")
    gamma, r = mdp.gamma, mdp.r.ravel()
    Ppi = p_pi(mdp, pi)
    theta = td_fixed_point(mdp, pi, Phi, mu)
    f = Phi @ theta
    m = r + gamma * Ppi @ f - f
    V = _expected_next(f, _check_pi(mdp, pi))  # (S,)
    P = mdp.P.reshape(mdp.n_pairs, mdp.n_states)
    v = gamma**2 * (P @ V**2 - (P @ V) ** 2) / n_next
    A = Phi.T @ (mu[:, None] * ((np.eye(mdp.n_pairs) - gamma * Ppi) @ Phi))
    Sigma = Phi.T @ ((mu * (m**2 + v))[:, None] * Phi)
    G = Phi.T @ (mu[:, None] * Phi)
    A_inv = np.linalg.inv(A)
    return float(np.sqrt(max(np.trace(G @ A_inv @ Sigma @ A_inv.T), 0.0) / n))


# ---------------------------------------------------------------------------------------------------------------
# A family of MDPs with controllable incompleteness


def mu_orthonormal_basis(Phi_raw: np.ndarray, mu: np.ndarray, rtol: float = 1e-10) -> np.ndarray:
    """A basis Phi of span(Phi_raw) with Phi^T D Phi = I, dropping numerically dependent columns.

    SVD D^1/2 Phi_raw = U S V^T; keep the k singular vectors with S_i > rtol * S_max; Phi = D^-1/2 U_k.
    """
    U, s, _ = np.linalg.svd(np.sqrt(mu)[:, None] * Phi_raw, full_matrices=False)
    k = int(np.sum(s > rtol * s[0]))
    return U[:, :k] / np.sqrt(mu)[:, None]


def controllable_alpha_mdp(
    n_states: int,
    n_actions: int,
    d: int,
    lam: float,
    seed: int,
    gamma: float = 0.9,
    branching: int = 3,
) -> tuple[FiniteMDP, np.ndarray, np.ndarray, np.ndarray]:
    """A linear MDP mixed with a Garnet kernel, with features that always contain Q_pi. Returns (mdp, pi, Phi, mu).

    * Linear MDP (Jin et al. 2020): P_lin = W Psi with W (N x d) row-stochastic and Psi (d x S) row-stochastic,
      r = W omega with omega ~ U[0, 1]^d (so r in [0, 1]).
    * Garnet kernel (Archibald et al. 1995): each (s, a) moves to ``branching`` distinct random next states with
      Dirichlet(1) probabilities.
    * P = (1 - lam) P_lin + lam P_garnet; pi ~ Dirichlet(1) per state; mu = 0.8 Dirichlet(1_N) + 0.2 / N (the
      floor keeps importance ratios and estimator variances bounded); rho0 ~ Dirichlet(1_S).
    * Phi = a mu-orthonormal basis (:func:`mu_orthonormal_basis`) of span([Q_pi, W]), so realizability holds for
      every lam, with d + 1 columns for every lam. At lam = 0, P_pi f = W (Psi Pi f) lies in span(W) for every f, so
      any class containing span(W) is Bellman complete and alpha = 0 exactly; there Q_pi = r + gamma P_pi Q_pi is
      itself in span(W), so span([Q_pi, W]) has dimension d only and a fixed random direction u ~ N(0, I_N) (drawn
      for every lam) takes Q_pi's place: Phi spans [W, u], which keeps alpha = 0 and realizability. For lam > 0
      span([Q_pi, W]) has dimension d + 1 generically (else u is appended there too), so the feature dimension
      never changes with lam.

    All random draws come from ``np.random.default_rng(seed)`` in an order that does not depend on ``lam``: the same
    seed gives the same W, Psi, omega, Garnet kernel, pi, mu and rho0 for every lam, so lam -> P is a homotopy
    (only Q_pi and hence Phi change with lam).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if n_states < 1 or n_actions < 1 or d < 1:
        raise ValueError("n_states, n_actions and d must be >= 1")
    S, A = n_states, n_actions
    N = S * A
    b = min(branching, S)
    rng = np.random.default_rng(seed)
    W = rng.dirichlet(np.ones(d), size=N)
    Psi = rng.dirichlet(np.ones(S), size=d)
    omega = rng.uniform(0.0, 1.0, size=d)
    P_garnet = np.zeros((N, S))
    for i in range(N):
        P_garnet[i, rng.choice(S, size=b, replace=False)] = rng.dirichlet(np.ones(b))
    pi = rng.dirichlet(np.ones(A), size=S)
    mu = 0.8 * rng.dirichlet(np.ones(N)) + 0.2 / N
    mu = mu / mu.sum()
    rho0 = rng.dirichlet(np.ones(S))
    u = rng.standard_normal(N)  # the extra direction where span([Q_pi, W]) has dimension d only

    P = (1.0 - lam) * (W @ Psi) + lam * P_garnet
    P = P / P.sum(axis=1, keepdims=True)  # remove rounding drift so that rows sum to 1 to machine precision
    mdp = FiniteMDP(P.reshape(S, A, S), (W @ omega).reshape(S, A), gamma, rho0)
    Q = q_pi(mdp, pi)
    Phi = mu_orthonormal_basis(np.column_stack([Q, W]), mu)
    if Phi.shape[1] < d + 1:
        Phi = mu_orthonormal_basis(np.column_stack([Q, W, u]), mu)
    return mdp, pi, Phi, mu


# ---------------------------------------------------------------------------------------------------------------
# Sample-based linear estimators


def sample_dataset(
    mdp: FiniteMDP, pi: np.ndarray, mu: np.ndarray, n: int, seed: int | np.random.SeedSequence | Any, n_next: int = 2
) -> dict[str, np.ndarray]:
    """n transitions: (s, a) ~ mu i.i.d. and, for each, ``n_next`` independent next states s' ~ P(.|s, a).

    Returns ``sa`` (n,), ``s`` (n,), ``a`` (n,), ``r`` (n,) = r(s, a) (rewards are deterministic) and ``next_s``
    (n, n_next). ``pi`` is validated only (the estimators average over a' ~ pi(.|s') in closed form).
    Next states are drawn by inverse-CDF sampling with one uniform per draw, so datasets with the same seed on
    kernels that differ (e.g. the lam-homotopy of :func:`controllable_alpha_mdp`) are coupled.
    """
    _check_pi(mdp, pi)
    mu = _check_mu(mdp, mu)
    if n < 1 or n_next < 1:
        raise ValueError(f"need n >= 1 and n_next >= 1, got n={n}, n_next={n_next}")
    rng = np.random.default_rng(seed)
    S, A = mdp.n_states, mdp.n_actions
    sa = rng.choice(mdp.n_pairs, size=n, p=mu)
    u = rng.uniform(size=(n, n_next))
    cdf = np.cumsum(mdp.P.reshape(mdp.n_pairs, S), axis=1)[sa]  # (n, S)
    # next state = number of CDF values below u; min() guards against cdf[-1] = 1 - 1e-16 < u.
    next_s = np.minimum((u[:, :, None] > cdf[:, None, :]).sum(axis=2), S - 1)
    return {"sa": sa, "s": sa // A, "a": sa % A, "r": mdp.r.ravel()[sa], "next_s": next_s}


def _expected_next(x: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """xbar[s'] = sum_a' pi[s', a'] x[s'*A + a'] for x of shape (N,) or (N, d)."""
    S, A = pi.shape
    xs = x.reshape(S, A, *x.shape[1:])
    return np.einsum("sa,sa...->s...", pi, xs)


def _check_data(data: dict[str, np.ndarray], mdp: FiniteMDP, min_next: int = 1) -> None:
    sa, next_s = np.asarray(data["sa"]), np.asarray(data["next_s"])
    if next_s.ndim != 2 or next_s.shape[0] != sa.shape[0] or next_s.shape[1] < min_next:
        raise ValueError(f"data['next_s'] must have shape (n, n_next >= {min_next}), got {next_s.shape}")
    if sa.min() < 0 or sa.max() >= mdp.n_pairs or next_s.min() < 0 or next_s.max() >= mdp.n_states:
        raise ValueError("data indices are out of range for this MDP")


def lstd(data: dict[str, np.ndarray], mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray) -> np.ndarray:
    """LSTD(0) with expected backups (Bradtke & Barto 1996; "expected SARSA" targets):

    theta_hat = A_hat^-1 b_hat,  A_hat = (1/n) sum_i phi_i (phi_i - gamma phibar_i)^T,  b_hat = (1/n) sum_i phi_i r_i,

    with phi_i = Phi[s_i a_i] and phibar_i = (1/K) sum_k sum_a' pi(a'|s'_ik) Phi[s'_ik a'] the average over the K =
    n_next next-state samples (A_hat is linear in s', so every sample can be used; it stays unbiased for
    Phi^T D (I - gamma P_pi) Phi). It estimates theta_td of :func:`exact`.
    """
    pi = _check_pi(mdp, pi)
    Phi = _check_phi(mdp, Phi)
    _check_data(data, mdp)
    phi = Phi[data["sa"]]
    phibar = _expected_next(Phi, pi)[data["next_s"]].mean(axis=1)
    n = phi.shape[0]
    A_hat = phi.T @ (phi - mdp.gamma * phibar) / n
    b_hat = phi.T @ data["r"] / n
    return np.linalg.solve(A_hat, b_hat)


def _pair_mean(x: np.ndarray) -> float:
    """Mean of x[:, j] * x[:, k] over data rows and over all pairs j < k of next-state samples (a U-statistic)."""
    K = x.shape[1]
    return float(np.mean([np.mean(x[:, j] * x[:, k]) for j, k in itertools.combinations(range(K), 2)]))


def _backups(data: dict[str, np.ndarray], mdp: FiniteMDP, pi: np.ndarray, f: np.ndarray) -> np.ndarray:
    """One-sample backups y[i, k] = r_i + gamma sum_a' pi(a'|s'_ik) f(s'_ik, a').

    E[y_ik | s_i, a_i] = (T f)(s_i, a_i), and y_i1, y_i2 are independent given (s_i, a_i).
    """
    return data["r"][:, None] + mdp.gamma * _expected_next(f, pi)[data["next_s"]]


def sample_bellman_residual(
    data: dict[str, np.ndarray], mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray, f: np.ndarray
) -> float:
    """Double-sampling estimate of BR(f) = ||f - T f||_mu.

    With TD errors delta_ik = f(s_i, a_i) - y_ik (one per next-state sample k, independent given (s_i, a_i)),
    E[delta_i1 delta_i2 | s_i, a_i] = (f - T f)(s_i, a_i)^2, so BR2_hat = mean_i mean_{j<k} delta_ij delta_ik is
    unbiased for BR(f)^2 (the naive mean delta^2 is biased up by the conditional variance of the backup).
    Returns sqrt(max(0, BR2_hat)). Needs n_next >= 2. ``Phi`` is validated only.
    """
    pi = _check_pi(mdp, pi)
    _check_phi(mdp, Phi)
    f = _check_f(mdp, f)
    _check_data(data, mdp, min_next=2)
    delta = f[data["sa"]][:, None] - _backups(data, mdp, pi, f)
    return float(np.sqrt(max(0.0, _pair_mean(delta))))


def sample_local_ibe(
    data: dict[str, np.ndarray], mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray, f: np.ndarray
) -> float:
    """Double-sampling estimate of IBE(f) = ||(I - Proj) T f||_mu.

    For each next-state sample k, regress the backups y_k = (y_ik)_i on the features by least squares on the
    dataset, e_k = (I - H) y_k with the hat matrix H = X (X^T X)^-1 X^T, X = (phi_i)_i. Given the state-actions,
    y_k = t + eps_k with t_i = (T f)(s_i, a_i) and eps_1, eps_2 independent and mean zero, so
    E[e_1^T e_2 / n | X] = E[y_1^T (I - H) y_2 / n | X] = t^T (I - H) t / n (I - H is symmetric idempotent): the
    squared in-sample residual of regressing the noise-free T f on F, which estimates ||(I - Proj) T f||_mu^2 up to
    an O(1/n) state-action sampling bias, with no target-noise bias (e_1^T e_1 would be biased up by roughly
    (n - d) / n times the mean conditional variance of the backup). Equivalently: fit on sample-1 backups and take
    the residual against the sample-2 targets, mean(e_1 * y_2). IBE2_hat = mean over pairs j < k of mean(e_j e_k);
    returns sqrt(max(0, IBE2_hat)). Needs n_next >= 2.
    """
    pi = _check_pi(mdp, pi)
    Phi = _check_phi(mdp, Phi)
    f = _check_f(mdp, f)
    _check_data(data, mdp, min_next=2)
    X = Phi[data["sa"]]
    y = _backups(data, mdp, pi, f)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)  # all K regressions at once
    return float(np.sqrt(max(0.0, _pair_mean(y - X @ coef))))


def sample_ratio(data: dict[str, np.ndarray], mdp: FiniteMDP, pi: np.ndarray, Phi: np.ndarray, f: np.ndarray) -> float:
    """sample_local_ibe / sample_bellman_residual (NaN when the estimated residual is 0); estimates IBE(f) / BR(f),
    which is at most alpha for f in Q_pi + F."""
    br = sample_bellman_residual(data, mdp, pi, Phi, f)
    ibe = sample_local_ibe(data, mdp, pi, Phi, f)
    return ibe / br if br > 0 else float("nan")
