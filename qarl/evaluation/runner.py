"""Robustness evaluation of a trained trial (docs/results.md), written to ``eval.parquet``.

Metrics (one tidy row per episode): ``nominal`` (zero force, nominal parameters), ``adversary`` (the
co-trained adversary at the method's evaluation setting, e.g. alpha = 0), ``worst_case`` (a fresh SAC adversary
trained against the frozen protagonist for ``worst_case_steps`` env steps; 0 disables), ``grid`` (the
``grid_points`` x ``grid_points`` grid over the task's two robustness parameters, both ends included, zero
force), ``sweep_x`` / ``sweep_y`` (1-D sweeps, the other parameter nominal), ``disturbance_uniform`` (a force
drawn uniformly within the bound at every step) and ``disturbance_step`` (zero force, then the bound on every
dimension from the middle of the episode on). Each metric for every policy mode asked for.

Episodes run in lock-step batches: many games step together and each control step makes one forward pass per
player for all of them (``TwoPlayerTrainer.eval_actions``). Games are built lazily, one pool per batch size, and
reused from cell to cell with ``set_params``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch as th

import envs
from qarl.config import require_at_least
from qarl.training.loop import TwoPlayerTrainer
from qarl.training.rollout import rollout
from qarl.training.seeds import EVALUATION_METRICS, stream_seed

POLICY_MODES = ("deterministic", "stochastic")


@dataclass(frozen=True)
class EvalConfig:
    """What the end-of-trial evaluation runs (defaults: paper scale)."""

    enabled: bool = True
    """Evaluate at the end of the trial."""
    nominal_episodes: int = 20
    """Episodes of the nominal, adversary, worst-case and disturbance metrics."""
    grid_points: int = 11
    """Points per parameter axis of the robustness grid and sweeps (both ends included)."""
    episodes_per_cell: int = 5
    """Episodes per grid cell and sweep point (K)."""
    worst_case_steps: int = 50_000
    """Env steps of the fresh worst-case adversary's training (0 disables the metric)."""
    policy_modes: tuple[str, ...] = POLICY_MODES
    """Policy modes evaluated: deterministic (mean actions) and/or stochastic (sampled)."""
    batch_size: int = 64
    """Games stepped in lock-step."""
    worst_case_learning_starts: int = 3000
    """Transitions before the worst-case adversary's first update (its other settings: the protagonist's SACConfig)."""
    worst_case_bound: float | None = None
    """Force bound of the worst-case adversary (every dimension); null: the trial's own bound. A trial config may give
    it relative to the task's calibration, e.g. ``{b50: 1.0}`` (docs/results.md, Adversary strength)."""
    wind_factors: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
    """Goal tasks (a wind adversary): the wind is held at each of these multiples of the trial's bound."""
    wind_episodes: int = 5
    """Goal tasks: episodes per wind factor (0 disables the wind metric)."""

    def validate(self) -> None:
        require_at_least(self, ("nominal_episodes", "grid_points", "episodes_per_cell", "batch_size"), 1)
        if self.worst_case_steps < 0:
            raise ValueError(f"worst_case_steps must be >= 0, got {self.worst_case_steps}")
        wb = self.worst_case_bound
        if wb is not None and not (math.isfinite(wb) and wb > 0):
            raise ValueError(f"worst_case_bound must be a finite number > 0, got {self.worst_case_bound}")
        if self.wind_episodes < 0:
            raise ValueError(f"wind_episodes must be >= 0, got {self.wind_episodes}")
        if not self.wind_factors or not all(math.isfinite(k) and k >= 0 for k in self.wind_factors):
            raise ValueError(f"wind_factors must be a non-empty list of numbers >= 0, got {list(self.wind_factors)}")
        bad = [m for m in self.policy_modes if m not in POLICY_MODES]
        if bad or not self.policy_modes:
            raise ValueError(
                f"policy_modes must be a non-empty subset of {list(POLICY_MODES)}, got {list(self.policy_modes)}"
            )


def _seed(trial_seed: int, metric: str, index: int) -> int:
    return stream_seed(trial_seed, "evaluation", EVALUATION_METRICS[metric], index)


