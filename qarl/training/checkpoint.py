"""Checkpoints of a two-player trial: one file, written atomically, loaded without unpickling code.

A checkpoint is a nested dict of tensors, numpy arrays and plain Python values saved with ``torch.save``
and read back with ``torch.load(weights_only=True)``, which refuses arbitrary objects; numpy arrays travel
as tensors (bit for bit) and are turned back into arrays on load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from qarl.config import with_method_key
from qarl.files import atomic_write
from qarl.sac.fast import legacy_kernel
from qarl.sac.learner import Player

FORMAT = "qarl-checkpoint"
VERSION = 1
_NAME = re.compile(r"^iter_(\d{6,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to another trial; ``damaged``: the file itself cannot be read."""

    def __init__(self, message: str, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


def _encode(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": th.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_encode(v) for v in obj)
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__ndarray__"}:
            return obj["__ndarray__"].numpy()
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_decode(v) for v in obj)
    return obj


def checkpoint_path(directory: Path, iteration: int) -> Path:
    return Path(directory) / f"iter_{iteration:06d}.pt"


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(iteration, path) of every checkpoint in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (temporary file in the same directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: th.save({"format": FORMAT, "version": VERSION, **_encode(payload)}, f))


def set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint out of the checkpoint list (``iter_000003.pt`` -> ``iter_000003.pt.damaged``, then
    ``.damaged-1``, ...), keeping it for inspection; returns the new path."""
    target, k = path.with_name(path.name + ".damaged"), 0
    while target.exists():
        k += 1
        target = path.with_name(f"{path.name}.damaged-{k}")
    return path.rename(target)


def load_checkpoint(path: Path, expect: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read a checkpoint; ``expect`` maps keys (e.g. task, method, seed) to the values they must have."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        raw = th.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a qarl checkpoint ({type(exc).__name__}: {str(exc)[:200]})",
            damaged=True,
        ) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a qarl checkpoint")
    if raw.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {raw.get('version')}, this qarl reads {VERSION}")
    raw = with_method_key(raw)
    for key, value in (expect or {}).items():
        if raw.get(key) != value:
            raise CheckpointError(
                f"checkpoint {path} belongs to another trial: its {key} is {raw.get(key)!r}, expected {value!r}"
            )
    return _decode(raw)


def buffer_state(player: Player) -> dict[str, Any]:
    """The filled part of a player's replay buffer (SB3 ``ReplayBuffer`` with one env)."""
    buf = player.buffer
    n = buf.buffer_size if buf.full else buf.pos
    arrays = {
        k: getattr(buf, k)[:n] for k in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
    }
    return {
        "pos": int(buf.pos),
        "full": bool(buf.full),
        "arrays": arrays,
        "behaviour_log_prob": player.behaviour_log_prob[:n],
    }


def load_buffer_state(player: Player, state: dict[str, Any]) -> None:
    buf = player.buffer
    arrays = state["arrays"]
    n = arrays["observations"].shape[0]
    if n > buf.buffer_size or arrays["observations"].shape[1:] != buf.observations.shape[1:]:
        raise CheckpointError(
            f"{player.name} replay buffer in the checkpoint has shape {arrays['observations'].shape}, "
            f"the model's holds {buf.observations.shape}"
        )
    for k, v in arrays.items():
        getattr(buf, k)[:n] = v
    buf.pos, buf.full = state["pos"], state["full"]
    # behaviour log-probabilities of the stored actions (diagnostics); NaN in checkpoints written before they existed
    player.behaviour_log_prob[:] = np.nan
    if "behaviour_log_prob" in state:
        player.behaviour_log_prob[:n] = state["behaviour_log_prob"]


def player_state(player: Player) -> dict[str, Any]:
    m = player.model
    state = {
        "policy": m.policy.state_dict(),
        "actor_optimizer": m.actor.optimizer.state_dict(),
        "critic_optimizer": m.critic.optimizer.state_dict(),
        "env_steps": player.env_steps,
        "updates": player.updates,
        "n_updates": m._n_updates,
        "buffer": buffer_state(player),
        "matmul_kernel": getattr(m, "matmul_kernel", None),
    }
    if m.ent_coef_optimizer is not None:
        state["log_ent_coef"] = m.log_ent_coef.detach().clone()
        state["ent_coef_optimizer"] = m.ent_coef_optimizer.state_dict()
    return state


def load_player_state(player: Player, state: dict[str, Any]) -> None:
    m = player.model
    try:
        m.policy.load_state_dict(state["policy"])
    except RuntimeError as exc:
        raise CheckpointError(f"{player.name} networks in the checkpoint do not match the config: {exc}") from None
    m.actor.optimizer.load_state_dict(state["actor_optimizer"])
    m.critic.optimizer.load_state_dict(state["critic_optimizer"])
    if m.ent_coef_optimizer is not None:
        with th.no_grad():
            m.log_ent_coef.copy_(state["log_ent_coef"])
        m.ent_coef_optimizer.load_state_dict(state["ent_coef_optimizer"])
    m._set_rates()  # optimiser state dicts carry the saved rates; the config's are authoritative
    player.env_steps, player.updates, m._n_updates = state["env_steps"], state["updates"], state["n_updates"]
    # the kernel the run used so far; a checkpoint of an earlier version holds none: the rule that version followed
    kernel = state.get("matmul_kernel") or legacy_kernel(m, m.batch_size)
    if kernel != getattr(m, "matmul_kernel", None):
        m.matmul_kernel = kernel
        m._fast = None  # rebuilt on the next step with that kernel
    load_buffer_state(player, state["buffer"])


def rng_state() -> dict[str, Any]:
    """The global generators that stable-baselines3 and torch draw from (buffer sampling, actions)."""
    return {"numpy": np.random.get_state(), "torch": th.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    th.set_rng_state(state["torch"])
