"""Neural diagnostics of the SAC critics of both players: Bellman error, feature-class completeness, value error, shift.

Motivation: Zanette, "When is Realizability Sufficient for Off-Policy Reinforcement Learning?" (ICML 2023), where the
error of off-policy TD depends on how far the function class F is from Bellman complete and on how far the data are
from the policy's distribution (see :mod:`qarl.diagnostics.finite` for the exact finite-MDP versions). Every
definition below is this project's own estimator, chosen to mirror those quantities for a neural critic; none is
claimed to equal a constant of the paper.

:class:`NeuralDiagnostics` is a callback run by :func:`qarl.experiment.trial.run_trial` after every iteration: on every
``diagnostics.every``-th iteration (1-based: iterations every, 2 every, ...) it logs, for each critic the trainer
lists in ``trainer.critic_views()`` (by default one :class:`~qarl.sac.views.SACCriticView` per player whose learner is
a stable-baselines3 SAC, including QARL's alpha-conditioned adversary), the columns ``diag/<player>/<group>/<name>``
listed in :data:`GROUPS` into the progress row; on the other iterations the same columns are NaN, so the parquet
schema is stable. Methods without SAC critics get no columns for that player: ``cat`` has no adversary player (its
protagonist is diagnosed). A method whose one critic of the executed action is shared by both players declares it as
a :class:`~qarl.sac.views.SharedCriticView` (``mixedne_ld``: ``diag/joint/<group>/<name>``, with its own backup: f =
min_j Q_j, the next action the mixture of both actors' samples, both entropy terms) and gets Monte-Carlo rollouts of
the combined action; its buffer stores no behaviour density of the mixed actions, so its ``shift`` columns are NaN,
and there is no other player to redraw, so its ``paired`` columns are NaN.

Notation, per player: the replay buffer holds (s, a, r, s', d) with a the action scaled to [-1, 1], r the player's
reward (r for the protagonist, -r for the adversary) and d = 1 only for a true termination (a time-limit truncation
bootstraps, as in training); pi is the player's current policy and tau(s) its entropy temperature (the learned
temperature, or for QARL's alpha-conditioned learners the alpha in the last observation entry of s); Q_1, Q_2 are the
twin critics and f(s, a) = min_j Q_j(s, a), the value SAC's actor and targets use.

Samples. The *uniform sample* is ``sample_size`` transitions drawn uniformly without replacement from the player's
whole buffer (the distribution the critic is trained on); the *recent slice* is the ``recent_size`` most recent
transitions (at most half the buffer; the end of the latest learning phase). The K' = ``next_actions`` next actions
a' ~ pi(.|s') of each transition are split into two independent *halves* (K' // 2 and the rest); half j gives the
one-half backup

    y_j(s, a) = r + gamma (1 - d) mean_{a' in half j} [ g(s', a') - tau(s') log pi(a'|s') ]

of a function g (g = f for the ``bellman`` group, g = Q_1 for ``feature_class``). Crossing the halves,
E[(g - y_1)(g - y_2) | s, a, s'] = (g - E[y | s, a, s'])^2, removes the next actions' noise from squared errors.
The stored s' is one draw: the next-state part of the backup's variance (from the other player's stochastic actions
and QARL's alpha draws) stays in every buffer-based squared error; the ``paired`` group measures it. Square roots of
estimated squares are signed, root(x) = sign(x) sqrt(|x|) (:func:`qarl.diagnostics.feature_class.root`): a negative
value means the estimate's noise exceeds the quantity; nothing is clipped.

Groups and columns (``<group>/<name>``; all computed with the critics and policies frozen):

* ``bellman``: the diagnosed function f. ``bellman/residual`` = root(mean over the uniform sample of
  (f - y_1)(f - y_2)), the Bellman residual ||f - T f|| with the next-action noise crossed out (the next-state noise
  remains, see above); ``bellman/residual_recent``: the same on the recent slice (larger than ``residual`` when the
  critic has not caught up with the newest data); ``bellman/bias``: mean(f - (y_1 + y_2) / 2) on the uniform sample
  (> 0: the critic over-estimates its own backup); ``bellman/q_mean``: mean f on the uniform sample.
* ``feature_class``: the exact linear-algebra group of :mod:`qarl.diagnostics.feature_class` on the uniform sample.
  The class is the linear head on Q_1's frozen last hidden layer with a constant, z(s, a) = [phi_1(s, a); 1]; the
  diagnosed function is Q_1 = z^T w itself (w: Q_1's last layer), which lies in the class exactly. The columns are
  :func:`~qarl.diagnostics.feature_class.estimate`'s keys with the same names: ``feature_class/td_distance``
  (distance of Q_1 from the class's TD fixed point, return units), ``feature_class/td_distance_rel`` (the same over
  the spread of Q_1), ``feature_class/td_margin`` (stability margin of expected TD in the class),
  ``feature_class/bellman_error``, ``feature_class/projected_bellman_error``, ``feature_class/local_ibe`` (by
  Pythagoras), ``feature_class/completeness_ratio`` (IBE / BE: the share of the Bellman error outside the class) and
  ``feature_class/incompleteness`` (alpha-hat on the top-k principal subspace of G, k = ``feature_rank`` or, with 0,
  the entropy effective rank of z, rounded; a supremum, so biased upwards by estimation noise and growing with k: on
  a small-scale cartpole critic after one iteration it read 0.56 at k = 2, 0.76 at k = 20 and 0.95 at k = 160; the
  buffer's one next state adds the next-state variance of the features to its numerator, see the ``paired`` group).
  The ridge added to G is ``ridge`` times the mean eigenvalue of G. Further: ``feature_class/twin_gap`` = sqrt(mean
  (f - Q_1)^2), how far the diagnosed min-twin critic f is from the class's member Q_1;
  ``feature_class/realizability`` and ``feature_class/return_residual``:
  :func:`~qarl.diagnostics.feature_class.realizability` on the Monte-Carlo rollouts (below): Q_1's distance from the
  projection of the soft returns on the class, cross-fitted by episode, and the projection's own held-out residual
  (NaN with fewer than 2 rollouts).
* ``paired``: Bellman errors with independent next states. On up to ``paired_states`` states of the Monte-Carlo
  rollouts (evenly spaced over their in-horizon steps), the game's state is saved and, for each diagnosed player, the
  step is re-simulated twice from it with the player's own action fixed and the other player's action drawn afresh
  from its policy: one next state per half, K' // 2 next actions each. The crossed products are then free of the
  next-state noise too. ``paired/bellman_error``: root of the crossed squared Bellman error of Q_1 on these states
  (as ``feature_class/bellman_error``, but on the rollouts' distribution, not the buffer's);
  ``paired/bellman_error_one_state``: the same with both halves on the first next state (as the buffer has it);
  ``paired/next_state_bias`` = root(the difference of the two squares): the part one stored next state adds to a
  squared Bellman error there; ``paired/states``: how many states. (No projection is computed on these few hundred
  states: with about as many features, an in-sample projection would absorb most of the signal.)
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
* ``mc_curriculum``: the ``mc`` columns (``mc_curriculum/bias``, ``mc_curriculum/rmse``, ``mc_curriculum/spearman``,
  ``mc_curriculum/return_mean``) for methods whose training state differs from their evaluation state
  (``trainer.prepare_training_state``: QARL's rollout k uses the alpha of training episode k of the last iteration,
  the values the critics were trained on); NaN for the others. When a method has such a state, the ``paired`` states
  and the realizability columns come from these rollouts, else from the ``mc`` ones.
* ``shift``: action-level distribution shift of the replay data from the current policy. Each stored action carries
  the log-probability log b(a|s) it had under the acting policy when it was collected
  (``Player.behaviour_log_prob``, parallel to the buffer positions, checkpointed); the importance weights are
  w = pi(a|s) / b(a|s) with the same squashed-Gaussian density. Actions saturated at the bounds (some entry with
  |a| > 1 - 1e-5) are left out: there the density's clipped tanh inverse is not the action's pre-image, so their
  log-probabilities are meaningless (``shift/saturated`` = the fraction left out of the uniform sample).
  ``shift/ess`` = (sum w)^2 / (n sum w^2) in (0, 1], the normalised effective sample size on ``shift_samples``
  transitions drawn uniformly from the whole buffer (1: the data look as if drawn from pi; small: a few transitions
  carry the weight); ``shift/ess_recent``: the same on the recent slice; ``shift/kl`` = mean(log b - log pi) on the
  uniform sample, an estimate of the average KL(b || pi) over the buffer's states; ``shift/max_weight`` =
  max w / sum w on the uniform sample. Transitions without a stored log-probability (checkpoints written before they
  were recorded) are left out.
* ``representation``: health of Q_1's penultimate features phi(s, a) on the uniform sample, stacked into Phi (n x h)
  with singular values sigma_1 >= ... ``representation/srank``: the effective rank of Kumar et al. (ICLR 2021), the
  smallest k with sum_{i<=k} sigma_i >= 0.99 sum_i sigma_i; ``representation/erank``: the entropy rank of Roy and
  Vetterli (2007), exp(-sum_i p_i log p_i) with p = sigma / sum sigma; ``representation/dead_units``: the fraction of
  the h units that are 0 on every sampled transition; ``representation/feature_dot``: mean phi(s, a) . phibar(s'),
  phibar the mean of phi(s', a') over the first half's next actions, over non-terminal transitions (DR3's feature
  co-adaptation, Kumar et al., ICLR 2022: it grows when TD drives successive features together).

Diagnostics never change training: they run with the critic and actor in evaluation mode under ``torch.no_grad``,
with numpy's and torch's global generators saved before and restored after (inside, torch's generator is seeded from
(trial seed, iteration) so the columns are reproducible and a resumed trial logs the same values), on their own game,
and read the buffers without sampling them. The trainer's curriculum value is changed for the rollouts and is set
again by the trainer before its next episode.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th

import envs
from qarl.config import require_at_least
from qarl.diagnostics import feature_class
from qarl.sac.views import CHUNK, CriticView, SACCriticView, SharedCriticView
from qarl.training.loop import ADVERSARY, PROTAGONIST, TwoPlayerTrainer
from qarl.training.rollout import Transition, rollout
from qarl.training.seeds import stream_seed

#: The columns of each player, ``diag/<player>/<group>/<name>`` (definitions in the module docstring).
GROUPS: dict[str, tuple[str, ...]] = {
    "bellman": ("residual", "residual_recent", "bias", "q_mean"),
    "feature_class": (
        "td_distance",
        "td_distance_rel",
        "td_margin",
        "bellman_error",
        "projected_bellman_error",
        "local_ibe",
        "completeness_ratio",
        "incompleteness",
        "twin_gap",
        "realizability",
        "return_residual",
    ),
    "paired": ("bellman_error", "bellman_error_one_state", "next_state_bias", "states"),
    "mc": ("bias", "rmse", "spearman", "return_mean"),
    "mc_curriculum": ("bias", "rmse", "spearman", "return_mean"),
    "shift": ("ess", "ess_recent", "kl", "max_weight", "saturated"),
    "representation": ("srank", "erank", "dead_units", "feature_dot"),
}

_MIN_TRANSITIONS = 8  # fewer stored transitions: the player's columns stay NaN
_SATURATED = 1.0 - 1e-5  # |a| beyond this in some entry: a saturated action (its log-density is not meaningful)


@dataclass(frozen=True)
class DiagnosticsConfig:
    """Neural diagnostics of the SAC critics (defaults: paper scale; see :mod:`qarl.diagnostics.neural`)."""

    enabled: bool = True
    """Run the diagnostics (False: no ``diag/`` columns at all)."""
    every: int = 10
    """Diagnose after every this many iterations (the other rows hold NaN)."""
    sample_size: int = 16384
    """Transitions drawn uniformly from a player's buffer for the bellman, feature_class and representation groups."""
    recent_size: int = 2048
    """Most recent transitions of a player's buffer forming the recent slice (at most half the buffer is used)."""
    next_actions: int = 10
    """K': next actions sampled from the current policy per transition, split into two halves (at least 2)."""
    feature_rank: int = 0
    """Dimension of the principal subspace for the incompleteness factor (0: the features' entropy effective rank)."""
    ridge: float = 1e-6
    """Ridge added to the feature Gram matrix, relative to its mean eigenvalue."""
    paired_states: int = 512
    """Rollout states re-simulated with two independent next states (the paired group; 0: its columns are NaN)."""
    mc_episodes: int = 2
    """Rollouts of the Monte-Carlo value error (0: the mc columns are NaN; fewer than 2: no realizability)."""
    mc_tail: float = 0.01
    """Rollouts run past the horizon until gamma^L <= mc_tail, so returns of in-horizon steps are complete."""
    shift_samples: int = 4096
    """Transitions drawn uniformly from the buffer for the importance-weight statistics."""

    def validate(self) -> None:
        require_at_least(self, ("every",), 1)
        require_at_least(self, ("next_actions", "sample_size", "recent_size", "shift_samples"), 2)
        require_at_least(self, ("feature_rank", "paired_states", "mc_episodes"), 0)
        if not (math.isfinite(self.ridge) and self.ridge >= 0):
            raise ValueError(f"ridge must be a non-negative number, got {self.ridge}")
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
    return _srank_from(_singular_values(features), delta)


