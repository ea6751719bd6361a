"""A pair of SAC models for the fast-update equivalence tests (fast and stable-baselines3, same weights and data).

Importable from every test below ``tests/qarl`` (pytest puts this folder, which holds ``conftest.py``, on sys.path).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch as th
from gymnasium import spaces

from qarl.sac.alpha import AlphaConditionedSAC
from qarl.sac.learner import QSAC, SACConfig, make_sac

OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah-sized, the QARL paper's settings
ACT = spaces.Box(-2.0, 2.0, (ACT_DIM,), np.float32)


def _space(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (dim,), np.float64)


def _fill(model: QSAC, n: int, alpha_entry: bool) -> None:
    """n transitions drawn from a fixed generator; some terminal, some truncated; alpha last when asked."""
    rng = np.random.default_rng(123)
    dim = model.observation_space.shape[0]
    for _ in range(n):
        obs, next_obs = rng.normal(size=dim), rng.normal(size=dim)
        if alpha_entry:  # one alpha per episode in the game; here two per transition, so that s' and s differ
            obs[-1], next_obs[-1] = rng.gamma(50.0, 1 / 1000.0, size=2)
        # a few saturated actions, where the tanh correction's epsilon matters
        action = np.clip(rng.uniform(-1.1, 1.1, ACT_DIM), -1, 1).astype(np.float32)
        done = rng.random() < 0.1
        truncated = done and rng.random() < 0.5
        model.replay_buffer.add(
            obs[None], next_obs[None], action[None], np.array([rng.normal()]), np.array([done]),
            [{"TimeLimit.truncated": truncated}],
        )  # fmt: skip


def pair(model_cls: type[QSAC], config: SACConfig, obs_dim: int) -> tuple[QSAC, QSAC]:
    """(fast, stable-baselines3) models with identical weights, temperature and replay buffers."""
    alpha_entry = model_cls is AlphaConditionedSAC
    th.manual_seed(0)
    fast = make_sac(dataclasses.replace(config, fast_update=True), _space(obs_dim), ACT, model_cls=model_cls)
    ref = make_sac(dataclasses.replace(config, fast_update=False), _space(obs_dim), ACT, model_cls=model_cls)
    ref.policy.load_state_dict(fast.policy.state_dict())
    if fast.ent_coef_optimizer is not None:
        with th.no_grad():
            fast.log_ent_coef.fill_(np.log(0.05))  # away from the initial 0.005: the temperature matters more
            ref.log_ent_coef.copy_(fast.log_ent_coef)
    for m in (fast, ref):
        _fill(m, 600, alpha_entry)
    return fast, ref


