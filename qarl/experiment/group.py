"""K seeds of one (task, method) in one process, their gradient steps batched (issue 10, item 3).

:func:`run_group` runs K ordinary trials (:func:`qarl.experiment.trial.run_trial`, one per seed and run directory) in
lock-step and performs the gradient steps that fall due at the same time as one batched step
(:class:`~qarl.sac.grouped.GroupedSACUpdate`). Each seed writes its own run directory (docs/results.md:
``config.yaml``, ``meta.json``, ``progress.parquet``, ``checkpoints/``, ``eval.parquet``) that loads and resumes like a
single-seed run's, and every seed's parameters follow its single-seed run to float rounding
(``tests/qarl/test_grouped.py``).

How the seeds are kept apart:

- **Each seed's trial runs in its own thread, as a coroutine.** Exactly one thread runs at any time: the coordinator
  (the caller's thread) hands control to a seed's thread and waits until it hands it back, which happens when the seed
  asks for a gradient step (``QSAC.train``, through the ``update_delegate`` that the group sets on every model the
  trial trains: ``run_trial(configure_learner=...)``) or ends. Everything else (games, acting, buffers, the method's
  curriculum, evaluation, diagnostics, checkpoints) is ``run_trial``'s own code, unchanged; threads are only a way
  to suspend it in the middle of an episode.
- **Each seed has its own global random streams.** The single-seed trainer draws from numpy's and torch's *global*
  generators (it seeds them in ``TwoPlayerTrainer.__init__``; stable-baselines3 samples minibatches with
  ``np.random.randint`` and actions with torch; checkpoints save both). A :class:`SeedStream` holds one seed's two
  generator states and swaps them in around everything that seed does: its thread's turns, and its share of a batched
  step (sampling its minibatch, drawing its noise). So every seed sees exactly the stream of its single-seed run, and
  its checkpoints hold that stream's state.
- **Batching.** The coordinator runs every seed until it asks for a step or ends; the pending requests are grouped by
  :func:`~qarl.sac.grouped.group_key` (same class, shapes and settings) and each group takes one batched step.
  The update schedule is deterministic in env steps, so where episodes never end early (e.g. dmc/cheetah-run,
  HalfCheetah) all K seeds ask for the same player's step at the same time; where they do (Hopper, Walker2d), the
  seeds drift apart and a step batches those that are due (a smaller group, rebound to its own stacked layout).
  Models the batched step does not support (``fast_update: false``, other learners) train inline, as in a single run.

Seeds that fail (a non-finite loss) are recorded as failed by ``run_trial`` and leave the group; the others go on.
Other exceptions end their seed's trial as ``run_trial`` records them; :func:`run_group` raises the first of them once
the other seeds have finished. Ctrl-C or SIGTERM (as ``KeyboardInterrupt`` in the caller's thread) marks every seed
that was waiting for a step as interrupted and is re-raised.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from qarl.experiment import rundir
from qarl.experiment.trial import TrialConfig, TrialError, run_trial
from qarl.sac.grouped import GroupedSACUpdate, group_key
from qarl.sac.learner import QSAC

_MAX_LAYOUTS = 6  # grouped layouts kept per run (one per player when the seeds stay aligned)
_STOP_WAIT_S = 10.0  # on Ctrl-C, how long to wait for the running seed to reach a point where it can stop


class SeedStream:
    """One seed's numpy and torch global-generator states; ``with stream:`` makes them the global ones.

    Entering saves the current global states and installs this seed's; leaving stores the advanced states back here
    and restores the saved ones, so streams nest and never leak into each other or into the caller.
    """

    def __init__(self) -> None:
        self.numpy: Any = np.random.get_state()
        self.torch: th.Tensor = th.get_rng_state()
        self._outer: list[tuple[Any, th.Tensor]] = []

    def __enter__(self) -> SeedStream:
        self._outer.append((np.random.get_state(), th.get_rng_state()))
        np.random.set_state(self.numpy)
        th.set_rng_state(self.torch)
        return self

    def __exit__(self, *exc: object) -> None:
        self.numpy, self.torch = np.random.get_state(), th.get_rng_state()
        outer_numpy, outer_torch = self._outer.pop()
        np.random.set_state(outer_numpy)
        th.set_rng_state(outer_torch)


class _SeedThread:
    """One seed's trial in a thread that runs only while the coordinator waits for it."""

    def __init__(self, index: int, job: Callable[[], dict[str, Any]]) -> None:
        self.index = index
        self.stream = SeedStream()
        self.request: tuple[QSAC, int, Any] | None = None  # (model, batch size, group key) of the step it waits for
        self.deliver: BaseException | None = None  # raised in the thread when it resumes (a failed step, a stop)
        self.started = self.done = False
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self._job = job
        self._keys: weakref.WeakKeyDictionary[QSAC, tuple[int, bool, Any]] = weakref.WeakKeyDictionary()
        self._wake = threading.Semaphore(0)
        self._back = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._main, name=f"qarl-group-seed-{index}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        self._wake.acquire()
        try:
            if self.deliver is None:
                self.result = self._job()
        except BaseException as exc:  # handed to the coordinator, which decides what to raise
            self.error = exc
        finally:
            self.done = True
            self._back.release()

    def _key(self, model: QSAC, batch_size: int) -> Any:
        cached = self._keys.get(model)
        if cached is None or cached[:2] != (batch_size, model.fast_update):
            cached = (batch_size, model.fast_update, group_key(model, batch_size))
            self._keys[model] = cached
        return cached[2]

    def attach(self, model: QSAC) -> None:
        """Route the gradient steps of a model this seed's trial trains through the group."""
        model.update_delegate = self._train

    def _train(self, model: QSAC, gradient_steps: int, batch_size: int) -> bool:
        """``QSAC.train`` in this thread: wait while the coordinator takes the step (batched with other seeds)."""
        key = self._key(model, batch_size) if gradient_steps == 1 else None
        if key is None:
            return False  # QSAC.train takes the steps here, as in a single-seed run
        self.request = (model, batch_size, (key, model.critic_only()))  # critic-only steps group among themselves
        self._back.release()
        self._wake.acquire()
        self.request = None
        if self.deliver is not None:
            raise self.deliver
        return True

    def run(self) -> None:
        """Let the thread run (with this seed's streams) until it asks for a step or ends."""
        with self.stream:
            self.started = True
            self._wake.release()
            try:
                self._back.acquire()
            except KeyboardInterrupt as exc:  # stop it at its next step request (waiting a while for it), then re-raise
                self.deliver = type(exc)(*exc.args)  # the same kind (Interrupted keeps the signal's name)
                self._back.acquire(timeout=_STOP_WAIT_S)
                raise

    def close(self, exc: BaseException) -> None:
        """End a thread that waits for a step (or has not started) by raising ``exc`` in it; nothing if it has ended."""
        if not self.done and (self.request is not None or not self.started):
            self.deliver = exc
            self.run()


