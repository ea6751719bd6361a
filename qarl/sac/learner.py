"""Soft actor-critic players on stable-baselines3, with the QARL paper's settings.

``SACConfig`` is the schema of one player's learner (``configs/methods/*.yaml`` supply the values);
``QSAC`` is stable-baselines3's SAC with separate actor, critic and temperature learning rates and, by default,
the fast update step of :mod:`qarl.sac.fast` (the same algorithm on the same modules and optimisers);
``Player`` is one side of the game: a QSAC model, its replay buffer and its update schedule, driven by the
two-player loop instead of ``SAC.learn``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.torch_layers import create_mlp
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN, Actor, SACPolicy
from torch import nn

from qarl.config import require_at_least
from qarl.sac.fast import FastActing, FastSACUpdate, resolve_kernel, unsupported_reason

INITS = ("torch_default", "xavier_relu")
"""The layer initialisations of :attr:`SACConfig.init`."""
ACTOR_STDS = ("shared", "separate")
"""The actor architectures of :attr:`SACConfig.actor_std`."""


@dataclass(frozen=True)
class SACConfig:
    """One player's soft actor-critic (defaults: the QARL paper's settings, docs/methods.md)."""

    net_arch: tuple[int, ...] = (256, 256, 256)
    """Hidden layer sizes of the actor and of each of the twin critics (ReLU)."""
    actor_lr: float = 1e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critics."""
    temperature_lr: float = 3e-4
    """Adam learning rate of the (log) temperature, when it is learned."""
    batch_size: int = 256
    """Minibatch size of one gradient step."""
    buffer_size: int = 1_000_000
    """Replay buffer capacity (transitions)."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    gamma: float = 0.99
    """Discount factor."""
    train_every: int = 3
    """Env steps of this player's own learning phase per gradient step."""
    learning_starts: int = 3000
    """No gradient step before the buffer holds this many transitions (actions come from the initial policy)."""
    initial_temperature: float = 0.005
    """Initial entropy temperature."""
    learn_temperature: bool = True
    """Auto-tune the temperature towards ``target_entropy`` (False: keep it fixed at the initial value)."""
    target_entropy: float | None = None
    """Target entropy of the temperature loss; None means -|A|."""
    fast_update: bool = True
    """Gradient steps with the fast update (``qarl.sac.fast``, the same algorithm); False: SB3's ``train``."""
    actor_std: str = "shared"
    """Where the actor's log-std comes from: ``shared`` (stable-baselines3's actor: one trunk, a mean head and a
    log-std head) or ``separate`` (a network of its own with the same hidden sizes, beside the mean's: the QARL
    authors' code)."""
    init: str = "torch_default"
    """Initialisation of the actor's and the critics' layers: ``torch_default`` (PyTorch's, as stable-baselines3
    leaves it) or ``xavier_relu`` (Xavier-uniform weights with the ReLU gain sqrt(2) on hidden layers and gain 1 on
    the output layers, biases as PyTorch sets them: MushroomRL's SAC networks, which the QARL authors' code uses)."""
    actor_learning_starts: int | None = None
    """Stored transitions before the actor and temperature steps begin; below it a gradient step updates the critics
    only (the same random draws, the actor and temperature left as they are). None: they start with the critics'
    (``learning_starts``). The QARL authors' code: 5000, with the critics from 3000."""

    def validate(self) -> None:
        if not self.net_arch or any(h < 1 for h in self.net_arch):
            raise ValueError(f"net_arch must be a non-empty list of positive sizes, got {list(self.net_arch)}")
        for name in ("actor_lr", "critic_lr", "temperature_lr", "initial_temperature", "tau"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v}")
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma must lie in (0, 1), got {self.gamma}")
        if self.tau > 1:
            raise ValueError(f"tau must be at most 1, got {self.tau}")
        require_at_least(self, ("batch_size", "buffer_size", "train_every"), 1)
        if self.learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {self.learning_starts}")
        if self.actor_std not in ACTOR_STDS:
            raise ValueError(f"actor_std must be one of {list(ACTOR_STDS)}, got {self.actor_std!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {list(INITS)}, got {self.init!r}")
        if self.actor_learning_starts is not None and self.actor_learning_starts < self.learning_starts:
            raise ValueError(
                f"actor_learning_starts ({self.actor_learning_starts}) must be at least learning_starts "
                f"({self.learning_starts}): the actor cannot start before the critics"
            )


