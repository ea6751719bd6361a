"""One batched soft actor-critic gradient step for the models of K seeds (issue 10, item 3: many seeds per device).

:class:`GroupedSACUpdate` performs, for K compatible ``QSAC`` models at once, exactly the gradient step of
:class:`~qarl.sac.fast.FastSACUpdate` (and so of stable-baselines3's ``SAC.train``) of each of them:

- **Stacked parameters.** As the fast update stacks a model's twin critics, this stacks the twin critics of all K
  models into one flat buffer (K x 2 networks; the ``(K*2, out, in)`` block of a layer is one ``baddbmm``), their
  target critics into another, and the K actors into a third (``(K, out, in)`` per layer; the mu and log_std heads side
  by side as one ``(K, 2|A|, h)`` block). Every SB3 ``Parameter`` keeps its identity and becomes a view of its block,
  so each model's ``state_dict``, optimisers and checkpoints are untouched; a parameter moved elsewhere (another group
  of these models, a model's own fast update) rebinds the layout on its next use (:meth:`is_current`).
- **Each model's own batch and noise.** Model k samples its minibatch from its own replay buffer with the same two
  ``np.random.randint`` calls as SB3, and draws its Gaussian noise with the same two ``normal_`` calls, each inside
  ``streams[k]`` (a context manager that makes model k's generators the global ones, :mod:`qarl.experiment.group`),
  so every model consumes exactly the random numbers of its own single-seed step.
- **Everything else batched over K**: the squashed Gaussian, the temperature losses (each model's log-temperature
  has its own Adam), the soft targets, both losses and their hand-written gradients, one fused Adam call for the
  critics (and one for the actors) of all K models over their optimisers' own state, and one Polyak update of the
  flat buffers.

The math is that of :mod:`qarl.sac.fast` with a leading K axis; only summation orders differ (the results
agree with K separate fast steps to float rounding, ``tests/qarl/test_grouped.py``). The tensors live on the models'
device: the step runs on a GPU as it does on the CPU (the minibatch is gathered on the host, then copied). On the CPU
the optimiser step is torch's fused Adam kernel, elsewhere each optimiser's own ``step()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN
from torch import nn

from qarl.sac.fast import (
    _HALF_LOG_2PI,
    _SQUASH_EPS,
    _AdamStep,
    _relu_mlp,
    _StackedMLP,
    fused_adam_step,
    onednn_linear,
    resolve_kernel,
    share_steps,
    unsupported_reason,
)
from qarl.sac.learner import QSAC


def group_key(model: QSAC, batch_size: int) -> tuple[Any, ...] | None:
    """Models with equal keys can share one :class:`GroupedSACUpdate` (None: this model's steps cannot be grouped).

    The key holds what the batched step shares between models: the class (its temperature rule), the batch size,
    the device, every parameter shape, gamma, tau, the learning rates, whether the temperature is learned and the
    matmul kernel (:func:`qarl.sac.fast.resolve_kernel`).
    """
    if not isinstance(model, QSAC) or not model.fast_update or unsupported_reason(model) is not None:
        return None
    if getattr(model.actor, "latent_std", None) is not None:  # actor_std: separate trains with its own fast update
        return None
    shapes = tuple(tuple(p.shape) for p in model.policy.parameters())
    rates = (model.actor_lr, model.critic_lr, model.temperature_lr)
    learned = model.ent_coef_optimizer is not None
    kernel = resolve_kernel(model, batch_size)  # models on different matmul kernels round differently: not grouped
    return (type(model), batch_size, str(model.device), shapes, model.gamma, model.tau, rates, learned, kernel)


class _GroupedStackedMLP(_StackedMLP):
    """The critics of K models (``c`` each, K*c networks in SB3's order) with one input batch per model."""

    def __init__(
        self,
        q_networks: list[nn.Module],
        groups: int,
        batch_size: int,
        slots: int,
        kernel: str,
        acts: list[list[th.Tensor]] | None = None,
    ) -> None:
        with th.device(next(q_networks[0].parameters()).device):  # the buffers _StackedMLP allocates, on that device
            super().__init__(q_networks, batch_size, slots, kernel, acts)
        self.groups = groups
        self.per_group = self.n // groups

    def forward(self, z: th.Tensor, slot: int = 0) -> list[th.Tensor]:  # type: ignore[override]
        """Activations of all networks on input z (K, B, in): each model's critics see that model's rows."""
        if self.linear is not None:  # oneDNN, network by network (see qarl.sac.fast._StackedMLP)
            return self._forward_each([z[j // self.per_group] for j in range(self.n)])
        k, b, d = z.shape
        return self._forward_stacked(z.unsqueeze(1).expand(k, self.per_group, b, d).reshape(self.n, b, d), slot)

    def backward(self, acts: list[th.Tensor], dq: th.Tensor, param_grads: bool, input_cols: slice | None) -> Any:
        """As :meth:`_StackedMLP.backward`; the input gradient (K, B, cols) is summed over each model's critics."""
        grads_t = self.input_grads_t(acts, dq, param_grads, input_cols)
        if grads_t is None:
            return None
        return grads_t.view(self.groups, self.per_group, *grads_t.shape[1:]).sum(1).transpose(1, 2)


class _StackedActors:
    """The K actors (ReLU latent MLP, mu and log_std heads) as one batched MLP over SB3's own parameters."""

    def __init__(self, actors: list[nn.Module], batch_size: int, device: th.device, kernel: str) -> None:
        latents = [_relu_mlp(a.latent_pi) or [] for a in actors]
        self.k = k = len(actors)
        layers = [[lat[i] for lat in latents] for i in range(len(latents[0]))]
        heads = [[a.mu for a in actors], [a.log_std for a in actors]]
        self.shapes = [tuple(lin[0].weight.shape) for lin in layers]
        a_dim, h_dim = heads[0][0].weight.shape
        self.act_dim = a_dim
        total = sum(k * (o * i + o) for o, i in self.shapes) + k * 2 * a_dim * (h_dim + 1)
        self.flat = th.empty(total, device=device)
        self.grad_flat = th.zeros(total, device=device)
        self.weights: list[th.Tensor] = []  # (K, out, in) per layer, then the heads (K, 2|A|, h)
        self.biases: list[th.Tensor] = []  # (K, 1, out)
        self.grad_weights: list[th.Tensor] = []
        self.grad_biases: list[th.Tensor] = []  # (K, out)
        self.params: list[nn.Parameter] = []
        self.grads: list[th.Tensor] = []
        offset = 0

        def block(n: int, shape: tuple[int, ...]) -> tuple[th.Tensor, th.Tensor]:
            nonlocal offset
            views = self.flat[offset : offset + n].view(shape), self.grad_flat[offset : offset + n].view(shape)
            offset += n
            return views

        for (o, i), linears in zip(self.shapes, layers, strict=True):
            w, gw = block(k * o * i, (k, o, i))
            b, gb = block(k * o, (k, o))
            for j, lin in enumerate(linears):
                self._rehome(lin, w[j], b[j], gw[j], gb[j])
            self._add(w, b, gw, gb)
        w, gw = block(k * 2 * a_dim * h_dim, (k, 2, a_dim, h_dim))  # heads: mu rows, then log_std rows
        b, gb = block(k * 2 * a_dim, (k, 2, a_dim))
        for head, linears in enumerate(heads):
            for j, lin in enumerate(linears):
                self._rehome(lin, w[j, head], b[j, head], gw[j, head], gb[j, head])
        self._add(
            w.view(k, 2 * a_dim, h_dim), b.view(k, 2 * a_dim), gw.view(k, 2 * a_dim, h_dim), gb.view(k, 2 * a_dim)
        )
        self._ptrs = [p.data_ptr() for p in self.params]
        self.linear = onednn_linear() if kernel == "onednn" else None  # as in qarl.sac.fast._StackedMLP
        widths = [o for o, _ in self.shapes]
        self.acts = [th.empty(k, 2 * batch_size, w, device=device) for w in widths]
        self.input_grads = [th.empty(k, batch_size, w, device=device) for w in widths]
        # narrow products transposed, as in qarl.sac.fast._StackedMLP.input_grads_t: the heads' output and the
        # first layer's weight gradient
        self.heads_t = th.empty(k, 2 * a_dim, 2 * batch_size, device=device)
        o0, i0 = self.shapes[0]
        self.grad_w0_t = th.empty(k, i0, o0, device=device)

    def _rehome(self, lin: nn.Linear, w: th.Tensor, b: th.Tensor, gw: th.Tensor, gb: th.Tensor) -> None:
        w.copy_(lin.weight.detach())
        b.copy_(lin.bias.detach())
        lin.weight.data, lin.bias.data = w, b
        self.params += [lin.weight, lin.bias]
        self.grads += [gw, gb]

    def _add(self, w: th.Tensor, b: th.Tensor, gw: th.Tensor, gb: th.Tensor) -> None:
        self.weights.append(w)
        self.biases.append(b.unsqueeze(1))
        self.grad_weights.append(gw)
        self.grad_biases.append(gb)

    def is_bound(self) -> bool:
        return all(p.data_ptr() == q for p, q in zip(self.params, self._ptrs, strict=True))

    def attach_grads(self) -> None:
        for p, g in zip(self.params, self.grads, strict=True):
            p.grad = g

    def forward(self, x: th.Tensor) -> tuple[list[Any], th.Tensor]:
        """Hidden activations [x, h_1, ...] and the heads' output (K, 2B, 2|A|) = [mu, log_std before clamping].

        With oneDNN each activation is a list of the K actors' (2B, width) tensors, else a (K, 2B, width) tensor.
        """
        if self.linear is not None:
            linear = self.linear
            acts: list[Any] = [list(x)]
            for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
                acts.append([linear(h, w[j], b[j, 0], "relu", [], "") for j, h in enumerate(acts[-1])])
            w, b = self.weights[-1], self.biases[-1]
            for j, h in enumerate(acts[-1]):
                th.addmm(b[j, 0].unsqueeze(1), w[j], h.t(), out=self.heads_t[j])
            return acts, self.heads_t.transpose(1, 2)
        h, acts = x, [x]
        for w, b, out in zip(self.weights[:-1], self.biases[:-1], self.acts, strict=True):
            h = th.baddbmm(b, h, w.transpose(1, 2), out=out).relu_()
            acts.append(h)
        b = self.biases[-1].transpose(1, 2)  # (K, 2|A|, 1)
        return acts, th.baddbmm(b, self.weights[-1], h.transpose(1, 2), out=self.heads_t).transpose(1, 2)

    def backward(self, acts: list[th.Tensor], dhead: th.Tensor, batch_size: int) -> None:
        """Parameter gradients of the first ``batch_size`` rows of each actor from dL/d[mu, log_std] (K, B, 2|A|)."""
        b, last = batch_size, len(self.weights) - 1
        if self.linear is not None:
            self._backward_each(acts, dhead, b)
            self.attach_grads()
            return
        dh = dhead
        for i in range(last, -1, -1):
            inp = acts[i][:, :b]
            if i == 0:  # dW^T = x^T dh, then transposed into place
                th.bmm(inp.transpose(1, 2), dh, out=self.grad_w0_t)
                self.grad_weights[0].copy_(self.grad_w0_t.transpose(1, 2))
            else:
                th.bmm(dh.transpose(1, 2), inp, out=self.grad_weights[i])
            th.sum(dh, dim=1, out=self.grad_biases[i])
            if i > 0:
                dh = th.bmm(dh, self.weights[i], out=self.input_grads[i - 1])
                th.ops.aten.threshold_backward.grad_input(dh, inp, 0.0, grad_input=dh)
        self.attach_grads()


    def _backward_each(self, acts: list[Any], dhead: th.Tensor, b: int) -> None:
        """:meth:`backward` one actor at a time through oneDNN (activations of the oneDNN :meth:`forward`)."""
        linear, last = self.linear, len(self.weights) - 1
        for j in range(self.k):
            dh = dhead[j]
            for i in range(last, -1, -1):
                inp = acts[i][j][:b]
                if i == 0:  # dW^T = x^T dh, then transposed into place
                    th.mm(inp.t(), dh, out=self.grad_w0_t[j])
                    self.grad_weights[0][j].copy_(self.grad_w0_t[j].t())
                else:  # dW = dh^T inp (torch.mm, as in qarl.sac.fast._StackedMLP._backward_each)
                    th.mm(dh.t(), inp, out=self.grad_weights[i][j])
                th.sum(dh, dim=0, out=self.grad_biases[i][j])
                if i > 0:
                    w = self.weights[i][j]
                    dh = th.mm(dh, w) if i == last else linear(dh, w.t(), None, "none", [], "")
                    th.ops.aten.threshold_backward.grad_input(dh, inp, 0.0, grad_input=dh)


class _GroupedAdam:
    """``optimizer.step()`` of K torch Adam optimisers with equal settings: one fused kernel call over all their lists.

    As :class:`~qarl.sac.fast._AdamStep`: the state is each optimiser's own; a first step, a reloaded state,
    settings the direct call does not cover, or unequal rates go through each optimiser's ``step()``.
    """

    def __init__(self, optimizers: Sequence[th.optim.Optimizer]) -> None:
        self.optimizers = list(optimizers)
        self._states: list[Any] = []
        self._lists: tuple[list[th.Tensor], ...] = ()
        self._steps: th.Tensor | None = None

    def _groups(self) -> list[dict[str, Any]]:
        return [opt.param_groups[0] for opt in self.optimizers]

    def step(self) -> None:
        opts = self.optimizers
        current = len(self._states) == len(opts) and all(o.state is s for o, s in zip(opts, self._states, strict=True))
        settings = {(float(g["lr"]), tuple(g["betas"]), float(g["eps"])) for g in self._groups()}
        if not current or not self._lists or len(settings) != 1:
            for opt in opts:
                opt.step()
            self._states, self._lists = [], ()
            if len(settings) == 1 and all(_AdamStep(o)._direct() for o in opts):
                states = [o.state[p] for o in opts for p in o.param_groups[0]["params"]]
                if all("exp_avg" in s for s in states):
                    self._states = [o.state for o in opts]
                    params = [p for o in opts for p in o.param_groups[0]["params"]]
                    on_cpu = all(p.device.type == "cpu" for p in params)  # else the counters stay as torch made them
                    self._steps = share_steps(states) if on_cpu else None
                    self._lists = (
                        params,
                        [s["exp_avg"] for s in states],
                        [s["exp_avg_sq"] for s in states],
                        [s["step"] for s in states],
                    )
            return
        fused_adam_step(self._lists, self._groups()[0], self._steps)


class GroupedSACUpdate:
    """One gradient step of each of K compatible ``QSAC`` models, batched (see the module docstring)."""

    def __init__(self, models: Sequence[QSAC], batch_size: int) -> None:
        if not models:
            raise ValueError("a grouped update needs at least one model")
        keys = {group_key(m, batch_size) for m in models}
        if None in keys or len(keys) != 1:
            raise ValueError("the models of a grouped update must be compatible (equal group_key, not None)")
        if len({id(m) for m in models}) != len(models):
            raise ValueError("a model appears twice in the group")
        self.models = list(models)
        self.k = k = len(models)
        self.batch_size = b = batch_size
        first = models[0]
        self.device = device = first.device
        buf = first.replay_buffer
        self.obs_dim = d = int(buf.obs_shape[0])
        self.act_dim = a = int(buf.action_dim)
        n_critics = len(first.critic.q_networks)
        self.kernel = kernel = resolve_kernel(first, b)  # the same for all: it is part of the group key
        # one set of activation buffers for the three critic forwards of a step (as in qarl.sac.fast.FastSACUpdate)
        self.critics = _GroupedStackedMLP([q for m in models for q in m.critic.q_networks], k, b, 1, kernel)
        targets = [q for m in models for q in m.critic_target.q_networks]
        self.targets = _GroupedStackedMLP(targets, k, b, 1, kernel, acts=self.critics.acts)
        self.n_critics = n_critics
        self.actors = _StackedActors([m.actor for m in models], b, device, self.critics.kernel)
        self.gamma, self.tau = first.gamma, first.tau
        self.learn_temperature = first.ent_coef_optimizer is not None
        if self.learn_temperature:
            self.target_entropy = th.tensor([float(m.target_entropy) for m in models], device=device).view(k, 1, 1)
        # the minibatch is gathered on the host (from the numpy replay buffers), then copied to the device
        self.x_np = np.zeros((k, 2 * b, d), dtype=np.float32)  # actor input [obs; next_obs] per model
        self.act_np = np.zeros((k, b, a), dtype=np.float32)
        self.r_np = np.zeros((k, b, 1), dtype=np.float32)
        self.done_np = np.zeros((k, b, 1), dtype=np.float32)
        self.host = [th.from_numpy(v) for v in (self.x_np, self.act_np, self.r_np, self.done_np)]
        on_host = device.type == "cpu"
        self.x, self.actions, self.r, self.done = (t if on_host else th.empty_like(t, device=device) for t in self.host)
        self.z = th.zeros(k, b, d + a, device=device)
        self.z_pi = th.zeros(k, b, d + a, device=device)
        self.z_next = th.zeros(k, b, d + a, device=device)
        self.eps = th.zeros(k, 2 * b, a, device=device)
        self.dhead = th.zeros(k, b, 2 * a, device=device)
        on_cpu = device.type == "cpu"
        self.critic_adam = _GroupedAdam([m.critic.optimizer for m in models]) if on_cpu else None
        self.actor_adam = _GroupedAdam([m.actor.optimizer for m in models]) if on_cpu else None
        temp_opts = [m.ent_coef_optimizer for m in models if m.ent_coef_optimizer is not None]
        self.temperature_adam = _GroupedAdam(temp_opts) if (on_cpu and self.learn_temperature) else None

    def is_current(self, batch_size: int) -> bool:
        """Whether the layout still holds every model's parameters (and the batch size is this one's)."""
        return (
            batch_size == self.batch_size
            and self.critics.is_bound()
            and self.targets.is_bound()
            and self.actors.is_bound()
        )

    def _sample(self, k: int) -> None:
        """Model k's minibatch: SB3's ``ReplayBuffer.sample`` draws (numpy's global generator) into row k."""
        buf, b = self.models[k].replay_buffer, self.batch_size
        upper = buf.buffer_size if buf.full else buf.pos
        idx = np.random.randint(0, upper, size=b)
        np.random.randint(0, high=buf.n_envs, size=(b,))  # SB3's env index draw (always 0 here): keeps the stream
        self.x_np[k, :b] = buf.observations[idx, 0]
        self.x_np[k, b:] = buf.next_observations[idx, 0]
        self.act_np[k] = buf.actions[idx, 0]
        self.r_np[k, :, 0] = buf.rewards[idx, 0]
        self.done_np[k, :, 0] = buf.dones[idx, 0] * (1 - buf.timeouts[idx, 0])

    def _adam(self, grouped: _GroupedAdam | None, optimizers: list[th.optim.Optimizer]) -> None:
        if grouped is not None:
            grouped.step()
        else:
            for opt in optimizers:
                opt.step()

    @th.no_grad()
    def step(
        self, streams: Sequence[AbstractContextManager[Any]] | None = None, critic_only: bool = False
    ) -> tuple[list[float], list[float], list[float] | None, list[float]]:
        """One gradient step of every model; ``streams[k]`` makes model k's generators the global ones.
        ``critic_only``: every model's step leaves out the temperature and actor updates (``QSAC.critic_only``).

        Returns per model: (actor loss, critic loss, temperature loss or None, mean temperature used); the caller
        does the models' bookkeeping (``_n_updates``, ``record_train``). Without ``streams`` every model draws
        from the current global generators (benchmarks).
        """
        models, k, b, d, a = self.models, self.k, self.batch_size, self.obs_dim, self.act_dim
        for m in models:
            if not m.policy.training:
                m.policy.set_training_mode(True)
            m._set_rates()
        for i in range(k):
            with streams[i] if streams is not None else nullcontext():
                self._sample(i)
                self.eps[i, :b].normal_()  # SB3 draws the noise of the obs batch first, then that of next_obs
                self.eps[i, b:].normal_()
        if self.x is not self.host[0]:
            for dev, host in zip((self.x, self.actions, self.r, self.done), self.host, strict=True):
                dev.copy_(host, non_blocking=True)
        x, eps = self.x, self.eps

        # actors on [obs; next_obs] (one batched matmul per layer), squashed Gaussian as in fast_sac
        acts, head = self.actors.forward(x)
        mu, log_std_raw = head[..., :a], head[..., a:]
        log_std = log_std_raw.clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        action = th.tanh(th.addcmul(mu, std, eps))
        squash = (1 - action * action).add_(_SQUASH_EPS)
        log_prob = th.addcmul(log_std, eps, eps, value=0.5).add_(_HALF_LOG_2PI)
        log_prob = (log_prob.sum(2, keepdim=True) + th.log(squash).sum(2, keepdim=True)).neg_()  # (K, 2B, 1)
        log_prob_pi, log_prob_next = log_prob[:, :b], log_prob[:, b:]

        # temperatures before their step (each model's rule: a learned scalar, or QARL's per-sample alpha)
        pairs = [m._fast_temperatures(x[i, :b], x[i, b:]) for i, m in enumerate(models)]
        alpha = th.stack([th.broadcast_to(p[0], (b, 1)) for p in pairs])  # (K, B, 1)
        alpha_next = th.stack([th.broadcast_to(p[1], (b, 1)) for p in pairs])
        temp_losses = None
        if self.learn_temperature:
            log_alpha = th.stack([m.log_ent_coef.detach() for m in models])  # (K, 1)
            shifted_mean = (log_prob_pi + self.target_entropy).mean(dim=(1, 2))  # (K,)
            temp_losses = (-(log_alpha[:, 0] * shifted_mean)).tolist()
            grads = shifted_mean.neg()
            for i, m in enumerate(models):
                m.log_ent_coef.grad = grads[i : i + 1]
            if not critic_only:
                self._adam(self.temperature_adam, [m.ent_coef_optimizer for m in models])

        # soft Bellman targets from the target critics
        self.z_next[:, :, :d] = x[:, b:]
        self.z_next[:, :, d:] = action[:, b:]
        c = self.n_critics
        next_q = self.targets.forward(self.z_next)[-1].view(k, c, b, 1).amin(1)
        target = self.r + (1 - self.done) * self.gamma * (next_q - alpha_next * log_prob_next)

        # critic steps: L_k = 0.5 sum_j mean((Q_kj - y_k)^2)
        self.z[:, :, :d] = x[:, :b]
        self.z[:, :, d:] = self.actions
        c_acts = self.critics.forward(self.z, slot=0)
        diff = c_acts[-1].view(k, c, b, 1) - target.unsqueeze(1)
        critic_losses = (0.5 * diff.square().mean(dim=(2, 3)).sum(1)).tolist()
        self.critics.backward(c_acts, diff.mul_(1.0 / b).view(k * c, b, 1), param_grads=True, input_cols=None)
        self.critics.attach_grads()
        self._adam(self.critic_adam, [m.critic.optimizer for m in models])

        # actor steps with the updated critics: L_k = mean(alpha log pi - min_j Q_kj(s, a~))
        a_pi = action[:, :b]
        self.z_pi[:, :, :d] = x[:, :b]
        self.z_pi[:, :, d:] = a_pi
        q_pi = self.critics.forward(self.z_pi, slot=0)  # overwrites c_acts, no longer needed
        q = q_pi[-1].view(k, c, b, 1)
        min_q, argmin = q.min(1)
        actor_losses = (alpha * log_prob_pi - min_q).mean(dim=(1, 2)).tolist()
        if critic_only:
            self.targets.flat.mul_(1 - self.tau).add_(self.critics.flat, alpha=self.tau)
            return actor_losses, critic_losses, temp_losses, alpha.mean(dim=(1, 2)).tolist()
        dq = th.zeros_like(q).scatter_(1, argmin.unsqueeze(1), -1.0 / b)
        grad_action = self.critics.backward(q_pi, dq.view(k * c, b, 1), param_grads=False, input_cols=slice(d, None))
        grad_log_prob = alpha * (1.0 / b)
        grad_action.addcmul_(grad_log_prob, a_pi * 2 / squash[:, :b])  # d log pi / d a (the tanh correction)
        grad_u = grad_action.mul_(1 - a_pi * a_pi)
        dmu, dlog_std = self.dhead[..., :a], self.dhead[..., a:]
        dmu.copy_(grad_u)
        th.mul(grad_u, eps[:, :b] * std[:, :b], out=dlog_std)
        dlog_std.sub_(grad_log_prob)
        raw = log_std_raw[:, :b]
        dlog_std.mul_((raw >= LOG_STD_MIN) & (raw <= LOG_STD_MAX))
        self.actors.backward(acts, self.dhead, b)
        self._adam(self.actor_adam, [m.actor.optimizer for m in models])

        # Polyak update of all target critics at once
        self.targets.flat.mul_(1 - self.tau).add_(self.critics.flat, alpha=self.tau)
        temperatures = alpha.mean(dim=(1, 2)).tolist()
        return actor_losses, critic_losses, temp_losses, temperatures


__all__ = ["GroupedSACUpdate", "group_key"]