def erank(features: np.ndarray) -> float:
    """Roy and Vetterli (2007): exp of the entropy of the normalised singular values (0 for all-zero)."""
    return _erank_from(_singular_values(features))


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
# Feature-class data of one critic


def critic_features(view: CriticView, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """z(s, a): Q_1's last hidden layer, with a constant 1 appended when Q_1's last layer has a bias (B, d)."""
    phi = view.features(obs, actions)
    if view.q1[-1].bias is None:
        return phi
    return th.cat([phi, th.ones(len(phi), 1, dtype=phi.dtype)], dim=1)


def head_weights(view: CriticView) -> np.ndarray:
    """w with Q_1(s, a) = z(s, a)^T w: Q_1's last layer's weights (and bias, matching :func:`critic_features`)."""
    last = view.q1[-1]
    parts = [last.weight.detach().reshape(-1)] + ([] if last.bias is None else [last.bias.detach().reshape(-1)])
    return th.cat(parts).double().numpy()


@dataclass
class FeatureData:
    """Inputs of :func:`qarl.diagnostics.feature_class.estimate` for one critic, plus the diagnosed f's backups."""

    z: np.ndarray  # (n, d) features at (s, a)
    w: np.ndarray  # (d,) Q_1 = z @ w
    z_next: np.ndarray  # (2, n, d) per half: (1 - done) times the mean next features
    r_next: np.ndarray  # (2, n) per half: reward plus gamma (1 - done) times the mean entropy term
    f: np.ndarray  # (n,) the diagnosed f(s, a)
    y: np.ndarray  # (2, n) per half: the one-half backups of f
    gamma: float

    def q1_bellman_error_sq(self) -> float:
        """mean (Q_1 - y'_1)(Q_1 - y'_2) with y'_j = r_next_j + gamma z_next_j w: the crossed squared Bellman error of
        Q_1 (the feature-class estimate's BE^2, without the projection)."""
        q1 = self.z @ self.w
        d = [q1 - (self.r_next[j] + self.gamma * (self.z_next[j] @ self.w)) for j in range(2)]
        return float(np.mean(d[0] * d[1]))

    def estimate(self, ridge: float, rank: int | None) -> dict[str, float]:
        """:func:`~qarl.diagnostics.feature_class.estimate` with the ridge relative to G's mean eigenvalue."""
        return feature_class.estimate(
            self.z, self.w, self.z_next, self.r_next, self.gamma, ridge=relative_ridge(self.z, ridge), rank=rank
        )


def relative_ridge(z: np.ndarray, ridge: float) -> float:
    """``ridge`` times the mean eigenvalue of the features' Gram matrix (trace(G) / d = mean |z|^2 / d)."""
    return ridge * float(np.mean(np.sum(z * z, axis=1))) / z.shape[1]


@th.no_grad()
def feature_class_data(
    view: CriticView,
    obs: th.Tensor,
    actions: th.Tensor,
    next_obs: Sequence[th.Tensor],
    rewards: Sequence[th.Tensor],
    not_done: Sequence[th.Tensor],
    next_actions: Sequence[int],
) -> FeatureData:
    """The two halves' next features and backups for transitions (s, a) -> (r_j, s'_j, 1 - d_j), j = 1, 2.

    Half j draws ``next_actions[j]`` actions a' ~ pi(.|s'_j) with ``view.soft_value_terms`` (torch's generator) and
    averages z(s'_j, a'), f(s'_j, a') and the entropy term. Both halves may share one next state (a buffer transition)
    or have their own (re-simulated states). Runs under ``torch.no_grad``.
    """
    z = critic_features(view, obs, actions).double().numpy()
    gamma = view.gamma
    z_next, r_next, y = [], [], []
    for j in range(2):
        k = int(next_actions[j])
        if k < 1:
            raise ValueError(f"each half needs at least one next action, got {list(next_actions)}")
        feats, values, entropy = [], [], []
        m = max(1, CHUNK // k)
        s_next = next_obs[j]
        for i in range(0, len(s_next), m):
            s = s_next[i : i + m].repeat_interleave(k, dim=0)
            a, e = view.soft_value_terms(s)
            rows = len(s) // k
            feats.append(critic_features(view, s, a).reshape(rows, k, -1).mean(dim=1))
            values.append(view.f(s, a).reshape(rows, k).mean(dim=1))
            entropy.append(e.reshape(rows, k).mean(dim=1))
        nd = not_done[j].double()
        phi, v, ent = th.cat(feats).double(), th.cat(values).double(), th.cat(entropy).double()
        r = rewards[j].double()
        z_next.append((nd[:, None] * phi).numpy())
        r_next.append((r + gamma * nd * ent).numpy())
        y.append((r + gamma * nd * (v + ent)).numpy())
    f = view.f(obs, actions).double().numpy()
    return FeatureData(z, head_weights(view), np.stack(z_next), np.stack(r_next), f, np.stack(y), gamma)


def crossed_residual(f: np.ndarray, y: np.ndarray) -> float:
    """root(mean (f - y_1)(f - y_2)): the Bellman residual with the halves' noise crossed out."""
    return feature_class.root(float(np.mean((f - y[0]) * (f - y[1]))))


def _singular_values(x: np.ndarray) -> np.ndarray:
    return np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)


def _srank_from(s: np.ndarray, delta: float = 0.01) -> int:
    if s.sum() <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(s) / s.sum(), 1.0 - delta - 1e-12) + 1)