class _Coordinator:
    """Runs the seeds' threads in turn and takes their gradient steps, batched."""

    def __init__(self, workers: list[_SeedThread]) -> None:
        self.workers = workers
        self.layouts: OrderedDict[tuple[int, ...], GroupedSACUpdate] = OrderedDict()
        self.batched_steps = 0
        self.seed_steps = 0

    def run(self) -> None:
        active = list(self.workers)
        while active:
            for w in active:
                w.run()
            active = [w for w in active if not w.done]
            groups: dict[Any, list[_SeedThread]] = {}
            for w in active:  # every active seed now waits for a gradient step
                assert w.request is not None
                groups.setdefault(w.request[2], []).append(w)
            for members in groups.values():
                self._step(members, members[0].request[1])  # type: ignore[index]

    def _layout(self, models: list[QSAC], batch_size: int) -> GroupedSACUpdate:
        key = tuple(id(m) for m in models)
        layout = self.layouts.get(key)
        if layout is None or not layout.is_current(batch_size):
            layout = GroupedSACUpdate(models, batch_size)  # (re)binds these models' parameters to a stacked layout
            self.layouts[key] = layout
        self.layouts.move_to_end(key)
        while len(self.layouts) > _MAX_LAYOUTS:
            self.layouts.popitem(last=False)
        return layout

    def _step(self, members: list[_SeedThread], batch_size: int) -> None:
        models = [w.request[0] for w in members if w.request is not None]
        try:
            layout = self._layout(models, batch_size)
            critic_only = members[0].request[2][1]  # type: ignore[index]
            actor, critic, temp, alpha = layout.step([w.stream for w in members], critic_only=critic_only)
        except Exception as exc:  # a failed step fails the trials that asked for it, in their own threads
            for w in members:
                w.deliver = exc
            return
        for i, model in enumerate(models):  # what QSAC.train records after its step
            model._n_updates += 1
            model.record_train([actor[i]], [critic[i]], [temp[i]] if temp is not None else [], [alpha[i]])
        self.batched_steps += 1
        self.seed_steps += len(models)


