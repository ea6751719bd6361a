"""``mixedne_ld``: MixedNE-LD (Kamalaruban, Huang, Hsieh, Rolland, Shi, Cevher, NeurIPS 2020) in the action-robust MDP.

The game is the noisy-action robust MDP (NR-MDP) of Tessler et al. (ICML 2019), as in the paper's Algorithm 3: the
adversary acts in the *protagonist's* action space and the executed action is the mixture

    a = (1 - delta) a_pi + delta a_adv,        delta = 0.1,

so the adversary does not push on bodies: the game's external-force input is always zero. Both policies are
tanh-Gaussian (soft actor-critic style) and act in the protagonist's action space rescaled to [-1, 1]; mixing there and
then rescaling equals mixing in physical units (the rescaling is affine), so the executed action stays in the
protagonist's bounds.

Entropy convention (symmetric max-entropy): the protagonist maximises and the adversary minimises

    E[ sum_t gamma^t ( r_t + alpha H(pi(.|s_t)) - alpha_adv H(nu(.|s_t)) ) ],

i.e. each player gets an entropy bonus on its own objective (the adversary's objective is ``-r``). Both temperatures
are fixed (``alpha``, ``alpha_adv``). Log-densities are those of the tanh-squashed actions in [-1, 1] (SB3's
convention), and ``log nu`` is the density of the adversary's own action, before mixing. Hence:

- one shared twin critic Q(s, a) of the executed (mixed) action, with Polyak-averaged targets Q', fitted by Adam on
  ``y = r + gamma (1 - terminated) (min_j Q'_j(s', a'_mix) - alpha log pi(a'_pi|s') + alpha_adv log nu(a'_adv|s'))``
  with a'_pi ~ pi(.|s'), a'_adv ~ nu(.|s') and a'_mix their mixture (a time-limit truncation bootstraps);
  loss ``0.5 sum_j mean (Q_j(s, a) - y)^2``;
- protagonist loss ``mean(alpha log pi(a_pi|s) - Q(s, mix(a_pi, a_adv)))``, adversary loss
  ``mean(alpha_adv log nu(a_adv|s) + Q(s, mix(a_pi, a_adv)))``, each with the other's reparameterised sample
  detached and with ``Q = min_j Q_j`` for both (one value function, so that the game is zero-sum on it). Both losses
  are computed from the same samples before either actor moves (simultaneous updates).

Both actors are updated by preconditioned SGLD (pSGLD, Li et al., AAAI 2016, with the RMSprop preconditioner), the
paper's Langevin step (its Algorithm 3's actor updates), see :class:`PreconditionedSGLD`. Per gradient step the order
is: critic, then both actors, then the target critics. We take one Langevin step per player per gradient step (K = 1)
and keep no running average of the iterates.

The loop runs one ``"joint"`` phase per iteration: both actors sample their actions and both learn from the same
transitions, stored once in a single replay buffer of ``(s, a_pi, a_adv, a_exec, r, s', terminated)``. Evaluation
(loop semantics, mean actions by default): "against the adversary" executes the mixture of both mean actions;
"zero force" switches the mixing off, i.e. the protagonist's own action is executed (delta = 0).

Config fields read from ``protagonist`` (a ``SACConfig``, so that the smoke scale shrinks them): ``net_arch`` (the
protagonist's actor and each of the twin critics), ``batch_size``, ``buffer_size``, ``gamma``, ``tau``,
``train_every``, ``learning_starts``. From ``adversary`` only ``net_arch`` (its actor) is read. The SACConfig fields
``actor_lr``, ``critic_lr``, ``temperature_lr``, ``initial_temperature``, ``learn_temperature`` and
``target_entropy`` are not used: the actors use ``sgld_*``, the critic ``critic_lr`` and the temperatures ``alpha`` /
``alpha_adv`` of the method config. ``fast_update`` is not used either (these learners are not stable-baselines3
SAC models).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch as th
from torch import nn
from torch.nn import functional as F

from qarl.sac.learner import LossMeans, SACConfig
from qarl.sac.views import CHUNK, CriticBatch, SharedCriticView
from qarl.training.checkpoint import CheckpointError
from qarl.training.loop import ADVERSARY, PROTAGONIST, LoopConfig, TwoPlayerTrainer
from qarl.training.rollout import Transition, rollout
from qarl.training.seeds import stream_seed

JOINT = "joint"
_LOG_STD_MIN, _LOG_STD_MAX = -20.0, 2.0  # SB3's SAC actor clamps log-std to this range


@dataclass(frozen=True)
class MixedNELDConfig:
    """Config of the ``mixedne_ld`` method (defaults: the paper's NR-MDP settings on the suite's SAC defaults)."""

    protagonist: SACConfig = field(default_factory=SACConfig)
    """Shared learner settings: net_arch (protagonist actor, twin critics), batch, buffer, gamma, tau, schedule."""
    adversary: SACConfig = field(default_factory=SACConfig)
    """The adversary's actor; only its net_arch is read."""
    delta: float = 0.1
    """NR-MDP mixing weight: executed action = (1 - delta) a_pi + delta a_adv."""
    sgld_lr: float = 3e-4
    """Initial SGLD step size of both actors."""
    sgld_lr_decay: float = 1e-5
    """SGLD step size multiplied by (1 - sgld_lr_decay) after every step."""
    sgld_noise: float = 1e-3
    """Initial thermal noise scale of both actors' SGLD."""
    sgld_noise_decay: float = 5e-5
    """Thermal noise multiplied by (1 - sgld_noise_decay) after every step."""
    sgld_beta: float = 0.999
    """RMSprop decay of the SGLD preconditioner's squared-gradient average."""
    sgld_eps: float = 1e-8
    """Added to sqrt(V) in the SGLD preconditioner G = 1 / (eps + sqrt(V))."""
    critic_lr: float = 3e-4
    """Adam learning rate of the shared twin critic."""
    alpha: float = 0.005
    """Fixed entropy temperature of the protagonist."""
    alpha_adv: float = 0.005
    """Fixed entropy temperature of the adversary."""

    def validate(self) -> None:
        if not 0 <= self.delta <= 1:
            raise ValueError(f"delta must lie in [0, 1], got {self.delta}")
        for name in ("sgld_lr", "sgld_eps", "critic_lr"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v}")
        for name in ("sgld_noise", "alpha", "alpha_adv"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        for name in ("sgld_lr_decay", "sgld_noise_decay", "sgld_beta"):
            v = getattr(self, name)
            if not 0 <= v < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {v}")


class PreconditionedSGLD(th.optim.Optimizer):
    """Preconditioned stochastic gradient Langevin dynamics (Li et al., 2016) with decaying step size and noise.

    For every parameter theta with gradient g, step k = 1, 2, ... does (elementwise)

        V     <- beta V + (1 - beta) g^2                (V_0 = 0, no bias correction)
        G     =  1 / (eps + sqrt(V))
        theta <- theta - lr_k G g + sqrt(2 lr_k G) sigma_k xi,    xi ~ N(0, I) drawn from ``generator``

    with lr_1 = lr, sigma_1 = noise, and after every step lr_{k+1} = lr_k (1 - lr_decay), sigma_{k+1} = sigma_k
    (1 - noise_decay) (updated by multiplication, so lr_k = lr (1 - lr_decay)^(k-1) up to rounding). pSGLD's Gamma
    correction term is dropped, as usual. The current ``lr`` and ``noise`` and the step count live in the param group,
    so ``state_dict`` checkpoints them; it also holds the generator's state (``"generator"``), restored by
    ``load_state_dict``. The noise is drawn parameter by parameter, in order, with ``th.randn(p.shape, generator=...)``.

    Note: V starts at 0 with no bias correction, so during the first ~1 / (1 - beta) steps G is up to
    1 / sqrt(1 - beta) (about 32 for beta = 0.999) times its steady-state value, and a parameter whose gradient is
    exactly 0 (a dead ReLU unit) gets G = 1 / eps, hence noise of standard deviation sqrt(2 lr / eps) sigma, about
    0.24 per step at the defaults (lr 3e-4, eps 1e-8, sigma 1e-3). With the paper's 3x256 actors on
    dmc/cartpole-balance the first step moves an actor's weight norm from about 17 to 56, and 1,000 steps to about
    230 (without noise: 18); the protagonist still learns (zero-force evaluation about 730 after 36k env steps).
    """

    def __init__(
        self,
        params: Iterable[th.Tensor],
        *,
        lr: float,
        noise: float,
        generator: th.Generator,
        lr_decay: float = 0.0,
        noise_decay: float = 0.0,
        beta: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        defaults = {
            "lr": lr,
            "noise": noise,
            "lr_decay": lr_decay,
            "noise_decay": noise_decay,
            "beta": beta,
            "eps": eps,
            "steps": 0,
        }
        super().__init__(params, defaults)
        self.generator = generator

    @th.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("PreconditionedSGLD does not take a closure")
        for group in self.param_groups:
            lr, sigma, beta, eps = group["lr"], group["noise"], group["beta"], group["eps"]
            for p in group["params"]:
                g = p.grad if p.grad is not None else th.zeros_like(p)
                state = self.state[p]
                if "square_avg" not in state:
                    state["square_avg"] = th.zeros_like(p, memory_format=th.preserve_format)
                v = state["square_avg"]
                v.mul_(beta).addcmul_(g, g, value=1 - beta)
                precond = 1.0 / (eps + v.sqrt())
                xi = th.randn(p.shape, generator=self.generator, dtype=p.dtype, device=p.device)
                p.add_(-lr * precond * g + th.sqrt(2.0 * lr * precond) * sigma * xi)
            group["lr"] = lr * (1.0 - group["lr_decay"])
            group["noise"] = sigma * (1.0 - group["noise_decay"])
            group["steps"] += 1

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        generator = state_dict.pop("generator")
        super().load_state_dict(state_dict)
        self.generator.set_state(generator)


def _mlp(n_in: int, hidden: Iterable[int], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        n_in = h
    layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class TanhGaussianActor(nn.Module):
    """ReLU MLP to the mean and log-std of a Gaussian, squashed by tanh into [-1, 1] (as SB3's SAC actor)."""

    def __init__(self, obs_dim: int, act_dim: int, net_arch: Iterable[int]) -> None:
        super().__init__()
        net_arch = list(net_arch)
        self.latent = _mlp(obs_dim, net_arch[:-1], net_arch[-1])
        self.mu = nn.Linear(net_arch[-1], act_dim)
        self.log_std = nn.Linear(net_arch[-1], act_dim)

    def forward(self, obs: th.Tensor, deterministic: bool = False) -> tuple[th.Tensor, th.Tensor]:
        """(action in [-1, 1], its log-density), reparameterised; noise from torch's global generator."""
        h = F.relu(self.latent(obs))
        mu = self.mu(h)
        log_std = self.log_std(h).clamp(_LOG_STD_MIN, _LOG_STD_MAX)
        noise = th.zeros_like(mu) if deterministic else th.randn_like(mu)
        u = mu + log_std.exp() * noise
        log_prob = (-0.5 * noise.square() - log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)  # Gaussian log-density
        # change of variables through tanh: log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        log_prob = log_prob - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)
        return th.tanh(u), log_prob


class TwinCritic(nn.Module):
    """Two ReLU MLPs Q_1, Q_2 of (observation, executed action in [-1, 1])."""

    def __init__(self, obs_dim: int, act_dim: int, net_arch: Iterable[int]) -> None:
        super().__init__()
        self.q1 = _mlp(obs_dim + act_dim, net_arch, 1)
        self.q2 = _mlp(obs_dim + act_dim, net_arch, 1)

    def forward(self, obs: th.Tensor, action: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        x = th.cat([obs, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


class JointReplayBuffer:
    """Numpy ring buffer of (s, a_pi, a_adv, a_exec, r, s', terminated); actions in [-1, 1].

    Minibatches are drawn from numpy's global generator (saved in checkpoints, as for SB3's buffers).
    """

    FIELDS = ("obs", "next_obs", "a_pi", "a_adv", "a_exec", "reward", "terminated")

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity = capacity
        # np.zeros is lazily committed by the OS, so a 10^6 capacity costs only what is filled.
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.a_pi = np.zeros((capacity, act_dim), np.float32)
        self.a_adv = np.zeros((capacity, act_dim), np.float32)
        self.a_exec = np.zeros((capacity, act_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos, self.full = 0, False

    def size(self) -> int:
        return self.capacity if self.full else self.pos

    def add(self, **transition: Any) -> None:
        for k in self.FIELDS:
            getattr(self, k)[self.pos] = transition[k]
        self.pos = (self.pos + 1) % self.capacity
        self.full = self.full or self.pos == 0

    def sample(self, batch_size: int) -> dict[str, th.Tensor]:
        idx = np.random.randint(0, self.size(), size=batch_size)
        return {k: th.as_tensor(getattr(self, k)[idx]) for k in self.FIELDS}

    def state_dict(self) -> dict[str, Any]:
        n = self.size()
        return {"pos": self.pos, "full": self.full, "arrays": {k: getattr(self, k)[:n].copy() for k in self.FIELDS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        arrays = state["arrays"]
        n = arrays["obs"].shape[0]
        if n > self.capacity or arrays["obs"].shape[1:] != self.obs.shape[1:]:
            raise CheckpointError(
                f"replay buffer in the checkpoint has shape {arrays['obs'].shape}, this config's holds {self.obs.shape}"
            )
        for k in self.FIELDS:
            getattr(self, k)[:n] = arrays[k]
        self.pos, self.full = int(state["pos"]), bool(state["full"])


class LangevinPlayer:
    """One side of the NR-MDP game: a tanh-Gaussian actor moved by :class:`PreconditionedSGLD`, and its stats.

    Stands in for :class:`qarl.sac.learner.Player` where the loop reads ``players`` (``pop_stats``, ``config``).
    """

    def __init__(
        self, name: str, config: SACConfig, method: MixedNELDConfig, obs_dim: int, act_dim: int, seed: int
    ) -> None:
        self.name, self.config = name, config
        self.temperature = method.alpha if name == PROTAGONIST else method.alpha_adv
        self.actor = TanhGaussianActor(obs_dim, act_dim, config.net_arch)
        # Own generator per player, derived from the trial seed: the Langevin noise is reproducible, checkpointable
        # and independent of the action sampling on torch's global generator.
        stream = 0 if name == PROTAGONIST else 1
        generator = th.Generator().manual_seed(
            stream_seed(seed, "sgld", stream)
        )
        self.optimizer = PreconditionedSGLD(
            self.actor.parameters(),
            lr=method.sgld_lr,
            noise=method.sgld_noise,
            generator=generator,
            lr_decay=method.sgld_lr_decay,
            noise_decay=method.sgld_noise_decay,
            beta=method.sgld_beta,
            eps=method.sgld_eps,
        )
        self.env_steps = 0  # joint-phase transitions this player acted in (the same for both players)
        self.updates = 0  # Langevin steps of this actor
        self.losses = LossMeans(name)

    def act(self, obs: np.ndarray, deterministic: bool) -> np.ndarray:
        """An action in [-1, 1] (float64), sampled or the mean."""
        with th.no_grad():
            a, _ = self.actor(th.as_tensor(obs, dtype=th.float32).reshape(1, -1), deterministic)
        return a.numpy()[0].astype(np.float64)

    def record(self, actor_loss: float, critic_loss: float) -> None:
        self.losses.add(self.updates, actor_loss, critic_loss)

    def pop_stats(self) -> dict[str, float]:
        """Mean losses since the last call (critic: the shared critic's), the fixed temperature and the counters."""
        stats = self.losses.pop()
        stats.update(temperature=self.temperature, env_steps=self.env_steps, updates=self.updates)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "sgld": self.optimizer.state_dict(),
            "env_steps": self.env_steps,
            "updates": self.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.actor.load_state_dict(state["actor"])
        except RuntimeError as exc:
            raise CheckpointError(f"{self.name} actor in the checkpoint does not match the config: {exc}") from None
        self.optimizer.load_state_dict(state["sgld"])
        self.env_steps, self.updates = state["env_steps"], state["updates"]


class MixedNELDTrainer(TwoPlayerTrainer):
    """MixedNE-LD in the NR-MDP: a shared soft twin critic and two Langevin actors, one joint phase per iteration."""

    paper = "Kamalaruban et al., NeurIPS 2020 (MixedNE-LD, NR-MDP with delta = 0.1)"

    name = "mixedne_ld"
    config_cls = MixedNELDConfig
    phases = (JOINT,)

    def __init__(self, task_id: str, config: MixedNELDConfig, loop: LoopConfig, seed: int) -> None:
        super().__init__(task_id, config, loop, seed)  # seeds the global generators, then build_players
        shared = config.protagonist
        obs_dim, act_dim = self._dims()
        self.critic = TwinCritic(obs_dim, act_dim, shared.net_arch)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.critic_optimizer = th.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.buffer = JointReplayBuffer(shared.buffer_size, obs_dim, act_dim)
        self.joint_steps = 0  # transitions stored (drives the update schedule)
        self.gradient_steps = 0
        space = self.game.protagonist_action_space
        self._low, self._high = space.low.astype(np.float64), space.high.astype(np.float64)

    def _dims(self) -> tuple[int, int]:
        return int(self.game.observation_space.shape[0]), int(self.game.protagonist_action_space.shape[0])

    def build_players(self) -> dict[str, LangevinPlayer]:  # type: ignore[override]
        obs_dim, act_dim = self._dims()
        # both actors live in the protagonist's action space (NR-MDP), never in the game's force space
        return {
            name: LangevinPlayer(name, cfg, self.config, obs_dim, act_dim, self.seed)
            for name, cfg in ((PROTAGONIST, self.config.protagonist), (ADVERSARY, self.config.adversary))
        }

    def critic_views(self) -> dict[str, JointCriticView]:
        """The shared critic, diagnosed as ``diag/joint/...``."""
        return {JOINT: JointCriticView(self)}

    # ------------------------------------------------------------------ acting
    def mix(self, a_pi: Any, a_adv: Any) -> Any:
        """The NR-MDP executed action (1 - delta) a_pi + delta a_adv (numpy arrays or tensors, in [-1, 1])."""
        return (1.0 - self.config.delta) * a_pi + self.config.delta * a_adv

    def to_env(self, scaled: np.ndarray) -> np.ndarray:
        """An action in [-1, 1] rescaled to the protagonist's bounds (clipped against rounding at the edges)."""
        return np.clip(self._low + 0.5 * (scaled + 1.0) * (self._high - self._low), self._low, self._high)

    def play_episode(self, game, seed: int, learner: str | None, deterministic: bool, adversary_on: bool):
        """One episode; with ``learner == "joint"`` both players store the transitions and learn from them.

        ``adversary_on=False`` (the zero-force evaluation) executes the protagonist's own action (delta off).
        The game's external force is always zero: this adversary acts through the mixture only.
        """
        protagonist, adversary = self.players[PROTAGONIST], self.players[ADVERSARY]
        zero_force = np.zeros(game.adversary_action_space.shape)
        seen: dict[str, np.ndarray] = {}  # this step's actions, for on_step

        def policy(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            seen["a_pi"] = a_pi = protagonist.act(obs, deterministic)
            if adversary_on:
                seen["a_adv"] = adversary.act(obs, deterministic)
                seen["a_exec"] = self.mix(a_pi, seen["a_adv"])
            else:
                seen["a_adv"], seen["a_exec"] = np.zeros_like(a_pi), a_pi
            a_exec = seen["a_exec"]
            return self.protagonist_action(obs, self.to_env(a_exec), a_exec, learner), zero_force  # loop hook

        def store(t: Transition) -> None:
            self.observe(t.obs, t.next_obs, seen["a_pi"], seen["a_adv"], seen["a_exec"], t.reward, t.terminated)

        ep = rollout(
            game,
            policy,
            seed=seed,
            gamma=self.config.protagonist.gamma,
            on_reset=lambda obs: self.after_reset(game, learner),  # the loop's hook, kept for subclasses
            on_step=store if learner == JOINT else None,
        )
        return ep.ret, ep.discounted, ep.length

    def eval_actions(self, obs: np.ndarray, deterministic: bool, adversary_on: bool) -> tuple[np.ndarray, np.ndarray]:
        """Batched evaluation actions: the executed (mixed, or with ``adversary_on=False`` the protagonist's own)
        action and zero force, as in ``play_episode``."""
        protagonist, adversary = self.players[PROTAGONIST], self.players[ADVERSARY]
        obs_t = th.as_tensor(np.asarray(obs), dtype=th.float32)
        with th.no_grad():
            a_pi = protagonist.actor(obs_t, deterministic)[0].numpy().astype(np.float64)
            a_exec = (
                self.mix(a_pi, adversary.actor(obs_t, deterministic)[0].numpy().astype(np.float64))
                if adversary_on
                else a_pi
            )
        return self.to_env(a_exec), np.zeros((len(obs), *self.game.adversary_action_space.shape))

    def observe(self, obs, next_obs, a_pi, a_adv, a_exec, reward: float, terminated: bool) -> None:
        """Store one joint transition; one gradient step every ``train_every`` steps after ``learning_starts``."""
        self.buffer.add(
            obs=obs, next_obs=next_obs, a_pi=a_pi, a_adv=a_adv, a_exec=a_exec, reward=reward, terminated=terminated
        )
        self.joint_steps += 1
        for p in self.players.values():
            p.env_steps += 1
        c = self.config.protagonist
        if self.joint_steps % c.train_every == 0 and self.buffer.size() >= c.learning_starts:
            self.update()

    # ------------------------------------------------------------------ learning
    def update(self) -> None:
        """One gradient step: critic (Adam), then both actors (pSGLD, simultaneous), then the target critics."""
        c, cfg = self.config.protagonist, self.config
        protagonist, adversary = self.players[PROTAGONIST], self.players[ADVERSARY]
        b = self.buffer.sample(c.batch_size)

        # soft Bellman target of the entropy-regularised NR-MDP (module docstring)
        with th.no_grad():
            a_pi2, logp_pi2 = protagonist.actor(b["next_obs"])
            a_adv2, logp_adv2 = adversary.actor(b["next_obs"])
            q1_t, q2_t = self.critic_target(b["next_obs"], self.mix(a_pi2, a_adv2))
            soft_v = th.min(q1_t, q2_t) - cfg.alpha * logp_pi2 + cfg.alpha_adv * logp_adv2
            y = b["reward"] + c.gamma * (1.0 - b["terminated"]) * soft_v
        q1, q2 = self.critic(b["obs"], b["a_exec"])
        critic_loss = 0.5 * (F.mse_loss(q1, y) + F.mse_loss(q2, y))
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        # actor losses from the same samples; the other player's action is detached
        a_pi, logp_pi = protagonist.actor(b["obs"])
        a_adv, logp_adv = adversary.actor(b["obs"])
        self.critic.requires_grad_(False)  # the actors' gradients must not accumulate in the critic
        try:
            q_pi = th.min(*self.critic(b["obs"], self.mix(a_pi, a_adv.detach())))
            q_adv = th.min(*self.critic(b["obs"], self.mix(a_pi.detach(), a_adv)))
        finally:
            self.critic.requires_grad_(True)
        loss_pi = (cfg.alpha * logp_pi - q_pi).mean()
        loss_adv = (cfg.alpha_adv * logp_adv + q_adv).mean()
        for player, loss in ((protagonist, loss_pi), (adversary, loss_adv)):
            player.optimizer.zero_grad()
            loss.backward()
        for player in (protagonist, adversary):
            player.optimizer.step()
            player.updates += 1

        with th.no_grad():
            for p, p_t in zip(self.critic.parameters(), self.critic_target.parameters(), strict=True):
                p_t.mul_(1.0 - c.tau).add_(p, alpha=c.tau)
        self.gradient_steps += 1
        critic_value = float(critic_loss.item())
        protagonist.record(float(loss_pi.item()), critic_value)
        adversary.record(float(loss_adv.item()), critic_value)

    # ------------------------------------------------------------------ checkpoints
    def player_state(self, player: LangevinPlayer) -> dict[str, Any]:
        return player.state_dict()

    def load_player_state(self, player: LangevinPlayer, state: dict[str, Any]) -> None:
        player.load_state_dict(state)

    def method_state(self) -> dict[str, Any]:
        return {
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "joint_steps": self.joint_steps,
            "gradient_steps": self.gradient_steps,
        }

    def load_method_state(self, state: dict[str, Any]) -> None:
        try:
            self.critic.load_state_dict(state["critic"])
            self.critic_target.load_state_dict(state["critic_target"])
        except RuntimeError as exc:
            raise CheckpointError(f"critic in the checkpoint does not match the config: {exc}") from None
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        for group in self.critic_optimizer.param_groups:  # the config's rate is authoritative
            group["lr"] = self.config.critic_lr
        self.buffer.load_state_dict(state["buffer"])
        self.joint_steps, self.gradient_steps = state["joint_steps"], state["gradient_steps"]


class JointCriticView(SharedCriticView):
    """The view of ``mixedne_ld``'s shared soft twin critic Q(s, a) of the executed action.

    Its backup is the method's own target with the current critic: y = r + gamma (1 - d) (1/K') sum_k
    [f(s', mix(a'_k, b'_k)) - alpha log pi(a'_k|s') + alpha_adv log nu(b'_k|s')] with a'_k ~ pi and b'_k ~ nu, the two
    Langevin actors. The buffer stores no behaviour density of the executed (mixed) action, so the ``shift`` group
    stays NaN.
    """

    def __init__(self, trainer: MixedNELDTrainer) -> None:
        self.trainer, self.critic, self.q1 = trainer, trainer.critic, trainer.critic.q1
        self.gamma = float(trainer.config.protagonist.gamma)
        self.alpha, self.alpha_adv = float(trainer.config.alpha), float(trainer.config.alpha_adv)
        self.actors = (trainer.players[PROTAGONIST].actor, trainer.players[ADVERSARY].actor)
        buf = trainer.buffer
        self.size, self.pos, self.capacity = buf.size(), buf.pos, buf.capacity

    def batch(self, idx: np.ndarray) -> CriticBatch:
        buf = self.trainer.buffer
        f = lambda a: th.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        return CriticBatch(
            obs=f(buf.obs[idx]),
            actions=f(buf.a_exec[idx]),
            rewards=f(buf.reward[idx]),
            next_obs=f(buf.next_obs[idx]),
            not_done=f(1.0 - buf.terminated[idx]),  # the buffer stores true terminations only
            behaviour_log_prob=th.full((len(idx),), math.nan),
        )

    def critic_input(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        return th.cat([obs, actions], dim=1)

    def f(self, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """min(Q_1, Q_2)(s, a), (B,)."""
        return th.cat(
            [th.min(*self.critic(obs[i : i + CHUNK], actions[i : i + CHUNK])) for i in range(0, len(obs), CHUNK)]
        )

    def soft_value_terms(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """(executed action mix(a, b) with a ~ pi, b ~ nu, its entropy term -alpha log pi(a) + alpha_adv log nu(b))."""
        (a, logp), (b, logq) = (actor(obs) for actor in self.actors)
        return self.trainer.mix(a, b), -self.alpha * logp + self.alpha_adv * logq

    def to_env(self, scaled: np.ndarray) -> np.ndarray:
        return self.trainer.to_env(scaled)
