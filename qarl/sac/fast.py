"""A fast soft actor-critic update on stable-baselines3's own modules, parameters and optimisers.

:class:`FastSACUpdate` performs exactly the gradient step of stable-baselines3 2.x ``SAC.train`` (same losses,
same order of the optimiser steps, same random draws) for the MLP policies the suite uses, with less work:

- **Twin critics as one batched MLP.** The parameters of the ``n`` critics (and of the ``n`` target critics) are
  re-homed into one flat buffer each, laid out layer by layer as ``(n, out, in)`` weight and ``(n, out)`` bias
  blocks; every SB3 ``Parameter`` keeps its identity and value and becomes a view of its block. A layer of all
  critics is then one ``bmm`` (its bias and ReLU added in one pass after it) and the Polyak update is two
  operations on the flat buffers. ``state_dict``, ``load_state_dict`` (in-place copies) and the optimisers are
  untouched, so checkpoints keep working; if a parameter is ever re-allocated (e.g. ``module.to`` to another
  device), the layout is rebuilt on the next step.
- **Forward and backward written out** (no autograd graph): the gradients of each matmul are computed directly
  into the parameters' ``.grad`` buffers, and only the ones the update needs: no gradient of the target critics,
  no critic-parameter gradient of the actor loss (stable-baselines3 computes and then discards it), no input
  gradient of the first layers.
- **One actor forward on cat(obs, next_obs)**: both actor evaluations of a step use the same (not yet updated)
  actor parameters, so one matmul of 2B rows replaces two of B; the backward runs on the first B rows only.
  The Gaussian noise is drawn as two ``(B, |A|)`` ``normal_`` calls, obs first, as stable-baselines3 draws it, so
  the torch generator advances identically and both paths take the same actions.
- **Preallocated sampling**: indices come from numpy's global generator with the same two ``np.random.randint``
  calls as SB3's ``ReplayBuffer.sample`` (runs stay a deterministic function of their seed, and the generator
  state after a step equals the SB3 path's), gathered into preallocated arrays shared with torch. Activations and
  input gradients live in preallocated buffers too (fresh 0.5 MB tensors per step cost page faults).
- **Narrow products transposed**: a matmul whose output has only a few columns (the first layers' weight
  gradients, 17-23 wide; the action gradient and the actor's heads, 6-12 wide) is computed with the narrow side on
  the rows and the small result transposed into place, since matmul kernels vectorise along the output's columns.
- **Adam through torch's fused kernel**, called directly on each SB3 optimiser's own state (:class:`_AdamStep`).
- **Matmul kernels chosen by measurement** (:func:`choose_kernel`): where this torch build has oneDNN's fp32
  linear op (:func:`onednn_linear`), both paths are timed on the model's own shapes when it is built, and the faster
  is used. On the ``onednn`` path the critics run network by network (bias and ReLU fused into each hidden matmul,
  weight gradients read both operands transposed in place); the thin value and action heads stay on ``torch.mm``.
  On the ``mm`` path (also where oneDNN is absent, on a GPU, or with ``QARL_ONEDNN=0``) the stacked
  ``baddbmm``/``bmm`` path runs. Both are the same algorithm and are tested against SB3; they round differently,
  so the choice is recorded (``QSAC.matmul_kernel``, checkpoints, ``meta.json``) and kept on resume.

``torch.compile`` is not used: matmuls are most of the step. On the CPU, compiling the actor's element-wise tail (the
one chain of element-wise operations between two matmuls) made it slower, and so did compiling the whole step, in
inductor's default mode and in its max-autotune mode (``results/benchmarks/update.md``).

Losses (stable-baselines3 ``SAC.train``; ``alpha`` is the temperature, per sample for QARL's adversary):

    y        = r + (1 - d) gamma (min_j Q'_j(s', a') - alpha' log pi(a'|s')),   a' ~ pi(.|s')
    L_critic = 0.5 sum_j mean((Q_j(s, a) - y)^2)
    L_actor  = mean(alpha log pi(a~|s) - min_j Q_j(s, a~)),   a~ ~ pi(.|s), Q after the critic step
    L_temp   = -mean(log_alpha (log pi(a~|s) + target_entropy))

Order (as in SB3): actor sample on s; temperature step; target; critic step; actor step; Polyak update (tau).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
import torch as th
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.sac.policies import LOG_STD_MAX, LOG_STD_MIN
from torch import nn

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_SQUASH_EPS = 1e-6  # SquashedDiagGaussianDistribution's epsilon in log(1 - tanh(u)^2 + eps)
_add_relu_ = th.ops.aten._add_relu_  # x <- relu(x + y) in one pass, y broadcast (the bias of a hidden layer)


def _relu_mlp(module: nn.Module) -> list[nn.Linear] | None:
    """The Linear layers of a ``Sequential`` of Linear layers separated by ReLU (None for anything else)."""
    layers = list(module)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if not linears or any(not isinstance(m, (nn.Linear, nn.ReLU)) for m in layers):
        return None
    expected = [nn.Linear, nn.ReLU] * len(linears)
    # the critics end with a Linear, the actor's latent ends with a ReLU
    if [type(m) for m in layers] not in (expected, expected[:-1]):
        return None
    return linears


_ONEDNN_ENV = "QARL_ONEDNN"
_onednn_state: list[Any] = []  # [linear op or None], filled on first use
KERNELS = ("onednn", "mm")
"""The fast update's two matmul paths: ``onednn`` (torch's oneDNN fp32 linear op, network by network, bias and ReLU
fused) and ``mm`` (``torch.mm`` / the stacked ``baddbmm`` and ``bmm`` of all critics). Which is faster depends on
the CPU (on one AMD EPYC of this project oneDNN ran at twice MKL's sgemm; on an Intel Xeon with AVX-512 torch.mm was
faster), so :func:`choose_kernel` times both on the model's own shapes."""
_kernel_cache: dict[tuple[Any, ...], str] = {}
kernel_timings: dict[tuple[Any, ...], dict[str, float]] = {}
"""The measured seconds per critic forward and backward of each kernel, by (shapes, batch size, networks): what
:func:`choose_kernel` chose from (read by ``qarl bench update``)."""


