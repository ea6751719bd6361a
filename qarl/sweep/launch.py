"""A sweep as a Ray Tune experiment: one trial per (task, method, seed) (docs/sweeps.md).

Each Tune trial is a function trainable that runs :func:`qarl.experiment.trial.run_trial` in the trial's run directory
under the sweep's storage path (docs/results.md) and calls ``tune.report`` after every iteration. The run
directory, not Tune, holds the state: a retried trial (``FailureConfig``) or a trial of a resumed sweep continues
from the newest checkpoint there, and a trial whose ``meta.json`` says ``completed`` returns at once without touching
its files. Tune's own files go to ``<storage>/<name>/_tune/``.

Without an address, ``ray.init`` starts an embedded local Ray (``address="local"``: never an unrelated cluster that
happens to run on the machine) with the dashboard off; ``--address`` or ``RAY_ADDRESS`` joins a running cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qarl.experiment import rundir
from qarl.experiment.trial import TrialConfig, parse_trial_config, run_trial
from qarl.sweep.config import PlannedTrial, SweepConfig, check_storage
from qarl.sweep.embedded import EmbeddedRayError, embedded_ray
from qarl.training.checkpoint import list_checkpoints

# Tune result keys copied from a progress row (the rest of the row stays in progress.parquet).
_REPORTED = ("iteration", "env_steps", "steps_per_s", "wall_time", "eval_return_zero_force", "eval_return_adversary")


class SweepError(Exception):
    """A sweep that cannot start as asked (existing runs, too few resources): reported as one line."""


def experiment_dir(sweep: SweepConfig) -> Path:
    """``<storage>/<name>``: the sweep's run directories and Tune's files (``_tune/``)."""
    return check_storage(sweep.storage) / sweep.name


def read_meta(run_dir: Path) -> dict[str, Any]:
    """The trial's ``meta.json`` ({} if there is none yet)."""
    return rundir.read_meta(run_dir, missing_ok=True)


def trial_state(trial: PlannedTrial) -> str:
    """What a (re)launch would do: ``new``, ``completed`` (skipped), ``resume@<iteration>`` or ``restart``."""
    if read_meta(trial.run_dir).get("status") == "completed":
        return "completed"
    found = list_checkpoints(trial.run_dir / "checkpoints")
    if found:
        return f"resume@{found[-1][0]}"
    return "restart" if (trial.run_dir / rundir.CONFIG_FILE).exists() else "new"


def _config_differences(saved: TrialConfig, planned: TrialConfig) -> list[str]:
    """Top-level keys in which a run directory's config differs from the planned one, as the checkpoint check of
    ``run_trial`` sees them: the iteration count may be extended, and the evaluation and diagnostics settings do not
    touch training."""
    loop = dataclasses.replace(planned.loop, iterations=saved.loop.iterations)
    same = dataclasses.replace(planned, loop=loop, eval=saved.eval, diagnostics=saved.diagnostics)
    a, b = saved.to_dict(), same.to_dict()
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def preflight(sweep: SweepConfig, trials: Sequence[PlannedTrial], resume: bool) -> dict[int, str]:
    """The state of every trial; SweepError if existing runs would be touched without ``resume`` or differ."""
    states = {i: trial_state(t) for i, t in enumerate(trials)}
    existing = [trials[i] for i, s in states.items() if s != "new"]
    if existing and not resume:
        raise SweepError(
            f"{len(existing)} of {len(trials)} trials already have run directories under "
            f"{experiment_dir(sweep)} (e.g. {existing[0].run_dir}); pass --resume to continue the sweep, "
            "or choose another name or --storage"
        )
    for t in existing:
        if (t.run_dir / rundir.CONFIG_FILE).exists():
            diff = _config_differences(parse_trial_config(rundir.read_config(t.run_dir)), t.config)
            if diff:
                raise SweepError(
                    f"{t.run_dir} was started with another config (differs in {diff}); "
                    "restore the sweep file it was started with, or choose another name"
                )
    return states


