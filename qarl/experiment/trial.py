"""One trial (task, method, seed) in its run directory (docs/results.md).

``<out>/<experiment>/<task>/<method>/seed=<k>/`` holds ``config.yaml`` (resolved), ``meta.json``
(versions, git revision, host, times, status, failure reason), ``progress.parquet`` (one row per
iteration) and ``checkpoints/`` (files: :mod:`qarl.experiment.rundir`). ``progress.parquet`` is rewritten atomically
after every iteration and ``meta.json`` at the start, before the evaluation and at the end; a checkpoint every
``loop.checkpoint_every`` iterations lets ``resume=True`` continue exactly.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import envs
from qarl import provenance
from qarl.config import SCALES, ConfigError, configs_dir, from_dict, load_yaml, merge, to_dict, with_method_key
from qarl.diagnostics.neural import DiagnosticsConfig, NeuralDiagnostics
from qarl.evaluation.calibration import resolve_relative_bounds
from qarl.evaluation.runner import EvalConfig, evaluate_trainer
from qarl.experiment import rundir
from qarl.experiment.logs import TrialLogs
from qarl.experiment.registry import get_method
from qarl.experiment.rundir import run_dir_for
from qarl.sac.learner import QSAC, NonFiniteLossError, SACConfig
from qarl.training.checkpoint import (
    CheckpointError,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    set_aside,
)
from qarl.training.loop import LoopConfig, TwoPlayerTrainer

_TOP_KEYS = ("task", "method", "seed", "scale", "loop", "eval", "diagnostics", "strength", "learner")


@dataclass(frozen=True)
class TrialConfig:
    """A resolved trial: what ``config.yaml`` holds (the method's fields sit at the top level)."""

    task: str
    method: str
    seed: int
    scale: str
    loop: LoopConfig
    algo: Any
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    diagnostics: DiagnosticsConfig = dataclasses.field(default_factory=DiagnosticsConfig)
    strength: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """The relative bounds this config was resolved from ({key: {b50: x, task_b50: ..., bound: ...}};
    :func:`qarl.evaluation.calibration.resolve_relative_bounds`); empty when every bound was given absolutely."""
    learner: str = "default"
    """The learner preset of ``configs/learners.yaml`` applied to every SAC player (its values are in the players)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "method": self.method,
            "seed": self.seed,
            "scale": self.scale,
            "loop": to_dict(self.loop),
            "eval": to_dict(self.eval),
            "diagnostics": to_dict(self.diagnostics),
            **({"strength": dict(self.strength)} if self.strength else {}),
            **({"learner": self.learner} if self.learner != "default" else {}),
            **to_dict(self.algo),
        }


def parse_trial_config(data: Mapping[str, Any]) -> TrialConfig:
    """Validate a resolved config dict (as in ``config.yaml``; an earlier version's ``algorithm`` key is read as
    ``method``)."""
    data = with_method_key(data)
    for key in ("task", "method", "seed", "scale"):
        if key not in data:
            raise ConfigError(f"{key}: required")
    task, method, seed, scale = data["task"], data["method"], data["seed"], data["scale"]
    envs.spec(task)  # UnknownTaskError names close matches
    trainer_cls = get_method(method)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    if scale not in SCALES:
        raise ConfigError(f"scale: expected one of {list(SCALES)}, got {scale!r}")
    loop = from_dict(LoopConfig, data.get("loop") or {}, "loop")
    evaluation = from_dict(EvalConfig, data.get("eval") or {}, "eval")
    diagnostics = from_dict(DiagnosticsConfig, data.get("diagnostics") or {}, "diagnostics")
    algo = from_dict(trainer_cls.config_cls, {k: v for k, v in data.items() if k not in _TOP_KEYS})
    strength = data.get("strength") or {}
    if not isinstance(strength, Mapping):
        raise ConfigError(f"strength: expected a mapping (written by the config's resolution), got {strength!r}")
    learner = data.get("learner", "default")
    if not isinstance(learner, str) or not learner:
        raise ConfigError(f"learner: expected a preset name, got {learner!r}")
    return TrialConfig(task, method, seed, scale, loop, algo, evaluation, diagnostics, dict(strength), learner)


def learner_presets() -> dict[str, dict[str, Any]]:
    """The learner presets of ``configs/learners.yaml`` (name: SACConfig values)."""
    presets = load_yaml(configs_dir() / "learners.yaml")
    for name, values in presets.items():
        if not isinstance(values, Mapping) and values is not None:
            raise ConfigError(f"configs/learners.yaml: {name}: expected a mapping of SACConfig values")
    return {str(k): dict(v or {}) for k, v in presets.items()}


def learner_preset(name: str) -> dict[str, Any]:
    """The SACConfig values of the preset ``name``; ConfigError naming the known presets for another name."""
    presets = learner_presets()
    if name not in presets:
        raise ConfigError(f"learner: unknown preset {name!r}; configs/learners.yaml has {', '.join(presets)}")
    return presets[name]


def resolve_config(
    task: str,
    method: str,
    seed: int,
    scale: str = "smoke",
    overrides: Mapping[str, Any] | None = None,
    learner: str = "default",
) -> TrialConfig:
    """Method YAML, then the scale's overrides, then the ``learner`` preset (``configs/learners.yaml``, for every SAC
    player), then the user's ``overrides`` (``--set``), validated; a bound given
    relative to the task's calibration (``{b50: x}``) is resolved to the absolute bound
    (:func:`qarl.evaluation.calibration.resolve_relative_bounds`)."""
    if scale not in SCALES:
        raise ConfigError(f"scale: expected one of {list(SCALES)}, got {scale!r}")
    trainer_cls = get_method(method)
    envs.spec(task)
    algo_yaml = load_yaml(configs_dir() / "methods" / f"{method}.yaml")
    scales = load_yaml(configs_dir() / "scales.yaml")
    scale_cfg = scales.get(scale) or {}
    data: dict[str, Any] = merge({"task": task, "method": method, "seed": seed, "scale": scale}, algo_yaml)
    data = merge(data, {"loop": scale_cfg.get("loop") or {}, "eval": scale_cfg.get("eval") or {}})
    data = merge(data, {"diagnostics": scale_cfg.get("diagnostics") or {}})
    # the scale's learner overrides apply to every SAC player of the method
    preset = learner_preset(learner)
    for name in sac_fields(trainer_cls.config_cls):
        data = merge(data, {name: scale_cfg.get("players") or {}})
        data = merge(data, {name: preset})
    if learner != "default":
        data["learner"] = learner
    data = merge(data, overrides or {})
    if "learner" in (overrides or {}):
        raise ConfigError("learner: choose the preset with --learner, not with --set")
    for key in ("task", "method", "seed"):
        if data[key] != {"task": task, "method": method, "seed": seed}[key]:
            raise ConfigError(f"{key}: set it with its own option, not with --set")
    if "strength" in data:
        raise ConfigError("strength: written by the resolution of relative bounds; give {b50: x} as the bound instead")
    return parse_trial_config(resolve_relative_bounds(data))


def sac_fields(config_cls: type) -> list[str]:
    """The fields of a method's config that hold a player's :class:`SACConfig` (by their default values' type)."""
    defaults = config_cls()
    return [f.name for f in dataclasses.fields(config_cls) if isinstance(getattr(defaults, f.name), SACConfig)]


class TrialError(Exception):
    """A user-facing problem with a trial's directory or arguments (reported without a traceback)."""


class Interrupted(KeyboardInterrupt):
    """A signal asked the process to stop (``qarl train`` raises it on SIGTERM, as Python does on SIGINT); ``signal``
    is its name, which the trial's ``meta.json`` records."""

    def __init__(self, signal: str = "SIGINT") -> None:
        super().__init__(signal)
        self.signal = signal


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_trial(
    config: TrialConfig | None = None,
    *,
    run_dir: str | os.PathLike,
    resume: bool = False,
    iterations: int | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
    on_iteration: Callable[[dict[str, Any]], None] | None = None,
    meta_extra: Mapping[str, Any] | None = None,
    configure_learner: Callable[[QSAC], None] | None = None,
    tensorboard: bool = True,
) -> dict[str, Any]:
    """Run (or with ``resume=True`` continue) one trial in ``run_dir``; returns its ``meta.json`` dict.

    ``config`` is required for a new run; on resume the saved ``config.yaml`` is used, and ``iterations``
    may extend it. ``stop_after`` ends the process's work after that many iterations of this call (tests).
    ``on_iteration`` is called with each progress row once it (and any checkpoint) is on disk (Ray Tune's
    ``tune.report``); ``meta_extra`` adds keys to ``meta.json`` (the Ray node id and worker pid of a sweep trial).
    ``configure_learner`` is called with every SAC model the trial trains, the trainer's and the evaluation's (a group
    of seeds routes their gradient steps through itself, :mod:`qarl.experiment.group`). Every message also goes to
    ``train.log`` and every progress row to TensorBoard events (``tensorboard=False``: none), see
    :mod:`qarl.experiment.logs`.
    """
    run_dir = Path(run_dir)
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    config_file, progress_file = run_dir / rundir.CONFIG_FILE, run_dir / rundir.PROGRESS_FILE
    ckpt_dir = run_dir / rundir.CHECKPOINT_DIR
    if resume:
        if not config_file.exists():
            raise TrialError(f"nothing to resume: {config_file} does not exist")
        saved = parse_trial_config(rundir.read_config(run_dir))
        ignored = {"loop": saved.loop, "eval": saved.eval, "diagnostics": saved.diagnostics}  # do not touch training
        if config is not None and dataclasses.replace(config, **ignored) != saved:
            given, have = config.to_dict(), saved.to_dict()
            diff = sorted(k for k in set(given) | set(have) if k != "loop" and given.get(k) != have.get(k))
            raise TrialError(f"{run_dir} was started with another config (differs in {diff}); resume it as it is")
        config = saved
    elif config is None:
        raise TrialError("a config is needed to start a trial")
    elif config_file.exists() or progress_file.exists() or list_checkpoints(ckpt_dir):
        raise TrialError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose another --out/--experiment"
        )
    if iterations is not None:
        if iterations < 1:
            raise TrialError(f"iterations must be at least 1, got {iterations}")
        config = dataclasses.replace(config, loop=dataclasses.replace(config.loop, iterations=iterations))

    run_dir.mkdir(parents=True, exist_ok=True)
    logs = TrialLogs(run_dir, log, tensorboard=tensorboard)
    try:
        return _run(config, run_dir, resume, logs, stop_after, on_iteration, meta_extra, configure_learner)
    finally:
        logs.close()


