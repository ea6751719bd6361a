"""Neural diagnostics of the SAC critics of both players: Bellman error, value error, completeness, shift, features.

Motivation: Zanette, "When is Realizability Sufficient for Off-Policy Reinforcement Learning?" (ICML 2023), where the
error of off-policy TD depends on how far the function class F is from Bellman complete and on how far the data are
from the policy's distribution (see :mod:`qarl.diagnostics.finite` for the exact finite-MDP versions). The paper's
full text was not available to us: every definition below is this project's own estimator, chosen to mirror those
quantities for a neural critic, and is not claimed to equal a constant of the paper.

:class:`NeuralDiagnostics` is a callback run by :func:`qarl.experiment.trial.run_trial` after every iteration: on every
``diagnostics.every``-th iteration (1-based: iterations every, 2 every, ...) it logs, for each critic the trainer
lists in ``trainer.critic_views()`` (by default one :class:`~qarl.sac.views.SACCriticView` per player whose learner is
a stable-baselines3 SAC, including QARL's alpha-conditioned adversary), the columns ``diag/<player>/<group>/<name>``
listed in :data:`GROUPS` into the progress row; on the other iterations the same columns are NaN, so the parquet
schema is stable. Methods without SAC critics get no columns for that player: ``cat`` has no adversary player (its
protagonist is diagnosed). A method whose one critic of the executed action is shared by both players declares it as
a :class:`~qarl.sac.views.SharedCriticView` (``mixedne_ld``: ``diag/joint/<group>/<name>``, with its own backup: f =
min_j Q_j, the next action the mixture of both actors' samples, both entropy terms) and gets Monte-Carlo rollouts of
the combined action; its buffer stores no behaviour density of the mixed actions, so its ``shift`` columns are NaN.

Notation, per player: the replay buffer holds (s, a, r, s', d) with a the action scaled to [-1, 1], r the player's
reward (r for the protagonist, -r for the adversary) and d = 1 only for a true termination (a time-limit truncation
bootstraps, as in training); pi is the player's current policy and tau(s) its entropy temperature (the learned
temperature, or for QARL's alpha-conditioned learners the alpha in the last observation entry of s); Q_1, Q_2 are the
twin critics and f(s, a) = min_j Q_j(s, a), the value SAC's actor and targets use. The diagnosed function is f.

Samples. The *held-out slice* is the ``heldout_size`` most recent transitions of the player's buffer (the end of
its latest learning phase): every transition of the buffer is used for training (diagnostics never change
training), so "held out" means "sampled by the critic's minibatches only a few times so far" (after t further
gradient steps, a transition has been drawn about t * batch_size / buffer size times). The *train slice* is up to
``train_size`` transitions drawn uniformly (without replacement) from the rest of the buffer. Expected backups use
K' = ``next_actions`` next actions a'_k ~ pi(.|s'):

    y(s, a) = r + gamma (1 - d) (1/K') sum_k [ f(s', a'_k) - tau(s') log pi(a'_k|s') ],

i.e. (T f)(s, a) with the expectation over a' replaced by K' samples and over s' by the one stored next state.

Groups and columns (``<group>/<name>``; all computed with the critic and policy frozen):

* ``bellman/residual``: sqrt(mean over the held-out slice of (f(s, a) - y(s, a))^2), the Bellman residual
  ||f - T f|| of the critic under the recent data. With one stored s' per (s, a) it includes the conditional
  variance of the backup (Var[y | s, a], from the other player's stochastic actions, QARL's alpha draws and K'),
  so it over-estimates ||f - T f|| (no double sampling exists for real transitions).
  ``bellman/residual_train``: the same on the train slice (a gap between the two shows that the critic fits the
  older data better than the newest). ``bellman/bias``: mean(f - y) on the held-out slice (> 0: the critic
  over-estimates its own backup). ``bellman/q_mean``: mean f on the held-out slice (the scale of the values).
* ``mc``: Monte-Carlo value error. ``mc_episodes`` rollouts in the diagnostics' own copy of the game (never the
  trainer's games), reset with seeds of their own stream (the same initial states at every diagnosed iteration),
  the method in its evaluation state (``trainer.prepare_evaluation()``: alpha = 0 for QARL, the full force budget
  for force_curriculum; ``after_reset`` and ``protagonist_action`` hooks applied, e.g. nominal physics for
  domain_randomization, the current MAS attack radius for cat), both players sampling their actions (the players'
  views: each sees ``trainer.player_obs``). The soft return of a state-action at step t is
  G_t = r_t + sum_{k >= 1} gamma^k (r_{t+k} - tau(s_{t+k}) log pi(a_{t+k}|s_{t+k})), the quantity SAC's soft Q
  estimates. The training horizon H is only a time limit (training bootstraps through it), so rollouts run
  H + L steps with L = ceil(log(mc_tail) / log(gamma)) and G_t is compared at the steps t < H only (a missing tail
  weighs at most gamma^L = ``mc_tail`` of it). ``mc/bias`` = mean(f(s_t, a_t) - G_t), ``mc/rmse`` =
  sqrt(mean((f - G)^2)), ``mc/spearman`` = Spearman rank correlation of f and G over those steps (does the critic
  order the visited state-actions right), ``mc/return_mean`` = mean G over them. NaN when ``mc_episodes`` = 0.
* ``regression``: held-out Bellman regression. A freshly initialised network g of the critic's architecture (a copy
  of Q_1's MLP with every layer re-initialised; inputs and targets standardised with train-slice statistics, an
  affine change that leaves the function class unchanged) is fitted by Adam (``regression_steps`` minibatch steps of
  ``regression_batch``, learning rate ``regression_lr`` with cosine decay) to the FROZEN critic's backups y on the
  train slice. ``regression/local_ibe`` = sqrt(mean over the held-out slice of (g - y)^2): g approximates the
  projection of T f on F, so this estimates the local inherent Bellman error ||(I - Proj) T f|| (plus the same
  target-noise floor as ``bellman/residual``, and the optimisation error of the fit: both bias it upwards).
  ``regression/incompleteness`` = clip(local_ibe / bellman/residual, 0, 1), the estimate of the incompleteness
  ratio IBE(f) / BR(f) of :func:`qarl.diagnostics.finite.exact`'s alpha (the noise floor biases it towards 1).
  ``regression/minimax_gap`` = bellman/residual^2 - local_ibe^2 = mean(f - y)^2-loss minus the best-in-class loss
  min_g mean (g - y)^2: the modified Bellman residual of Antos, Szepesvari and Munos (2008), the objective of the
  minimax formulation min_f max_g [(f - y)^2 - (g - y)^2]. The target noise cancels in the difference, and when f is
  in F it estimates ||f - Proj T f||^2, the mean squared projected Bellman error (what TD's fixed point zeroes); it
  can come out negative by estimation error and is not clipped. ``regression/fit_rmse``: the fit's RMS residual on
  the train slice (a large gap to local_ibe means g over-fitted).
* ``shift``: action-level distribution shift of the replay data from the current policy. Each stored action carries
  the log-probability log b(a|s) it had under the acting policy when it was collected
  (``Player.behaviour_log_prob``, parallel to the buffer positions, checkpointed); the importance weights are
  w = pi(a|s) / b(a|s) with the same squashed-Gaussian density. ``shift/ess`` = (sum w)^2 / (n sum w^2) in (0, 1],
  the normalised effective sample size on ``shift_samples`` transitions drawn uniformly from the whole buffer
  (1: the data look as if drawn from pi; small: a few transitions carry the weight); ``shift/ess_recent``: the same
  on the held-out slice; ``shift/kl`` = mean(log b - log pi) on the uniform sample, an estimate of the average
  KL(b || pi) over the buffer's states; ``shift/max_weight`` = max w / sum w on the uniform sample. Transitions
  without a stored log-probability (checkpoints written before they were recorded) are left out.
* ``representation``: health of the critic's penultimate features phi(s, a) (the last hidden ReLU layer of Q_1) on
  the held-out slice, stacked into Phi (n x h) with singular values sigma_1 >= ... ``representation/srank``: the
  effective rank of Kumar et al. (ICLR 2021), the smallest k with sum_{i<=k} sigma_i >= 0.99 sum_i sigma_i;
  ``representation/erank``: the entropy rank of Roy and Vetterli (2007), exp(-sum_i p_i log p_i) with
  p = sigma / sum sigma; ``representation/dead_units``: the fraction of the h units that are 0 on every held-out
  sample. Feature co-adaptation (after Kumar et al., DR3, ICLR 2022) between phi = phi(s, a) and
  phi' = phi(s', a'_1) with a'_1 ~ pi(.|s'), over non-terminal transitions: ``representation/feature_dot`` =
  mean phi . phi' (DR3's raw dot product) and ``representation/coadaptation`` = mean phi . phi' / (|phi| |phi'|),
  the normalised version in [0, 1] for ReLU features (pairs with a zero feature vector count 0): near 1 means the
  critic cannot tell a state-action from its successor, the regime in which TD is known to degrade.

Diagnostics never change training: they run with the critic and actor in evaluation mode under ``torch.no_grad``
(the regression network is separate), with numpy's and torch's global generators saved before and restored after
(inside, torch's generator is seeded from (trial seed, iteration, player) so the columns are reproducible and a
resumed trial logs the same values), on their own game, and read the buffers without sampling them.
:func:`bellman_regression` is the estimator behind the ``regression`` group with a pluggable function class; the
test suite runs it with a linear class on :func:`qarl.diagnostics.finite.controllable_alpha_mdp`, where the local
IBE is known exactly.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from torch import nn

import envs
from qarl.config import require_at_least
from qarl.sac.views import CHUNK, CriticBatch, CriticView, SACCriticView, SharedCriticView
from qarl.training.loop import ADVERSARY, PROTAGONIST, TwoPlayerTrainer
from qarl.training.rollout import Transition, rollout
from qarl.training.seeds import stream_seed

#: The columns of each player, ``diag/<player>/<group>/<name>`` (definitions in the module docstring).
GROUPS: dict[str, tuple[str, ...]] = {
    "bellman": ("residual", "residual_train", "bias", "q_mean"),
    "mc": ("bias", "rmse", "spearman", "return_mean"),
    "regression": ("local_ibe", "incompleteness", "minimax_gap", "fit_rmse"),
    "shift": ("ess", "ess_recent", "kl", "max_weight"),
    "representation": ("srank", "erank", "dead_units", "coadaptation", "feature_dot"),
}

_MIN_TRANSITIONS = 8  # fewer stored transitions: the player's columns stay NaN


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Neural diagnostics of the SAC critics (defaults: paper scale; see :mod:`qarl.diagnostics.neural`)."""

    enabled: bool = True
    """Run the diagnostics (False: no ``diag/`` columns at all)."""
    every: int = 10
    """Diagnose after every this many iterations (the other rows hold NaN)."""
    heldout_size: int = 2048
    """Most recent transitions of a player's buffer forming the held-out slice (at most half the buffer is used)."""
    train_size: int = 16384
    """Transitions drawn uniformly from the rest of the buffer for the train slice of the Bellman regression."""
    next_actions: int = 10
    """K': next actions sampled from the current policy per expected backup."""
    regression_steps: int = 1000
    """Adam steps of the fresh network's fit in the Bellman regression."""
    regression_batch: int = 256
    """Minibatch size of the Bellman regression."""
    regression_lr: float = 1e-3
    """Initial Adam learning rate of the Bellman regression (cosine decay to 0)."""
    mc_episodes: int = 2
    """Rollouts of the Monte-Carlo value error (0: the mc columns are NaN)."""
    mc_tail: float = 0.01
    """Rollouts run past the horizon until gamma^L <= mc_tail, so returns of in-horizon steps are complete."""
    shift_samples: int = 4096
    """Transitions drawn uniformly from the buffer for the importance-weight statistics."""

    def validate(self) -> None:
        require_at_least(self, ("every", "next_actions", "regression_steps", "regression_batch"), 1)
        require_at_least(self, ("heldout_size", "train_size", "shift_samples"), 2)
        if self.mc_episodes < 0:
            raise ValueError(f"mc_episodes must be >= 0, got {self.mc_episodes}")
        if not (math.isfinite(self.regression_lr) and self.regression_lr > 0):
            raise ValueError(f"regression_lr must be a positive number, got {self.regression_lr}")
        if not 0 < self.mc_tail < 1:
            raise ValueError(f"mc_tail must lie in (0, 1), got {self.mc_tail}")