def onednn_linear() -> Any:
    """torch's oneDNN fp32 linear op ``y = x @ w.T + b`` (optionally with the ReLU fused), or None where unusable.

    ``torch.ops.mkldnn._linear_pointwise(x, w, b, attr, [], "")`` with ``attr`` "none" or "relu"; it accepts
    transposed (strided) ``x`` and ``w``. Available when this torch build has the op and a check against
    ``torch.mm`` passes (errors of the order of 1e-5 of a 256-term dot product for both).
    """
    if not _onednn_state:
        _onednn_state.append(_probe_onednn())
    return _onednn_state[0]


def kernel_override() -> str | None:
    """The kernel forced by the environment variable ``QARL_ONEDNN``: ``0`` (or false/no/off) ``mm``, ``1`` (or
    true/yes/on) ``onednn``; unset, empty or ``auto``: None (chosen by measurement)."""
    value = os.environ.get(_ONEDNN_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("0", "false", "no", "off"):
        return "mm"
    if value in ("1", "true", "yes", "on"):
        return "onednn"
    raise ValueError(f"{_ONEDNN_ENV}={value!r}: expected 0 (torch.mm), 1 (oneDNN) or auto (the faster, measured)")


def usable_kernel(kernel: str, device: th.device) -> str:
    """``kernel`` where it can run on ``device`` with this torch build, else ``mm`` (which runs everywhere)."""
    if kernel not in KERNELS:
        raise ValueError(f"matmul kernel must be one of {list(KERNELS)}, got {kernel!r}")
    if kernel == "onednn" and (device.type != "cpu" or onednn_linear() is None):
        return "mm"
    return kernel


def choose_kernel(
    shapes: list[tuple[int, int]],
    batch_size: int,
    networks: int,
    device: th.device,
    timer: Callable[[list[tuple[int, int]], int, int], dict[str, float]] | None = None,
) -> str:
    """The matmul kernel for ``networks`` ReLU MLPs of these (out, in) layer shapes at this batch size.

    ``QARL_ONEDNN`` forces one (:func:`kernel_override`). Otherwise, where both can run, each is timed on this
    machine (``timer``, default :func:`time_kernels`: seconds per forward and backward) once per process and key,
    and the faster is kept; elsewhere ``mm``. The two kernels round differently (the same algorithm; both are tested
    against stable-baselines3), so the choice is recorded with the model (``QSAC.matmul_kernel``), its checkpoints
    and the run's ``meta.json``, and a resumed run keeps it.
    """
    forced = kernel_override()
    if forced is not None:
        return usable_kernel(forced, device)
    if device.type != "cpu" or onednn_linear() is None:
        return "mm"
    key = (tuple(map(tuple, shapes)), int(batch_size), int(networks))
    if key not in _kernel_cache:
        timings = (timer or time_kernels)(list(shapes), batch_size, networks)
        kernel_timings[key] = dict(timings)
        _kernel_cache[key] = min(KERNELS, key=lambda k: timings.get(k, math.inf))
    return _kernel_cache[key]


LEGACY_ONEDNN_MIN_WORK = 256 * 128 * 128


def legacy_kernel(model: SAC, batch_size: int) -> str:
    """The kernel that versions before the measured choice used (oneDNN where available for models whose widest
    hidden matmul had at least ``LEGACY_ONEDNN_MIN_WORK`` multiply-adds, unless ``QARL_ONEDNN=0``): their checkpoints
    hold no kernel, and a run resumed from one keeps rounding as it did."""
    shapes = critic_shapes(model)
    widest = max((min(o, i) for o, i in shapes), default=0)
    device = next(model.policy.parameters()).device
    if kernel_override() == "mm" or batch_size * widest * widest < LEGACY_ONEDNN_MIN_WORK:
        return "mm"
    return usable_kernel("onednn", device)


def time_kernels(shapes: list[tuple[int, int]], batch_size: int, networks: int, rounds: int = 15) -> dict[str, float]:
    """Median seconds of one forward and one backward (with parameter gradients) of ``networks`` ReLU MLPs of these
    shapes at this batch size, through each kernel; the kernels alternate within every round, so that a change of
    the machine's load affects both alike."""
    with th.random.fork_rng(devices=[]):  # the dummy networks' initialisation leaves torch's generator as it was
        th.manual_seed(0)
        stacks = {}
        for kernel in KERNELS:
            nets = []
            for _ in range(networks):
                layers: list[nn.Module] = []
                for k, (o, i) in enumerate(shapes):
                    layers.append(nn.Linear(i, o))
                    if k < len(shapes) - 1:
                        layers.append(nn.ReLU())
                nets.append(nn.Sequential(*layers))
            stacks[kernel] = _StackedMLP(nets, batch_size, slots=1, kernel=kernel)
        z = th.randn(batch_size, shapes[0][1])
        dq = th.randn(networks, batch_size, shapes[-1][0])
    times: dict[str, list[float]] = {k: [] for k in KERNELS}

    def once(stack: _StackedMLP) -> float:
        t0 = time.perf_counter()
        stack.backward(stack.forward(z), dq, param_grads=True, input_cols=slice(0, 1))
        return time.perf_counter() - t0

    for stack in stacks.values():  # warm-up: first-call allocations and kernel selection inside the libraries
        once(stack)
        once(stack)
    for _ in range(rounds):
        for kernel, stack in stacks.items():
            times[kernel].append(once(stack))
    return {k: float(np.median(v)) for k, v in times.items()}


def _probe_onednn() -> Any:
    try:
        if not th.backends.mkldnn.is_available():
            return None
        op = th.ops.mkldnn._linear_pointwise
        gen = th.Generator().manual_seed(0)
        x, w, b = (th.randn(*shape, generator=gen) for shape in ((64, 48), (32, 48), (32,)))
        y = op(x, w, b, "relu", [], "")
        yt = op(x.t().contiguous().t(), w.t().contiguous().t(), None, "none", [], "")
        ok = th.allclose(y, th.addmm(b, x, w.t()).relu(), rtol=1e-5, atol=1e-5) and th.allclose(
            yt, x @ w.t(), rtol=1e-5, atol=1e-5
        )
        return op if ok and y.dtype == th.float32 and y.shape == (64, 32) else None
    except (AttributeError, RuntimeError):
        return None


def unsupported_reason(model: SAC) -> str | None:
    """Why the fast update cannot run this model (None when it can)."""
    buf = model.replay_buffer
    if type(buf) is not ReplayBuffer:
        return f"replay buffer {type(buf).__name__} (only stable-baselines3's ReplayBuffer)"
    if buf.n_envs != 1 or buf.optimize_memory_usage:
        return "replay buffer with several envs or optimize_memory_usage"
    if len(buf.obs_shape) != 1:
        return f"observation shape {buf.obs_shape} (only flat observations)"
    if model._vec_normalize_env is not None:
        return "VecNormalize"
    if model.use_sde:
        return "gSDE"
    if model.target_update_interval != 1:
        return "target_update_interval != 1"
    actor, critic = model.actor, model.critic
    if not isinstance(actor.features_extractor, FlattenExtractor) or not isinstance(
        critic.features_extractor, FlattenExtractor
    ):
        return "a features extractor other than Flatten"
    std_trunk = getattr(actor, "latent_std", None)  # SACConfig.actor_std: separate
    if (
        _relu_mlp(actor.latent_pi) is None
        or (std_trunk is not None and _relu_mlp(std_trunk) is None)
        or any(_relu_mlp(q) is None for q in critic.q_networks)
    ):
        return "networks other than ReLU MLPs"
    if len({tuple(tuple(p.shape) for p in q.parameters()) for q in critic.q_networks}) != 1:
        return "critics of different shapes"
    if any(p.dtype != th.float32 for p in model.policy.parameters()):
        return "parameters other than float32"
    devices = sorted({p.device.type for p in model.policy.parameters()})
    if devices != ["cpu"]:  # its batch and buffers live on the host (stable-baselines3 trains the model instead)
        return f"parameters on {', '.join(devices)} (it runs on the CPU only)"
    return None


class _StackedMLP:
    """The ``n`` ReLU MLPs of an SB3 critic (one per ``q_network``) as one batched MLP over SB3's own parameters."""

    def __init__(
        self,
        q_networks: list[nn.Module],
        batch_size: int,
        slots: int,
        kernel: str = "mm",
        acts: list[list[th.Tensor]] | None = None,
    ) -> None:
        nets = [_relu_mlp(q) for q in q_networks]
        assert all(n is not None for n in nets)
        self.n = len(nets)
        self.shapes = [tuple(lin.weight.shape) for lin in nets[0]]  # (out, in) per layer
        total = sum(self.n * (o * i + o) for o, i in self.shapes)
        self.flat = th.empty(total)
        self.grad_flat = th.zeros(total)
        self.weights: list[th.Tensor] = []  # (n, out, in)
        self.biases: list[th.Tensor] = []  # (n, 1, out), for baddbmm
        self.grad_weights: list[th.Tensor] = []
        self.grad_biases: list[th.Tensor] = []  # (n, out)
        self.params: list[nn.Parameter] = []
        self.grads: list[th.Tensor] = []  # the .grad view of each parameter in self.params
        offset = 0
        for layer, (o, i) in enumerate(self.shapes):
            w = self.flat[offset : offset + self.n * o * i].view(self.n, o, i)
            gw = self.grad_flat[offset : offset + self.n * o * i].view(self.n, o, i)
            offset += self.n * o * i
            b = self.flat[offset : offset + self.n * o].view(self.n, o)
            gb = self.grad_flat[offset : offset + self.n * o].view(self.n, o)
            offset += self.n * o
            for j, net in enumerate(nets):
                lin = net[layer]
                w[j].copy_(lin.weight.detach())
                b[j].copy_(lin.bias.detach())
                lin.weight.data, lin.bias.data = w[j], b[j]
                self.params += [lin.weight, lin.bias]
                self.grads += [gw[j], gb[j]]
            self.weights.append(w)
            self.biases.append(b.unsqueeze(1))
            self.grad_weights.append(gw)
            self.grad_biases.append(gb)
        self._ptrs = [p.data_ptr() for p in self.params]
        # the oneDNN op for kernel "onednn" (None: the stacked baddbmm/bmm path below)
        self.kernel = usable_kernel(kernel, self.flat.device)
        self.fused_bias_relu = self.flat.device.type == "cpu"  # torch has the fused add-ReLU for the CPU only
        self.linear = onednn_linear() if self.kernel == "onednn" else None
        # Preallocated activations (``slots`` sets, one per forward whose activations must live at the same time; or
        # ``acts``, the sets of another stack of the same shapes, when no two of their forwards overlap) and input
        # gradients: fresh 0.5 MB tensors every step cost page faults comparable to their arithmetic, and each set
        # that is not shared adds 1.5 MB at the QARL settings to what the step streams through the caches.
        if acts is None:
            acts = [[th.empty(self.n, batch_size, o) for o, _ in self.shapes] for _ in range(slots)]
        elif any([tuple(t.shape) for t in a] != [(self.n, batch_size, o) for o, _ in self.shapes] for a in acts):
            raise ValueError("shared activation buffers must have this stack's shapes")
        self.acts = acts
        self.input_grads = [th.empty(self.n, batch_size, i) for _, i in self.shapes[1:]]
        # the first layer's weight gradient as computed, transposed: (n, in, out) (see :meth:`input_grads_t`)
        o0, i0 = self.shapes[0]
        self.grad_w0_t = th.empty(self.n, i0, o0)

    def is_bound(self) -> bool:
        """Whether every SB3 parameter still lives in this flat buffer."""
        return all(p.data_ptr() == q for p, q in zip(self.params, self._ptrs, strict=True))

    def attach_grads(self) -> None:
        for p, g in zip(self.params, self.grads, strict=True):
            p.grad = g

    def forward(self, z: th.Tensor, slot: int = 0) -> list[Any]:
        """Activations [z, h_1, ..., q (n, B, 1)] of all ``n`` networks on input z (B, in).

        Stacked path: each entry before q is an (n, B, width) tensor living in the buffers of ``slot`` until the
        next forward into the same slot. oneDNN path: each is a list of the n networks' (B, width) tensors.
        """
        if self.linear is not None:
            return self._forward_each([z] * self.n)
        return self._forward_stacked(z.unsqueeze(0).expand(self.n, *z.shape), slot)

    def _forward_stacked(self, h: th.Tensor, slot: int) -> list[Any]:
        """:meth:`forward` of the stacked path from the networks' inputs h (n, B, in)."""
        acts = [h]
        last = len(self.weights) - 1
        for k, (w, b, out) in enumerate(zip(self.weights, self.biases, self.acts[slot], strict=True)):
            if k == last:  # the (n, B, 1) value head as (n, 1, in) @ (n, in, B): 3x faster than with w^T on the right
                th.bmm(w, h.transpose(1, 2), out=out.view(self.n, 1, -1))
                h = out.add_(b)
            elif self.fused_bias_relu:  # bias and ReLU in one pass (baddbmm would first copy the bias into out)
                h = th.bmm(h, w.transpose(1, 2), out=out)
                _add_relu_(h, b)
            else:
                h = th.baddbmm(b, h, w.transpose(1, 2), out=out).relu_()
            acts.append(h)
        return acts

    def _forward_each(self, inputs: list[th.Tensor]) -> list[Any]:
        """:meth:`forward` one network at a time through oneDNN (bias and ReLU fused into each hidden matmul);
        ``inputs[j]`` (B, in) is network j's input."""
        linear, last = self.linear, len(self.weights) - 1
        acts: list[Any] = [inputs]
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if k < last:
                acts.append([linear(h, w[j], b[j, 0], "relu", [], "") for j, h in enumerate(acts[-1])])
            else:  # the (B, 1) value head: a matrix-vector product, torch's own kernel is faster there
                acts.append(th.stack([th.addmm(b[j, 0], h, w[j].t()) for j, h in enumerate(acts[-1])]))
        return acts

    def _backward_each(
        self, acts: list[Any], dq: th.Tensor, param_grads: bool, input_cols: slice | None
    ) -> list[th.Tensor] | None:
        """:meth:`backward` one network at a time through oneDNN (the activations of :meth:`_forward_each`); the
        input gradients dL/dz_j[:, input_cols] per network (else None)."""
        linear, last = self.linear, len(self.weights) - 1
        grad_inputs = []
        for j in range(self.n):
            dh = dq[j]
            for k in range(last, -1, -1):
                inp = acts[k][j]
                if param_grads:
                    if k == 0:  # dW^T = z^T dh, then transposed into place (see :meth:`input_grads_t`)
                        th.mm(inp.t(), dh, out=self.grad_w0_t[j])
                        self.grad_weights[0][j].copy_(self.grad_w0_t[j].t())
                    else:  # dW = dh^T inp (torch.mm: faster than oneDNN for this product of two transposed reads)
                        th.mm(dh.t(), inp, out=self.grad_weights[k][j])
                    th.sum(dh, dim=0, out=self.grad_biases[k][j])
                if k > 0:
                    w = self.weights[k][j]
                    if k == last:  # the (B, 1) x (1, width) outer product of the value head: a broadcast product
                        dh = th.mul(dh, w)
                    else:
                        dh = linear(dh, w.t(), None, "none", [], "")
                    th.ops.aten.threshold_backward.grad_input(dh, inp, 0.0, grad_input=dh)  # ReLU'(h) in place
            if input_cols is not None:  # transposed, as in :meth:`backward`
                grad_inputs.append(th.mm(self.weights[0][j][:, input_cols].t(), dh.t()))
        return grad_inputs if input_cols is not None else None

    def backward(self, acts: list[Any], dq: th.Tensor, param_grads: bool, input_cols: slice | None) -> Any:
        """Backpropagate dL/dq (n, B, 1) through all networks.

        ``param_grads``: write the parameter gradients into the ``.grad`` buffers. ``input_cols``: return
        dL/dz[:, input_cols] (B, cols) summed over the networks (else None).
        """
        grads_t = self.input_grads_t(acts, dq, param_grads, input_cols)
        return None if grads_t is None else grads_t.sum(0).t()

    def input_grads_t(
        self, acts: list[Any], dq: th.Tensor, param_grads: bool, input_cols: slice | None
    ) -> th.Tensor | None:
        """:meth:`backward`, with each network's input gradient returned transposed and not summed: (n, cols, B).

        Products with a narrow side (the first layer's ``in`` columns, the ``cols`` of the input gradient) are
        computed with that side on the rows, as ``W^T dh^T`` and ``z^T dh``, and the small result is transposed
        into place: matmul kernels vectorise along the output's columns, which a 6- or 23-wide output leaves mostly
        idle (at the QARL settings, 2-4x slower).
        """
        if self.linear is not None:
            grads = self._backward_each(acts, dq, param_grads, input_cols)
            return None if grads is None else th.stack(grads)
        dh = dq
        last = len(self.weights) - 1
        for k in range(last, -1, -1):
            if param_grads:
                if k == 0:  # dW^T = z^T dh, then transposed into place
                    th.bmm(acts[0].transpose(1, 2), dh, out=self.grad_w0_t)
                    self.grad_weights[0].copy_(self.grad_w0_t.transpose(1, 2))
                else:
                    th.bmm(dh.transpose(1, 2), acts[k], out=self.grad_weights[k])
                th.sum(dh, dim=1, out=self.grad_biases[k])
            if k > 0:
                if k == last:  # the (n, B, 1) x (n, 1, width) outer product of the value head: a broadcast product
                    dh = th.mul(dh, self.weights[k], out=self.input_grads[k - 1])
                else:
                    dh = th.bmm(dh, self.weights[k], out=self.input_grads[k - 1])
                th.ops.aten.threshold_backward.grad_input(dh, acts[k], 0.0, grad_input=dh)  # ReLU'(h) in place
        if input_cols is None:
            return None
        return th.bmm(self.weights[0][:, :, input_cols].transpose(1, 2), dh.transpose(1, 2))  # (dh W_0[:, cols])^T


class _AdamStep:
    """``optimizer.step()`` of a torch Adam, with torch's fused kernel called directly on the optimiser's own state.

    The update rule and the state (``step``, ``exp_avg``, ``exp_avg_sq`` per parameter, which checkpoints save) are
    torch's; only the Python around the kernel (grouping, hooks, profiling) is skipped, which costs more than the
    kernel for these small tensors. The very first step (no state yet) or any option the direct call does not cover
    (several groups, amsgrad, weight decay, maximize, a non-Adam optimiser) goes through ``optimizer.step()``; a
    state loaded from a checkpoint goes straight to the direct call, as the uninterrupted run's does.
    """

    def __init__(self, optimizer: th.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self._state: Any = None
        self._lists: tuple[list[th.Tensor], ...] = ()
        self._steps: th.Tensor | None = None

    def _direct(self) -> bool:
        opt = self.optimizer
        if type(opt) is not th.optim.Adam or len(opt.param_groups) != 1:
            return False
        g = opt.param_groups[0]
        if g["amsgrad"] or g["weight_decay"] or g["maximize"] or g["capturable"] or g["differentiable"]:
            return False
        if g.get("decoupled_weight_decay") or opt._optimizer_step_pre_hooks or opt._optimizer_step_post_hooks:
            return False
        return all(p.device.type == "cpu" and p.dtype == th.float32 for p in g["params"])

    def _bind(self) -> bool:
        """Point the direct call at the optimiser's current state; False if it has none yet (or is not covered)."""
        opt = self.optimizer
        if not self._direct():
            return False
        params = opt.param_groups[0]["params"]
        states = [opt.state.get(p, {}) for p in params]
        if not all("exp_avg" in s and isinstance(s.get("step"), th.Tensor) for s in states):
            return False
        self._state = opt.state
        self._steps = share_steps(states)
        steps = [s["step"] for s in states]
        self._lists = (params, [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states], steps)
        return True

    def step(self) -> None:
        opt = self.optimizer
        if (opt.state is not self._state or not self._lists) and not self._bind():
            # No state yet (the very first step) or an option the direct call does not cover: torch builds the
            # state. A state loaded from a checkpoint is stepped by the direct call like the one it was saved from,
            # so a resumed run takes bit-identical steps to an uninterrupted one.
            opt.step()
            self._bind()
            return
        fused_adam_step(self._lists, opt.param_groups[0], self._steps)


def share_steps(states: list[dict[str, Any]]) -> th.Tensor:
    """Re-home the ``step`` counters of these optimiser states as views of one tensor, which is returned: one
    ``add_`` then counts a step for all (a ``_foreach_add_`` over the scalars costs a few microseconds each here). The
    values and the states' keys are unchanged. A state loaded from a checkpoint brings tensors of its own, which the
    next bind shares again."""
    flat = th.stack([s["step"] for s in states])
    for i, s in enumerate(states):
        s["step"] = flat[i]
    return flat


def fused_adam_step(
    lists: tuple[list[th.Tensor], ...], group: dict[str, Any], steps_flat: th.Tensor | None = None
) -> None:
    """One Adam step of (params, exp_avgs, exp_avg_sqs, steps) with ``group``'s settings, through torch's fused kernel
    (the update ``torch.optim.Adam(fused=True)`` makes; no weight decay, amsgrad or maximize). ``steps_flat``: the
    tensor the step counters are views of (:func:`share_steps`), counted with one operation."""
    params, exp_avgs, exp_avg_sqs, steps = lists
    beta1, beta2 = group["betas"]
    if steps_flat is not None:
        steps_flat.add_(1)
    else:
        th._foreach_add_(steps, 1)
    th._fused_adam_(
        params, [p.grad for p in params], exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=float(group["lr"]),
        beta1=float(beta1), beta2=float(beta2), weight_decay=0.0, eps=float(group["eps"]), maximize=False,
        grad_scale=None, found_inf=None,
    )  # fmt: skip


def critic_shapes(model: SAC) -> list[tuple[int, int]]:
    """The (out, in) shapes of the layers of one of the model's critics."""
    return [tuple(lin.weight.shape) for lin in _relu_mlp(model.critic.q_networks[0]) or []]


def resolve_kernel(model: SAC, batch_size: int) -> str:
    """The matmul kernel of the model's fast update: ``QARL_ONEDNN`` when set, else the model's recorded
    ``matmul_kernel`` (chosen when it was built, or restored from a checkpoint), else :func:`choose_kernel`; the
    result is recorded on the model."""
    device = next(model.policy.parameters()).device
    kernel = kernel_override() or getattr(model, "matmul_kernel", None)
    if kernel is None:
        kernel = choose_kernel(critic_shapes(model), batch_size, len(model.critic.q_networks), device)
    kernel = usable_kernel(kernel, device)
    model.matmul_kernel = kernel
    return kernel


class FastSACUpdate:
    """The gradient steps of one ``QSAC`` model (see the module docstring); built lazily by ``QSAC.train``."""

    def __init__(self, model: SAC, batch_size: int) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"the fast SAC update does not support {reason}")
        self.model = model
        self.batch_size = b = batch_size
        buf = model.replay_buffer
        self.obs_dim = d = int(buf.obs_shape[0])
        self.act_dim = a = int(buf.action_dim)
        self.kernel = kernel = resolve_kernel(model, b)
        # One set of activation buffers for the step's three critic forwards (target, critic loss, actor loss): each
        # one's activations are dead before the next forward begins.
        self.critics = _StackedMLP(model.critic.q_networks, b, slots=1, kernel=kernel)
        self.targets = _StackedMLP(model.critic_target.q_networks, b, slots=1, kernel=kernel, acts=self.critics.acts)
        actor = model.actor
        self.actor_linears: list[nn.Linear] = _relu_mlp(actor.latent_pi) or []
        # the log-std's own trunk (SACConfig.actor_std: separate), else None: the heads share the mean's trunk
        std_trunk = getattr(actor, "latent_std", None)
        self.std_linears: list[nn.Linear] | None = (_relu_mlp(std_trunk) or []) if std_trunk is not None else None
        self.actor_grads = {p: th.zeros_like(p) for p in actor.parameters()}
        widths = [lin.out_features for lin in self.actor_linears]
        self.actor_acts = [th.empty(2 * b, w) for w in widths]
        self.w_head = th.empty(2 * a, widths[-1])  # [mu; log_std] head weights and biases (one trunk under both)
        self.b_head = th.empty(2 * a, 1)
        self.heads_t = th.empty(2 * a, 2 * b)  # [mu; log_std]^T of the forward
        if std_trunk is None:  # the heads' gradients as views of one block each: one matmul and one sum fill them
            self.grad_w_head = th.zeros(2 * a, widths[-1])
            self.grad_b_head = th.zeros(2 * a)
            for lin, rows in ((actor.mu, slice(0, a)), (actor.log_std, slice(a, 2 * a))):
                self.actor_grads[lin.weight] = self.grad_w_head[rows]
                self.actor_grads[lin.bias] = self.grad_b_head[rows]
        # the first layers' weight gradients as computed, transposed (in, out) (see _StackedMLP.input_grads_t)
        self.grad_w0_t = {lin: th.empty(lin.in_features, lin.out_features) for lin in self._first_layers()}
        self.actor_input_grads = [th.empty(b, w) for w in widths]
        if self.std_linears is not None:
            std_widths = [lin.out_features for lin in self.std_linears]
            self.std_acts = [th.empty(2 * b, w) for w in std_widths]
            self.std_input_grads = [th.empty(b, w) for w in std_widths]
        # preallocated batch: actor input [obs; next_obs], critic inputs [obs, a], [obs, a~], [next_obs, a']
        self.x_np = np.zeros((2 * b, d), dtype=np.float32)
        self.z_np = np.zeros((b, d + a), dtype=np.float32)
        self.r_np = np.zeros((b, 1), dtype=np.float32)
        self.done_np = np.zeros((b, 1), dtype=np.float32)
        self.x, self.z = th.from_numpy(self.x_np), th.from_numpy(self.z_np)
        self.r, self.done = th.from_numpy(self.r_np), th.from_numpy(self.done_np)
        self.z_pi = th.zeros(b, d + a)
        self.z_next = th.zeros(b, d + a)
        self.eps = th.zeros(2 * b, a)
        self.dhead = th.zeros(b, 2 * a)
        self.critic_adam = _AdamStep(model.critic.optimizer)
        self.actor_adam = _AdamStep(model.actor.optimizer)
        self.temperature_adam = _AdamStep(model.ent_coef_optimizer) if model.ent_coef_optimizer is not None else None

    def _first_layers(self) -> list[nn.Linear]:
        return [self.actor_linears[0]] + ([self.std_linears[0]] if self.std_linears else [])

    def is_current(self, batch_size: int) -> bool:
        return (
            batch_size == self.batch_size
            and self.kernel == getattr(self.model, "matmul_kernel", self.kernel)
            and self.critics.is_bound()
            and self.targets.is_bound()
        )

    def _sample(self) -> None:
        """SB3's ``ReplayBuffer.sample`` (same two draws from numpy's global generator) into the preallocated batch."""
        buf, b, d = self.model.replay_buffer, self.batch_size, self.obs_dim
        upper = buf.buffer_size if buf.full else buf.pos
        idx = np.random.randint(0, upper, size=b)
        np.random.randint(0, high=buf.n_envs, size=(b,))  # SB3's env index draw (always 0 here): keeps the stream
        self.x_np[:b] = buf.observations[idx, 0]
        self.x_np[b:] = buf.next_observations[idx, 0]
        self.z_np[:, :d] = self.x_np[:b]
        self.z_np[:, d:] = buf.actions[idx, 0]
        self.r_np[:, 0] = buf.rewards[idx, 0]
        self.done_np[:, 0] = buf.dones[idx, 0] * (1 - buf.timeouts[idx, 0])

    def _trunk_forward(self, linears: list[nn.Linear], outs: list[th.Tensor]) -> list[th.Tensor]:
        """Activations [x, h_1, ...] of an actor trunk (ReLU after every layer) on [obs; next_obs]."""
        h, acts, linear = self.x, [self.x], self.critics.linear
        for lin, out in zip(linears, outs, strict=True):
            if linear is not None:
                h = linear(h, lin.weight, lin.bias, "relu", [], "")
            else:
                h = th.mm(h, lin.weight.t(), out=out)
                _add_relu_(h, lin.bias)
            acts.append(h)
        return acts

    def _actor_forward(self) -> tuple[list[Any], th.Tensor, th.Tensor, th.Tensor, th.Tensor, th.Tensor]:
        """Actor on [obs; next_obs]: activations (per trunk), log_std before clamping, std, tanh action,
        1 - a^2 + eps, log pi."""
        actor = self.model.actor
        acts = [self._trunk_forward(self.actor_linears, self.actor_acts)]
        h = acts[0][-1]
        if self.std_linears is None:  # both heads on one trunk: one matmul of the stacked head weights (twice as fast)
            a = self.act_dim
            th.cat((actor.mu.weight, actor.log_std.weight), out=self.w_head)  # also the backward's
            th.cat((actor.mu.bias, actor.log_std.bias), out=self.b_head[:, 0])
            # computed transposed, W h^T: the narrow (2|A|-wide) output on the rows (see _StackedMLP.input_grads_t)
            heads = th.addmm(self.b_head, self.w_head, h.t(), out=self.heads_t).t()
            mu, log_std_raw = heads[:, :a], heads[:, a:]
        else:  # the log-std from its own trunk
            mu = th.addmm(actor.mu.bias, h, actor.mu.weight.t())
            acts.append(self._trunk_forward(self.std_linears, self.std_acts))
            log_std_raw = th.addmm(actor.log_std.bias, acts[1][-1], actor.log_std.weight.t())
        log_std = log_std_raw.clamp(LOG_STD_MIN, LOG_STD_MAX)
        std = log_std.exp()
        # SB3 draws the noise of the obs batch first, then (after the temperature step) that of next_obs
        b = self.batch_size
        self.eps[:b].normal_()
        self.eps[b:].normal_()
        action = th.tanh(th.addcmul(mu, std, self.eps))
        # Normal(mu, std).log_prob(u) = -eps^2/2 - log std - log sqrt(2 pi), minus the tanh correction, as in SB3
        squash = (1 - action * action).add_(_SQUASH_EPS)
        log_prob = th.addcmul(log_std, self.eps, self.eps, value=0.5).add_(_HALF_LOG_2PI)
        log_prob = (log_prob.sum(1, keepdim=True) + th.log(squash).sum(1, keepdim=True)).neg_()
        return acts, log_std_raw, std, action, squash, log_prob

    @th.no_grad()
    def step(self, critic_only: bool = False) -> tuple[float, float, float | None, th.Tensor]:
        """One gradient step; returns (actor loss, critic loss, temperature loss or None, temperature used).
        ``critic_only``: the same step with the temperature's and the actor's updates left out (their losses are
        still computed and returned, as stable-baselines3's step with those optimiser steps removed logs them)."""
        model, b, d = self.model, self.batch_size, self.obs_dim
        self._sample()
        acts, log_std_raw, std, action, squash, log_prob = self._actor_forward()
        log_prob_pi, log_prob_next = log_prob[:b], log_prob[b:]

        # temperature (SB3 uses the value before its step everywhere in this update)
        alpha, alpha_next = model._fast_temperatures(self.x[:b], self.x[b:])
        temp_loss = None
        if model.ent_coef_optimizer is not None:
            log_alpha = model.log_ent_coef
            shifted = log_prob_pi + model.target_entropy
            temp_loss = float(-(log_alpha * shifted).mean())
            log_alpha.grad = shifted.mean().neg().reshape(1)
            if not critic_only:
                self.temperature_adam.step()

        # soft Bellman target from the target critics
        self.z_next[:, :d] = self.x[b:]
        self.z_next[:, d:] = action[b:]
        next_q = self.targets.forward(self.z_next)[-1].amin(0)
        next_q = next_q - alpha_next * log_prob_next
        target = self.r + (1 - self.done) * model.gamma * next_q

        # critic step: L = 0.5 sum_j mean((Q_j - y)^2), dL/dQ_j = (Q_j - y) / B
        c_acts = self.critics.forward(self.z, slot=0)
        diff = c_acts[-1] - target
        critic_loss = 0.5 * float(diff.square().mean(dim=(1, 2)).sum())
        self.critics.backward(c_acts, diff.mul_(1.0 / b), param_grads=True, input_cols=None)
        self.critics.attach_grads()
        self.critic_adam.step()

        # actor step with the updated critics: L = mean(alpha log pi - min_j Q_j(s, a~))
        self.z_pi[:, :d] = self.x[:b]
        a_pi = action[:b]
        self.z_pi[:, d:] = a_pi
        q_pi = self.critics.forward(self.z_pi, slot=0)  # overwrites c_acts, no longer needed
        q = q_pi[-1]
        min_q, argmin = q.min(0)
        actor_loss = float((alpha * log_prob_pi - min_q).mean())
        if critic_only:
            self.targets.flat.mul_(1 - model.tau).add_(self.critics.flat, alpha=model.tau)
            return actor_loss, critic_loss, temp_loss, alpha
        dq = th.zeros_like(q).scatter_(0, argmin.unsqueeze(0), -1.0 / b)
        grad_action = self.critics.backward(q_pi, dq, param_grads=False, input_cols=slice(d, None))
        grad_log_prob = alpha * (1.0 / b)
        # d log pi / d a = 2a / (1 - a^2 + eps) (the tanh correction); d a / d u = 1 - a^2
        grad_action.addcmul_(grad_log_prob, a_pi * 2 / squash[:b])
        grad_u = grad_action.mul_(1 - a_pi * a_pi)
        a_dim = self.act_dim
        dmu, dlog_std = self.dhead[:, :a_dim], self.dhead[:, a_dim:]
        dmu.copy_(grad_u)
        # d log pi / d log_std = -1 (the Gaussian term's noise part cancels); d u / d log_std = eps std
        th.mul(grad_u, self.eps[:b] * std[:b], out=dlog_std)
        dlog_std.sub_(grad_log_prob)
        raw = log_std_raw[:b]
        dlog_std.mul_((raw >= LOG_STD_MIN) & (raw <= LOG_STD_MAX))
        self._actor_backward(acts, dmu, dlog_std)
        self.actor_adam.step()

        # Polyak update of the target critics (SB3's polyak_update: target <- (1 - tau) target + tau critic)
        self.targets.flat.mul_(1 - model.tau).add_(self.critics.flat, alpha=model.tau)
        return actor_loss, critic_loss, temp_loss, alpha

    def _actor_backward(self, acts: list[Any], dmu: th.Tensor, dlog_std: th.Tensor) -> None:
        actor, b, grads = self.model.actor, self.batch_size, self.actor_grads
        if self.std_linears is None:  # one trunk under both heads: their gradients in one matmul and one sum
            th.mm(self.dhead.t(), acts[0][-1][:b], out=self.grad_w_head)
            th.sum(self.dhead, dim=0, out=self.grad_b_head)
        else:
            for lin, g, trunk in ((actor.mu, dmu, 0), (actor.log_std, dlog_std, -1)):
                th.mm(g.t(), acts[trunk][-1][:b], out=grads[lin.weight])
                th.sum(g, dim=0, out=grads[lin.bias])
        if self.std_linears is None:
            last = len(self.actor_linears) - 1  # self.w_head: the stacked head weights of the forward
            dh = th.mm(self.dhead, self.w_head, out=self.actor_input_grads[last])
            self._trunk_backward(self.actor_linears, acts[0], dh, self.actor_input_grads)
        else:
            for linears, trunk_acts, head, g, input_grads in (
                (self.actor_linears, acts[0], actor.mu, dmu, self.actor_input_grads),
                (self.std_linears, acts[1], actor.log_std, dlog_std, self.std_input_grads),
            ):
                dh = th.mm(g, head.weight, out=input_grads[len(linears) - 1])
                self._trunk_backward(linears, trunk_acts, dh, input_grads)
        for p, g in grads.items():
            p.grad = g

    def _trunk_backward(
        self, linears: list[nn.Linear], acts: list[th.Tensor], dh: th.Tensor, input_grads: list[th.Tensor]
    ) -> None:
        """Parameter gradients of an actor trunk from dL/d(its output before the ReLU is applied) ``dh``."""
        b, grads, linear = self.batch_size, self.actor_grads, self.critics.linear
        last = len(linears) - 1
        th.ops.aten.threshold_backward.grad_input(dh, acts[-1][:b], 0.0, grad_input=dh)
        for k in range(last, -1, -1):
            lin, inp = linears[k], acts[k][:b]
            if k == 0:  # dW^T = x^T dh, then transposed into place (see _StackedMLP.input_grads_t)
                grads[lin.weight].copy_(th.mm(inp.t(), dh, out=self.grad_w0_t[lin]).t())
            else:  # dW = dh^T inp (torch.mm on both paths, as for the critics)
                th.mm(dh.t(), inp, out=grads[lin.weight])
            th.sum(dh, dim=0, out=grads[lin.bias])
            if k > 0:
                if linear is not None:
                    dh = linear(dh, lin.weight.t(), None, "none", [], "")
                else:
                    dh = th.mm(dh, lin.weight, out=input_grads[k - 1])
                th.ops.aten.threshold_backward.grad_input(dh, inp, 0.0, grad_input=dh)


class FastActing:
    """``actor(obs, deterministic)`` of a stable-baselines3 SAC actor without its module calls: the same operations
    (``F.linear`` and ``F.relu`` per layer, the clamped log-std, ``ones_like(mean) * exp(log_std)``, one
    ``normal_`` draw of the action's shape for the noise, ``tanh``) in the same order, so actions, log-std and the
    torch generator's state afterwards are exactly those of the module path. Acting one observation at a time,
    the module path's Python (a dozen ``nn.Module`` calls, a validated ``Normal`` per step) is over a third of the
    call at the QARL settings (3x256). The layers are read from the actor at every call, so optimiser steps and
    loaded checkpoints are seen. :meth:`supported` says whether an actor qualifies (flat observations, ReLU MLP
    trunks, no gSDE)."""

    def __init__(self, actor: nn.Module) -> None:
        if not self.supported(actor):
            raise ValueError(f"fast acting does not support this actor ({type(actor).__name__})")
        self.actor = actor
        self.pi = _relu_mlp(actor.latent_pi) or []
        std_trunk = getattr(actor, "latent_std", None)
        self.std = (_relu_mlp(std_trunk) or []) if std_trunk is not None else None

    @staticmethod
    def supported(actor: nn.Module) -> bool:
        """Whether :class:`FastActing` computes exactly this actor's forward pass."""
        from stable_baselines3.sac.policies import Actor

        if not isinstance(actor, Actor) or actor.use_sde or not isinstance(actor.features_extractor, FlattenExtractor):
            return False
        if type(actor).get_action_dist_params.__qualname__ not in (  # a subclass computing something else
            "Actor.get_action_dist_params", "SeparateStdActor.get_action_dist_params"
        ):  # fmt: skip
            return False
        space = actor.observation_space
        if not isinstance(space, gymnasium.spaces.Box) or len(space.shape) != 1:
            return False
        std_trunk = getattr(actor, "latent_std", None)
        trunks = [actor.latent_pi] + ([std_trunk] if std_trunk is not None else [])
        # ReLU MLPs with a ReLU after every layer (what _trunk computes)
        return all(_relu_mlp(t) is not None and isinstance(list(t)[-1], nn.ReLU) for t in trunks)

    @staticmethod
    def _trunk(linears: list[nn.Linear], h: th.Tensor) -> th.Tensor:
        for lin in linears:
            h = th.nn.functional.relu(th.nn.functional.linear(h, lin.weight, lin.bias))
        return h

    def __call__(self, obs: th.Tensor, deterministic: bool) -> tuple[th.Tensor, th.distributions.Normal]:
        """(tanh action (B, |A|), the Gaussian of its pre-image) for float32 observations (B, d), as the actor's
        ``forward`` and ``action_dist.distribution`` give them."""
        actor, linear = self.actor, th.nn.functional.linear
        features = obs.float().flatten(1)  # preprocess_obs of a Box, then FlattenExtractor
        latent = self._trunk(self.pi, features)
        mean = linear(latent, actor.mu.weight, actor.mu.bias)
        latent_std = latent if self.std is None else self._trunk(self.std, features)
        log_std = th.clamp(linear(latent_std, actor.log_std.weight, actor.log_std.bias), LOG_STD_MIN, LOG_STD_MAX)
        std = th.ones_like(mean) * log_std.exp()
        distribution = th.distributions.Normal(mean, std, validate_args=False)
        if deterministic:
            return th.tanh(mean), distribution
        eps = th.empty(mean.shape, dtype=mean.dtype, device=mean.device).normal_()
        return th.tanh(mean + eps * std), distribution
