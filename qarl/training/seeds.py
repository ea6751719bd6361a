"""The seed streams of a trial: one table, so that no two uses of randomness share a stream.

Every reset seed and private generator of a trial is derived from the trial seed and a stream tag with numpy's
``SeedSequence``; different tags (and indices) give independent streams. The loop's training episodes use their
running index, its evaluation episodes their index within the evaluation, so that every iteration is evaluated on
the same initial states. A method that needs a generator of its own adds its tag here.
"""

from __future__ import annotations

import numpy as np

STREAMS: dict[str, int] = {
    "train": 1,  # training episodes of the two-player loop, by running index
    "eval_adversary": 2,  # the loop's per-iteration evaluation against the adversary
    "eval_zero_force": 3,  # the loop's per-iteration evaluation with zero force
    "evaluation": 0xE7A1,  # end-of-trial robustness evaluation (sub-streams: EVALUATION_METRICS)
    "diagnostics": 0xD1A6,  # neural diagnostics: rollouts and private generators
    "teacher": 0x7EAC,  # QARL's self-paced teacher
    "sgld": 0x5617D,  # mixedne_ld's Langevin noise
}

#: Sub-streams of ``evaluation``, one per metric.
EVALUATION_METRICS: dict[str, int] = {
    "nominal": 11, "adversary": 12, "worst_case": 13, "grid": 14, "sweep_x": 15, "sweep_y": 16,
    "disturbance_uniform": 17, "disturbance_step": 18, "wind": 19,
}  # fmt: skip


def stream_sequence(seed: int, stream: str, *index: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of ``stream`` (a key of :data:`STREAMS`) for a trial seed and optional indices."""
    return np.random.SeedSequence([seed, STREAMS[stream], *index])


def stream_seed(seed: int, stream: str, *index: int) -> int:
    """A 32-bit seed of ``stream`` for a trial seed and indices (e.g. the episode's index)."""
    return int(stream_sequence(seed, stream, *index).generate_state(1)[0])