def column(player: str, group: str, name: str) -> str:
    """The progress column ``diag/<player>/<group>/<name>``."""
    return f"diag/{player}/{group}/{name}"


def player_columns(player: str) -> list[str]:
    """Every diagnostics column of one player, in :data:`GROUPS` order."""
    return [column(player, g, n) for g, names in GROUPS.items() for n in names]


# ---------------------------------------------------------------------------------------------------------------
# Estimators (plain functions of arrays and networks)


def effective_sample_size(log_w: np.ndarray) -> tuple[float, float]:
    """(normalised ESS (sum w)^2 / (n sum w^2), largest normalised weight max w / sum w) from log-weights.

    Computed from log w - max log w, so the weights' overall scale cannot overflow. NaN, NaN for no weights.
    """
    log_w = np.asarray(log_w, dtype=np.float64)
    if log_w.size == 0:
        return math.nan, math.nan
    w = np.exp(log_w - log_w.max())
    return float(w.sum() ** 2 / (w.size * np.sum(w * w))), float(w.max() / w.sum())


def srank(features: np.ndarray, delta: float = 0.01) -> int:
    """Kumar et al. (ICLR 2021): min k with sum_{i<=k} sigma_i >= (1 - delta) sum_i sigma_i (0 for all-zero)."""
    s = np.linalg.svd(np.asarray(features, dtype=np.float64), compute_uv=False)
    if s.sum() <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(s) / s.sum(), 1.0 - delta - 1e-12) + 1)


