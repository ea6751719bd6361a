"""Trained policies of a run directory, for use outside the suite.

::

    from qarl.policy import load

    policy = load("runs/default/dmc/cartpole-balance/qarl/seed=0")
    game = policy.make_game()
    obs, _ = game.reset(seed=0)
    action = policy.predict(obs)  # the protagonist's action, as the evaluation computes it

:func:`load` restores the run's newest checkpoint and puts the method in its evaluation state (QARL's alpha = 0 is
appended to the observation inside ``predict``; the full force budget for force_curriculum). ``predict`` takes one
observation (n,) or a batch (B, n) and returns actions of the matching shape in the game's units: the protagonist's
actions, or with ``player="adversary"`` the forces the evaluation's co-trained adversary applies (zero for methods
without one). :func:`export_sb3` writes a player's actor and critics as a plain stable-baselines3 SAC ``.zip`` that
``stable_baselines3.SAC.load`` restores without this package; a constant the method appends to the observation at
evaluation (QARL's alpha) is folded into the first layers' biases, so the exported model takes the game's own
observation.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

import envs
from qarl.experiment.trial import TrialConfig, load_trainer
from qarl.training.loop import ADVERSARY, PROTAGONIST, TwoPlayerTrainer

PLAYERS = (PROTAGONIST, ADVERSARY)


class PolicyError(ValueError):
    """A policy cannot be loaded or exported as asked."""


@dataclass
class TrainedPolicy:
    """The players of one run at one checkpoint (see the module docstring)."""

    config: TrialConfig
    trainer: TwoPlayerTrainer
    iteration: int
    run_dir: Path

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def method(self) -> str:
        return self.config.method

    @property
    def seed(self) -> int:
        return self.config.seed

    def make_game(self, **kwargs: Any) -> Any:
        """A fresh game of the run's task, horizon and adversary bound (``kwargs`` override them)."""
        loop = self.config.loop
        return envs.make(self.task, **{"horizon": loop.horizon, "adversary_bound": loop.adversary_bound, **kwargs})

    def predict(self, obs: Any, deterministic: bool = True, player: str = PROTAGONIST) -> np.ndarray:
        """Actions for game observations (n,) or (B, n): the protagonist's actions, or the adversary's forces."""
        if player not in PLAYERS:
            raise PolicyError(f"player must be one of {list(PLAYERS)}, got {player!r}")
        batch = np.asarray(obs, dtype=np.float64)
        single = batch.ndim == 1
        batch = batch[None] if single else batch
        n = self.trainer.game.observation_space.shape[0]
        if batch.ndim != 2 or batch.shape[1] != n:
            raise PolicyError(f"{self.task}: observations must have shape ({n},) or (B, {n}), got {np.shape(obs)}")
        self.trainer.prepare_evaluation()
        if player == PROTAGONIST:
            out = self.trainer.eval_actions(batch, deterministic, False)[0]
        else:
            out = self.trainer.eval_actions(batch, deterministic, True)[1]
        return out[0] if single else out


def load(run_dir: str | os.PathLike) -> TrainedPolicy:
    """The run's players at its newest checkpoint, in the method's evaluation state."""
    config, trainer, iteration = load_trainer(run_dir)
    trainer.prepare_evaluation()
    return TrainedPolicy(config, trainer, iteration, Path(run_dir))


def _appended_constants(trainer: TwoPlayerTrainer, player: str) -> np.ndarray:
    """The values the method appends to the game's observation for ``player`` at evaluation (empty: none); a
    transform that is not "the observation, then constants" cannot be exported."""
    trainer.prepare_evaluation()
    space = trainer.game.observation_space
    probe = np.random.default_rng(0).normal(size=(4, space.shape[0]))
    seen = trainer.player_obs_batch(player, probe)
    n = space.shape[0]
    if seen.shape[1] < n or not np.array_equal(seen[:, :n], probe) or not np.all(seen[:, n:] == seen[:1, n:]):
        raise PolicyError(f"{trainer.task_id}: the {player}'s observation is not the game's observation plus constants")
    return seen[0, n:].copy()


def _fold(weight: th.Tensor, bias: th.Tensor, n: int, constants: np.ndarray) -> tuple[th.Tensor, th.Tensor]:
    """A first layer W [x; c; a] + b, with the constants c right after the observation x (n,) and any further inputs a
    (a critic's action), as W[:, x and a columns] [x; a] + (b + W[:, c columns] c)."""
    k = len(constants)
    c = th.as_tensor(constants, dtype=weight.dtype)
    kept = th.cat([weight[:, :n], weight[:, n + k :]], dim=1).clone()
    return kept, bias + weight[:, n : n + k] @ c


def export_sb3(policy: TrainedPolicy, path: str | os.PathLike, player: str = PROTAGONIST) -> Path:
    """Write ``player``'s SAC as a stable-baselines3 ``.zip`` on the game's own observation space; returns the path."""
    from stable_baselines3 import SAC

    from qarl.sac.learner import Player, SpacesEnv

    trainer = policy.trainer
    learner = trainer.players.get(player)
    if not isinstance(learner, Player):
        raise PolicyError(f"{policy.method} has no {player} SAC player to export")
    if player == ADVERSARY:
        probe = np.ones((1, *trainer.game.adversary_action_space.shape))
        if not np.array_equal(trainer.adversary_forces(probe), probe):
            raise PolicyError(
                f"{policy.method} rescales the adversary's actions into forces: its actor is not the force"
            )
    model = learner.model
    if getattr(model.actor, "latent_std", None) is not None:
        raise PolicyError(
            f"{player}'s actor has a log-std network of its own (actor_std: separate), which stable-baselines3's "
            "SAC cannot hold; use qarl.load(run_dir) to run it"
        )
    constants = _appended_constants(trainer, player)
    n = trainer.game.observation_space.shape[0]
    spaces = copy.deepcopy(model.policy.action_space)
    temperature = float(model.log_ent_coef.detach().exp()) if getattr(model, "log_ent_coef", None) is not None else None
    out = SAC(
        "MlpPolicy",
        SpacesEnv(trainer.game.observation_space, spaces),
        learning_rate=float(model.learning_rate) if not callable(model.learning_rate) else 3e-4,
        buffer_size=1,
        batch_size=model.batch_size,
        tau=model.tau,
        gamma=model.gamma,
        ent_coef=temperature if temperature is not None else float(model.ent_coef_tensor),
        policy_kwargs=copy.deepcopy(model.policy_kwargs),
        device="cpu",
        verbose=0,
    )
    state = {k: v.detach().clone() for k, v in model.policy.state_dict().items()}
    if constants.size:
        for key in list(state):
            if key.endswith("0.weight") and state[key].shape[1] > n and _is_first_layer(key):
                bias_key = key[: -len("weight")] + "bias"
                state[key], state[bias_key] = _fold(state[key], state[bias_key], n, constants)
    out.policy.load_state_dict(state)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    out.save(str(target))
    return target if target.suffix == ".zip" else target.with_suffix(".zip")


def _is_first_layer(key: str) -> bool:
    """Whether a SACPolicy state-dict key is the first Linear of the actor's trunk or of a (target) critic."""
    return key in ("actor.latent_pi.0.weight",) or (
        key.startswith(("critic.qf", "critic_target.qf")) and key.split(".")[2] == "0"
    )
