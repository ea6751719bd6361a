"""The two-player training loop (docs/methods.md).

Per iteration: the method's curriculum hook, then one learning phase per entry of ``phases`` (RARL: the
adversary's 5 episodes, then the protagonist's 5), in which one player learns and the other is frozen but
keeps acting stochastically; a frozen player's transitions never enter its buffer. After the phases:
evaluation episodes against the adversary and with zero force, and one progress row.

Every episode is reset with its own seed derived from the trial seed (training episodes by their running
index, evaluation episodes by their index within the evaluation, so that every iteration is evaluated on
the same initial states). Together with the global numpy/torch generators, saved in checkpoints, this makes
a run a deterministic function of its seed and config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch as th

import envs
from qarl.config import require_at_least
from qarl.sac.learner import QSAC, Player, SACConfig
from qarl.sac.views import CriticView, SACCriticView
from qarl.training.checkpoint import CheckpointError, load_player_state, player_state, rng_state, set_rng_state
from qarl.training.rollout import Transition, rollout
from qarl.training.seeds import stream_seed

PROTAGONIST, ADVERSARY = "protagonist", "adversary"


@dataclass(frozen=True)
class LoopConfig:
    """The two-player loop's schedule (defaults: paper scale)."""

    iterations: int = 200
    """Training iterations."""
    episodes_per_phase: int = 5
    """Episodes of each learning phase per iteration."""
    eval_episodes: int = 2
    """Evaluation episodes per iteration, each against the adversary and with zero force."""
    horizon: int = 1000
    """Control steps per episode."""
    checkpoint_every: int = 10
    """Write a checkpoint every this many iterations (and after the last one)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (the newest ones)."""
    adversary_bound: float | None = None
    """Adversary force bound in N (or N·m); None: the task's default."""
    torch_threads: int = 1
    """torch intra-op threads of the trial (its CPU allowance)."""
    eval_deterministic: bool = True
    """Evaluate with the players' mean actions (False: sample them)."""

    def validate(self) -> None:
        require_at_least(self, ("iterations", "episodes_per_phase", "horizon", "checkpoint_every"), 1)
        require_at_least(self, ("keep_checkpoints", "torch_threads"), 1)
        if self.eval_episodes < 0:
            raise ValueError(f"eval_episodes must be >= 0, got {self.eval_episodes}")
        if self.adversary_bound is not None and not (math.isfinite(self.adversary_bound) and self.adversary_bound >= 0):
            raise ValueError(f"adversary_bound must be a finite number >= 0, got {self.adversary_bound}")


