"""Exact estimators in a critic's own feature class: TD fixed point, Bellman error, completeness, realizability.

The function class is the linear head on frozen features: F = {z(s, a)^T theta}. For a SAC critic, z(s, a) =
[phi_1(s, a); 1] is Q_1's last hidden layer with a constant appended, so the critic itself, f = Q_1 = z^T w (w the
last layer's weights and bias), lies in F exactly and every quantity below is a finite-dimensional linear-algebra
computation with no fitting, no optimisation error and no clip. The definitions are this project's own, after the
story of Zanette ("When is Realizability Sufficient for Off-Policy Reinforcement Learning?", ICML 2023); on finite
MDPs they reduce to the exact quantities of :mod:`qarl.diagnostics.finite` (the test suite checks this to 1e-8).

Data. n state-action pairs (s_i, a_i) with sample weights p_i (normalised to sum 1; uniform by default), features
z_i = z(s_i, a_i) and, for two *halves* j = 1, 2 of independent next-step draws:

* ``z_next[j, i]`` = (1 - d) times the mean of z(s'_j, a') over the half's next actions a' ~ pi(.|s'_j);
* ``r_next[j, i]`` = r_j + gamma (1 - d) times the mean over the same actions of -tau(s'_j) log pi(a'|s'_j), the
  reward with SAC's entropy term (d = 1 only at a true termination).

Then y_j = r_next_j + gamma z_next_j w is a one-half backup of f and E[y_j | s, a] = (T f)(s, a) for the soft
policy-evaluation operator T. Where both halves share one next state (a replay buffer stores one s' per (s, a)),
they are independent only in the next actions; see "Biases" below.

Moments (all sums weighted by p): G = sum z z^T, C_j = sum z z_next_j^T, D_12 = sum z_next_1 z_next_2^T,
b_j = sum z r_next_j, delta_j = f - y_j, g_j = sum z delta_j; sym(X) = (X + X^T) / 2; G_r = G + ridge I.

Quantities returned by :func:`estimate`:

* ``bellman_error`` = root(BE^2), BE^2 = sum p delta_1 delta_2. Crossing the halves removes the backup's noise:
  E[delta_1 delta_2 | s, a] = (f - T f)(s, a)^2 when the halves are independent given (s, a), so BE^2 estimates
  ||f - T f||_p^2 without the conditional variance of the backup that mean(delta^2) carries.
  root(x) = sign(x) sqrt(|x|): a negative value means the estimate's noise exceeds the quantity (nothing is clipped).
* ``projected_bellman_error`` = root(MSPBE), MSPBE = g_1^T G_r^-1 g_2: ||Proj (f - T f)||^2, the projection of the
  Bellman error onto F, crossed the same way (what TD's fixed point sets to zero).
* ``local_ibe`` = root(BE^2 - MSPBE): the local inherent Bellman error ||(I - Proj) T f||. Exact by Pythagoras
  because f is in F: f - T f = (f - Proj T f) - (I - Proj) T f with orthogonal parts. Computed as
  sum p (delta_1 - z G_r^-1 g_1)(delta_2 - z G_r^-1 g_2), which equals BE^2 - MSPBE with ridge 0 (with a ridge, the
  projection is the ridge regression's).
* ``completeness_ratio`` = root(1 - MSPBE / BE^2) = IBE(f) / BR(f): the share of the Bellman error that no member of
  F can remove (0: all of it is removable by a TD step inside F; 1: none). NaN when BE^2 <= 0.
* ``incompleteness`` = alpha-hat = root(lambda_max) of the generalized eigenproblem
  M_A x = lambda M_B x with M_A = gamma^2 sym(sum p e_1 e_2^T), e_j = z_next_j - z G_r^-1 C_j the part of the next
  features outside F (= gamma^2 sym(D_12 - C_1^T G^-1 C_2) with ridge 0; computed from the residuals so that a nearly
  complete class keeps its small terms), and
  M_B = G - gamma sym(C_1 + C_2) + gamma^2 sym(D_12), restricted to the span of the top ``rank`` eigenvectors of G
  (M_B gets the ridge there). In population this is alpha = sup_{f' in Q + F} IBE(f') / BR(f') of
  :func:`qarl.diagnostics.finite.exact` (for f' = Q_pi + z^T x: BR^2 = x^T M_B x, IBE^2 = x^T M_A x). Directions in
  which the estimated M_B is not positive (possible by sampling noise: its gamma^2 D_12 term is crossed) are left out.
* ``td_distance`` = sqrt((w - theta)^T G (w - theta)): the p-norm distance of the critic from the class's TD (LSTD)
  fixed point theta = (A + ridge I)^-1 (b_1 + b_2) / 2 with A = G - gamma (C_1 + C_2) / 2, in return units;
  ``td_distance_rel`` = td_distance / ``f_spread`` (the p-weighted standard deviation of f).
* ``td_margin`` = min Re eig(G_r^-1/2 A G_r^-1/2): expected TD(0) in F is stable iff it is > 0 (basis-free).
* Also: the squared forms ``bellman_error_sq``, ``projected_bellman_error_sq``, ``local_ibe_sq``, and ``rank`` (the
  subspace used for alpha-hat), ``n``, ``d`` and ``span`` (the dimension of G's range, below).

The features are first reduced to the range of G (eigenvalues above 1e-10 times the largest): the other directions
are functions that vanish on every sample (a dead ReLU unit, a duplicated feature), so dropping them leaves the class
on the data unchanged; f and the backups always use the full w.

Biases that remain (what each number estimates):

* With ridge 0, full rank and population moments (every (s, a) weighted by mu, exact expected next features) every
  quantity is exact. With samples, the crossed quadratic forms are unbiased for fixed (s, a) draws up to the O(d/n)
  error of G^-1 (MSPBE and alpha-hat) and of A^-1 (td_distance).
* alpha-hat is a supremum over directions: with many noisy directions it is biased upwards (noise in M_A along
  directions of small M_B). Restricting to the top-``rank`` principal subspace of G bounds the bias; the price is that
  alpha-hat then measures the supremum over that subspace only (a lower bound on the full class's alpha in
  population).
* One next state per (s, a) (the replay buffer): the halves share s', so E[delta_1 delta_2 | s, a] =
  (f - T f)^2 + Var_{s'}[E(y | s')]: BE^2 and MSPBE are biased up by the next-state part of the backup's variance (in
  these games the other player's action and QARL's alpha draw make s' random). The neural diagnostics measure that
  part on re-simulated states with two independent next states (:mod:`qarl.diagnostics.neural`, group ``paired``).

:func:`realizability` gives the realizability side: the distance of f from the projection of Monte-Carlo returns on F.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: The keys every :func:`estimate` result holds (Python floats).
KEYS = (
    "bellman_error",
    "projected_bellman_error",
    "local_ibe",
    "completeness_ratio",
    "incompleteness",
    "td_distance",
    "td_distance_rel",
    "td_margin",
    "f_spread",
    "bellman_error_sq",
    "projected_bellman_error_sq",
    "local_ibe_sq",
    "rank",
    "n",
    "d",
    "span",
)


def root(x: float) -> float:
    """sign(x) sqrt(|x|): the square root of an estimated square, keeping the sign of a noise-dominated estimate."""
    return math.copysign(math.sqrt(abs(x)), x) if math.isfinite(x) else math.nan


def _weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    p = np.asarray(weights, dtype=np.float64)
    if p.shape != (n,):
        raise ValueError(f"weights must have shape (n,) = ({n},), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
        raise ValueError("weights must be finite, non-negative and not all zero")
    return p / p.sum()


def _sym(x: np.ndarray) -> np.ndarray:
    return 0.5 * (x + x.T)


def _inv_sqrt_psd(G: np.ndarray) -> np.ndarray | None:
    lam, V = np.linalg.eigh(_sym(G))
    if lam.min() <= 0:
        return None
    return (V / np.sqrt(lam)) @ V.T


def estimate(
    z: np.ndarray,
    w: np.ndarray,
    z_next: np.ndarray,
    r_next: np.ndarray,
    gamma: float,
    weights: np.ndarray | None = None,
    ridge: float = 0.0,
    rank: int | None = None,
) -> dict[str, float]:
    """The feature-class diagnostics of f = z @ w (definitions in the module docstring).

    ``z`` (n, d) features, ``w`` (d,) the head's weights, ``z_next`` (2, n, d) the two halves' mean next features
    already multiplied by (1 - done), ``r_next`` (2, n) the matching entropy-corrected rewards, ``gamma`` the
    discount, ``weights`` (n,) optional sample weights (normalised to sum 1), ``ridge`` >= 0 added to G (and to the
    TD matrix and M_B), ``rank`` the dimension of G's principal subspace for alpha-hat (None: all d). Computed in
    float64. Raises ValueError for inconsistent shapes or non-finite data.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"z must have shape (n, d) with n, d >= 1, got {z.shape}")
    n, d = z.shape
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    z_next = np.asarray(z_next, dtype=np.float64)
    r_next = np.asarray(r_next, dtype=np.float64)
    if w.shape != (d,):
        raise ValueError(f"w must have shape (d,) = ({d},), got {w.shape}")
    if z_next.shape != (2, n, d):
        raise ValueError(f"z_next must have shape (2, n, d) = {(2, n, d)}, got {z_next.shape}")
    if r_next.shape != (2, n):
        raise ValueError(f"r_next must have shape (2, n) = {(2, n)}, got {r_next.shape}")
    for name, x in (("z", z), ("w", w), ("z_next", z_next), ("r_next", r_next)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} has non-finite entries")
    if not (math.isfinite(gamma) and 0.0 <= gamma < 1.0):
        raise ValueError(f"gamma must satisfy 0 <= gamma < 1, got {gamma}")
    if not (math.isfinite(ridge) and ridge >= 0.0):
        raise ValueError(f"ridge must be a non-negative number, got {ridge}")
    k = d if rank is None else int(rank)
    if not 1 <= k <= d:
        raise ValueError(f"rank must lie in [1, d = {d}], got {rank}")
    p = _weights(weights, n)

    f = z @ w
    delta = [f - (r_next[j] + gamma * (z_next[j] @ w)) for j in range(2)]
    # Work in the range of G: directions with (relative) eigenvalue below 1e-10 are functions that vanish on the data
    # (e.g. dead ReLU units); dropping them leaves the class on the data unchanged. f and the backups use the full w.
    lam_g, V_g = np.linalg.eigh(_sym(z.T @ (z * p[:, None])))
    span = lam_g > 1e-10 * max(lam_g.max(), 0.0)
    if not span.any():
        raise ValueError("the features are zero on every sample: the class is empty")
    V_g = V_g[:, span]
    z, z_next, w = z @ V_g, z_next @ V_g, V_g.T @ w
    d_span = z.shape[1]
    k = min(k, d_span)

    zp = z * p[:, None]
    G = _sym(z.T @ zp)
    C = [zp.T @ z_next[j] for j in range(2)]  # sum p z z_next_j^T
    D12 = (z_next[0] * p[:, None]).T @ z_next[1]
    b = [zp.T @ r_next[j] for j in range(2)]
    g = [zp.T @ delta[j] for j in range(2)]
    eye = np.eye(d_span)
    Gr = G + ridge * eye

    be2 = float(np.sum(p * delta[0] * delta[1]))
    try:
        # Residuals of the per-row regressions on F (row-wise, so that a near-complete class does not lose its small
        # terms to cancellation): r_j = delta_j - z Gr^-1 g_j and e_j = z_next_j - z Gr^-1 C_j.
        res = [delta[j] - z @ np.linalg.solve(Gr, g[j]) for j in range(2)]
        ibe2 = float(np.sum(p * res[0] * res[1]))
        mspbe = be2 - ibe2
        e_next = [z_next[j] - z @ np.linalg.solve(Gr, C[j]) for j in range(2)]
    except np.linalg.LinAlgError:
        ibe2 = mspbe = math.nan
        e_next = None

    A = G - gamma * 0.5 * (C[0] + C[1])
    try:
        theta = np.linalg.solve(A + ridge * eye, 0.5 * (b[0] + b[1]))
        e = w - theta
        td_distance = math.sqrt(max(float(e @ G @ e), 0.0))
    except np.linalg.LinAlgError:
        td_distance = math.nan
    spread = math.sqrt(max(float(np.sum(p * (f - np.sum(p * f)) ** 2)), 0.0))
    Gr_mhalf = _inv_sqrt_psd(Gr)
    margin = math.nan if Gr_mhalf is None else float(np.min(np.linalg.eigvals(Gr_mhalf @ A @ Gr_mhalf).real))

    alpha = math.nan
    if e_next is not None:
        try:
            MA = gamma**2 * _sym((e_next[0] * p[:, None]).T @ e_next[1])
            MB = G - gamma * _sym(C[0] + C[1]) + gamma**2 * _sym(D12)
            _, V = np.linalg.eigh(G)
            U = V[:, d_span - k :]  # eigenvectors of the k largest eigenvalues
            MA_k, MB_k = _sym(U.T @ MA @ U), _sym(U.T @ MB @ U) + ridge * np.eye(k)
            # alpha^2 = lambda_max(M_B^-1/2 M_A M_B^-1/2) on the directions where the estimated M_B is positive
            lam_b, V_b = np.linalg.eigh(MB_k)
            keep = lam_b > 1e-12 * max(lam_b.max(), 0.0)
            if keep.any():
                W = V_b[:, keep] / np.sqrt(lam_b[keep])
                alpha = root(float(np.linalg.eigvalsh(_sym(W.T @ MA_k @ W))[-1]))
        except np.linalg.LinAlgError:
            pass

    return {
        "bellman_error": root(be2),
        "projected_bellman_error": root(mspbe),
        "local_ibe": root(ibe2),
        "completeness_ratio": root(ibe2 / be2) if be2 > 0 else math.nan,
        "incompleteness": alpha,
        "td_distance": td_distance,
        "td_distance_rel": td_distance / spread if spread > 0 else math.nan,
        "td_margin": margin,
        "f_spread": spread,
        "bellman_error_sq": be2,
        "projected_bellman_error_sq": mspbe,
        "local_ibe_sq": ibe2,
        "rank": float(k),
        "n": float(n),
        "d": float(d),
        "span": float(d_span),
    }


