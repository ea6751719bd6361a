"""FLOP of one SAC update, counted analytically from the matmuls of the algorithm, 2 FLOP per
multiply-add, B = batch size, S_a = sum of in*out over the actor's layers (mu and log_std heads included),
S_c = the same for one critic, n = number of critics, d = obs dim, |A| = action dim, h = first hidden width:

    actor forward on s and s'              2 * 2B * S_a
    actor backward (on s): dW, and dX of all but the first layer
                                           2B * S_a + 2B * (S_a - d h)
    target critics forward on (s', a')     n * 2B * S_c
    critics forward on (s, a)              n * 2B * S_c
    critics backward: dW, dX of all but the first layer
                                           n * 2B * S_c + n * 2B * (S_c - (d + |A|) h)
    critics forward on (s, a~) (actor loss), backward to a~: dX of all layers, the first only for the action columns
                                           n * 2B * S_c + n * 2B * (S_c - (d + |A|) h + |A| h)

This is the work the algorithm needs (the "required" count, 1.114 GFLOP at the QARL settings), and it is the
numerator of GFLOP/s for both learners. stable-baselines3 executes more: autograd also computes the critics' weight
gradients of the actor loss (discarded at the next critic step) and the obs columns of the first critic layer's input
gradient (the "executed by SB3" count, 1.259 GFLOP). The fast update computes the value heads' input gradients
(outer products, counted here as 2 FLOP per element) as broadcast products rather than matmul calls. Bias additions,
activations, the squashed Gaussian, Adam and the Polyak update are element-wise and not counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence


def sac_update_flops(
    obs_dim: int, act_dim: int, net_arch: Sequence[int], batch_size: int, n_critics: int = 2
) -> dict[str, int]:
    """FLOP of one SAC update: ``required`` by the algorithm and ``executed by SB3`` (see the module docstring)."""
    b, n, h = batch_size, n_critics, net_arch[0]

    def s(widths: Sequence[int]) -> int:
        return sum(i * o for i, o in itertools.pairwise(widths))

    s_a = s([obs_dim, *net_arch]) + net_arch[-1] * 2 * act_dim
    s_c = s([obs_dim + act_dim, *net_arch, 1])
    first_c = (obs_dim + act_dim) * h
    required = (
        2 * 2 * b * s_a  # actor forward on [s; s']
        + 2 * b * s_a
        + 2 * b * (s_a - obs_dim * h)  # actor backward on s
        + n * 2 * b * s_c  # target critics
        + n * 2 * b * s_c
        + n * 2 * b * s_c
        + n * 2 * b * (s_c - first_c)  # critic loss: forward, dW, dX
        + n * 2 * b * s_c
        + n * 2 * b * (s_c - first_c + act_dim * h)  # actor loss through the critics
    )
    sb3_extra = n * 2 * b * s_c + n * 2 * b * obs_dim * h  # critic dW of the actor loss; obs columns of its dX
    return {"required": required, "executed by SB3": required + sb3_extra}