class TwoPlayerTrainer:
    """Base class of every method. Subclasses build the players and may override the hooks below.

    A method's config (``config_cls``) has a ``protagonist`` field, the protagonist's :class:`SACConfig` (the
    evaluation trains its worst-case adversary with these settings).
    """

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    config_cls: ClassVar[type] = object
    phases: ClassVar[tuple[str, ...]] = (ADVERSARY, PROTAGONIST)

    def __init__(self, task_id: str, config: Any, loop: LoopConfig, seed: int) -> None:
        self.task_id, self.config, self.loop, self.seed = task_id, config, loop, seed
        th.set_num_threads(loop.torch_threads)
        # SB3 samples minibatches from numpy's global generator and actions from torch's.
        np.random.seed(seed)
        th.manual_seed(seed)
        self.game = envs.make(task_id, horizon=loop.horizon, adversary_bound=loop.adversary_bound)
        self.eval_game = envs.make(task_id, horizon=loop.horizon, adversary_bound=loop.adversary_bound)
        self.players: dict[str, Player] = self.build_players()
        self.iteration = 0
        self.env_steps = 0
        self.train_episodes = 0
        #: Called after every training episode with its length (a progress display); not part of the trainer's state.
        self.on_episode: Callable[[int], None] | None = None

    # ------------------------------------------------------------------ hooks for methods
    def build_players(self) -> dict[str, Player]:
        raise NotImplementedError

    def make_player(self, name: str, config: SACConfig, model_cls: type[QSAC] = QSAC) -> Player:
        g = self.game
        action_space = g.protagonist_action_space if name == PROTAGONIST else g.adversary_action_space
        return Player(name, config, self.observation_space(name), action_space, model_cls)

    def observation_space(self, player: str):
        """The observation space a player's networks see (methods may extend the game's)."""
        return self.game.observation_space

    def player_obs_batch(self, player: str, obs: np.ndarray) -> np.ndarray:
        """The observations a player sees for game observations (B, n) (methods may append curriculum values)."""
        return obs

    def player_obs(self, player: str, obs: np.ndarray) -> np.ndarray:
        """:meth:`player_obs_batch` of one observation (methods override the batch version)."""
        return self.player_obs_batch(player, obs[None])[0]

    def adversary_forces(self, actions: np.ndarray) -> np.ndarray:
        """The forces (B, da) written to the game for adversary actions (B, da) (methods may rescale them)."""
        return actions

    def adversary_force(self, action: np.ndarray) -> np.ndarray:
        """:meth:`adversary_forces` of one action (methods override the batch version)."""
        return self.adversary_forces(action[None])[0]

    def learners(self) -> list[QSAC]:
        """The stable-baselines3 SAC models this trainer trains (an orchestrator may batch their gradient steps)."""
        return [p.model for p in self.players.values() if isinstance(p, Player) and isinstance(p.model, QSAC)]

    def critic_views(self) -> dict[str, CriticView]:
        """The critics the diagnostics read, by column prefix: one view per SAC player (methods with other learners
        return their own views, e.g. one shared critic)."""
        return {
            name: SACCriticView(p)
            for name, p in self.players.items()
            if isinstance(p, Player) and isinstance(p.model, QSAC)
        }

    def begin_iteration(self) -> None:
        """Called before the iteration's phases (e.g. to sample curriculum values)."""

    def after_reset(self, game, learner: str | None) -> None:
        """Called right after each episode's reset (``learner`` None: an evaluation episode)."""

    def protagonist_action(
        self, obs: np.ndarray, action: np.ndarray, scaled: np.ndarray, learner: str | None
    ) -> np.ndarray:
        """The protagonist action executed in the game (methods may perturb it; the buffer keeps the intended one)."""
        return action

    def begin_episode(self, phase: str) -> None:
        """Called before each training episode."""

    def end_episode(self, phase: str, ret: float, discounted_return: float) -> None:
        """Called after each training episode with the protagonist's return and discounted return."""

    def extra_stats(self) -> dict[str, float]:
        """Method-specific progress columns."""
        return {}

    def method_state(self) -> dict[str, Any]:
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        pass

    def eval_actions(self, obs: np.ndarray, deterministic: bool, adversary_on: bool) -> tuple[np.ndarray, np.ndarray]:
        """Batched actions for evaluation: (protagonist actions (B, dp), forces (B, da)) for game observations (B, n).

        One forward pass per player for the whole batch; the method's observation and force transforms apply row by
        row (at evaluation the curriculum values are those of ``evaluate``, e.g. alpha = 0).
        """
        prot = self.players[PROTAGONIST]
        p_obs = self.player_obs_batch(PROTAGONIST, obs)
        with th.no_grad():
            scaled = prot.model.actor(th.as_tensor(p_obs, dtype=th.float32), deterministic=deterministic).numpy()
        actions = prot.model.policy.unscale_action(scaled)
        forces = np.zeros((len(obs), *self.game.adversary_action_space.shape))
        adversary = self.players.get(ADVERSARY)
        if adversary_on and adversary is not None:
            a_obs = self.player_obs_batch(ADVERSARY, obs)
            with th.no_grad():
                a_scaled = adversary.model.actor(th.as_tensor(a_obs, dtype=th.float32), deterministic=deterministic)
            forces = self.adversary_forces(adversary.model.policy.unscale_action(a_scaled.numpy()))
        return actions, forces

    @property
    def evaluates_adversary(self) -> bool:
        """Whether the ``adversary`` evaluation metric applies (a co-trained adversary, or a method's attack)."""
        return ADVERSARY in self.players

    def prepare_evaluation(self) -> None:
        """Put the method in its evaluation state (curriculum values of ``evaluate``) for external evaluation."""

    def prepare_training_state(self, episode: int) -> bool:
        """Put the method in the state of training episode ``episode`` of the last iteration (e.g. that episode's
        curriculum value), for diagnostics that look at the data the critics were trained on. Returns False (and
        changes nothing) when the method's training and evaluation states coincide."""
        return False

    # ------------------------------------------------------------------ the loop
    def play_episode(self, game, seed: int, learner: str | None, deterministic: bool, adversary_on: bool):
        """One episode; ``learner`` stores its transitions and learns. Returns (return, discounted, length)."""
        protagonist = self.players[PROTAGONIST]
        adversary = self.players.get(ADVERSARY) if adversary_on else None
        zero = np.zeros(game.adversary_action_space.shape)
        seen: dict[str, Any] = {}  # this step's player observations and buffer actions, for on_step

        def policy(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            seen["p_obs"] = p_obs = self.player_obs(PROTAGONIST, obs)
            a_p, seen["buf_p"] = protagonist.act(p_obs, deterministic)
            force = zero
            if adversary is not None:
                seen["a_obs"] = self.player_obs(ADVERSARY, obs)
                a_a, seen["buf_a"] = adversary.act(seen["a_obs"], deterministic)
                force = self.adversary_force(a_a)
            return self.protagonist_action(p_obs, a_p, seen["buf_p"], learner), force

        def store(t: Transition) -> None:
            if learner == PROTAGONIST:
                next_p = self.player_obs(PROTAGONIST, t.next_obs)
                protagonist.observe(seen["p_obs"], next_p, seen["buf_p"], t.reward, t.terminated, t.truncated)
            else:
                next_a = self.player_obs(ADVERSARY, t.next_obs)
                adversary.observe(seen["a_obs"], next_a, seen["buf_a"], -t.reward, t.terminated, t.truncated)

        ep = rollout(
            game,
            policy,
            seed=seed,
            gamma=protagonist.config.gamma,
            on_reset=lambda obs: self.after_reset(game, learner),
            on_step=store if learner in (PROTAGONIST, ADVERSARY) else None,
        )
        return ep.ret, ep.discounted, ep.length

    def run_iteration(self) -> dict[str, Any]:
        """One training iteration and its evaluation; returns the progress row."""
        t0 = time.perf_counter()
        self.begin_iteration()
        steps0 = self.env_steps
        row: dict[str, Any] = {"iteration": self.iteration + 1}
        for phase in self.phases:
            returns = []
            for _ in range(self.loop.episodes_per_phase):
                self.begin_episode(phase)
                seed = stream_seed(self.seed, "train", self.train_episodes)
                ret, disc, length = self.play_episode(self.game, seed, phase, False, ADVERSARY in self.players)
                self.end_episode(phase, ret, disc)
                self.train_episodes += 1
                self.env_steps += length
                returns.append(ret)
                if self.on_episode is not None:
                    self.on_episode(length)
            row[f"train_return_{phase}_phase"] = float(np.mean(returns))
        train_time = time.perf_counter() - t0
        row.update(self.evaluate())
        row["env_steps"] = self.env_steps
        for name in (PROTAGONIST, ADVERSARY):
            player = self.players.get(name)
            stats = player.pop_stats() if player else {}
            row[f"env_steps_{name}"] = int(stats.get("env_steps", 0))
            row[f"updates_{name}"] = int(stats.get("updates", 0))
            for k in ("actor_loss", "critic_loss", "temperature"):
                row[f"{k}_{name}"] = float(stats.get(k, math.nan))
        row.update(self.extra_stats())
        self.iteration += 1
        row["steps_per_s"] = (self.env_steps - steps0) / max(train_time, 1e-9)
        row["wall_time"] = time.perf_counter() - t0
        return row

    def evaluate(self) -> dict[str, float]:
        n, det = self.loop.eval_episodes, self.loop.eval_deterministic
        out = {}
        if ADVERSARY in self.players:
            rets = [
                self.play_episode(self.eval_game, stream_seed(self.seed, "eval_adversary", k), None, det, True)[0]
                for k in range(n)
            ]
            out["eval_return_adversary"] = float(np.mean(rets)) if n else math.nan
        else:
            out["eval_return_adversary"] = math.nan
        rets = [
            self.play_episode(self.eval_game, stream_seed(self.seed, "eval_zero_force", k), None, det, False)[0]
            for k in range(n)
        ]
        out["eval_return_zero_force"] = float(np.mean(rets)) if n else math.nan
        return out

    # ------------------------------------------------------------------ checkpoints
    def player_state(self, player: Any) -> dict[str, Any]:
        """One player's checkpoint state (methods with their own learners override both hooks)."""
        return player_state(player)

    def load_player_state(self, player: Any, state: dict[str, Any]) -> None:
        load_player_state(player, state)

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "env_steps": self.env_steps,
            "train_episodes": self.train_episodes,
            "players": {name: self.player_state(p) for name, p in self.players.items()},
            "rng": rng_state(),
            "method": self.method_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state["players"]) != set(self.players):
            raise CheckpointError(
                f"checkpoint holds players {sorted(state['players'])}, this method has {sorted(self.players)}"
            )
        for name, p in self.players.items():
            self.load_player_state(p, state["players"][name])
        self.iteration, self.env_steps, self.train_episodes = (
            state["iteration"],
            state["env_steps"],
            state["train_episodes"],
        )
        self.load_method_state(state["method"])
        set_rng_state(state["rng"])
