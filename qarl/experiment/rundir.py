"""Run directories: the one place that knows their files (docs/results.md).

A trial (task, method, seed) lives in ``<out>/<experiment>/<task>/<method>/seed=<k>/``:

- ``config.yaml``: the resolved config (:class:`~qarl.experiment.trial.TrialConfig`),
- ``meta.json``: package versions, git revision, host, times, status and failure reason,
- ``progress.parquet``: one row per iteration (and ``progress.csv``, the same rows),
- ``eval.parquet``: the end-of-trial robustness evaluation, one row per episode,
- ``checkpoints/``: the newest checkpoints (not committed with results),
- ``train.log`` and ``tensorboard/``: the trial's messages and TensorBoard events (:mod:`qarl.experiment.logs`; not
  committed with results).

Everything that writes or reads these files goes through this module; writes are atomic (:mod:`qarl.files`), and a
missing or unreadable file raises :class:`RunDirError` naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from qarl.config import (
    LEGACY_METHOD_KEY,
    ConfigError,
    dump_yaml,
    load_yaml,
    with_current_diagnostics_keys,
    with_method_key,
)
from qarl.files import atomic_write_parquet, atomic_write_text

CONFIG_FILE = "config.yaml"
META_FILE = "meta.json"
PROGRESS_FILE = "progress.parquet"
PROGRESS_CSV = "progress.csv"  # the same rows as CSV, for tools that read no parquet
TRAIN_LOG = "train.log"
TENSORBOARD_DIR = "tensorboard"
EVAL_FILE = "eval.parquet"
CHECKPOINT_DIR = "checkpoints"


class RunDirError(ValueError):
    """A run directory's file is missing, unreadable or malformed (the message names the file)."""


def run_dir_for(out: str | os.PathLike, experiment: str, task: str, method: str, seed: int) -> Path:
    """The run directory of one trial."""
    return Path(out) / experiment / task / method / f"seed={seed}"


def find_run_dirs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Every directory under ``paths`` (searched recursively; a path may itself be a run directory or one of its
    files) that holds ``eval.parquet`` or ``meta.json``, so that failed runs without evaluations are found too.
    Sorted, without duplicates."""
    found: set[Path] = set()
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise RunDirError(f"{path}: no such file or directory")
        if path.is_file():
            if path.name in (EVAL_FILE, META_FILE):
                found.add(path.parent.resolve())
            continue
        for name in (EVAL_FILE, META_FILE):
            found.update(f.parent.resolve() for f in path.rglob(name))
    return sorted(found)


def require_run_dir(run_dir: str | os.PathLike, files: Iterable[str] = (CONFIG_FILE, META_FILE)) -> Path:
    """``run_dir`` as a Path, after checking that it holds ``files``."""
    path = Path(run_dir)
    for name in files:
        if not (path / name).exists():
            raise RunDirError(f"{path} is not a run directory (no {name})")
    return path


def read_meta(run_dir: str | os.PathLike, missing_ok: bool = False) -> dict[str, Any]:
    """The run's ``meta.json`` as a dict ({} for a missing file when ``missing_ok``)."""
    meta_file = Path(run_dir) / META_FILE
    if not meta_file.exists():
        if missing_ok:
            return {}
        raise RunDirError(f"{meta_file}: no such file (every run directory needs its meta.json)")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunDirError(f"{meta_file}: cannot read: {e}") from None
    if not isinstance(meta, dict):
        raise RunDirError(f"{meta_file}: not a JSON object")
    return with_method_key(meta)


def method_label(config: Mapping[str, Any]) -> str:
    """The name reports give a run's method: ``method``, with the learner preset in brackets when the run used one
    other than the default (``qarl [qarl-authors]``), so that runs of different learners are never averaged together."""
    learner = config.get("learner") or "default"
    return str(config.get("method")) if learner == "default" else f"{config.get('method')} [{learner}]"


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's ``config.yaml`` as a mapping (validated by :func:`~qarl.experiment.trial.parse_trial_config`), with an
    earlier version's key names read as today's (``algorithm``; the diagnostics' renamed and retired settings)."""
    try:
        data = with_method_key(load_yaml(Path(run_dir) / CONFIG_FILE))
    except ConfigError as e:
        raise RunDirError(str(e)) from None
    if isinstance(data.get("diagnostics"), dict):
        data["diagnostics"] = with_current_diagnostics_keys(data["diagnostics"])
    return data


def read_progress(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The run's ``progress.parquet``."""
    progress = Path(run_dir) / PROGRESS_FILE
    if not progress.exists():
        raise RunDirError(f"{run_dir} has no progress.parquet (is it a run directory?)")
    return pd.read_parquet(progress)


def read_eval(run_dir: str | os.PathLike, required_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of a completed run's ``eval.parquet``, checked for presence, readability, rows and columns."""
    eval_file = Path(run_dir) / EVAL_FILE
    if not eval_file.exists():
        raise RunDirError(f"{eval_file}: no such file, but the run's meta.json says status 'completed'")
    if eval_file.stat().st_size == 0:
        raise RunDirError(f"{eval_file}: empty file (0 bytes)")
    try:
        df = pd.read_parquet(eval_file)
    except Exception as e:  # pyarrow raises several types (ArrowInvalid, OSError, ...) for a damaged file
        raise RunDirError(f"{eval_file}: unreadable parquet file ({type(e).__name__}: {e})") from None
    if LEGACY_METHOD_KEY in df.columns and "method" not in df.columns:
        df = df.rename(columns={LEGACY_METHOD_KEY: "method"})
    missing = [c for c in required_columns if c not in df.columns]
    if missing:
        raise RunDirError(f"{eval_file}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise RunDirError(f"{eval_file}: no rows")
    return df


def write_config(run_dir: str | os.PathLike, data: Mapping[str, Any]) -> None:
    dump_yaml(data, Path(run_dir) / CONFIG_FILE)


def write_meta(run_dir: str | os.PathLike, meta: Mapping[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / META_FILE, json.dumps(meta, indent=2))


def write_progress(run_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """progress.parquet and the same rows as progress.csv."""
    frame = pd.DataFrame(rows)
    atomic_write_parquet(Path(run_dir) / PROGRESS_FILE, frame)
    atomic_write_text(Path(run_dir) / PROGRESS_CSV, frame.to_csv(index=False))


def write_eval(run_dir: str | os.PathLike, frame: pd.DataFrame) -> None:
    atomic_write_parquet(Path(run_dir) / EVAL_FILE, frame)
