"""The method registry: names to import strings, so that ``qarl`` never imports ``baselines`` at import time."""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - typing only
    from qarl.training.loop import TwoPlayerTrainer

ALGORITHMS: dict[str, str] = {
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


class UnknownAlgorithmError(ValueError):
    """Raised for a method name that is not registered."""


def list_algorithms() -> list[str]:
    return list(ALGORITHMS)


def get_algorithm(name: str) -> type[TwoPlayerTrainer]:
    """The trainer class of method ``name``."""
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(str(name), list(ALGORITHMS), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}{hint} (known: {', '.join(ALGORITHMS)})")
    module, _, cls = ALGORITHMS[name].partition(":")
    return getattr(importlib.import_module(module), cls)