def _erank_from(s: np.ndarray) -> float:
    if s.sum() <= 0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


@dataclass
class _Rollouts:
    """One diagnosed player's records of the Monte-Carlo rollouts (in-horizon steps only where noted)."""

    obs: list[np.ndarray]
    act: list[np.ndarray]
    returns: list[np.ndarray]  # per episode, soft returns of the in-horizon steps
    f: list[np.ndarray]  # per episode, f at the in-horizon steps
    paired: dict[str, list] | None = None  # re-simulated states: obs, act, next_obs (2 lists), reward, not_done


# ---------------------------------------------------------------------------------------------------------------
# The callback


class NeuralDiagnostics:
    """The diagnostics callback of one trial: ``on_iteration_end`` after every ``trainer.run_iteration()``.

    Diagnoses every critic of ``trainer.critic_views()`` (see the module docstring); :attr:`columns` lists the columns
    it adds to every progress row. :attr:`last_seconds` holds the wall time of the last call and
    :attr:`last_group_seconds` its split by group (benchmarks read them; they are not logged, so that progress rows
    stay deterministic).
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
                rollouts = self._rollout_groups(views)
                for k, name in enumerate(self.player_names):
                    values = rollouts.get(name, {})
                    inputs = {key: values.pop(key) for key in ("_realizability", "_paired") if key in values}
                    values.update(self._diagnose(views[name], seed + 1 + k, inputs))
                    for (group, metric), v in values.items():
                        out[column(name, group, metric)] = float(v)
        finally:
            for policy, mode in policies:
                policy.set_training_mode(mode)
        self.last_seconds = time.perf_counter() - t0
        return out

    def _time(self, group: str, since: float) -> float:
        now = time.perf_counter()
        self.last_group_seconds[group] += now - since
        return now

    # ------------------------------------------------------------------ per player, from the buffer
    def _diagnose(self, view: CriticView, seed: int, inputs: dict[str, Any]) -> dict[tuple[str, str], float]:
        """The bellman, feature_class, shift and representation groups of one critic."""
        cfg, n = self.config, view.size
        if n < _MIN_TRANSITIONS:
            return {}
        rng = np.random.default_rng(seed)
        n_recent = min(cfg.recent_size, n // 2)
        recent = (view.pos - 1 - np.arange(n_recent)[::-1]) % view.capacity  # the most recent, oldest first
        sample = np.sort(rng.choice(n, size=min(cfg.sample_size, n), replace=False))
        halves = (cfg.next_actions // 2, cfg.next_actions - cfg.next_actions // 2)
        out: dict[tuple[str, str], float] = {}

        t = time.perf_counter()
        b, br = view.batch(sample), view.batch(recent)
        data = feature_class_data(view, b.obs, b.actions, [b.next_obs] * 2, [b.rewards] * 2, [b.not_done] * 2, halves)
        recent_data = feature_class_data(
            view, br.obs, br.actions, [br.next_obs] * 2, [br.rewards] * 2, [br.not_done] * 2, halves
        )
        out["bellman", "residual"] = crossed_residual(data.f, data.y)
        out["bellman", "residual_recent"] = crossed_residual(recent_data.f, recent_data.y)
        out["bellman", "bias"] = float(np.mean(data.f - data.y.mean(axis=0)))
        out["bellman", "q_mean"] = float(np.mean(data.f))
        t = self._time("bellman", t)

        phi = data.z[:, : view.q1[-1].in_features]
        s = _singular_values(phi)
        rank = cfg.feature_rank or max(1, round(_erank_from(_singular_values(data.z))))
        est = data.estimate(cfg.ridge, min(rank, data.z.shape[1]))
        for name in GROUPS["feature_class"]:
            if name in est:
                out["feature_class", name] = est[name]
        out["feature_class", "twin_gap"] = float(np.sqrt(np.mean((data.f - data.z @ data.w) ** 2)))
        real = inputs.get("_realizability")
        if real is not None:
            z_r, returns, groups = real
            r = feature_class.realizability(
                z_r, z_r @ data.w, returns, groups, ridge=relative_ridge(z_r, self.config.ridge)
            )
            out["feature_class", "realizability"] = r["realizability"]
            out["feature_class", "return_residual"] = r["return_residual"]
        paired = inputs.get("_paired")
        if paired is not None:
            out.update(self._paired(view, paired, halves))
        t = self._time("feature_class", t)

        if view.has_behaviour_density:
            out.update(self._shift(view, rng.choice(n, size=min(cfg.shift_samples, n), replace=False), br))
        t = self._time("shift", t)

        out["representation", "srank"] = float(_srank_from(s))
        out["representation", "erank"] = _erank_from(s)
        out["representation", "dead_units"] = float((np.abs(phi).max(axis=0) == 0).mean())
        live = b.not_done.numpy() > 0
        h = phi.shape[1]
        if live.any():
            out["representation", "feature_dot"] = float(np.mean(np.sum(phi[live] * data.z_next[0][live, :h], axis=1)))
        else:
            out["representation", "feature_dot"] = math.nan
        self._time("representation", t)
        return out

    def _paired(self, view: CriticView, rec: dict[str, Any], halves: tuple[int, int]) -> dict[tuple[str, str], float]:
        """The paired group from re-simulated states (two independent next states per state)."""
        f32 = lambda x: th.as_tensor(np.asarray(x), dtype=th.float32)  # noqa: E731
        obs, act = f32(rec["obs"]), f32(rec["act"])
        nxt = [f32(rec["next_obs"][j]) for j in range(2)]
        rew = [f32(rec["reward"][j]) for j in range(2)]
        nd = [f32(rec["not_done"][j]) for j in range(2)]
        k = max(halves[0], 1)
        two = feature_class_data(view, obs, act, nxt, rew, nd, (k, k))
        one = feature_class_data(view, obs, act, [nxt[0]] * 2, [rew[0]] * 2, [nd[0]] * 2, (k, k))
        be2_two, be2_one = two.q1_bellman_error_sq(), one.q1_bellman_error_sq()
        return {
            ("paired", "bellman_error"): feature_class.root(be2_two),
            ("paired", "bellman_error_one_state"): feature_class.root(be2_one),
            ("paired", "next_state_bias"): feature_class.root(be2_one - be2_two),
            ("paired", "states"): float(len(obs)),
        }

    @staticmethod
    def _shift(view: CriticView, uniform: np.ndarray, recent: Any) -> dict[tuple[str, str], float]:
        """The shift group from the behaviour log-probabilities stored with the actions (saturated actions dropped)."""
        out: dict[tuple[str, str], float] = {}

        def log_weights(batch: Any) -> tuple[np.ndarray, float]:
            log_w = (view.log_prob(batch.obs, batch.actions) - batch.behaviour_log_prob).numpy()
            saturated = (batch.actions.abs() > _SATURATED).any(dim=1).numpy()
            keep = np.isfinite(log_w) & ~saturated
            return log_w[keep], float(saturated.mean()) if len(saturated) else math.nan

        log_w, saturated = log_weights(view.batch(uniform))
        out["shift", "ess"], out["shift", "max_weight"] = effective_sample_size(log_w)
        out["shift", "kl"] = float(-log_w.mean()) if log_w.size else math.nan
        out["shift", "saturated"] = saturated
        out["shift", "ess_recent"] = effective_sample_size(log_weights(recent)[0])[0]
        return out

    # ------------------------------------------------------------------ Monte-Carlo rollouts
    def _rollout_groups(self, views: dict[str, CriticView]) -> dict[str, dict[Any, Any]]:
        """The mc and mc_curriculum groups, and the rollout data of the realizability and paired columns
        (under the keys ``_realizability`` and ``_paired``, consumed by :meth:`_diagnose`)."""
        cfg = self.config
        out: dict[str, dict[Any, Any]] = {name: {} for name in views}
        if cfg.mc_episodes == 0:
            return out
        t = time.perf_counter()
        if self.joint:
            runs = self._monte_carlo_shared(views)
            for name, run in runs.items():
                out[name].update({("mc", m): v for m, v in _mc_metrics(run.f, run.returns).items()})
                out[name]["_realizability"] = self._realizability_inputs(views[name], run)
            self._time("mc", t)
            return out
        training = self.trainer.prepare_training_state(0)
        if training:
            t_curriculum, paired_before = time.perf_counter(), self.last_group_seconds["paired"]
            runs = self._monte_carlo(views, training=True, paired=cfg.paired_states > 0)
            elapsed = time.perf_counter() - t_curriculum
            # the re-simulated states are timed as the paired group, not as the rollouts they branch from
            self.last_group_seconds["mc_curriculum"] += elapsed - (self.last_group_seconds["paired"] - paired_before)
            t += elapsed  # the mc group's time below leaves these rollouts out
            for name, run in runs.items():
                out[name].update({("mc_curriculum", m): v for m, v in _mc_metrics(run.f, run.returns).items()})
        paired_source = runs if training else None
        eval_runs = self._monte_carlo(views, training=False, paired=not training and cfg.paired_states > 0)
        for name, run in eval_runs.items():
            out[name].update({("mc", m): v for m, v in _mc_metrics(run.f, run.returns).items()})
        source = paired_source if training else eval_runs
        for name, run in source.items():
            out[name]["_realizability"] = self._realizability_inputs(views[name], run)
            if run.paired is not None and run.paired["obs"]:
                out[name]["_paired"] = run.paired
        paired_in_mc = 0.0 if training else self.last_group_seconds["paired"]
        self.last_group_seconds["mc"] += time.perf_counter() - t - paired_in_mc
        return out

    def _realizability_inputs(self, view: CriticView, run: _Rollouts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features z at the rollouts' in-horizon steps, their soft returns, the episode of each)."""
        obs = th.as_tensor(np.concatenate([np.asarray(o) for o in run.obs]), dtype=th.float32)
        act = th.as_tensor(np.concatenate([np.asarray(a) for a in run.act]), dtype=th.float32)
        z = critic_features(view, obs, act).double().numpy()
        groups = np.concatenate([np.full(len(g), e) for e, g in enumerate(run.returns)])
        return z, np.concatenate(run.returns), groups

    def _diag_game(self, tail: int):
        loop = self.trainer.loop
        if self._game is None:
            self._game = envs.make(
                self.trainer.task_id, horizon=loop.horizon + tail, adversary_bound=loop.adversary_bound
            )
        return self._game

    def _mc_setup(self, gamma: float) -> tuple[Any, np.ndarray, int]:
        """(the diagnostics' game, long enough for the mc_tail, a zero force, the training horizon)."""
        tail = math.ceil(math.log(self.config.mc_tail) / math.log(gamma))
        game = self._diag_game(tail)
        return game, np.zeros(game.adversary_action_space.shape), self.trainer.loop.horizon

    def _mc_episode(self, game: Any, k: int, policy: Callable, record: Callable[[Transition], None]) -> None:
        """Monte-Carlo rollout k, reset with the diagnostics' own seed stream (the same initial states every time)."""
        tr = self.trainer
        seed = stream_seed(tr.seed, "diagnostics", k)
        rollout(game, policy, seed=seed, on_reset=lambda obs: tr.after_reset(game, None), on_step=record)

    def _monte_carlo(self, views: dict[str, SACCriticView], training: bool, paired: bool) -> dict[str, _Rollouts]:
        """Rollouts of both players, in the method's training state (rollout k: training episode k's curriculum
        value) or evaluation state; with ``paired``, evenly spaced in-horizon states are re-simulated twice per
        diagnosed player (its own action fixed, the other player's redrawn)."""
        tr = self.trainer
        if PROTAGONIST not in views:
            return {}
        game, zero, horizon = self._mc_setup(max(v.gamma for v in views.values()))
        episodes = self.config.mc_episodes
        stride = max(1, math.ceil(episodes * horizon / max(self.config.paired_states, 1)))
        runs = {n: _Rollouts([], [], [], []) for n in views}
        if paired:
            for run in runs.values():
                run.paired = {"obs": [], "act": [], "next_obs": ([], []), "reward": ([], []), "not_done": ([], [])}

        def sample(name: str, p_obs: np.ndarray) -> tuple[np.ndarray, float]:
            a, logp = views[name].model.actor.action_log_prob(th.as_tensor(p_obs, dtype=th.float32)[None])
            return a.numpy()[0], float(logp[0])

        def executed(scaled: dict[str, np.ndarray], p_obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
            a_p = views[PROTAGONIST].model.policy.unscale_action(scaled[PROTAGONIST])
            force = zero
            if ADVERSARY in views:
                force = tr.adversary_force(views[ADVERSARY].model.policy.unscale_action(scaled[ADVERSARY]))
            with th.enable_grad():  # a method's action hook may use autograd (cat's MAS attack)
                return tr.protagonist_action(p_obs[PROTAGONIST], a_p, scaled[PROTAGONIST], None), force

        for k in range(episodes):
            if training:
                tr.prepare_training_state(k)
            else:
                tr.prepare_evaluation()
            traj: dict[str, dict[str, list]] = {n: {"obs": [], "act": [], "logp": [], "r": []} for n in views}
            t_step = [0]

            def policy(obs: np.ndarray, traj=traj, t_step=t_step) -> tuple[np.ndarray, np.ndarray]:
                scaled: dict[str, np.ndarray] = {}
                p_obs: dict[str, np.ndarray] = {}
                for name in views:
                    p_obs[name] = tr.player_obs(name, obs)
                    scaled[name], logp = sample(name, p_obs[name])
                    traj[name]["obs"].append(p_obs[name])
                    traj[name]["act"].append(scaled[name])
                    traj[name]["logp"].append(logp)
                t = t_step[0]
                t_step[0] += 1
                if paired and t < horizon and t % stride == 0:
                    self._resimulate(game, views, scaled, p_obs, runs, sample, executed)
                return executed(scaled, p_obs)

            def record(t: Transition, traj=traj) -> None:
                for name in views:
                    traj[name]["r"].append(t.reward if name == PROTAGONIST else -t.reward)

            self._mc_episode(game, k, policy, record)
            for name, view in views.items():
                d = traj[name]
                obs_t = th.as_tensor(np.asarray(d["obs"]), dtype=th.float32)
                g = soft_returns(np.asarray(d["r"]), np.asarray(d["logp"]), view.temperature(obs_t).numpy(), view.gamma)
                m = min(len(g), horizon)  # steps whose returns are complete up to the mc_tail weight
                runs[name].obs.append(d["obs"][:m])
                runs[name].act.append(d["act"][:m])
                runs[name].f.append(view.f(obs_t[:m], th.as_tensor(np.asarray(d["act"][:m]))).numpy())
                runs[name].returns.append(g[:m])
        return runs

    def _resimulate(self, game, views, scaled, p_obs, runs, sample, executed) -> None:
        """Two independent next states per diagnosed player from the game's current state (then restored)."""
        t = time.perf_counter()
        tr = self.trainer
        state = game.save_state()
        for name in views:
            rec = runs[name].paired
            rec["obs"].append(p_obs[name])
            rec["act"].append(scaled[name])
            for j in range(2):
                acts = {n: scaled[n] if n == name else sample(n, p_obs[n])[0] for n in views}
                a_env, force = executed(acts, p_obs)
                game.restore_state(state)
                next_obs, r, terminated, _, _ = game.step(a_env, force)
                rec["next_obs"][j].append(tr.player_obs(name, next_obs))
                rec["reward"][j].append(r if name == PROTAGONIST else -r)
                rec["not_done"][j].append(0.0 if terminated else 1.0)
        game.restore_state(state)
        self.last_group_seconds["paired"] += time.perf_counter() - t

    def _monte_carlo_shared(self, views: dict[str, SharedCriticView]) -> dict[str, _Rollouts]:
        """:meth:`_monte_carlo` for a shared critic (``mixedne_ld``): both actors sample, the combined action is
        executed (no force), and the soft return adds the view's entropy term after each reward, as its target."""
        tr = self.trainer
        ((name, view),) = views.items()
        game, zero, horizon = self._mc_setup(view.gamma)
        run = _Rollouts([], [], [], [])
        for k in range(self.config.mc_episodes):
            tr.prepare_evaluation()
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
            act_t = th.as_tensor(np.asarray(actions[:m]), dtype=th.float32)
            run.obs.append(observations[:m])
            run.act.append(actions[:m])
            run.f.append(view.f(obs_t, act_t).numpy())
            run.returns.append(g[:m])
        return {name: run}


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
