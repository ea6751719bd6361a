"""What a running trial writes for people and their tools, next to the run directory's data files.

* ``train.log``: every message of the trial (the lines ``qarl train`` prints), appended, one per line.
* ``tensorboard/``: TensorBoard event files with every numeric column of every progress row, at global step =
  iteration (``tensorboard --logdir RUN_DIR``, or the sweep's folder to see all its trials). A resumed trial purges
  the events of iterations after its checkpoint, so no iteration appears twice.
* A progress bar on the terminal within each iteration (episodes, environment steps per second, ETA), drawn only
  when standard error is a terminal.

``progress.csv`` (the parquet's rows as CSV) is written by :func:`qarl.experiment.rundir.write_progress`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qarl.experiment import rundir


class TrialLogs:
    """The trial's train.log, TensorBoard writer and progress bar. ``log`` is the caller's own sink (printed lines)."""

    def __init__(
        self,
        run_dir: str | os.PathLike,
        log: Callable[[str], None],
        tensorboard: bool = True,
        progress_bar: bool | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self._sink = log
        self._file = open(self.run_dir / rundir.TRAIN_LOG, "a", encoding="utf-8")
        self._tensorboard = tensorboard
        self._writer: Any = None
        self._purge_step: int | None = None
        self._bar_enabled = sys.stderr.isatty() if progress_bar is None else progress_bar
        self._bar: Any = None

    def purge_after(self, iteration: int) -> None:
        """A resumed trial continues after ``iteration``: TensorBoard events of later iterations are dropped."""
        self._purge_step = iteration + 1

    def log(self, message: str) -> None:
        """A message to train.log and to the caller's sink."""
        self._file.write(message + "\n")
        self._file.flush()
        self._sink(message)

    def row(self, row: dict[str, Any]) -> None:
        """One progress row to TensorBoard (finite numbers only: a NaN is an iteration that was not diagnosed)."""
        if not self._tensorboard:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.run_dir / rundir.TENSORBOARD_DIR), purge_step=self._purge_step)
        step = int(row["iteration"])
        for key, value in row.items():
            if key == "iteration" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                self._writer.add_scalar(key, value, global_step=step)
        self._writer.flush()

    def begin_iteration(self, iteration: int, target: int, episodes: int) -> None:
        """Open the bar of one iteration (``episodes`` training episodes)."""
        if not self._bar_enabled:
            return
        from tqdm import tqdm

        self._bar = tqdm(
            total=episodes,
            desc=f"iteration {iteration}/{target}",
            unit="episode",
            leave=False,
            file=sys.stderr,
            mininterval=0,  # an episode takes seconds: redraw on every one
        )

    def episode_done(self, length: int, steps_per_s: float) -> None:
        """One training episode of ``length`` steps is done."""
        if self._bar is not None:
            self._bar.set_postfix_str(f"{steps_per_s:.0f} steps/s", refresh=False)
            self._bar.update(1)

    def end_iteration(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self.end_iteration()
        if self._writer is not None:
            self._writer.close()
        self._file.close()
