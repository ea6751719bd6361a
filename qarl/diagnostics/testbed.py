"""Testbed: how the incompleteness factor alpha shows up in sample-based off-policy TD on finite MDPs.

For each lam (mixing weight of a Garnet kernel into a linear MDP,
:func:`qarl.diagnostics.finite.controllable_alpha_mdp`, whose feature dimension is the same for every lam), seed and
dataset size n, :func:`run_testbed` records the exact diagnostics (alpha, realizability, concentrability, TD
fixed-point error) and the sample-based ones. Features always contain Q_pi, so the exact TD fixed point is Q_pi for
every lam (``td_err_exact`` ~ 1e-15): what incompleteness can change is the *statistical* error of LSTD. It is
reported in closed form (the asymptotic RMS error, :func:`qarl.diagnostics.finite.lstd_asymptotic_error`) next to
the RMS over ``datasets`` sampled datasets with its 95% interval, and relative to the Bellman-complete lam = 0 MDP
with the same seed: ``amplification_exact`` (closed form) and ``amplification_sampled`` with a bootstrap interval
(datasets are coupled across lam: same (s, a) draws and the same uniforms for the next-state draws). This is the
project's own illustration of the amplification story of Zanette (ICML 2023); see the module docstring of
:mod:`qarl.diagnostics.finite` for the definitions.

``qarl diagnose testbed [--lams ...] [--n ...] [--seeds ...] [--datasets K] [--out DIR]`` calls :func:`run_testbed`.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy
import scipy.stats

from qarl.diagnostics.finite import (
    bellman_residual,
    controllable_alpha_mdp,
    exact,
    local_ibe,
    lstd,
    lstd_asymptotic_error,
    q_pi,
    sample_bellman_residual,
    sample_dataset,
    sample_local_ibe,
)

#: Columns of the DataFrame returned by :func:`run_testbed`, in order, with their meaning (also written to testbed.md).
COLUMNS: dict[str, str] = {
    "lam": "Garnet mixing weight: P = (1 - lam) P_linear + lam P_garnet",
    "seed": "seed of the MDP, policy, mu, features' random parts, f and the datasets",
    "n": "number of transitions (s, a) ~ mu per dataset, each with 2 independent next states",
    "d": "number of features (mu-orthonormal basis of span[Q_pi, W], or [W, u] where Q_pi lies in span W): fixed",
    "alpha": "exact incompleteness factor sup_{f in F} IBE(f) / BR(f)",
    "kappa": "exact sup_{f in F} ||(I - Proj) P_pi f||_mu / ||f||_mu",
    "realizable": "1 when Q_pi lies in F (exact realizability error <= 1e-8 ||Q_pi||): alpha is defined for that case",
    "realizability_err": "exact ||(I - Proj) Q_pi||_mu",
    "conc_restricted": "exact F-restricted concentrability nu^T G^-1 nu, nu = Phi^T d_pi",
    "conc_residual": "exact residual-transfer concentrability sup_f (E_{d_pi}[f - T f])^2 / BR(f)^2 of the value bound",
    "td_err_exact": "exact TD fixed point error ||Phi theta_td - Q_pi||_mu",
    "td_err_asymptotic": "closed-form asymptotic RMS LSTD error sqrt(trace(G A^-1 Sigma A^-T) / n)",
    "td_err_rms": "RMS over the datasets of the sample LSTD error ||Phi theta_hat - Q_pi||_mu",
    "td_err_rms_low": "lower end of the 95% interval of td_err_rms (t-interval on the squared errors)",
    "td_err_rms_high": "upper end of that interval",
    "amplification_exact": "td_err_asymptotic / td_err_asymptotic of the lam = 0 MDP at the same seed (n-free)",
    "amplification_sampled": "td_err_rms / td_err_rms of the lam = 0 MDP at the same seed and n (coupled datasets)",
    "amplification_low": "lower end of the 95% bootstrap interval of amplification_sampled (datasets resampled)",
    "amplification_high": "upper end of that interval",
    "local_ibe_exact": "exact IBE(f) = ||(I - Proj) T f||_mu at f = Q_pi + Phi delta, delta ~ N(0, I)",
    "local_ibe_hat": "double-sampling regression estimate of IBE(f) on the first dataset",
    "bellman_residual_exact": "exact BR(f) = ||f - T f||_mu",
    "bellman_residual_hat": "double-sampling estimate of BR(f) on the first dataset",
    "ratio_exact": "IBE(f) / BR(f) (at most alpha)",
    "ratio_hat": "local_ibe_hat / bellman_residual_hat",
}


def _lstd_errors(mdp, pi, Phi, mu, Q, n: int, seed: int, datasets: int) -> tuple[np.ndarray, dict]:
    """Squared LSTD errors on ``datasets`` datasets of size n (seeded by (seed, n, k), independent of lam, so that
    datasets are coupled across lam), and the first dataset."""
    errs, first = np.empty(datasets), None
    for k in range(datasets):
        data = sample_dataset(mdp, pi, mu, int(n), [seed, int(n), 2, k], n_next=2)
        first = data if first is None else first
        err = Phi @ lstd(data, mdp, pi, Phi) - Q
        errs[k] = float(mu @ err**2)
    return errs, first


def _one(
    lam: float,
    seed: int,
    ns: Sequence[int],
    n_states: int,
    n_actions: int,
    d: int,
    gamma: float,
    datasets: int,
) -> list[dict[str, Any]]:
    """Rows for one (lam, seed) MDP over all dataset sizes (the squared errors per dataset under ``_sq``)."""
    mdp, pi, Phi, mu = controllable_alpha_mdp(n_states, n_actions, d, lam, seed, gamma=gamma)
    ex = exact(mdp, pi, Phi, mu)
    Q = q_pi(mdp, pi)
    # A random f in F = span(Phi) (which contains Q_pi): f = Q_pi + Phi delta with delta ~ N(0, I); Phi is
    # mu-orthonormal, so ||f - Q_pi||_mu = ||delta||_2.
    delta = np.random.default_rng([seed, 1]).standard_normal(Phi.shape[1])
    f = Q + Phi @ delta
    ibe, br = local_ibe(mdp, pi, Phi, mu, f), bellman_residual(mdp, pi, Phi, mu, f)
    rows = []
    for n in ns:
        sq, data = _lstd_errors(mdp, pi, Phi, mu, Q, n, seed, datasets)
        low, high = _rms_interval(sq)
        ibe_hat = sample_local_ibe(data, mdp, pi, Phi, f)
        br_hat = sample_bellman_residual(data, mdp, pi, Phi, f)
        rows.append(
            {
                "lam": float(lam),
                "seed": int(seed),
                "n": int(n),
                "d": int(Phi.shape[1]),
                "alpha": ex["alpha"],
                "kappa": ex["kappa"],
                "realizable": ex["realizable"],
                "realizability_err": ex["realizability_err"],
                "conc_restricted": ex["conc_restricted"],
                "conc_residual": ex["conc_residual"],
                "td_err_exact": ex["td_fixed_point_err"],
                "td_err_asymptotic": lstd_asymptotic_error(mdp, pi, Phi, mu, int(n), n_next=2),
                "td_err_rms": float(np.sqrt(sq.mean())),
                "td_err_rms_low": low,
                "td_err_rms_high": high,
                "local_ibe_exact": ibe,
                "local_ibe_hat": ibe_hat,
                "bellman_residual_exact": br,
                "bellman_residual_hat": br_hat,
                "ratio_exact": ibe / br if br > 0 else float("nan"),
                "ratio_hat": ibe_hat / br_hat if br_hat > 0 else float("nan"),
                "_sq": sq,
            }
        )
    return rows


def _rms_interval(sq: np.ndarray) -> tuple[float, float]:
    """The 95% t-interval of the mean squared error, as an interval of its square root (NaN for one dataset)."""
    if len(sq) < 2:
        return float("nan"), float("nan")
    half = scipy.stats.t.ppf(0.975, len(sq) - 1) * sq.std(ddof=1) / np.sqrt(len(sq))
    return float(np.sqrt(max(sq.mean() - half, 0.0))), float(np.sqrt(sq.mean() + half))


def _ratio_interval(sq: np.ndarray, sq_ref: np.ndarray, seed: int) -> tuple[float, float]:
    """95% percentile-bootstrap interval of sqrt(mean sq / mean sq_ref), resampling the (coupled) datasets jointly."""
    if len(sq) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng([seed, 7])
    idx = rng.integers(0, len(sq), size=(2000, len(sq)))
    ratios = np.sqrt(sq[idx].mean(axis=1) / sq_ref[idx].mean(axis=1))
    return float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def _markdown_table(df: pd.DataFrame, float_fmt: str = "{:.4g}") -> str:
    """A GitHub Markdown table (written by hand so that no optional dependency such as tabulate is needed)."""

    def cell(x: object) -> str:
        if isinstance(x, float | np.floating):
            return float_fmt.format(float(x))
        return str(x)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _write_outputs(df: pd.DataFrame, out: Path, params: dict[str, object]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on the machines this runs on
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "testbed.csv", index=False)

    means = df.drop(columns=["seed"]).groupby(["lam", "n"], as_index=False).mean()
    means.insert(2, "seeds", df.groupby(["lam", "n"]).size().to_numpy())
    flag = lambda v: " ".join(str(x) for x in v)  # noqa: E731
    cmd = (
        f"qarl diagnose testbed --lams {flag(params['lams'])} --n {flag(params['ns'])} "
        f"--seeds {flag(params['seeds'])} --datasets {params['datasets']} --out {out}"
    )
    call = "run_testbed(" + ", ".join(f"{k}={v!r}" for k, v in params.items()) + f", out={str(out)!r})"
    text = [
        "# Off-policy TD incompleteness testbed",
        "",
        f"Command: `{cmd}`  ",
        f"Function call: `{call}`  ",
        f"Process command line: `{' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}`  ",
        f"Versions: Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"pandas {pd.__version__}",
        "",
        "MDPs: `controllable_alpha_mdp` (a linear MDP mixed with a Garnet kernel with weight lam; features span "
        "[Q_pi, W], or [W, u] with a fixed random u where Q_pi lies in span W, so the dimension is the same for "
        "every lam, Q_pi is realizable for every lam and alpha = 0 at lam = 0). Sampled columns are over "
        f"{params['datasets']} datasets per (lam, seed, n). Definitions are this project's own (see "
        "`qarl/diagnostics/finite.py`).",
        "",
        "## Means over seeds per lam and n",
        "",
        _markdown_table(means),
        "",
        "## Columns",
        "",
        *[f"- `{k}`: {v}" for k, v in COLUMNS.items()],
        "",
    ]
    (out / "testbed.md").write_text("\n".join(text))

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.8))
    per_lam = df.groupby("lam")
    axes[0].plot(per_lam["alpha"].mean().index, per_lam["alpha"].mean().to_numpy(), "o-", label="alpha (exact)")
    axes[0].scatter(df["lam"], df["alpha"], s=8, alpha=0.4, color="gray", label="per seed")
    axes[0].set(xlabel="lam (Garnet weight)", ylabel="alpha", title="incompleteness factor")
    axes[0].legend()
    for n, g in means.groupby("n"):
        (line,) = axes[1].plot(g["lam"], g["td_err_rms"], "o-", label=f"sampled RMS, n={n}")
        axes[1].plot(g["lam"], g["td_err_asymptotic"], "--", color=line.get_color(), label=f"closed form, n={n}")
        axes[2].plot(g["lam"], g["amplification_sampled"], "o-", color=line.get_color(), label=f"sampled, n={n}")
    exact_amp = per_lam["amplification_exact"].mean()
    axes[2].plot(exact_amp.index, exact_amp.to_numpy(), "k--", label="closed form (n-free)")
    axes[2].scatter(df["lam"], df["amplification_exact"], s=8, alpha=0.4, color="gray", label="closed form, per seed")
    # The exact TD fixed-point error is ~1e-15 (Q_pi is in F): stated in the title, since plotting it on the same
    # log axis would flatten the LSTD curves.
    axes[1].set(
        xlabel="lam",
        ylabel="RMS ||Phi theta_hat - Q_pi||_mu",
        yscale="log",
        title=f"LSTD error, mean over seeds (exact TD: max {df['td_err_exact'].max():.1e})",
    )
    axes[1].legend(fontsize=7)
    axes[2].axhline(1.0, color="k", lw=0.8)
    axes[2].set(xlabel="lam", ylabel="LSTD error / LSTD error at lam=0", title="amplification vs Bellman complete")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "testbed.png", dpi=120)
    plt.close(fig)


def run_testbed(
    lams: Sequence[float] = (0, 0.1, 0.2, 0.5, 1.0),
    ns: Sequence[int] = (1000, 5000, 20000),
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    n_states: int = 20,
    n_actions: int = 3,
    d: int = 5,
    gamma: float = 0.9,
    out: str | os.PathLike | None = None,
    datasets: int = 50,
) -> pd.DataFrame:
    """One row per (lam, seed, n) with the columns of :data:`COLUMNS` (sorted by lam, seed, n).

    The amplification columns divide by the lam = 0 MDP with the same seed (and n), computed even when 0 is not in
    ``lams``; sampled quantities are over ``datasets`` independent datasets per (lam, seed, n). With ``out``, writes
    ``out/testbed.csv`` (all rows), ``out/testbed.md``
    (means over seeds per lam and n, the command, parameters and versions) and ``out/testbed.png`` (alpha and the
    mean TD errors against lam, one line per n).
    """
    lams, ns, seeds = [float(x) for x in lams], [int(x) for x in ns], [int(x) for x in seeds]
    if not lams or not ns or not seeds:
        raise ValueError("lams, ns and seeds must be non-empty")
    if datasets < 1:
        raise ValueError(f"datasets must be at least 1, got {datasets}")
    args = (n_states, n_actions, d, gamma, datasets)
    rows = [row for lam in lams for seed in seeds for row in _one(lam, seed, ns, *args)]
    ref_rows = rows if 0.0 in lams else [r for s in seeds for r in _one(0.0, s, ns, *args)]
    ref = {(r["seed"], r["n"]): r for r in ref_rows if r["lam"] == 0.0}
    for r in rows:
        base = ref[(r["seed"], r["n"])]
        r["amplification_exact"] = r["td_err_asymptotic"] / base["td_err_asymptotic"]
        r["amplification_sampled"] = r["td_err_rms"] / base["td_err_rms"]
        r["amplification_low"], r["amplification_high"] = _ratio_interval(r["_sq"], base["_sq"], r["seed"])
    df = pd.DataFrame([{k: v for k, v in r.items() if k != "_sq"} for r in rows])
    df = df[list(COLUMNS)].sort_values(["lam", "seed", "n"], ignore_index=True)
    if out is not None:
        params = {
            "lams": lams,
            "ns": ns,
            "seeds": seeds,
            "n_states": n_states,
            "n_actions": n_actions,
            "d": d,
            "gamma": gamma,
            "datasets": datasets,
        }
        _write_outputs(df, Path(out), params)
    return df