class SeparateStdActor(Actor):
    """stable-baselines3's SAC actor with the log-std computed by a ReLU MLP of its own (``latent_std``, the same
    hidden sizes as the mean's ``latent_pi``) instead of a second head on the mean's trunk."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.use_sde:
            raise ValueError("a separate log-std network and gSDE do not go together")
        self.latent_std = nn.Sequential(*create_mlp(self.features_dim, -1, self.net_arch, self.activation_fn))

    def get_action_dist_params(self, obs: Any) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        features = self.extract_features(obs, self.features_extractor)
        mean_actions = self.mu(self.latent_pi(features))
        log_std = th.clamp(self.log_std(self.latent_std(features)), LOG_STD_MIN, LOG_STD_MAX)
        return mean_actions, log_std, {}


class SeparateStdSACPolicy(SACPolicy):
    """stable-baselines3's SAC policy with :class:`SeparateStdActor` (``SACConfig.actor_std: separate``)."""

    def make_actor(self, features_extractor: Any = None) -> Actor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return SeparateStdActor(**actor_kwargs).to(self.device)


class SpacesEnv(gymnasium.Env):
    """Carries the spaces into stable-baselines3's constructor; the two-player loop does the stepping."""

    def __init__(self, observation_space: spaces.Box, action_space: spaces.Box) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):  # pragma: no cover - never stepped
        raise RuntimeError("this environment only carries spaces")

    def step(self, action):  # pragma: no cover - never stepped
        raise RuntimeError("this environment only carries spaces")


