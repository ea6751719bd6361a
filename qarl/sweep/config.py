"""The sweep file (``configs/sweeps/*.yaml``): typed schema and the checks made before anything starts.

A sweep is tasks x methods x seeds at one scale, with overrides shared by every trial. :func:`load_sweep` reads
and checks a file; :func:`plan_trials` resolves every trial's config (so a bad override fails here, naming its
key, rather than in a Ray worker minutes later). Neither writes anything.

Example (``configs/sweeps/smoke.yaml``)::

    name: smoke
    tasks: [dmc/cartpole-balance, gym/InvertedPendulum-v5]
    methods: [qarl, rarl]
    seeds: [0, 1]
    scale: smoke
    overrides: {loop.horizon: 40}    # dotted or nested keys, as `qarl train --set`
    resources: {cpus: 1, gpus: 0}    # per trial; torch threads = cpus
    checkpoint_every: 1              # null: the scale's
    eval: {enabled: true}            # overrides of the scale's evaluation settings
    storage: runs                    # run dirs: <storage>/<name>/<task>/<method>/seed=<k>/
    max_concurrent: null             # null: as many as the resources allow
    max_failures: 2                  # retries of a failed trial, each from its last checkpoint
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import envs
from qarl.config import SCALES, ConfigError, configs_dir, from_dict, load_yaml, merge
from qarl.evaluation.runner import EvalConfig
from qarl.experiment.registry import UnknownMethodError, get_method
from qarl.experiment.trial import TrialConfig, resolve_config, run_dir_for

# Keys of a trial config that the sweep sets itself, so an override of them would be silently lost or ambiguous.
_OWN_KEYS = {"task": "tasks", "method": "methods", "seed": "seeds", "scale": "scale"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")


@dataclass(frozen=True)
class Resources:
    """What Ray reserves for one trial."""

    cpus: float = 1.0
    """CPU cores per trial; the trial's torch threads are max(1, floor(cpus))."""
    gpus: float = 0.0
    """GPUs per trial (a fraction below 1, or a whole number). The learners themselves run on the CPU."""

    def validate(self) -> None:
        if not (math.isfinite(self.cpus) and self.cpus > 0):
            raise ValueError(f"cpus must be a finite number > 0, got {self.cpus}")
        if not (math.isfinite(self.gpus) and self.gpus >= 0):
            raise ValueError(f"gpus must be a finite number >= 0, got {self.gpus}")
        if self.gpus > 1 and not self.gpus.is_integer():
            raise ValueError(f"gpus above 1 must be a whole number (Ray's rule), got {self.gpus}")

    @property
    def torch_threads(self) -> int:
        return max(1, math.floor(self.cpus))

    def as_ray(self) -> dict[str, float]:
        """The resource request in Tune's form."""
        return {"cpu": self.cpus, "gpu": self.gpus}


