"""``qarl bench sweep``: how a sweep scales on this machine, measured through the real ``qarl sweep`` path.

Two sweeps on the embedded local Ray, one after the other, each trial with 1 CPU (1 torch thread):

- one trial alone (seed 0);
- two trials at once (seeds 0 and 1).

Throughput is the trials' env steps divided by the wall-clock span from the first iteration's start to the last
iteration's end (both read from the clocks reported with every iteration); the ratio of the two sweeps is the
scaling. The start-up overhead of a trial is the time from `Tuner.fit` (driver clock) to the start of its first
iteration: worker process start, imports, building the games and networks. Ray's own start-up (``ray.init``) is only
in the sweep wall-time column and is paid once per sweep.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from qarl import provenance
from qarl.experiment.registry import get_method
from qarl.sac.learner import SACConfig
from qarl.sweep.config import Resources, SweepConfig, plan_trials
from qarl.sweep.launch import run_sweep


def _sweep(storage: Path, name: str, task: str, algo: str, seeds: tuple[int, ...], iterations: int, horizon: int):
    return SweepConfig(
        name=name,
        tasks=(task,),
        methods=(algo,),
        seeds=seeds,
        scale="small",  # the paper's networks (3x256) and batch (256): updates dominate, as in real sweeps
        overrides={
            "loop": {"iterations": iterations, "horizon": horizon, "eval_episodes": 0},
            # updates from the first iteration on, so every iteration does the same kind of work
            **{player: {"learning_starts": horizon} for player in _players(algo)},
        },
        resources=Resources(cpus=1),
        eval={"enabled": False},
        storage=str(storage),
        max_concurrent=len(seeds),
        max_failures=0,
    )


def _players(algo: str) -> list[str]:
    """The method's SAC players (config fields holding a SACConfig)."""
    cls = get_method(algo).config_cls
    return [f.name for f in dataclasses.fields(cls) if f.default_factory is SACConfig]  # type: ignore[misc]


def _measure(summary: dict[str, Any]) -> dict[str, Any]:
    """Steps, training span and start-up overhead of each trial from the sweep's events."""
    per_trial = {}
    for label, ev in summary["events"].items():
        rows = [r for r in ev["results"] if "clock" in r]
        first_start = rows[0]["clock"] - rows[0]["wall_time"]
        per_trial[label] = {
            "steps": int(rows[-1]["env_steps"]),
            "start": first_start,
            "end": rows[-1]["clock"],
            # every trial of the benchmark is launched when Tune begins: this includes the Ray worker's start
            "overhead": first_start - summary["fit_started"],
            "overhead_after_tune_start": first_start - ev["launched"],
        }
    span = max(t["end"] for t in per_trial.values()) - min(t["start"] for t in per_trial.values())
    steps = sum(t["steps"] for t in per_trial.values())
    return {"trials": per_trial, "steps": steps, "span": span, "steps_per_s": steps / span}


def bench_sweep(
    task: str = "dmc/cartpole-balance",
    algo: str = "sac",
    iterations: int = 3,
    horizon: int = 200,
    out: str | os.PathLike[str] | None = "results/benchmarks/sweep.md",
) -> dict[str, Any]:
    """Run both sweeps, print the table and write it, below :func:`qarl.provenance.header`, to ``out``."""
    head = provenance.header("Sweep scaling on the embedded local Ray")
    print(head, flush=True)
    load_before = provenance.load_average()
    results = {}
    with tempfile.TemporaryDirectory(prefix="qarl-bench-sweep-") as tmp:
        for n in (1, 2):
            sweep = _sweep(Path(tmp), f"c{n}", task, algo, tuple(range(n)), iterations, horizon)
            trials = plan_trials(sweep)
            t0 = time.perf_counter()
            summary = run_sweep(sweep, trials, out=lambda m: print(m, file=sys.stderr, flush=True))
            if summary["failed"]:
                raise RuntimeError(f"benchmark trials failed: {summary['failed']}")
            results[n] = {**_measure(summary), "sweep_seconds": time.perf_counter() - t0}
    load_after = provenance.load_average()
    one, two = results[1], results[2]
    ratio = two["steps_per_s"] / one["steps_per_s"]
    overheads = [t["overhead"] for r in results.values() for t in r["trials"].values()]
    lines = [
        f"Workload per trial: {task}, {algo}, scale small (3x256 networks, batch 256), {iterations} iterations of "
        f"horizon {horizon}, updates from the first iteration, no per-iteration or end-of-trial evaluation; "
        "1 CPU and 1 torch thread per trial.",
        "",
        "| trials at once | env steps | training span (s) | total env steps/s | sweep wall time incl. Ray start (s) |",
        "|---|---|---|---|---|",
    ]
    for n, r in results.items():
        lines.append(f"| {n} | {r['steps']} | {r['span']:.1f} | {r['steps_per_s']:.1f} | {r['sweep_seconds']:.1f} |")
    lines += [
        "",
        "| trials at once | trial | start-up overhead (s) | of which after Tune's trial start (s) | first iteration "
        "starts (s) | last iteration ends (s) |",
        "|---|---|---|---|---|---|",
    ]
    for n, r in results.items():
        t0 = min(t["start"] for t in r["trials"].values())
        for label, t in r["trials"].items():
            lines.append(
                f"| {n} | {label} | {t['overhead']:.1f} | {t['overhead_after_tune_start']:.1f} "
                f"| {t['start'] - t0:.1f} | {t['end'] - t0:.1f} |"
            )
    lines += [
        "",
        f"**Scaling, 2 vs 1 concurrent trials: {ratio:.2f}x** (total env steps/s; ideal 2.0 on 2 free cores).",
        "",
        "Per-trial start-up overhead (from `Tuner.fit` to the trial's first iteration: Tune's set-up, the Ray "
        "worker's start, imports, games and networks; `ray.init` is not included): "
        f"median {statistics.median(overheads):.1f}s, range {min(overheads):.1f}-{max(overheads):.1f}s over "
        f"{len(overheads)} trials.",
        "",
        f"Load average (1, 5, 15 min) before {load_before}, after {load_after}. The machine is shared with other "
        "jobs, so a load above 0 means the two trials did not have the cores to themselves; one measurement, not a "
        "distribution.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(head + "\n\n" + text)
        print(f"wrote {out}", file=sys.stderr)
    return {"results": results, "ratio": ratio, "overheads": overheads}


__all__ = ["bench_sweep"]