def erank(features: np.ndarray) -> float:
    """Roy and Vetterli (2007): exp of the entropy of the normalised singular values (0 for all-zero)."""
    s = np.linalg.svd(np.asarray(features, dtype=np.float64), compute_uv=False)
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def soft_returns(rewards: np.ndarray, log_probs: np.ndarray, temperatures: np.ndarray, gamma: float) -> np.ndarray:
    """G_t = r_t + sum_{k>=1} gamma^k (r_{t+k} - tau_{t+k} log pi_{t+k}) for one rollout (0 after its last step).

    The entropy bonus of step t itself is not part of G_t: SAC's soft Q(s_t, a_t) is conditioned on a_t.
    """
    rewards, log_probs, temperatures = (np.asarray(x, dtype=np.float64) for x in (rewards, log_probs, temperatures))
    out = np.empty_like(rewards)
    v_next = 0.0  # soft value-to-go from step t+1: sum_{k>=0} gamma^k (r - tau log pi) at t+1+k
    for t in range(len(rewards) - 1, -1, -1):
        out[t] = rewards[t] + gamma * v_next
        v_next = rewards[t] - temperatures[t] * log_probs[t] + gamma * v_next
    return out


@dataclass(frozen=True)
class RegressionResult:
    """The outcome of :func:`bellman_regression` (squared quantities are mean squares over the held-out set)."""

    local_ibe: float
    """sqrt(max(0, residual2)): the held-out residual of the fitted g against the backups."""
    residual2: float
    """mean (g - y)^2 over the test set (with K >= 2 backups per input: the pairwise U-statistic)."""
    fit_rmse: float
    """RMS residual of g on its own training set."""
    bellman_residual2: float
    """The same mean square for the diagnosed function f instead of g; NaN when f is not given."""

    @property
    def bellman_residual(self) -> float:
        return math.sqrt(max(0.0, self.bellman_residual2)) if math.isfinite(self.bellman_residual2) else math.nan

    @property
    def incompleteness(self) -> float:
        """clip(local_ibe / bellman_residual, 0, 1) (NaN when the residual is 0 or unknown)."""
        br = self.bellman_residual
        return float(min(max(self.local_ibe / br, 0.0), 1.0)) if br > 0 else math.nan

    @property
    def minimax_gap(self) -> float:
        """bellman_residual2 - residual2: the modified Bellman residual (module docstring)."""
        return self.bellman_residual2 - self.residual2


