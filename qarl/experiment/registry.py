"""The method registry: each method's name and the import string of its trainer class.

``qarl`` never imports ``baselines``: a method is found here by its import string (``"baselines.rarl:RARLTrainer"``)
and imported only when it is asked for. Adding a method: its module (a :class:`~qarl.training.loop.TwoPlayerTrainer`
subclass with its config dataclass), its YAML ``configs/methods/<name>.yaml`` and one line below.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from qarl.training.loop import TwoPlayerTrainer

METHODS: dict[str, str] = {
    "sac": "baselines.sac:SACTrainer",
    "rarl": "baselines.rarl:RARLTrainer",
    "qarl": "qarl.quantal.trainers:QARLTrainer",
    "qarl_linear": "qarl.quantal.trainers:QARLLinearTrainer",
    "qarl_point": "qarl.quantal.trainers:QARLPointTrainer",
    "qarl_single": "qarl.quantal.trainers:QARLSingleTrainer",
    "qarl_homogeneous": "qarl.quantal.trainers:QARLHomogeneousTrainer",
    "fixed_temperature": "baselines.fixed_temperature:FixedTemperatureTrainer",
    "force_curriculum": "baselines.force_curriculum:ForceCurriculumTrainer",
    "cat": "baselines.cat:CATTrainer",
    "domain_randomization": "baselines.domain_randomization:DomainRandomizationTrainer",
    "mixedne_ld": "baselines.mixedne_ld:MixedNELDTrainer",
}


class UnknownMethodError(ValueError):
    """Raised for a method name that is not registered."""


def list_methods() -> list[str]:
    """The registered method names, in registration order."""
    return list(METHODS)


def get_method(name: str) -> type[TwoPlayerTrainer]:
    """The trainer class of method ``name``."""
    if name not in METHODS:
        close = difflib.get_close_matches(str(name), list(METHODS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownMethodError(f"unknown method {name!r}{hint} (known: {', '.join(METHODS)})")
    module, _, cls = METHODS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