def run_group(
    configs: Sequence[TrialConfig | None],
    run_dirs: Sequence[str | os.PathLike],
    *,
    resume: bool | Sequence[bool] = False,
    iterations: int | None = None,
    log: Callable[[str], None] | None = None,
    stop_after: int | None = None,
    per_seed: Sequence[Mapping[str, Any]] | None = None,
    **trial_kwargs: Any,
) -> list[dict[str, Any]]:
    """Run (or with ``resume=True`` continue) K trials of one (task, method) together; return their ``meta.json`` dicts.

    ``configs[k]`` and ``run_dirs[k]`` are what :func:`~qarl.experiment.trial.run_trial` takes for one trial (a config
    may be None on resume: the saved ``config.yaml`` is used); ``resume`` (one flag, or one per seed), ``iterations``,
    ``log`` and ``stop_after`` apply to every seed. Further keyword arguments go to every seed's ``run_trial`` and
    ``per_seed[k]`` to seed k's only (e.g. a Ray sweep's per-iteration callback): such callbacks run in that seed's
    thread, one at a time, with that seed's random streams installed. The caller's global numpy/torch generator
    states are restored at the end.
    """
    if len(configs) != len(run_dirs) or not configs:
        raise TrialError(f"need one run directory per config, got {len(configs)} configs and {len(run_dirs)} dirs")
    dirs = [Path(d) for d in run_dirs]
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise TrialError("the run directories of a group must differ")
    resumes = [bool(resume)] * len(configs) if isinstance(resume, bool) else [bool(r) for r in resume]
    if len(resumes) != len(configs):
        raise TrialError(f"resume needs one entry per config, got {len(resumes)}")
    given = [c for c in configs if c is not None]
    if any(c is None and not r for c, r in zip(configs, resumes, strict=True)):
        raise TrialError("a config is needed for every trial that is started (None only on resume)")
    if len({(c.task, c.method) for c in given}) > 1:
        raise TrialError("a group trains one (task, method): " + ", ".join(f"{c.task} {c.method}" for c in given))
    if len({c.seed for c in given}) != len(given):
        raise TrialError(f"the seeds of a group must differ, got {[c.seed for c in given]}")
    if per_seed is not None and len(per_seed) != len(configs):
        raise TrialError(f"per_seed needs one entry per config, got {len(per_seed)}")
    for d, resume_d in zip(dirs, resumes, strict=True):  # run_trial checks these too, but then the others would run
        if resume_d and not (d / rundir.CONFIG_FILE).exists():
            raise TrialError(f"nothing to resume: {d / 'config.yaml'} does not exist")
        if not resume_d and ((d / rundir.CONFIG_FILE).exists() or (d / rundir.PROGRESS_FILE).exists()):
            raise TrialError(
                f"{d} already holds a run; pass --resume to continue it, or choose another --out or --experiment"
            )
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def job(k: int) -> Callable[[], dict[str, Any]]:
        kwargs = {**trial_kwargs, **(per_seed[k] if per_seed is not None else {})}
        return lambda: run_trial(
            configs[k],
            run_dir=dirs[k],
            resume=resumes[k],
            iterations=iterations,
            log=log,
            stop_after=stop_after,
            configure_learner=workers[k].attach,
            **kwargs,
        )

    caller = SeedStream()
    workers = [_SeedThread(k, job(k)) for k in range(len(configs))]
    coordinator = _Coordinator(workers)
    try:
        with caller:  # the caller's generators are untouched by the group
            coordinator.run()
    except BaseException as exc:
        stop = exc if isinstance(exc, KeyboardInterrupt) else RuntimeError(f"the group stopped: {exc!r}")
        for w in workers:  # those waiting for a step end their trials, which run_trial records
            try:
                w.close(stop)
            except BaseException:  # pragma: no cover - best effort while tearing down
                pass
        raise
    log(
        f"group of {len(workers)} seeds: {coordinator.seed_steps} gradient steps taken in {coordinator.batched_steps} "
        "batched steps"
    )
    errors = [w.error for w in workers if w.error is not None]
    if errors:
        raise errors[0]
    return [w.result or {} for w in workers]


__all__ = ["SeedStream", "run_group"]
