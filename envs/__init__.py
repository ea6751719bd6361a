"""The two-player zero-sum MuJoCo games of the qarl suite.

``envs.make(task_id, **kwargs)`` builds a :class:`envs.core.ZeroSumGame`; ``envs.list_tasks()`` lists the
registered ids. Importing this package is light: it loads the registry (pure data) only; MuJoCo,
gymnasium and dm_control are imported when the first game is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from envs.registry import TaskSpec, UnknownTaskError, list_tasks, make, spec

if TYPE_CHECKING:  # pragma: no cover - typing only
    from envs.core import ZeroSumGame

__all__ = ["TaskSpec", "UnknownTaskError", "ZeroSumGame", "list_tasks", "make", "spec"]


def __getattr__(name: str) -> Any:
    # Lazy: ``envs.ZeroSumGame`` imports MuJoCo only when asked for.
    if name == "ZeroSumGame":
        from envs.core import ZeroSumGame

        return ZeroSumGame
    raise AttributeError(f"module 'envs' has no attribute {name!r}")