def format_plan(sweep: SweepConfig, trials: Sequence[PlannedTrial], states: dict[int, str]) -> str:
    """The trial table and the resources the sweep asks for (``--dry-run``)."""
    header = ("#", "task", "method", "seed", "iterations", "state", "run directory")
    rows = [
        (str(i + 1), t.task, t.method, str(t.seed), str(t.config.loop.iterations), states[i], str(t.run_dir))
        for i, t in enumerate(trials)
    ]
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    res = sweep.resources
    todo = sum(1 for s in states.values() if s != "completed")
    groups = group_trials(trials, sweep.seeds_per_trial)
    n_ray = sum(1 for g in groups if any(states[i] != "completed" for i in g))
    concurrency = f"at most {sweep.max_concurrent} at once" if sweep.max_concurrent else "as many at once as fit"
    first = trials[0].config
    lines += [
        "",
        f"{len(trials)} trials ({todo} to run), scale {sweep.scale}, checkpoint every {first.loop.checkpoint_every}"
        f" iterations, evaluation {'on' if first.eval.enabled else 'off'}, up to {sweep.max_failures} retries each",
        f"resources per Ray trial: {res.cpus:g} CPU, {res.gpus:g} GPU (torch threads {res.torch_threads}); "
        f"all Ray trials to run: {n_ray * res.cpus:g} CPU, {n_ray * res.gpus:g} GPU; {concurrency}",
    ]
    if sweep.seeds_per_trial > 1:
        lines.append(f"seeds_per_trial {sweep.seeds_per_trial}: {len(groups)} Ray trials, each training its seeds")
    return "\n".join(lines)


def _metrics(row: dict[str, Any], target: int) -> dict[str, Any]:
    out: dict[str, Any] = {k: row[k] for k in _REPORTED if k in row}
    out["iterations"] = target
    out["clock"] = time.time()  # wall clock at the end of the iteration (start-up and scaling benchmark)
    return out


def group_trials(trials: Sequence[PlannedTrial], seeds_per_trial: int) -> list[list[int]]:
    """Indices of the planned trials run by each Tune trial: consecutive seeds of one (task, method), at most
    ``seeds_per_trial`` of them (1: one seed per Tune trial)."""
    groups: list[list[int]] = []
    for i, t in enumerate(trials):
        last = groups[-1] if groups else None
        if (
            last is not None
            and len(last) < seeds_per_trial
            and (trials[last[0]].task, trials[last[0]].method) == (t.task, t.method)
        ):
            last.append(i)
        else:
            groups.append([i])
    return groups