@dataclass(frozen=True)
class SweepConfig:
    """One sweep file. ``overrides``, ``method_overrides`` and ``eval`` are free-form mappings checked against the
    trial schema when the trials are planned."""

    name: str
    """Experiment name: the folder under ``storage`` holding the run directories."""
    tasks: tuple[str, ...]
    """Task ids (see ``qarl tasks``)."""
    methods: tuple[str, ...]
    """Method names (see ``qarl algos``)."""
    seeds: tuple[int, ...]
    """Trial seeds (distinct, >= 0)."""
    scale: Literal[SCALES] = "smoke"  # type: ignore[valid-type]
    """Budget preset of ``configs/scales.yaml``."""
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Config values for every trial (``loop.iterations: 5`` or nested), applied after the scale."""
    method_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Per method (a key of ``methods``): config values for that method's trials only (e.g. ``teacher.*``)."""
    resources: Resources = dataclasses.field(default_factory=Resources)
    """Per-trial CPUs and GPUs."""
    checkpoint_every: int | None = None
    """Checkpoint every this many iterations (None: the scale's)."""
    eval: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Overrides of the scale's end-of-trial evaluation settings (``enabled``, ``nominal_episodes``, ...)."""
    storage: str = "runs"
    """Folder of the run directories (relative paths: from the current directory). Shared (NFS) on a cluster."""
    max_concurrent: int | None = None
    """Trials running at once (None: as many as the resources allow)."""
    max_failures: int = 2
    """Retries of a failed trial, each resuming from the trial's last checkpoint."""
    learner: str = "default"
    """The learner preset of ``configs/learners.yaml`` for every trial's SAC players (``qarl-authors``: the QARL
    authors' choices)."""
    seeds_per_trial: int = 1
    """Seeds of one (task, method) trained together by one Ray trial (one process, their gradient steps batched:
    :mod:`qarl.experiment.group`); each seed keeps its own run directory. ``resources`` are per Ray trial."""
    reproduce: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Per scale (``smoke``, ``small``): the ``tasks``, ``methods``, ``seeds`` and extra ``overrides`` and
    ``method_overrides`` that ``qarl reproduce --scale`` runs of this sweep instead of the file's own (see
    :mod:`qarl.report.reproduce`).
    ``qarl sweep`` runs the file as written and ignores it."""

    def validate(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"name: expected a folder name of letters, digits, '_.=-', got {self.name!r}")
        for key in ("tasks", "methods", "seeds"):
            values = getattr(self, key)
            if not values:
                raise ValueError(f"{key}: must not be empty")
            dup = sorted({v for v in values if values.count(v) > 1}, key=str)
            if dup:
                raise ValueError(f"{key}: duplicate entries {dup}")
        for i, seed in enumerate(self.seeds):
            if seed < 0:
                raise ValueError(f"seeds[{i}]: expected a seed >= 0, got {seed}")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every: must be at least 1, got {self.checkpoint_every}")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"max_concurrent: must be at least 1, got {self.max_concurrent}")
        if self.seeds_per_trial < 1:
            raise ValueError(f"seeds_per_trial: must be at least 1, got {self.seeds_per_trial}")
        if self.max_failures < 0:
            raise ValueError(f"max_failures: must be >= 0, got {self.max_failures}")

    @property
    def trials(self) -> list[tuple[str, str, int]]:
        """(task, method, seed) of every trial, in a stable order."""
        return [(t, m, s) for t in self.tasks for m in self.methods for s in self.seeds]


@dataclass(frozen=True)
class PlannedTrial:
    """One trial of a sweep: its resolved config and run directory."""

    task: str
    method: str
    seed: int
    config: TrialConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.task} {self.method} seed={self.seed}"


def load_sweep(
    path: str | os.PathLike[str], storage: str | None = None, max_concurrent: int | None = None
) -> SweepConfig:
    """Read and check a sweep file; ``storage`` and ``max_concurrent`` replace the file's values (CLI options).

    Raises ConfigError with a one-line message ``<file>: <key>: <problem>``.
    """
    data = load_yaml(path)
    try:
        sweep = _parse(data)
        if storage is not None:
            sweep = dataclasses.replace(sweep, storage=storage)
        if max_concurrent is not None:
            if max_concurrent < 1:
                raise ConfigError(f"--max-concurrent: must be at least 1, got {max_concurrent}")
            sweep = dataclasses.replace(sweep, max_concurrent=max_concurrent)
        check_storage(sweep.storage)
    except ConfigError as exc:
        raise ConfigError(f"{os.fspath(path)}: {exc}") from None
    return sweep


def parse_sweep(data: Mapping[str, Any]) -> SweepConfig:
    """A sweep from a mapping (a sweep file's content), checked as :func:`load_sweep` checks a file (storage apart)."""
    return _parse(data)


_SELECTION_KEYS = ("tasks", "methods", "seeds", "overrides", "method_overrides")


def _check_reproduce(block: Mapping[str, Any]) -> None:
    for scale, chosen in block.items():
        if scale not in ("smoke", "small"):
            raise ConfigError(f"reproduce.{scale}: unknown scale; expected smoke or small (paper: the file as written)")
        if not isinstance(chosen, Mapping):
            raise ConfigError(f"reproduce.{scale}: expected a mapping, got {type(chosen).__name__}")
        for key in chosen:
            if key not in _SELECTION_KEYS:
                raise ConfigError(f"reproduce.{scale}.{key}: unknown key; allowed: {list(_SELECTION_KEYS)}")


def _parse(data: Mapping[str, Any]) -> SweepConfig:
    free = {}
    for key in ("overrides", "method_overrides", "eval", "reproduce"):
        value = data.get(key)
        if value is None:
            free[key] = {}
        elif not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        else:
            free[key] = dict(value)
    typed = {k: v for k, v in data.items() if k not in free}
    # the free-form keys are validated below; from_dict checks every other key and type (unknown keys included)
    sweep = from_dict(SweepConfig, typed)
    overrides = expand_dotted(free["overrides"], "overrides")
    method_overrides = {}
    for method, values in free["method_overrides"].items():
        if method not in sweep.methods:
            raise ConfigError(f"method_overrides.{method}: not one of the sweep's methods {list(sweep.methods)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"method_overrides.{method}: expected a mapping, got {type(values).__name__}")
        method_overrides[method] = expand_dotted(values, f"method_overrides.{method}")
    evaluation = expand_dotted(free["eval"], "eval")
    _check_reproduce(free["reproduce"])
    from qarl.experiment.trial import learner_preset

    learner_preset(sweep.learner)  # an unknown preset is an error here, before any trial is planned
    sweep = dataclasses.replace(sweep, overrides=overrides, method_overrides=method_overrides, eval=evaluation,
                                reproduce=free["reproduce"])  # fmt: skip
    _check_names(sweep)
    for where, values in [
        ("overrides", overrides),
        *((f"method_overrides.{m}", v) for m, v in method_overrides.items()),
    ]:
        for key, field in _OWN_KEYS.items():
            if key in values:
                raise ConfigError(f"{where}.{key}: set it with the sweep's `{field}`, not as an override")
        loop = values.get("loop")
        if isinstance(loop, Mapping):
            if "torch_threads" in loop:
                raise ConfigError(f"{where}.loop.torch_threads: set by resources.cpus (torch threads = CPU allowance)")
            if "checkpoint_every" in loop and sweep.checkpoint_every is not None:
                raise ConfigError(f"{where}.loop.checkpoint_every: given twice (also as checkpoint_every)")
    return sweep


def expand_dotted(values: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``{'loop.horizon': 40, 'eval': {'enabled': False}}`` as nested mappings; a key given twice is an error."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or not key or not all(p.strip() for p in key.split(".")):
            raise ConfigError(f"{where}: invalid key {key!r}")
        parts = [p.strip() for p in key.split(".")]
        node = out
        for i, part in enumerate(parts):
            path = ".".join([where, *parts[: i + 1]])
            last = i == len(parts) - 1
            if last:
                value = expand_dotted(value, path) if isinstance(value, Mapping) else value
                if part in node:
                    if isinstance(node[part], dict) and isinstance(value, dict):
                        overlap = set(node[part]) & set(value)
                        if overlap:
                            raise ConfigError(f"{path}.{sorted(overlap)[0]}: given twice")
                        node[part] = {**node[part], **value}
                    else:
                        raise ConfigError(f"{path}: given twice")
                else:
                    node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ConfigError(f"{path}: given both as a value and as a section")
                node = child
    return out


def _check_names(sweep: SweepConfig) -> None:
    for i, task in enumerate(sweep.tasks):
        try:
            envs.spec(task)
        except envs.UnknownTaskError as exc:
            raise ConfigError(f"tasks[{i}]: {exc}") from None
    for i, method in enumerate(sweep.methods):
        try:
            get_method(method)
        except UnknownMethodError as exc:
            raise ConfigError(f"methods[{i}]: {exc}") from None


def check_storage(storage: str) -> Path:
    """The absolute storage folder; ConfigError if it cannot be created or written (nothing is created here)."""
    if "://" in storage:
        raise ConfigError(
            f"storage: {storage!r}: object-store URIs are not supported (run directories are written with local file"
            " operations); use a local or NFS-mounted path"
        )
    if not storage.strip():
        raise ConfigError("storage: empty path")
    path = Path(storage).expanduser().absolute()
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise ConfigError(f"storage: {path} cannot be created: {probe} is not a folder")
    if probe == path and not path.is_dir():
        raise ConfigError(f"storage: {path} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK) or not os.access(probe, os.R_OK):
        what = "is not readable and writable" if probe == path else f"cannot be created ({probe} is not writable)"
        raise ConfigError(f"storage: {path} {what}")
    return path


def trial_overrides(sweep: SweepConfig, method: str) -> dict[str, Any]:
    """The overrides of one method's trials: the sweep's, the method's, then what the sweep sets itself."""
    data = merge(sweep.overrides, sweep.method_overrides.get(method, {}))
    own: dict[str, Any] = {"loop": {"torch_threads": sweep.resources.torch_threads}}
    if sweep.checkpoint_every is not None:
        own["loop"]["checkpoint_every"] = sweep.checkpoint_every
    if sweep.eval:
        own["eval"] = sweep.eval
    return merge(data, own)


def _blame(sweep: SweepConfig, task: str, method: str, seed: int) -> str:
    """The sweep key a trial's config error comes from: the shared overrides, or the method's own."""
    if sweep.method_overrides.get(method):
        shared_only = dataclasses.replace(sweep, method_overrides={})
        try:
            resolve_config(task, method, seed, sweep.scale, trial_overrides(shared_only, method), sweep.learner)
        except ConfigError:
            return "overrides"
        return f"method_overrides.{method}"
    return "overrides"


def plan_trials(sweep: SweepConfig, config_file: str | os.PathLike[str] | None = None) -> list[PlannedTrial]:
    """Every trial's resolved config and run directory; ConfigError names the sweep key of a bad value."""
    storage = check_storage(sweep.storage)
    prefix = f"{os.fspath(config_file)}: " if config_file is not None else ""
    scales = load_yaml(configs_dir() / "scales.yaml")
    try:
        evaluation = merge((scales.get(sweep.scale) or {}).get("eval") or {}, sweep.eval)
        if isinstance(evaluation.get("worst_case_bound"), Mapping):  # relative ({b50: x}): resolved per trial below
            evaluation["worst_case_bound"] = None
        from_dict(EvalConfig, evaluation, "eval")
    except ConfigError as exc:
        raise ConfigError(f"{prefix}{exc}") from None
    planned = []
    for task, method, seed in sweep.trials:
        try:
            config = resolve_config(task, method, seed, sweep.scale, trial_overrides(sweep, method), sweep.learner)
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{_blame(sweep, task, method, seed)}.{exc} (method {method})") from None
        planned.append(PlannedTrial(task, method, seed, config, run_dir_for(storage, sweep.name, task, method, seed)))
    return planned


__all__ = [
    "PlannedTrial",
    "Resources",
    "SweepConfig",
    "check_storage",
    "expand_dotted",
    "load_sweep",
    "parse_sweep",
    "plan_trials",
    "trial_overrides",
]