def _run(
    config: TrialConfig,
    run_dir: Path,
    resume: bool,
    logs: TrialLogs,
    stop_after: int | None,
    on_iteration: Callable[[dict[str, Any]], None] | None,
    meta_extra: dict[str, Any] | None,
    configure_learner: Callable[[QSAC], None] | None,
) -> dict[str, Any]:
    """:func:`run_trial` once the run directory and the config are settled."""
    log = logs.log
    progress_file, ckpt_dir = run_dir / rundir.PROGRESS_FILE, run_dir / rundir.CHECKPOINT_DIR
    rundir.write_config(run_dir, config.to_dict())
    trainer_cls = get_method(config.method)
    trainer: TwoPlayerTrainer = trainer_cls(config.task, config.algo, config.loop, config.seed)
    for model in trainer.learners() if configure_learner is not None else ():
        configure_learner(model)
    identity = {"task": config.task, "method": config.method, "seed": config.seed}
    diagnostics = NeuralDiagnostics(trainer, config.diagnostics) if config.diagnostics.enabled else None

    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = rundir.read_meta(run_dir, missing_ok=True) if resume else {}
    if resume:
        found, state = list_checkpoints(ckpt_dir), None
        while found and state is None:  # the newest checkpoint that loads; damaged newer ones are set aside
            it, path = found.pop()
            try:
                state = load_checkpoint(path, expect=identity)
            except CheckpointError as exc:
                if not (exc.damaged and found):
                    raise
                log(f"{exc}: kept as {set_aside(path).name}; resuming from the previous checkpoint")
        if state is not None:
            _check_same_config(state.get("config", {}), config, path)
            trainer.load_state_dict(state["trainer"])
            if progress_file.exists():
                rows = [r for r in rundir.read_progress(run_dir).to_dict("records") if r["iteration"] <= it]
            log(f"resuming {run_dir} from iteration {it} ({path.name})")
            logs.purge_after(it)
        else:
            log(f"no checkpoint in {ckpt_dir}: starting {run_dir} from the beginning")
            logs.purge_after(0)
    meta.update(
        identity,
        status="running",
        failure_reason=None,
        started=meta.get("started", _now()),
        resumed=[*meta.get("resumed", []), _now()] if resume else [],
        host=socket.gethostname(),
        command=sys.argv,
        versions=provenance.versions(),
        git=provenance.git_revision(),
        iterations=config.loop.iterations,
        adversary_bound=trainer.game.adversary_bound.tolist(),
        # the fast update's matmul kernel per player (qarl.sac.fast.choose_kernel; kept from the checkpoint on resume)
        matmul_kernels={
            name: getattr(getattr(p, "model", None), "matmul_kernel", None) for name, p in trainer.players.items()
        },
    )
    if config.strength:
        meta["strength"] = dict(config.strength)
    meta.update(meta_extra or {})
    rundir.write_meta(run_dir, meta)
    target = config.loop.iterations
    done_here = 0
    t_start = time.perf_counter()
    try:
        while trainer.iteration < target:
            logs.begin_iteration(trainer.iteration + 1, target, len(trainer.phases) * config.loop.episodes_per_phase)
            t_iter, steps_iter = time.perf_counter(), [0]

            def on_episode(length: int, t_iter=t_iter, steps_iter=steps_iter) -> None:
                steps_iter[0] += length
                logs.episode_done(length, steps_iter[0] / max(time.perf_counter() - t_iter, 1e-9))

            trainer.on_episode = on_episode
            try:
                row = trainer.run_iteration()
            finally:
                trainer.on_episode = None
                logs.end_iteration()
            if diagnostics is not None:  # reads the players, never changes them (qarl/diagnostics/neural.py)
                row.update(diagnostics.on_iteration_end(trainer.iteration))
            rows.append(row)
            rundir.write_progress(run_dir, rows)
            logs.row(row)
            it = trainer.iteration
            if it % config.loop.checkpoint_every == 0 or it == target:
                save_checkpoint(
                    checkpoint_path(ckpt_dir, it),
                    {**identity, "config": config.to_dict(), "trainer": trainer.state_dict()},
                )
                for _, old in list_checkpoints(ckpt_dir)[: -config.loop.keep_checkpoints]:
                    old.unlink()
            log(_progress_line(config, row, target, time.perf_counter() - t_start))
            if on_iteration is not None:
                on_iteration(row)
            done_here += 1
            if stop_after is not None and done_here >= stop_after and trainer.iteration < target:
                meta.update(status="stopped", finished=_now())
                return meta
        eval_file = run_dir / rundir.EVAL_FILE
        if config.eval.enabled and not eval_file.exists():
            meta.update(status="evaluating")
            rundir.write_meta(run_dir, meta)
            t_eval = time.perf_counter()
            evaluation = evaluate_trainer(trainer, config.eval, log=log, configure_learner=configure_learner)
            rundir.write_eval(run_dir, evaluation)
            meta["eval_seconds"] = round(time.perf_counter() - t_eval, 1)
            log(f"evaluation written to {eval_file} ({meta['eval_seconds']}s)")
        meta.update(status="completed", finished=_now())
    except NonFiniteLossError as exc:
        meta.update(status="failed", failure_reason=f"non-finite loss: {exc}", finished=_now())
    except KeyboardInterrupt as exc:  # Python raises it on SIGINT; Interrupted names another signal
        sig = getattr(exc, "signal", "SIGINT")
        meta.update(status="interrupted", signal=sig, failure_reason=f"interrupted by {sig}", finished=_now())
        raise
    except Exception as exc:
        meta.update(status="failed", failure_reason=f"{type(exc).__name__}: {exc}", finished=_now())
        raise
    finally:
        meta["iterations_done"] = trainer.iteration
        rundir.write_meta(run_dir, meta)
    return meta