def _param_space(trials: Sequence[PlannedTrial], groups: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Tune's parameter space: one grid point per Ray trial (``index``), carrying its task, method and seed(s) as
    parameters so that Tune's own tools (``ResultGrid.get_dataframe()``, TensorBoard's hparams) can group trials."""
    from ray import tune

    def field(get: Callable[[int], Any]) -> Any:
        return tune.sample_from(lambda config: get(config["index"]))

    return {
        "index": tune.grid_search(list(range(len(groups)))),
        "task": field(lambda k: trials[groups[k][0]].task),
        "method": field(lambda k: trials[groups[k][0]].method),
        "seed": field(lambda k: ",".join(str(trials[i].seed) for i in groups[k])),
    }


def sweep_trainable(config: dict[str, Any], specs: Sequence[Sequence[dict[str, Any]]]) -> None:
    """Tune function trainable: one trial, or a group of seeds of one (task, method), run (or resumed) in their
    run directories.

    ``config["index"]`` picks the group in ``specs`` (lists of dicts with ``run_dir`` and the resolved ``config``).
    A group of several seeds runs in this process with its gradient steps batched (:func:`run_group`).
    """
    import ray
    from ray import tune

    group = specs[config["index"]]
    todo = [s for s in group if read_meta(Path(s["run_dir"])).get("status") != "completed"]
    if not todo:  # a resumed sweep: finished trials are not touched
        meta = read_meta(Path(group[0]["run_dir"]))
        tune.report({"skipped": True, "iteration": meta.get("iterations_done", 0), "iterations": meta["iterations"]})
        return
    extra = {
        "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "hostname": socket.gethostname(),
        "worker_pid": os.getpid(),
        "ray_trial_id": tune.get_context().get_trial_id(),
        # the command that launched the sweep (this process's own argv is Ray's worker)
        "command": todo[0].get("command") or [],
        "sweep": todo[0].get("sweep"),
    }
    run_dirs = [Path(s["run_dir"]) for s in todo]
    configs = [parse_trial_config(s["config"]) for s in todo]
    resume = [(d / rundir.CONFIG_FILE).exists() for d in run_dirs]
    for d in run_dirs:
        d.mkdir(parents=True, exist_ok=True)
    # each trial writes its own train.log (qarl.experiment.logs); other messages go to the Ray worker's log

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def report(config: TrialConfig) -> Callable[[dict[str, Any]], None]:
        extra_keys = {"seed": config.seed} if len(todo) > 1 else {}
        return lambda row: tune.report({**_metrics(row, config.loop.iterations), **extra_keys})

    if len(todo) == 1:
        run_trial(
            configs[0],
            run_dir=run_dirs[0],
            resume=resume[0],
            log=log,
            on_iteration=report(configs[0]),
            meta_extra=extra,
        )
    else:
        from qarl.experiment.group import run_group

        run_group(
            configs,
            run_dirs,
            resume=resume,
            log=log,
            per_seed=[{"on_iteration": report(c), "meta_extra": {**extra, "seeds_per_trial": len(todo)}}
                      for c in configs],
        )  # fmt: skip


def _progress_callback(labels: dict[int, str], out: Callable[[str], None], events: dict[str, dict]) -> Any:
    """A Tune callback printing concise lines; it records in ``events`` each trial's launch time (driver clock) and
    its reported results."""
    from ray import tune

    class ProgressLines(tune.Callback):
        """One line per trial event and iteration, printed by the driver."""

        def _label(self, trial: Any) -> str:
            return labels[trial.config["index"]]

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            events.setdefault(self._label(trial), {"launched": time.time(), "results": []})
            out(f"[{self._label(trial)}] started")

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            events.setdefault(self._label(trial), {"launched": math.nan, "results": []})["results"].append(result)
            if result.get("skipped"):
                out(f"[{self._label(trial)}] completed earlier, skipped")
                return
            ret = result.get("eval_return_zero_force", math.nan)
            out(
                f"[{self._label(trial)}] RUNNING iter {result.get('iteration')}/{result.get('iterations')}"
                f" | return {ret:.2f} | {result.get('steps_per_s', math.nan):.0f} steps/s"
            )

        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            out(f"[{self._label(trial)}] failed ({_first_line(trial.error_file)}); retrying from its last checkpoint")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            out(f"[{self._label(trial)}] ERROR ({_first_line(trial.error_file)})")

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            out(f"[{self._label(trial)}] finished")

    return ProgressLines()


def _first_line(error_file: str | None) -> str:
    """The last non-empty line of a Tune error file (the exception), or a placeholder."""
    try:
        lines = [ln.strip() for ln in Path(error_file or "").read_text().splitlines() if ln.strip()]
    except OSError:
        return "no error file"
    return lines[-1][:300] if lines else "no message"


def _connection_hint(address: str, exc: BaseException) -> str:
    """The one-line error for a Ray cluster that ``ray.init`` could not join."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    hint = (
        "check the address (`ray status` on the head node prints it)"
        if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "token"
        else "if the cluster uses token authentication (Ray 2.59+ turns it on for clusters started by `ray start`), "
        "set RAY_AUTH_MODE=token here too, with the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token"
    )
    return f"could not join the Ray cluster at {address} ({first}); {hint}"


def init_ray(address: str | None, sweep: SweepConfig, temp_dir: str | os.PathLike | None = None) -> str:
    """Start the embedded local Ray (in ``temp_dir``, see :mod:`qarl.sweep.embedded`) or join ``address``; returns a
    description for the log."""
    import ray

    common = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, **common)
        except ConnectionError as exc:
            raise SweepError(_connection_hint(address, exc)) from None
        where = f"Ray cluster at {address}"
    else:
        extra = {"_temp_dir": str(temp_dir)} if temp_dir is not None else {}
        ray.init(address="local", include_dashboard=False, **common, **extra)
        where = "embedded local Ray"
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = [n["Resources"].get("CPU", 0.0) for n in nodes]
    gpus = [n["Resources"].get("GPU", 0.0) for n in nodes]
    res = sweep.resources
    if res.cpus > max(cpus, default=0) or res.gpus > max(gpus, default=0):
        msg = (
            f"a trial asks for {res.cpus:g} CPU and {res.gpus:g} GPU, but the largest node of the {where} has "
            f"{max(cpus, default=0):g} CPU and {max(gpus, default=0):g} GPU; lower resources in the sweep file"
        )
        if not address:
            raise SweepError(msg)
        # a cluster's autoscaler may still add a bigger node
        logging.getLogger(__name__).warning(msg)
    return f"{where}: {len(nodes)} node(s), {sum(cpus):g} CPU, {sum(gpus):g} GPU"