def realizability(
    z: np.ndarray,
    f: np.ndarray,
    returns: np.ndarray,
    groups: Sequence[int] | np.ndarray,
    ridge: float = 0.0,
) -> dict[str, float]:
    """How far f is from the best member of F for the returns, cross-fitted by group (e.g. by episode).

    For every group g, the least-squares head theta_{-g} = argmin mean_{i not in g} (z_i^T theta - G_i)^2
    (+ ridge |theta|^2) predicts the rows of g: h_i = z_i^T theta_{-g(i)}, an out-of-sample estimate of the
    projection of the value the returns sample (their noise enters through theta only, with weight O(d / n)). Returns
    ``realizability`` = sqrt(mean (f - h)^2) (the distance of the critic from that projection) and
    ``return_residual`` = sqrt(mean (G - h)^2) (the projection's own held-out residual: return noise plus the part of
    the value outside F). NaN for both with fewer than 2 groups.
    """
    z = np.asarray(z, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64).reshape(-1)
    returns = np.asarray(returns, dtype=np.float64).reshape(-1)
    groups = np.asarray(groups).reshape(-1)
    n = len(f)
    if z.ndim != 2 or z.shape[0] != n or returns.shape != (n,) or groups.shape != (n,):
        raise ValueError(
            f"need z (n, d), f (n,), returns (n,), groups (n,) with one n, got {z.shape}, {f.shape}, "
            f"{returns.shape}, {groups.shape}"
        )
    labels = np.unique(groups)
    if len(labels) < 2:
        return {"realizability": math.nan, "return_residual": math.nan}
    h = np.empty(n)
    eye = np.eye(z.shape[1])
    for label in labels:
        test = groups == label
        zt, gt = z[~test], returns[~test]
        theta = np.linalg.lstsq(zt.T @ zt / len(zt) + ridge * eye, zt.T @ gt / len(zt), rcond=None)[0]
        h[test] = z[test] @ theta
    return {
        "realizability": float(np.sqrt(np.mean((f - h) ** 2))),
        "return_residual": float(np.sqrt(np.mean((returns - h) ** 2))),
    }