class QSAC(SAC):
    """stable-baselines3 SAC whose actor, critic and temperature keep their own learning rates.

    ``SAC.train`` calls ``_update_learning_rate`` on every call and would set all three optimisers to the
    single ``learning_rate`` schedule; this override sets each optimiser to its own rate.

    With ``fast_update`` (the default), :meth:`train` runs :class:`~qarl.sac.fast.FastSACUpdate`, the same
    gradient step as ``SAC.train`` with less work; models it does not support (see
    :func:`~qarl.sac.fast.unsupported_reason`) fall back to :meth:`reference_train` and say why in
    ``fast_fallback_reason``.
    """

    def __init__(
        self,
        *args: Any,
        actor_lr: float,
        critic_lr: float,
        temperature_lr: float,
        fast_update: bool = True,
        **kwargs: Any,
    ) -> None:
        self.actor_lr, self.critic_lr, self.temperature_lr = actor_lr, critic_lr, temperature_lr
        self.fast_update = fast_update
        self.fast_fallback_reason: str | None = None
        self._fast: FastSACUpdate | None = None
        # The fast update's matmul kernel ("onednn" or "mm", qarl.sac.fast.choose_kernel): chosen when the model is
        # built (make_sac), saved in checkpoints and restored with them, so that a resumed run rounds as before.
        self.matmul_kernel: str | None = None
        # Stored transitions before the actor and temperature steps begin (SACConfig.actor_learning_starts)
        self.actor_learning_starts = 0
        # Offered every train() call first; returns True when it took the gradient steps itself (an orchestrator that
        # batches the steps of several models, qarl.experiment.group), False to leave them to train().
        self.update_delegate: Callable[[QSAC, int, int], bool] | None = None
        self.last_temperature = math.nan  # mean temperature of the last train() call's minibatches
        super().__init__(*args, learning_rate=critic_lr, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        self._set_rates()

    def _set_rates(self) -> None:
        update_learning_rate(self.actor.optimizer, self.actor_lr)
        update_learning_rate(self.critic.optimizer, self.critic_lr)
        if self.ent_coef_optimizer is not None:
            update_learning_rate(self.ent_coef_optimizer, self.temperature_lr)

    def _update_learning_rate(self, optimizers: Any) -> None:
        self._set_rates()

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_fast", "update_delegate"]

    def critic_only(self) -> bool:
        """Whether the next gradient step updates the critics only (fewer than ``actor_learning_starts`` stored)."""
        return self.replay_buffer.size() < self.actor_learning_starts

    def train(self, gradient_steps: int, batch_size: int = 64) -> None:
        if self.update_delegate is not None and self.update_delegate(self, gradient_steps, batch_size):
            return None
        if not self.fast_update:
            return self.reference_train(gradient_steps, batch_size)
        if self._fast is None or not self._fast.is_current(batch_size):
            self.fast_fallback_reason = unsupported_reason(self)
            if self.fast_fallback_reason is not None:
                return self.reference_train(gradient_steps, batch_size)
            self._fast = FastSACUpdate(self, batch_size)
        if not self.policy.training:  # SB3 sets it on every call; the recursive module walk costs ~0.2 ms
            self.policy.set_training_mode(True)
        self._set_rates()
        actor_losses, critic_losses, temperature_losses, temperatures = [], [], [], []
        for _ in range(gradient_steps):
            actor_loss, critic_loss, temperature_loss, alpha = self._fast.step(critic_only=self.critic_only())
            actor_losses.append(actor_loss)
            critic_losses.append(critic_loss)
            temperatures.append(float(alpha.mean()))
            if temperature_loss is not None:
                temperature_losses.append(temperature_loss)
        self._n_updates += gradient_steps
        self.record_train(actor_losses, critic_losses, temperature_losses, temperatures)
        return None

    def reference_train(self, gradient_steps: int, batch_size: int = 64) -> None:
        """stable-baselines3's gradient steps (``SAC.train``), the reference of the fast update. A critic-only step
        (:meth:`critic_only`) is SAC.train with the actor's and the temperature's optimiser steps left out."""
        with self.holding_actor():
            super().train(gradient_steps, batch_size)

    @contextlib.contextmanager
    def holding_actor(self) -> Iterator[None]:
        """Inside, when :meth:`critic_only`, the actor's and the temperature's optimiser steps do nothing: the
        reference steps compute their losses and gradients (the same random draws) and apply none."""
        if not self.critic_only():
            yield
            return
        optimizers = [self.actor.optimizer, *([self.ent_coef_optimizer] if self.ent_coef_optimizer else [])]
        steps = [opt.step for opt in optimizers]
        try:
            for opt in optimizers:
                opt.step = lambda *args, **kwargs: None
            yield
        finally:
            for opt, step in zip(optimizers, steps, strict=True):
                opt.step = step

    def _fast_temperatures(self, obs: th.Tensor, next_obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Temperatures of the actor loss and of the soft target in the fast update (SB3: one scalar, pre-step)."""
        alpha = th.exp(self.log_ent_coef.detach()) if self.ent_coef_optimizer is not None else self.ent_coef_tensor
        return alpha, alpha

    def record_train(
        self,
        actor_losses: list[float],
        critic_losses: list[float],
        temperature_losses: list[float],
        temperatures: list[float],
    ) -> None:
        """The logger entries of ``SAC.train``."""
        self.last_temperature = float(np.mean(temperatures))
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/ent_coef", self.last_temperature)
        self.logger.record("train/actor_loss", float(np.mean(actor_losses)))
        self.logger.record("train/critic_loss", float(np.mean(critic_losses)))
        if temperature_losses:
            self.logger.record("train/ent_coef_loss", float(np.mean(temperature_losses)))

    def entropy_temperature(self, obs: th.Tensor) -> th.Tensor:
        """The entropy temperature of each row of ``obs`` (B,): here the one current temperature."""
        return th.full((len(obs),), self.temperature)

    @property
    def temperature(self) -> float:
        if self.ent_coef_optimizer is not None:
            return float(th.exp(self.log_ent_coef.detach()).item())
        return float(self.ent_coef_tensor.item())


def make_sac(
    config: SACConfig,
    observation_space: spaces.Box,
    action_space: spaces.Box,
    *,
    model_cls: type[QSAC] = QSAC,
    device: str = "cpu",
) -> QSAC:
    """A ``model_cls`` (QSAC or a subclass) for the given spaces; the caller seeds the global generators."""
    ent_coef: str | float = (
        f"auto_{config.initial_temperature}" if config.learn_temperature else config.initial_temperature
    )
    model = model_cls(
        SeparateStdSACPolicy if config.actor_std == "separate" else "MlpPolicy",
        SpacesEnv(observation_space, action_space),
        actor_lr=config.actor_lr,
        critic_lr=config.critic_lr,
        temperature_lr=config.temperature_lr,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        tau=config.tau,
        gamma=config.gamma,
        train_freq=config.train_every,
        gradient_steps=1,
        ent_coef=ent_coef,
        target_entropy="auto" if config.target_entropy is None else config.target_entropy,
        fast_update=config.fast_update,
        policy_kwargs={
            "net_arch": {"pi": list(config.net_arch), "qf": list(config.net_arch)},
            "activation_fn": th.nn.ReLU,
        },
        device=device,
        verbose=0,
    )
    # A logger without outputs: train() records its losses there and the loop reads them back.
    model.set_logger(Logger(folder=None, output_formats=[]))
    if config.init == "xavier_relu":
        init_xavier_relu(model)
    model.actor_learning_starts = config.actor_learning_starts or 0  # None: never a critic-only step
    if config.fast_update and unsupported_reason(model) is None:
        resolve_kernel(model, config.batch_size)  # measured now, before any checkpoint can be taken
    return model


def init_xavier_relu(model: SAC) -> None:
    """Xavier-uniform weights, gain sqrt(2) (ReLU) on hidden layers and 1 on output layers, for the actor and the
    critics (the target critics copied from them); biases keep PyTorch's initialisation. Draws from torch's global
    generator, actor first, then each critic, layer by layer."""
    relu, linear = th.nn.init.calculate_gain("relu"), th.nn.init.calculate_gain("linear")
    actor = model.actor
    hidden = [m for m in actor.latent_pi if isinstance(m, th.nn.Linear)]
    hidden += [m for m in getattr(actor, "latent_std", ()) if isinstance(m, th.nn.Linear)]
    outputs = [actor.mu, actor.log_std]
    for q in model.critic.q_networks:
        layers = [m for m in q if isinstance(m, th.nn.Linear)]
        hidden += layers[:-1]
        outputs.append(layers[-1])
    with th.no_grad():
        for layer in hidden:
            th.nn.init.xavier_uniform_(layer.weight, gain=relu)
        for layer in outputs:
            th.nn.init.xavier_uniform_(layer.weight, gain=linear)
    model.critic_target.load_state_dict(model.critic.state_dict())


def squashed_log_prob(distribution: th.distributions.Normal, actions: th.Tensor) -> th.Tensor:
    """Log-density (B,) of actions in [-1, 1] (B, |A|) under tanh of the Gaussian ``distribution`` of their pre-images.

    Exactly stable-baselines3's ``SquashedDiagGaussianDistribution.log_prob`` (clipped atanh pre-image, Jacobian
    epsilon 1e-6), so a log-probability stored at collection time and one recomputed later for an unchanged policy
    agree up to the float rounding of the actor's forward pass (even for actions saturated at +-1).
    """
    dist = SquashedDiagGaussianDistribution(int(actions.shape[-1]))
    dist.distribution = distribution
    return dist.log_prob(actions)


class NonFiniteLossError(RuntimeError):
    """A gradient step produced a NaN or infinite loss."""


class LossMeans:
    """A player's actor and critic losses between two progress rows: their sums, then their means."""

    def __init__(self, player: str) -> None:
        self.player = player
        self._sums: dict[str, float] = {}
        self._count = 0

    def add(self, step: int, actor_loss: float, critic_loss: float) -> None:
        """Add one gradient step's losses; a NaN or infinite one raises :class:`NonFiniteLossError`."""
        for k, v in (("actor_loss", actor_loss), ("critic_loss", critic_loss)):
            if not math.isfinite(v):
                raise NonFiniteLossError(f"{self.player} {k} is {v} at gradient step {step}")
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._count += 1

    def pop(self) -> dict[str, float]:
        """The mean of each loss since the last call (NaN without a step), and start again."""
        n = self._count
        means = {k: v / n for k, v in self._sums.items()} if n else {"actor_loss": math.nan, "critic_loss": math.nan}
        self._sums, self._count = {}, 0
        return means


class Player:
    """One side of the game: a QSAC model, its replay buffer and its update schedule.

    The loop calls :meth:`act` for every control step, :meth:`observe` for every transition of this
    player's own learning phase (the transitions of a frozen player are never stored), and :meth:`observe`
    triggers a gradient step every ``train_every`` own-phase steps once ``learning_starts`` transitions
    are stored.
    """

    def __init__(
        self,
        name: str,
        config: SACConfig,
        observation_space: spaces.Box,
        action_space: spaces.Box,
        model_cls: type[QSAC] = QSAC,
    ) -> None:
        self.name = name
        self.config = config
        self.model = make_sac(config, observation_space, action_space, model_cls=model_cls)
        self.env_steps = 0  # own-phase transitions stored so far
        self.updates = 0  # gradient steps so far
        self.losses = LossMeans(name)
        # Behaviour log-probability of each stored action under the acting policy, parallel to the buffer positions
        # (NaN where the action was not sampled); read by the off-policy diagnostics (qarl/diagnostics/neural.py).
        self.behaviour_log_prob = np.full(self.buffer.buffer_size, np.nan, dtype=np.float32)
        self._behaviour: th.distributions.Normal | None = None  # the last act()'s action distribution
        # (actor module, its FastActing or None where unsupported), built on the first act() of each actor module
        self._acting: tuple[nn.Module, FastActing | None] | None = None

    @property
    def buffer(self):
        return self.model.replay_buffer

    def act(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(action in the player's action space, the same action scaled to [-1, 1] for the buffer)."""
        actor = self.model.actor
        with th.no_grad():
            obs_t = th.as_tensor(obs, dtype=th.float32).reshape(1, -1)
            if self._acting is None or self._acting[0] is not actor:
                self._acting = (actor, FastActing(actor) if FastActing.supported(actor) else None)
            fast = self._acting[1]
            if fast is not None:  # the same operations and random draws as the module path, without its overhead
                action, distribution = fast(obs_t, deterministic)
            else:
                action = actor(obs_t, deterministic=deterministic)
                distribution = actor.action_dist.distribution
            scaled = action.numpy()[0]
        # keep the sampling distribution (not a log-prob: computed in observe() only for stored actions)
        self._behaviour = None if deterministic else distribution
        return self.model.policy.unscale_action(scaled), scaled

    def observe(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        buffer_action: np.ndarray,
        reward: float,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one own-phase transition and take a gradient step when the schedule says so."""
        if self._behaviour is not None:
            with th.no_grad():
                log_prob = squashed_log_prob(self._behaviour, th.as_tensor(buffer_action, dtype=th.float32)[None])
            self.behaviour_log_prob[self.buffer.pos] = float(log_prob[0])
        else:
            self.behaviour_log_prob[self.buffer.pos] = np.nan
        self._behaviour = None
        # SB3's buffer treats a done with "TimeLimit.truncated" as a time-out, so truncation bootstraps.
        self.buffer.add(
            obs[None],
            next_obs[None],
            buffer_action[None],
            np.array([reward], dtype=np.float32),
            np.array([terminated or truncated]),
            [{"TimeLimit.truncated": truncated and not terminated}],
        )
        self.env_steps += 1
        if self.env_steps % self.config.train_every == 0 and self.buffer.size() >= self.config.learning_starts:
            self.update()

    def update(self) -> None:
        self.model.train(gradient_steps=1, batch_size=self.config.batch_size)
        self.updates += 1
        values = self.model.logger.name_to_value
        self.losses.add(self.updates, values["train/actor_loss"], values["train/critic_loss"])

    def pop_stats(self) -> dict[str, float]:
        """Mean losses since the last call, the current temperature and the counters."""
        stats = self.losses.pop()
        stats.update(temperature=self.model.temperature, env_steps=self.env_steps, updates=self.updates)
        return stats