def _squared_residual(pred: th.Tensor, y: th.Tensor) -> float:
    """mean (pred - y)^2 for backups y (B,); for K >= 2 independent backups per row, y (B, K), the U-statistic
    mean over pairs j < k of mean (pred - y_j)(pred - y_k), unbiased for mean (pred - E[y|x])^2 (double sampling:
    E[(g - y_j)(g - y_k) | x] = (g - E[y|x])^2, no target-noise term)."""
    e = pred.reshape(-1, 1) - y.reshape(len(y), -1)
    k = e.shape[1]
    if k == 1:
        return float(e.square().mean())
    total = e.sum(dim=1).square() - e.square().sum(dim=1)  # = 2 sum_{j<k} e_j e_k
    return float((total / (k * (k - 1))).mean())


def bellman_regression(
    function_class: Callable[[], nn.Module],
    x_train: th.Tensor,
    y_train: th.Tensor,
    x_test: th.Tensor,
    y_test: th.Tensor,
    *,
    f_test: th.Tensor | None = None,
    steps: int = 1000,
    batch_size: int = 256,
    lr: float = 1e-3,
    standardize: bool = True,
    generator: th.Generator | None = None,
) -> RegressionResult:
    """Held-out Bellman regression: fit a fresh ``function_class()`` to backups, report its held-out residual.

    ``function_class`` builds a freshly initialised module mapping inputs (B, p) to (B, 1) or (B,): the function
    class F (a copy of the critic's MLP for the SAC critics, a linear map of features on a finite MDP). It is fitted
    to ``y_train`` (backups of the frozen function f at ``x_train``) by Adam with cosine learning-rate decay,
    ``steps`` minibatch steps of ``batch_size`` drawn with ``generator``; then ``residual2`` = mean over the test set
    of (g - y_test)^2, or, when ``y_test`` holds K >= 2 independent backups per test input (B, K) (double sampling,
    possible where next states can be redrawn), the mean over pairs j < k of (g - y_j)(g - y_k), which is free of
    the targets' conditional variance. Its square root estimates
    the local inherent Bellman error ||(I - Proj) T f|| on the test distribution. ``f_test`` (values of f at
    ``x_test``) adds the Bellman residual of f on the same backups, hence the incompleteness ratio and minimax gap.
    ``standardize`` fits g to (y - mean) / std of standardised inputs (train statistics): right for classes closed
    under affine maps of inputs and outputs (MLPs with biases), wrong for e.g. a linear class without constants.
    The caller's global generators are used by ``function_class()`` (parameter initialisation) only.
    """
    if steps < 1 or batch_size < 1 or not lr > 0:
        raise ValueError(f"need steps >= 1, batch_size >= 1 and lr > 0, got {steps}, {batch_size}, {lr}")
    if len(x_train) != len(y_train) or len(x_test) != len(y_test) or len(x_train) < 2 or len(x_test) < 1:
        raise ValueError(
            f"need as many targets as inputs and at least 2 training rows, got x_train {tuple(x_train.shape)}, "
            f"y_train {tuple(y_train.shape)}, x_test {tuple(x_test.shape)}, y_test {tuple(y_test.shape)}"
        )
    x_train, x_test = x_train.float().reshape(len(x_train), -1), x_test.float().reshape(len(x_test), -1)
    y_train, y_test = y_train.float().reshape(-1), y_test.float().reshape(len(y_test), -1)
    if standardize:
        x_mean, x_std = x_train.mean(0), x_train.std(0)
        x_std = th.where(x_std > 1e-8, x_std, th.ones_like(x_std))
        y_mean, y_std = y_train.mean(), y_train.std()
        y_std = y_std if y_std > 1e-8 else th.ones_like(y_std)
    else:
        x_mean, x_std = th.zeros(x_train.shape[1]), th.ones(x_train.shape[1])
        y_mean, y_std = th.zeros(()), th.ones(())
    xn_train, xn_test, yn_train = (x_train - x_mean) / x_std, (x_test - x_mean) / x_std, (y_train - y_mean) / y_std

    model = function_class()
    optimizer = th.optim.Adam(model.parameters(), lr=lr)
    schedule = th.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.5 * (1.0 + math.cos(math.pi * k / steps)))
    batch_size = min(batch_size, len(x_train))
    model.train()
    for _ in range(steps):
        idx = th.randint(0, len(x_train), (batch_size,), generator=generator)
        loss = (model(xn_train[idx]).reshape(-1) - yn_train[idx]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    with th.no_grad():
        g_train = _predict(model, xn_train) * y_std + y_mean
        g_test = _predict(model, xn_test) * y_std + y_mean
    residual2 = _squared_residual(g_test, y_test)
    br2 = _squared_residual(f_test.float().reshape(-1), y_test) if f_test is not None else math.nan
    return RegressionResult(
        local_ibe=math.sqrt(max(0.0, residual2)),
        residual2=residual2,
        fit_rmse=float((g_train - y_train).square().mean().sqrt()),
        bellman_residual2=br2,
    )


def _predict(model: nn.Module, x: th.Tensor) -> th.Tensor:
    return th.cat([model(x[i : i + CHUNK]).reshape(-1) for i in range(0, len(x), CHUNK)])


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with torch's global CPU generator seeded to ``seed``; numpy's and torch's global states are
    restored afterwards, so the block neither consumes nor alters the trainer's random streams."""
    np_state, th_state = np.random.get_state(), th.get_rng_state()
    th.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        th.set_rng_state(th_state)


# ---------------------------------------------------------------------------------------------------------------
# One SAC player's critic, policy and replay data


# ---------------------------------------------------------------------------------------------------------------
# The callback


class NeuralDiagnostics:
    """The diagnostics callback of one trial: ``on_iteration_end`` after every ``trainer.run_iteration()``.

    Diagnoses every player of ``trainer.players`` whose learner has SAC critics (see the module docstring);
    :attr:`columns` lists the columns it adds to every progress row. :attr:`last_seconds` holds the wall time of the
    last call and :attr:`last_group_seconds` its split by group (benchmarks read them; they are not logged, so that
    progress rows stay deterministic).
    """

    def __init__(self, trainer: TwoPlayerTrainer, config: DiagnosticsConfig) -> None:
        config.validate()
        self.trainer, self.config = trainer, config
        views = trainer.critic_views()
        self.joint = any(v.shared for v in views.values())
        order = [n for n in (PROTAGONIST, ADVERSARY) if n in views]
        self.player_names = order + [n for n in views if n not in order]
        self.columns = [c for n in self.player_names for c in player_columns(n)]
        self.last_seconds = 0.0
        self.last_group_seconds: dict[str, float] = {}
        self._game = None

    def due(self, iteration: int) -> bool:
        """Whether the 1-based ``iteration`` is diagnosed."""
        return self.config.enabled and iteration % self.config.every == 0

    def on_iteration_end(self, iteration: int) -> dict[str, float]:
        """The ``diag/`` columns for the progress row of ``iteration`` (1-based): values if due, NaN otherwise."""
        out = dict.fromkeys(self.columns, math.nan)
        if not self.due(iteration) or not self.player_names:
            return out
        t0 = time.perf_counter()
        self.last_group_seconds = {g: 0.0 for g in GROUPS}
        seed = stream_seed(self.trainer.seed, "diagnostics", iteration)
        views = self.trainer.critic_views()
        policies = [(policy, policy.training) for v in views.values() for policy in v.policies()]
        try:
            for policy, _ in policies:
                policy.set_training_mode(False)
            with isolated_rng(seed), th.no_grad():
                t = time.perf_counter()
                mc = {}
                if self.config.mc_episodes > 0:
                    mc = self._monte_carlo_shared(views) if self.joint else self._monte_carlo(views)
                self.last_group_seconds["mc"] += time.perf_counter() - t
                for k, name in enumerate(self.player_names):
                    values = self._diagnose(views[name], seed + 1 + k)
                    values.update({("mc", m): v for m, v in mc.get(name, {}).items()})
                    for (group, metric), v in values.items():
                        out[column(name, group, metric)] = float(v)
        finally:
            for policy, mode in policies:
                policy.set_training_mode(mode)
        self.last_seconds = time.perf_counter() - t0
        return out

    # ------------------------------------------------------------------ per player
    def _diagnose(self, view: CriticView, seed: int) -> dict[tuple[str, str], float]:
        """The bellman, regression, shift and representation groups of one critic."""
        cfg, n = self.config, view.size
        if n < _MIN_TRANSITIONS:
            return {}
        rng = np.random.default_rng(seed)
        generator = th.Generator().manual_seed(seed)
        n_held = min(cfg.heldout_size, n // 2)
        held = (view.pos - 1 - np.arange(n_held)[::-1]) % view.capacity  # the most recent, oldest first
        rest = np.setdiff1d(np.arange(n), held, assume_unique=True)
        train = np.sort(rng.choice(rest, size=min(cfg.train_size, len(rest)), replace=False))
        out: dict[tuple[str, str], float] = {}

        t = time.perf_counter()
        bh, bt = view.batch(held), view.batch(train)
        y_h, a_next = view.backup(bh, cfg.next_actions)
        y_t, _ = view.backup(bt, cfg.next_actions)
        f_h, f_t = view.f(bh.obs, bh.actions), view.f(bt.obs, bt.actions)
        out["bellman", "residual"] = float((f_h - y_h).square().mean().sqrt())
        out["bellman", "residual_train"] = float((f_t - y_t).square().mean().sqrt())
        out["bellman", "bias"] = float((f_h - y_h).mean())
        out["bellman", "q_mean"] = float(f_h.mean())
        self.last_group_seconds["bellman"] += time.perf_counter() - t

        t = time.perf_counter()
        with th.enable_grad():
            reg = bellman_regression(
                view.fresh_network,
                view.critic_input(bt.obs, bt.actions),
                y_t,
                view.critic_input(bh.obs, bh.actions),
                y_h,
                f_test=f_h,
                steps=cfg.regression_steps,
                batch_size=cfg.regression_batch,
                lr=cfg.regression_lr,
                generator=generator,
            )
        out["regression", "local_ibe"] = reg.local_ibe
        out["regression", "incompleteness"] = reg.incompleteness
        out["regression", "minimax_gap"] = reg.minimax_gap
        out["regression", "fit_rmse"] = reg.fit_rmse
        self.last_group_seconds["regression"] += time.perf_counter() - t

        t = time.perf_counter()
        if view.has_behaviour_density:
            out.update(self._shift(view, rng.choice(n, size=min(cfg.shift_samples, n), replace=False), bh))
        self.last_group_seconds["shift"] += time.perf_counter() - t

        t = time.perf_counter()
        phi = view.features(bh.obs, bh.actions)
        out["representation", "srank"] = float(srank(phi.numpy()))
        out["representation", "erank"] = erank(phi.numpy())
        out["representation", "dead_units"] = float((phi.abs().amax(dim=0) == 0).float().mean())
        live = bh.not_done > 0
        if live.any():
            p, p_next = phi[live], view.features(bh.next_obs[live], a_next[live])
            dot = (p * p_next).sum(dim=1)
            norms = p.norm(dim=1) * p_next.norm(dim=1)
            cos = th.where(norms > 0, dot / norms.clamp_min(1e-12), th.zeros_like(dot))
            out["representation", "feature_dot"] = float(dot.mean())
            out["representation", "coadaptation"] = float(cos.mean())
        else:
            out["representation", "feature_dot"] = out["representation", "coadaptation"] = math.nan
        self.last_group_seconds["representation"] += time.perf_counter() - t
        return out

    @staticmethod
    def _shift(view: CriticView, uniform: np.ndarray, bh: CriticBatch) -> dict[tuple[str, str], float]:
        """The shift group from the behaviour log-probabilities stored with the actions."""
        out: dict[tuple[str, str], float] = {}
        bu = view.batch(uniform)
        log_w = (view.log_prob(bu.obs, bu.actions) - bu.behaviour_log_prob).numpy()
        log_w = log_w[np.isfinite(log_w)]
        out["shift", "ess"], out["shift", "max_weight"] = effective_sample_size(log_w)
        out["shift", "kl"] = float(-log_w.mean()) if log_w.size else math.nan
        log_w_h = (view.log_prob(bh.obs, bh.actions) - bh.behaviour_log_prob).numpy()
        out["shift", "ess_recent"] = effective_sample_size(log_w_h[np.isfinite(log_w_h)])[0]
        return out

    # ------------------------------------------------------------------ Monte-Carlo rollouts
    def _diag_game(self, tail: int):
        loop = self.trainer.loop
        if self._game is None:
            self._game = envs.make(
                self.trainer.task_id, horizon=loop.horizon + tail, adversary_bound=loop.adversary_bound
            )
        return self._game

    def _mc_setup(self, gamma: float) -> tuple[Any, np.ndarray, int]:
        """(the diagnostics' game, long enough for the mc_tail, a zero force, the training horizon); puts the method in
        its evaluation state."""
        tail = math.ceil(math.log(self.config.mc_tail) / math.log(gamma))
        game = self._diag_game(tail)
        self.trainer.prepare_evaluation()
        return game, np.zeros(game.adversary_action_space.shape), self.trainer.loop.horizon

    def _mc_episode(self, game: Any, k: int, policy: Callable, record: Callable[[Transition], None]) -> None:
        """Monte-Carlo rollout k, reset with the diagnostics' own seed stream (the same initial states every time)."""
        tr = self.trainer
        seed = stream_seed(tr.seed, "diagnostics", k)
        rollout(game, policy, seed=seed, on_reset=lambda obs: tr.after_reset(game, None), on_step=record)

    def _monte_carlo(self, views: dict[str, SACCriticView]) -> dict[str, dict[str, float]]:
        """Rollouts of both players in the method's evaluation state; per diagnosed player the mc metrics."""
        tr = self.trainer
        if PROTAGONIST not in views:
            return {}
        game, zero, horizon = self._mc_setup(max(v.gamma for v in views.values()))
        f_all: dict[str, list[np.ndarray]] = {n: [] for n in views}
        g_all: dict[str, list[np.ndarray]] = {n: [] for n in views}
        for k in range(self.config.mc_episodes):
            traj: dict[str, dict[str, list]] = {n: {"obs": [], "act": [], "logp": [], "r": []} for n in views}

            def policy(obs: np.ndarray, traj=traj) -> tuple[np.ndarray, np.ndarray]:
                scaled: dict[str, np.ndarray] = {}
                for name, view in views.items():
                    p_obs = tr.player_obs(name, obs)
                    a, logp = view.model.actor.action_log_prob(th.as_tensor(p_obs, dtype=th.float32)[None])
                    scaled[name] = a.numpy()[0]
                    traj[name]["obs"].append(p_obs)
                    traj[name]["act"].append(scaled[name])
                    traj[name]["logp"].append(float(logp[0]))
                a_p = views[PROTAGONIST].model.policy.unscale_action(scaled[PROTAGONIST])
                force = zero
                if ADVERSARY in views:
                    force = tr.adversary_force(views[ADVERSARY].model.policy.unscale_action(scaled[ADVERSARY]))
                with th.enable_grad():  # a method's action hook may use autograd (cat's MAS attack)
                    return tr.protagonist_action(traj[PROTAGONIST]["obs"][-1], a_p, scaled[PROTAGONIST], None), force

            def record(t: Transition, traj=traj) -> None:
                for name in views:
                    traj[name]["r"].append(t.reward if name == PROTAGONIST else -t.reward)

            self._mc_episode(game, k, policy, record)
            for name, view in views.items():
                d = traj[name]
                obs_t = th.as_tensor(np.asarray(d["obs"]), dtype=th.float32)
                g = soft_returns(np.asarray(d["r"]), np.asarray(d["logp"]), view.temperature(obs_t).numpy(), view.gamma)
                m = min(len(g), horizon)  # steps whose returns are complete up to the mc_tail weight
                f_all[name].append(view.f(obs_t[:m], th.as_tensor(np.asarray(d["act"][:m]))).numpy())
                g_all[name].append(g[:m])
        return {name: _mc_metrics(f_all[name], g_all[name]) for name in views}

    def _monte_carlo_shared(self, views: dict[str, SharedCriticView]) -> dict[str, dict[str, float]]:
        """:meth:`_monte_carlo` for a shared critic (``mixedne_ld``): both actors sample, the combined action is
        executed (no force), and the soft return adds the view's entropy term after each reward, as its target."""
        tr = self.trainer
        ((name, view),) = views.items()
        game, zero, horizon = self._mc_setup(view.gamma)
        f_all, g_all = [], []
        for k in range(self.config.mc_episodes):
            observations, actions, entropy, rewards = [], [], [], []

            def policy(obs: np.ndarray, actions=actions, entropy=entropy) -> tuple[np.ndarray, np.ndarray]:
                a, e = view.soft_value_terms(th.as_tensor(obs, dtype=th.float32)[None])
                scaled = a.numpy()[0].astype(np.float64)
                actions.append(scaled)
                entropy.append(float(e[0]))
                return tr.protagonist_action(obs, view.to_env(scaled), scaled, None), zero

            def record(t: Transition, observations=observations, rewards=rewards) -> None:
                observations.append(t.obs)
                rewards.append(t.reward)

            self._mc_episode(game, k, policy, record)
            # soft_returns subtracts tau log pi after each reward: tau = 1 and "log pi" = -(entropy term)
            g = soft_returns(np.asarray(rewards), -np.asarray(entropy), np.ones(len(rewards)), view.gamma)
            m = min(len(g), horizon)  # steps whose returns are complete up to the mc_tail weight
            obs_t = th.as_tensor(np.asarray(observations[:m]), dtype=th.float32)
            f_all.append(view.f(obs_t, th.as_tensor(np.asarray(actions[:m]), dtype=th.float32)).numpy())
            g_all.append(g[:m])
        return {name: _mc_metrics(f_all, g_all)}


def _mc_metrics(f_parts: list[np.ndarray], g_parts: list[np.ndarray]) -> dict[str, float]:
    """The mc group from the critic's values f and the soft returns G of the rollouts' steps."""
    from scipy.stats import spearmanr  # here, not at module level: it would add ~0.8 s to every `qarl train`

    f, g = np.concatenate(f_parts).astype(np.float64), np.concatenate(g_parts)
    ok = len(f) > 1 and np.ptp(f) > 0 and np.ptp(g) > 0  # a constant sequence has no rank correlation
    return {
        "bias": float(np.mean(f - g)),
        "rmse": float(np.sqrt(np.mean((f - g) ** 2))),
        "spearman": float(spearmanr(f, g).statistic) if ok else math.nan,
        "return_mean": float(np.mean(g)),
    }