class GamePool:
    """Games of one task built on demand and reused (parameters set per episode)."""

    def __init__(self, task_id: str, **kwargs: Any) -> None:
        self.task_id, self.kwargs, self.games = task_id, kwargs, []

    def take(self, n: int) -> list:
        while len(self.games) < n:
            self.games.append(envs.make(self.task_id, **self.kwargs))
        return self.games[:n]


def _checked(x: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``x`` as an array of ``shape`` with finite entries (one check for a whole batch; the dtype is kept, as by
    ``step``, so that a game's reward terms see the policy's action unchanged)."""
    a = np.asarray(x)
    if a.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contain NaN or inf")
    return a


def run_batch(
    games: list,
    seeds: Sequence[int],
    params: Sequence[dict[str, float]],
    act: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    force_fn: Callable[[int, int, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Episodes on ``games`` in lock-step; ``act(obs (B, n)) -> (actions, forces)`` is called once per control step
    for all running games; ``force_fn(i, t, force)`` may replace game i's force at step t. Returns (returns, lengths).

    The one episode loop besides :func:`qarl.training.rollout.rollout`: it steps many games at once, so that each
    control step costs one batched forward pass per player (the robustness grid's hundreds of episodes).
    """
    n = len(games)
    obs = []
    for g, s, p in zip(games, seeds, params, strict=True):
        g.set_params(**p)
        obs.append(g.reset(seed=int(s))[0])
    obs = np.stack(obs)
    returns, lengths = [0.0] * n, [0] * n  # Python scalars: cheaper per step than numpy element updates
    running = np.ones(n, dtype=bool)
    t = 0
    while running.any():
        idx = np.flatnonzero(running)
        actions, forces = act(obs[idx])
        idx = idx.tolist()
        actions = _checked(actions, (len(idx), *games[0].protagonist_action_space.shape), "protagonist actions")
        forces = _checked(forces, (len(idx), *games[0].adversary_action_space.shape), "adversary forces")
        no_force = force_fn is None and not forces.any()  # e.g. the grid: skip each game's own zero test
        for j, i in enumerate(idx):
            if no_force:
                f = None
            else:
                f = forces[j] if force_fn is None else _checked(force_fn(i, t, forces[j]), forces[j].shape, "force")
            o, r, terminated, truncated = games[i].step_lean(actions[j], f)
            obs[i] = o
            returns[i] += r
            lengths[i] += 1
            if terminated or truncated:
                running[i] = False
        t += 1
    return np.array(returns), np.array(lengths, dtype=np.int64)


class Evaluator:
    """Runs the metrics of :class:`EvalConfig` for a trained trainer and returns the tidy rows."""

    def __init__(
        self,
        trainer: TwoPlayerTrainer,
        config: EvalConfig,
        log: Callable[[str], None] | None = None,
        configure_learner: Callable[[Any], None] | None = None,
    ) -> None:
        self.trainer, self.config, self.configure_learner = trainer, config, configure_learner
        self.log = log or (lambda msg: None)
        loop = trainer.loop
        self.pool = GamePool(trainer.task_id, horizon=loop.horizon, adversary_bound=loop.adversary_bound)
        game = trainer.game
        self.param_names = list(game.param_bounds())
        self.nominal = game.nominal_params()
        self.bounds = game.param_bounds()
        self.force_bound = float(np.max(game.adversary_bound))
        trainer.prepare_evaluation()

    def _episodes(self, metric: str, mode: str, cells: list[dict[str, float]], k: int, adversary_on: bool,
                  force_fn=None, act=None, pool: GamePool | None = None) -> list[dict[str, Any]]:  # fmt: skip
        """k episodes per cell, batched across cells, on ``pool``'s games (default: the trial's); one row per
        episode."""
        pool = pool or self.pool
        det = mode == "deterministic"
        act = act or (lambda o: self.trainer.eval_actions(o, det, adversary_on))
        jobs = [(c, e) for c in range(len(cells)) for e in range(k)]
        rows = []
        for start in range(0, len(jobs), self.config.batch_size):
            chunk = jobs[start : start + self.config.batch_size]
            games = pool.take(len(chunk))
            seeds = [_seed(self.trainer.seed, metric, e) for _, e in chunk]  # same initial states in every cell
            rets, lens = run_batch(games, seeds, [cells[c] for c, _ in chunk], act, force_fn)
            for (c, e), ret, length in zip(chunk, rets, lens, strict=True):
                rows.append(self._row(metric, mode, cells[c], e, float(ret), int(length)))
        for g in pool.games:
            g.set_params(**self.nominal)
        return rows

    def _row(self, metric: str, mode: str, params: dict[str, float], episode: int, ret: float, length: int):
        t = self.trainer
        x, y = [*self.param_names, None, None][:2]
        return {
            "task": t.task_id, "task_version": t.game.version, "method": t.name, "seed": t.seed, "metric": metric,
            "param_x": x, "value_x": params.get(x, math.nan) if x else math.nan,
            "param_y": y, "value_y": params.get(y, math.nan) if y else math.nan,
            "force_bound": self.force_bound, "policy_mode": mode, "episode": episode, "return": ret, "length": length,
        }  # fmt: skip

    def axis(self, name: str) -> np.ndarray:
        low, high = self.bounds[name]
        return np.linspace(low, high, self.config.grid_points)

    def run(self) -> pd.DataFrame:
        cfg, t0, rows = self.config, time.perf_counter(), []
        has_adversary = self.trainer.evaluates_adversary
        x, y = self.param_names[0], self.param_names[1]
        for mode in cfg.policy_modes:
            det = mode == "deterministic"
            nominal = [dict(self.nominal)]
            rows += self._episodes("nominal", mode, nominal, cfg.nominal_episodes, False)
            if has_adversary:
                rows += self._episodes("adversary", mode, nominal, cfg.nominal_episodes, True)
            grid = [{**self.nominal, x: float(vx), y: float(vy)} for vy in self.axis(y) for vx in self.axis(x)]
            rows += self._episodes("grid", mode, grid, cfg.episodes_per_cell, False)
            for metric, name in (("sweep_x", x), ("sweep_y", y)):
                cells = [{**self.nominal, name: float(v)} for v in self.axis(name)]
                rows += self._episodes(metric, mode, cells, cfg.episodes_per_cell, False)
            rows += self._disturbances(mode, det)
            if self.trainer.game.goal_task and cfg.wind_episodes > 0:
                rows += self._wind(mode)
            self.log(f"evaluation ({mode}): {len(rows)} episodes so far, {time.perf_counter() - t0:.0f}s")
        if cfg.worst_case_steps > 0:
            rows += self._worst_case()
        return pd.DataFrame(rows)

    def _disturbances(self, mode: str, det: bool) -> list[dict[str, Any]]:
        game = self.trainer.game
        low, high = (
            game.adversary_action_space.low.astype(np.float64),
            game.adversary_action_space.high.astype(np.float64),
        )
        rngs: dict[int, np.random.Generator] = {}

        def uniform(i: int, t: int, force: np.ndarray) -> np.ndarray:
            if t == 0:
                rngs[i] = np.random.default_rng(_seed(self.trainer.seed, "disturbance_uniform", 10_000 + i))
            return rngs[i].uniform(low, high)

        half = self.trainer.loop.horizon // 2

        def step(i: int, t: int, force: np.ndarray) -> np.ndarray:
            return high if t >= half else np.zeros_like(high)

        nominal = [dict(self.nominal)]
        n = self.config.nominal_episodes
        return self._episodes("disturbance_uniform", mode, nominal, n, False, uniform) + self._episodes(
            "disturbance_step", mode, nominal, n, False, step
        )

    def _wind(self, mode: str) -> list[dict[str, Any]]:
        """A goal task's wind metric: ``wind_episodes`` episodes per factor k of ``wind_factors``, the adversary's
        wind held at k times the trial's bound, the protagonist alone; each row adds ``wind_factor``,
        ``distance_to_goal`` (at the end of the episode) and ``success``."""
        trainer, cfg, det = self.trainer, self.config, mode == "deterministic"
        # a game of its own: the pool's games clip the force at the trial's bound
        game = envs.make(
            trainer.task_id, horizon=trainer.loop.horizon, adversary_bound=self.force_bound * max(cfg.wind_factors)
        )
        rows = []
        for k in cfg.wind_factors:
            wind = np.full(game.adversary_action_space.shape, k * self.force_bound)
            for e in range(cfg.wind_episodes):
                ep = rollout(
                    game,
                    lambda o, wind=wind: (trainer.eval_actions(o[None], det, False)[0][0], wind),
                    seed=_seed(trainer.seed, "wind", e),
                )
                distance = float(ep.info["distance_to_goal"])
                row = self._row("wind", mode, dict(self.nominal), e, ep.ret, ep.length)
                rows.append({**row, "wind_factor": float(k), "distance_to_goal": distance, "success": distance < 1.0})
        return rows

    def _worst_case(self) -> list[dict[str, Any]]:
        rows = []
        for mode in self.config.policy_modes:
            rows += self.worst_case(mode, self.config.worst_case_bound)
        return rows

    def worst_case(self, mode: str, bound: float | None = None, episodes: int | None = None) -> list[dict[str, Any]]:
        """A fresh SAC adversary with force bound ``bound`` (every dimension; None: the trial's bound) trained for
        ``worst_case_steps`` against the frozen protagonist in policy mode ``mode``, then ``episodes`` (default
        ``nominal_episodes``) episodes against it: the ``worst_case`` rows, ``force_bound`` the bound used.
        A bound of 0 leaves nothing to train: the rows are the protagonist's zero-force episodes."""
        from envs.views import AdversaryView
        from qarl.sac.learner import make_sac

        trainer, cfg, det = self.trainer, self.config, mode == "deterministic"
        episodes = cfg.nominal_episodes if episodes is None else episodes
        bound = trainer.loop.adversary_bound if bound is None else float(bound)
        game = envs.make(trainer.task_id, horizon=trainer.loop.horizon, adversary_bound=bound)
        force_bound = float(np.max(game.adversary_bound))
        if force_bound == 0.0:
            rows = self._episodes("worst_case", mode, [dict(self.nominal)], episodes, False)
            return [{**r, "force_bound": 0.0} for r in rows]
        sac_cfg = dataclasses.replace(trainer.config.protagonist, learning_starts=cfg.worst_case_learning_starts)
        view = AdversaryView(game, lambda o: trainer.eval_actions(o[None], det, False)[0][0])
        model = make_sac(sac_cfg, view.observation_space, view.action_space)
        if self.configure_learner is not None:
            self.configure_learner(model)
        model.set_env(view)
        view.reset(seed=_seed(trainer.seed, "worst_case", 99_999))
        # stable-baselines3 draws the actions of its first learning_starts steps from the action space's own
        # generator, which is otherwise seeded from the OS: seed it too, so the worst case is reproducible
        model.action_space.seed(_seed(trainer.seed, "worst_case", 99_998))
        model.learn(total_timesteps=cfg.worst_case_steps)
        actor, policy = model.actor, model.policy

        def act(o):
            prot, _ = trainer.eval_actions(o, det, False)
            with th.no_grad():
                scaled = actor(th.as_tensor(o, dtype=th.float32), deterministic=det).numpy()
            return prot, policy.unscale_action(scaled)

        # the games clip the force at their bound: another bound than the trial's needs games of its own
        same = np.array_equal(game.adversary_bound, trainer.game.adversary_bound)
        pool = self.pool if same else GamePool(trainer.task_id, horizon=trainer.loop.horizon, adversary_bound=bound)
        rows = self._episodes("worst_case", mode, [dict(self.nominal)], episodes, True, act=act, pool=pool)
        self.log(f"worst-case adversary ({mode}, bound {force_bound:g}): trained {cfg.worst_case_steps} steps")
        return [{**r, "force_bound": force_bound} for r in rows]


def evaluate_trainer(trainer: TwoPlayerTrainer, config: EvalConfig, log: Callable[[str], None] | None = None,
                     configure_learner: Callable[[Any], None] | None = None) -> pd.DataFrame:  # fmt: skip
    """The evaluation rows of ``trainer`` (restored or just trained); ``qarl.experiment.rundir.write_eval`` writes
    them to the run's ``eval.parquet``.

    ``configure_learner`` is called with the SAC model of each worst-case adversary before it trains."""
    return Evaluator(trainer, config, log, configure_learner).run()


__all__ = ["POLICY_MODES", "EvalConfig", "Evaluator", "GamePool", "evaluate_trainer", "run_batch"]