def run_sweep(
    sweep: SweepConfig,
    trials: Sequence[PlannedTrial],
    *,
    address: str | None = None,
    resume: bool = False,
    out: Callable[[str], None] = print,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the sweep's trials on Ray Tune; returns a summary (``failed``: label -> reason; ``events``: label ->
    Tune's start time and results; ``fit_started``: the clock when Tune began). ``command`` (default: this
    process's argv) is recorded in every trial's meta.json as the command that produced it."""
    import ray
    from ray import tune

    states = preflight(sweep, trials, resume)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our progress lines replace Tune's tables
    address = address or os.environ.get("RAY_ADDRESS") or None
    if command is None:
        command = [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv and sys.argv[0] else []
    groups = group_trials(trials, sweep.seeds_per_trial)
    specs = [
        [
            {"run_dir": str(trials[i].run_dir), "config": trials[i].config.to_dict(), "command": list(command),
             "sweep": sweep.name}
            for i in g
        ]
        for g in groups
    ]  # fmt: skip
    labels = {
        k: trials[g[0]].label
        if len(g) == 1
        else f"{trials[g[0]].task} {trials[g[0]].method} seeds=" + ",".join(str(trials[i].seed) for i in g)
        for k, g in enumerate(groups)
    }
    storage = experiment_dir(sweep)
    events: dict[str, dict] = {}
    t0 = time.perf_counter()
    stop = _GracefulStop(out)
    embedded = contextlib.nullcontext() if address else embedded_ray(out)
    fit_started, errors = None, {}
    try:
        with embedded as temp_dir, stop:
            try:
                out(init_ray(address, sweep, temp_dir))
                skipped = sum(1 for s in states.values() if s == "completed")
                out(f"sweep {sweep.name}: {len(trials)} trials ({skipped} completed earlier) -> {storage}")
                trainable = tune.with_parameters(sweep_trainable, specs=specs)
                trainable = tune.with_resources(trainable, sweep.resources.as_ray())
                tuner = tune.Tuner(
                    trainable,
                    param_space=_param_space(trials, groups),
                    tune_config=tune.TuneConfig(
                        max_concurrent_trials=sweep.max_concurrent,
                        # A reused worker keeps its imports (torch, MuJoCo, dm_control: seconds per trial); nothing else
                        # carries over, since every trainer reseeds the global generators and sets its torch threads.
                        reuse_actors=True,
                        trial_name_creator=lambda tr: labels[tr.config["index"]].replace("/", "-").replace(" ", "_"),
                        trial_dirname_creator=lambda tr: (
                            f"{tr.trial_id}_" + labels[tr.config["index"]].replace("/", "-").replace(" ", "_")
                        ),
                    ),
                    run_config=tune.RunConfig(
                        name=time.strftime("sweep-%Y%m%d-%H%M%S"),
                        storage_path=str(storage / "_tune"),
                        failure_config=tune.FailureConfig(max_failures=sweep.max_failures),
                        verbose=0,
                        callbacks=[_progress_callback(labels, out, events)],
                    ),
                )
                fit_started = time.time()
                stop.fitting = True
                grid = tuner.fit()
                stop.fitting = False
                errors = {
                    i: r.error for r in grid if r.error is not None and r.config for i in groups[r.config["index"]]
                }
            finally:
                ray.shutdown()
    except EmbeddedRayError as exc:
        raise SweepError(str(exc)) from None
    except KeyboardInterrupt:  # a second signal, or one before Tune's loop: record what was cut short, then stop
        _mark_interrupted(trials, stop.signal or "SIGINT", stop.at)
        summarize(trials, errors, states, time.perf_counter() - t0, out, interrupted_by=stop.signal or "SIGINT")
        raise
    if stop.signal is not None:
        _mark_interrupted(trials, stop.signal, stop.at)
    summary = summarize(trials, errors, states, time.perf_counter() - t0, out, interrupted_by=stop.signal)
    return {**summary, "events": events, "fit_started": fit_started}


class _GracefulStop:
    """SIGINT and SIGTERM during a sweep: the first asks Ray Tune to stop (its own graceful stop, through SIGUSR1)
    and is remembered, so that the trials it cut short are recorded as interrupted; a second one stops at once."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out, self.signal, self.at, self.fitting = out, None, None, False
        self._saved: dict[int, Any] = {}
        self._env: str | None = None

    def __enter__(self) -> _GracefulStop:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        # Tune would replace the SIGINT handler with its own, which cannot tell us that it fired
        self._env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        if self._env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = self._env

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None or not self.fitting or signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            self.signal = self.signal or name
            self.at = self.at or time.time()
            raise KeyboardInterrupt(name)  # a second signal, or none of Tune's loop to stop: stop now
        self.signal, self.at = name, time.time()
        self.out(f"{name} received: stopping the sweep; the trials it cuts short are recorded as interrupted and "
                 "`--resume` continues them (send it again to stop at once)")  # fmt: skip
        os.kill(os.getpid(), signal.SIGUSR1)  # Ray Tune's graceful stop


def _mark_interrupted(trials: Sequence[PlannedTrial], sig: str, at: float | None) -> None:
    """Record ``interrupted`` (and the signal) in the meta.json of every started trial the stop cut short: those still
    ``running`` or ``evaluating``, and those that ended (failed or interrupted) after the signal arrived."""
    from datetime import datetime, timezone

    since = datetime.fromtimestamp(at or time.time(), timezone.utc).isoformat(timespec="seconds")
    for t in trials:
        meta = read_meta(t.run_dir)
        status = meta.get("status")
        cut = status in ("running", "evaluating") or (
            status in ("failed", "interrupted") and str(meta.get("finished") or "") >= since
        )
        if meta and cut:
            if "iterations_done" not in meta:  # the worker ended before writing it: the progress rows say
                progress = t.run_dir / rundir.PROGRESS_FILE
                meta["iterations_done"] = len(rundir.read_progress(t.run_dir)) if progress.exists() else 0
            meta.update(status="interrupted", signal=sig, failure_reason=f"interrupted: the sweep received {sig}",
                        finished=meta.get("finished") if status != "running" else since)  # fmt: skip
            rundir.write_meta(t.run_dir, meta)


def summarize(
    trials: Sequence[PlannedTrial],
    errors: dict[int, BaseException],
    states: dict[int, str],
    seconds: float,
    out: Callable[[str], None] = print,
    interrupted_by: str | None = None,
) -> dict[str, Any]:
    """Print the end-of-sweep summary from every trial's ``meta.json`` (and Tune's error where there is one).

    Trials fall in four groups: completed; interrupted (``meta.json`` says so: the sweep, or the trial, received a
    signal); not started (no ``meta.json``) when the sweep was interrupted; failed (everything else, with the
    reason). Returns their counts and ``failed`` / ``interrupted``: label -> reason."""
    failed: dict[str, str] = {}
    interrupted: dict[str, str] = {}
    not_started: list[str] = []
    completed = 0
    for i, t in enumerate(trials):
        meta = read_meta(t.run_dir)
        if meta.get("status") == "completed" and i not in errors:
            completed += 1
            continue
        if meta.get("status") == "interrupted":
            done = f"iteration {meta.get('iterations_done', '?')} of {meta.get('iterations', '?')}"
            interrupted[t.label] = f"{done}, {meta.get('signal') or 'signal not recorded'}"
            continue
        if not meta and interrupted_by is not None:
            not_started.append(t.label)
            continue
        reason = meta.get("failure_reason")
        if not reason and i in errors:
            reason = str(errors[i]).strip().splitlines()[-1][:300] if str(errors[i]).strip() else repr(errors[i])
        failed[t.label] = f"{meta.get('status', 'not started')}: {reason or 'no reason recorded'}"
    skipped = sum(1 for s in states.values() if s == "completed")
    head = f"sweep interrupted by {interrupted_by}" if interrupted_by else "sweep finished"
    out(
        f"{head} in {seconds:.0f}s: {completed}/{len(trials)} trials completed ({skipped} of them earlier), "
        f"{len(interrupted)} interrupted, {len(not_started)} not started, {len(failed)} failed"
    )
    for label, reason in interrupted.items():
        out(f"  INTERRUPTED {label}: {reason}")
    for label in not_started:
        out(f"  NOT STARTED {label}")
    for label, reason in failed.items():
        out(f"  FAILED {label}: {reason}")
    if failed or interrupted or not_started:
        out("  (rerun with --resume to continue the trials that did not complete; finished ones are kept)")
    return {"completed": completed, "failed": failed, "interrupted": interrupted, "not_started": not_started,
            "interrupted_by": interrupted_by, "skipped": skipped, "seconds": seconds}  # fmt: skip


__all__ = [
    "SweepError",
    "experiment_dir",
    "format_plan",
    "init_ray",
    "preflight",
    "read_meta",
    "run_sweep",
    "summarize",
    "sweep_trainable",
    "trial_state",
]