def load_trainer(run_dir: str | os.PathLike) -> tuple[TrialConfig, TwoPlayerTrainer, int]:
    """The trial of ``run_dir`` restored from its newest checkpoint: (config, trainer, iteration)."""
    run_dir = Path(run_dir)
    if not (run_dir / rundir.CONFIG_FILE).exists():
        raise TrialError(f"{run_dir} is not a run directory (no config.yaml)")
    config = parse_trial_config(rundir.read_config(run_dir))
    found = list_checkpoints(run_dir / rundir.CHECKPOINT_DIR)
    if not found:
        raise TrialError(f"{run_dir} has no checkpoint to evaluate")
    it, path = found[-1]
    state = load_checkpoint(path, expect={"task": config.task, "method": config.method, "seed": config.seed})
    trainer = get_method(config.method)(config.task, config.algo, config.loop, config.seed)
    trainer.load_state_dict(state["trainer"])
    return config, trainer, it


def _check_same_config(saved: dict[str, Any], config: TrialConfig, path: Path) -> None:
    now, saved = config.to_dict(), with_method_key(saved)
    # the iteration count may be extended; the evaluation and diagnostics settings do not touch training
    strip = lambda d: {  # noqa: E731
        **{k: v for k, v in d.items() if k not in ("eval", "diagnostics")},
        "loop": {k: v for k, v in d.get("loop", {}).items() if k != "iterations"},
    }
    if strip(saved) != strip(now):
        diff = sorted(k for k in set(saved) | set(now) if strip(saved).get(k) != strip(now).get(k))
        raise TrialError(f"checkpoint {path} was written with another config (differs in {diff})")


def _progress_line(config: TrialConfig, row: dict[str, Any], target: int, elapsed: float) -> str:
    adv = row.get("eval_return_adversary")
    adv_txt = "" if adv is None or adv != adv else f" | eval vs adversary {adv:8.2f}"
    return (
        f"[{config.task} {config.method} seed={config.seed}] iter {row['iteration']}/{target}"
        f" | {row['env_steps']} steps | {row['steps_per_s']:.0f} steps/s{adv_txt}"
        f" | eval zero-force {row['eval_return_zero_force']:8.2f} | {elapsed:.0f}s"
    )


def trial_summary(meta: Mapping[str, Any]) -> str:
    return f"{meta.get('status')}: {meta.get('task')} {meta.get('method')} seed={meta.get('seed')}" + (
        f" ({meta['failure_reason']})" if meta.get("failure_reason") else ""
    )


__all__: Sequence[str] = [
    "SCALES",
    "TrialConfig",
    "TrialError",
    "parse_trial_config",
    "resolve_config",
    "run_dir_for",
    "run_trial",
]
