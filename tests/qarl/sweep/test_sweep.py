"""Sweeps on Ray Tune: sweep files, ``qarl sweep`` end to end, multi-node, and fault tolerance.

Every Ray started here is shut down even when a test fails: ``qarl sweep`` runs as a subprocess in its own session
(whatever is left of it is killed by process group), and the multi-node cluster is shut down in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from qarl import cli
from qarl.config import ConfigError, configs_dir, load_yaml
from qarl.experiment.trial import run_trial
from qarl.sweep import embedded
from qarl.sweep.config import load_sweep, plan_trials
from qarl.sweep.launch import _mark_interrupted, read_meta, summarize, trial_state

TIMING_COLUMNS = ["wall_time", "steps_per_s"]
SWEEPS = sorted((configs_dir() / "sweeps").glob("*.yaml"))


def _progress(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "progress.parquet").drop(columns=TIMING_COLUMNS)


def _write_sweep(tmp_path: Path, name: str = "t", **fields) -> Path:
    """The real smoke sweep, shrunk or changed by ``fields`` (None removes a key), with storage in tmp_path."""
    data = load_yaml(configs_dir() / "sweeps" / "smoke.yaml")
    data.update(name=name, storage=str(tmp_path / "store"))
    for key, value in fields.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path = tmp_path / f"{name.replace('/', '_')}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines()) if int(s) == sid]


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL what is left of a subprocess started with ``start_new_session=True`` (its Ray included)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for _ in range(50):
        pids = _session_pids(proc.pid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _sweep_proc(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen(
        [sys.executable, "-m", "qarl", "sweep", *args], env=env, start_new_session=True, text=True, **kw
    )


def _run_sweep(args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``qarl sweep`` to its end; ``.leftover`` lists its processes still alive 10 s after it exited."""
    proc = _sweep_proc(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    leftover: list[int] = []
    try:
        out, err = proc.communicate(timeout=timeout)
        deadline = time.time() + 10
        while (leftover := _session_pids(proc.pid)) and time.time() < deadline:
            time.sleep(0.2)
    finally:
        _kill_session(proc)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    result.leftover = leftover  # type: ignore[attr-defined]
    return result


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the sweep ended before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- sweep files -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_file_plans(path, tmp_path):
    sweep = load_sweep(path, storage=str(tmp_path / "store"))
    trials = plan_trials(sweep, path)
    assert len(trials) == len(sweep.tasks) * len(sweep.methods) * len(sweep.seeds) >= 1
    assert all(t.config.loop.torch_threads == sweep.resources.torch_threads for t in trials)
    assert not (tmp_path / "store").exists()


def test_smoke_sweep_file_is_2_tasks_2_methods_2_seeds_at_smoke_scale():
    sweep = load_sweep(configs_dir() / "sweeps" / "smoke.yaml")
    assert (len(sweep.tasks), len(sweep.methods), len(sweep.seeds), sweep.scale) == (2, 2, 2, "smoke")


def test_tune_parameter_space_carries_task_method_and_seed(tmp_path):
    from ray.tune.search.variant_generator import generate_variants

    from qarl.sweep.launch import _param_space, group_trials

    path = configs_dir() / "sweeps" / "smoke.yaml"
    trials = plan_trials(load_sweep(path, storage=str(tmp_path)), path)
    for groups in (group_trials(trials, 1), group_trials(trials, 2)):
        resolved = [config for _, config in generate_variants(_param_space(trials, groups))]
        assert [c["index"] for c in resolved] == list(range(len(groups)))
        for c in resolved:
            members = [trials[i] for i in groups[c["index"]]]
            assert (c["task"], c["method"]) == (members[0].task, members[0].method)
            assert c["seed"] == ",".join(str(t.seed) for t in members)


def test_overrides_reach_every_trial(tmp_path):
    path = _write_sweep(tmp_path, overrides={"loop.horizon": 30, "loop": {"iterations": 4}}, checkpoint_every=2,
                        resources={"cpus": 2.5})  # fmt: skip
    trials = plan_trials(load_sweep(path), path)
    for t in trials:
        assert (t.config.loop.horizon, t.config.loop.iterations, t.config.loop.checkpoint_every) == (30, 4, 2)
        assert t.config.loop.torch_threads == 2
    qarl_trial = next(t for t in trials if t.method == "qarl")
    assert qarl_trial.config.algo.teacher.update_every == 4  # method_overrides
    assert qarl_trial.run_dir == tmp_path / "store" / "t" / qarl_trial.task / "qarl" / f"seed={qarl_trial.seed}"


INVALID = [
    ({"tasks": ["dmc/cartpol-balance"]}, "tasks[0]: unknown task id 'dmc/cartpol-balance'"),
    ({"tasks": ["dmc/cartpol-balance"]}, "did you mean 'dmc/cartpole-balance'"),
    ({"methods": ["qarl", "rarll"]}, "methods[1]: unknown method 'rarll'; did you mean 'rarl'"),
    ({"resources": {"cpus": 0}}, "resources: cpus must be a finite number > 0, got 0.0"),
    ({"resources": {"cpus": 1, "gpus": -1}}, "resources: gpus must be a finite number >= 0"),
    ({"resources": {"gpus": 1.5}}, "gpus above 1 must be a whole number"),
    ({"resources": {"cpu": 1}}, "resources.cpu: unknown key (did you mean 'cpus'?)"),
    ({"seeds": [0, 1, 0]}, "seeds: duplicate entries [0]"),
    ({"seeds": [-1]}, "seeds[0]: expected a seed >= 0, got -1"),
    ({"seeds": "0,1"}, "seeds: expected list of int, got"),
    ({"tasks": []}, "tasks: must not be empty"),
    ({"methods": None}, "methods: required"),
    ({"seed": [0]}, "seed: unknown key (did you mean 'seeds'?)"),
    ({"scale": "tiny"}, "scale: expected one of 'smoke', 'small', 'paper', got str 'tiny'"),
    ({"max_concurrent": 0}, "max_concurrent: must be at least 1, got 0"),
    ({"max_failures": -2}, "max_failures: must be >= 0"),
    ({"checkpoint_every": True}, "checkpoint_every: expected int or null, got"),
    ({"name": "a/b"}, "name: expected a folder name"),
    ({"overrides": {"loop.horizon": "x"}}, ": overrides.loop.horizon: expected int, got str 'x'"),
    ({"overrides": {"loop.horizn": 5}}, ": overrides.loop.horizn: unknown key (did you mean 'horizon'?)"),
    ({"overrides": {"seed": 3}}, "overrides.seed: set it with the sweep's `seeds`"),
    ({"overrides": {"loop.torch_threads": 2}}, "overrides.loop.torch_threads: set by resources.cpus"),
    ({"overrides": {"loop.iterations": 2, "loop": {"iterations": 3}}}, "overrides.loop.iterations: given twice"),
    ({"overrides": ["loop.horizon=5"]}, "overrides: expected a mapping, got list"),
    ({"method_overrides": {"sac": {"loop.horizon": 5}}}, "method_overrides.sac: not one of the sweep's methods"),
    ({"method_overrides": {"qarl": {"teacher.update_evry": 5}}}, "method_overrides.qarl.teacher.update_evry: unknown"),
    ({"method_overrides": {"rarl": {"teacher.update_every": 5}}}, "method_overrides.rarl.teacher: unknown key"),
    ({"eval": {"nominal_episode": 3}}, "eval.nominal_episode: unknown key (did you mean 'nominal_episodes'?)"),
    ({"storage": "s3://bucket/runs"}, "object-store URIs are not supported"),
]


@pytest.mark.parametrize(("fields", "message"), INVALID, ids=[m[:40] for _, m in INVALID])
def test_invalid_sweep_file_is_one_line_error_and_writes_nothing(tmp_path, capsys, fields, message):
    path = _write_sweep(tmp_path, **fields)
    rc = cli.main(["sweep", str(path)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"qarl sweep: error: {path}: ")
    assert not (tmp_path / "store").exists()


def test_unwritable_or_file_storage_and_bad_yaml_are_refused(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    cases = [
        (_write_sweep(tmp_path, name="f", storage=str(tmp_path / "afile" / "runs")), "afile is not a folder"),
        (_write_sweep(tmp_path, name="g", storage=str(tmp_path / "afile")), "afile is not a folder"),
    ]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("name: x\ntasks: [dmc/cartpole-balance\n")
    cases.append((bad_yaml, "invalid YAML"))
    cases.append((tmp_path / "missing.yaml", "no such file"))
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((_write_sweep(tmp_path, name="l", storage=str(locked / "runs")), "is not writable"))
    for path, message in cases:
        rc = cli.main(["sweep", str(path)])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["afile", "bad.yaml", "f.yaml", "g.yaml", *(["l.yaml", "locked"] if os.geteuid() != 0 else [])]
    )


def test_bad_sweep_file_exits_2_without_traceback(tmp_path):
    path = _write_sweep(tmp_path, methods=["qarl", "rarll"])
    proc = subprocess.run([sys.executable, "-m", "qarl", "sweep", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "did you mean 'rarl'" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("auth_mode", [None, "token"])
def test_unreachable_cluster_is_one_line_error_with_a_hint_and_writes_nothing(tmp_path, capsys, monkeypatch, auth_mode):
    import ray

    def refuse(address=None, **kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {address}\nmore detail")

    monkeypatch.setattr(ray, "init", refuse)
    if auth_mode is None:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    else:
        monkeypatch.setenv("RAY_AUTH_MODE", auth_mode)
    path = _write_sweep(tmp_path)
    rc = cli.main(["sweep", str(path), "--address", "10.0.0.9:6379"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "could not join the Ray cluster at 10.0.0.9:6379 (Failed to connect to Ray cluster at 10.0.0.9:6379)" in err
    assert ("set RAY_AUTH_MODE=token" in err) == (auth_mode is None), err
    assert not (tmp_path / "store").exists()


def test_dry_run_prints_the_trials_and_writes_nothing(tmp_path, capsys):
    path = _write_sweep(tmp_path, resources={"cpus": 1.5, "gpus": 0.5}, max_concurrent=3)
    assert cli.main(["sweep", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count(" new ") == 8 and "dmc/cartpole-balance" in out and "gym/InvertedPendulum-v5" in out
    assert "resources per Ray trial: 1.5 CPU, 0.5 GPU (torch threads 1)" in out
    assert "all Ray trials to run: 12 CPU, 4 GPU; at most 3 at once" in out
    assert not (tmp_path / "store").exists()


def test_existing_runs_need_resume_and_the_same_config(tmp_path, capsys):
    path = _write_sweep(tmp_path)
    trial = plan_trials(load_sweep(path), path)[0]
    trial.run_dir.mkdir(parents=True)
    (trial.run_dir / "config.yaml").write_text(yaml.safe_dump(trial.config.to_dict()))
    assert cli.main(["sweep", str(path)]) == 2
    assert "1 of 8 trials already have run directories" in capsys.readouterr().err
    assert cli.main(["sweep", str(path), "--resume", "--dry-run"]) == 0
    assert " restart " in capsys.readouterr().out
    changed = _write_sweep(tmp_path, overrides={"loop.iterations": 2, "loop.horizon": 30})
    assert cli.main(["sweep", str(changed), "--resume"]) == 2
    assert "was started with another config (differs in ['loop'])" in capsys.readouterr().err
    longer = _write_sweep(tmp_path, overrides={"loop.iterations": 5})  # more iterations: a run may be extended
    assert cli.main(["sweep", str(longer), "--resume", "--dry-run"]) == 0


# -- Ray ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def smoke_sweep(tmp_path) -> Iterator[Path]:
    yield _write_sweep(tmp_path, name="smoke")


def test_smoke_sweep_end_to_end_on_embedded_ray(tmp_path, smoke_sweep):
    """2 tasks x 2 methods x 2 seeds from `qarl sweep` -> 8 complete run directories."""
    t0 = time.time()
    proc = _run_sweep([str(smoke_sweep)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "embedded local Ray" in proc.stdout and "8/8 trials completed" in proc.stdout
    assert "RUNNING iter 2/2 | return" in proc.stdout
    sweep = load_sweep(smoke_sweep)
    trials = plan_trials(sweep, smoke_sweep)
    for t in trials:
        files = sorted(p.name for p in t.run_dir.iterdir())
        expected = {"config.yaml", "meta.json", "progress.parquet", "progress.csv", "eval.parquet", "checkpoints"}
        assert expected | {"train.log", "tensorboard"} <= set(files), files
        assert "iter 2/2" in (t.run_dir / "train.log").read_text()
        meta = read_meta(t.run_dir)
        assert meta["status"] == "completed" and meta["iterations_done"] == 2
        assert meta["node_id"] and meta["hostname"] and meta["worker_pid"] != os.getpid()
        assert len(pd.read_parquet(t.run_dir / "progress.parquet")) == 2
        assert trial_state(t) == "completed"
    assert len({read_meta(t.run_dir)["node_id"] for t in trials}) == 1
    # a trial of the sweep is the same run as `run_trial` of its config in this process
    t = trials[0]
    direct = tmp_path / "direct"
    run_trial(t.config, run_dir=direct, log=lambda m: None)
    pd.testing.assert_frame_equal(_progress(direct), _progress(t.run_dir), check_exact=True)
    assert proc.leftover == [], "the embedded Ray must be shut down when the sweep ends"
    print(f"smoke sweep: {time.time() - t0:.1f}s")


# These three take 50-120 s each on the slower CPUs and run with -m slow; the default run keeps the end-to-end sweep
# and the SIGKILL of a trial worker.
@pytest.mark.slow
def test_seeds_per_trial_groups_seeds_in_one_process(tmp_path):
    """seeds_per_trial: 2 -> one Ray trial trains both seeds (gradient steps batched), one run directory each, and
    each seed's progress equals its single-seed run's up to float rounding of the batched step."""
    path = _write_sweep(
        tmp_path, name="grouped", tasks=["dmc/cartpole-balance"], methods=["sac"], seeds=[0, 1], seeds_per_trial=2,
        overrides={"loop.iterations": 2}, eval={"enabled": False}, method_overrides=None,
    )  # fmt: skip
    proc = _run_sweep([str(path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2/2 trials completed" in proc.stdout and "seeds=0,1" in proc.stdout
    trials = plan_trials(load_sweep(path), path)
    metas = [read_meta(t.run_dir) for t in trials]
    assert all(m["status"] == "completed" and m["seeds_per_trial"] == 2 for m in metas)
    assert metas[0]["worker_pid"] == metas[1]["worker_pid"]  # one process
    for t in trials:
        direct = tmp_path / f"direct{t.seed}"
        run_trial(t.config, run_dir=direct, log=lambda m: None)
        a, b = _progress(direct), _progress(t.run_dir)
        assert int(b["updates_protagonist"].iloc[-1]) > 0  # gradient steps were taken (and batched)
        pd.testing.assert_frame_equal(a, b, rtol=1e-4)
    assert proc.leftover == []


def test_sigkill_of_a_trial_worker_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL the Ray worker running a trial: Tune retries it, it resumes, and progress equals an undisturbed run."""
    path = _write_sweep(
        tmp_path, name="kill", tasks=["dmc/cartpole-balance"], methods=["rarl"], seeds=[2],
        overrides={"loop.iterations": 6, "loop.horizon": 120}, eval={"enabled": False}, checkpoint_every=2,
        method_overrides=None, max_failures=2,
    )  # fmt: skip
    (trial,) = plan_trials(load_sweep(path), path)
    proc = _sweep_proc([str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: (trial.run_dir / "checkpoints" / "iter_000002.pt").exists(), proc, "checkpoint 2")
        victim = read_meta(trial.run_dir)["worker_pid"]
        os.kill(victim, signal.SIGKILL)
        killed_rows = len(pd.read_parquet(trial.run_dir / "progress.parquet"))
        out, err = proc.communicate(timeout=240)
    finally:
        _kill_session(proc)
    assert proc.returncode == 0, err[-3000:]
    assert killed_rows < 6
    assert "retrying from its last checkpoint" in out
    meta = read_meta(trial.run_dir)
    assert meta["status"] == "completed" and meta["resumed"] and meta["worker_pid"] != victim
    assert "resuming" in (trial.run_dir / "train.log").read_text()
    direct = tmp_path / "direct"
    run_trial(trial.config, run_dir=direct, log=lambda m: None)
    pd.testing.assert_frame_equal(_progress(direct), _progress(trial.run_dir), check_exact=True)


@pytest.mark.slow
def test_driver_kill_then_resume_reruns_no_finished_trial(tmp_path):
    """SIGKILL `qarl sweep` mid-sweep; `qarl sweep --resume` finishes it without touching completed trials, and ends
    the processes the killed driver's embedded Ray left behind."""
    path = _write_sweep(
        tmp_path, name="drv", tasks=["dmc/cartpole-balance"], methods=["sac", "rarl"], seeds=[0, 1],
        overrides={"loop.iterations": 4, "loop.horizon": 120}, eval={"enabled": False}, checkpoint_every=1,
        method_overrides=None, max_concurrent=1,
    )  # fmt: skip
    trials = plan_trials(load_sweep(path), path)
    proc = _sweep_proc([str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def one_done_one_started() -> bool:
        states = [trial_state(t) for t in trials]
        return "completed" in states and any(s.startswith("resume@") for s in states)

    try:
        _wait_for(one_done_one_started, proc, "a completed trial and a checkpointed one")
        ray_dir = embedded.root() / embedded.driver_name(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(2)
        # what a killed driver leaves: its embedded Ray's agents (the next sweep ends them)
        orphans = embedded.processes_of(ray_dir)
        done = [t for t in trials if trial_state(t) == "completed"]
        partial = [t for t in trials if trial_state(t).startswith("resume@")]
        before = {
            (t.run_dir / f): ((t.run_dir / f).stat().st_mtime_ns, (t.run_dir / f).read_bytes())
            for t in done
            for f in ("meta.json", "progress.parquet", "config.yaml")
        }
        resumed = _run_sweep([str(path), "--resume"])
        survivors = embedded.processes_of(ray_dir)
    finally:
        _kill_session(proc)
    assert done and partial and len(done) < len(trials)
    assert orphans, "expected the killed driver's Ray to leave processes behind"
    assert survivors == [], f"processes of the killed sweep's Ray outlived the resumed sweep: {survivors}"
    assert resumed.leftover == [] and "left by an earlier embedded Ray" in resumed.stdout and not ray_dir.exists()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"({len(done)} completed earlier)" in resumed.stdout
    assert resumed.stdout.count("completed earlier, skipped") == len(done)
    for f, (mtime, data) in before.items():
        assert (f.stat().st_mtime_ns, f.read_bytes()) == (mtime, data), f"{f} was rewritten"
    for t in trials:
        assert read_meta(t.run_dir)["status"] == "completed"
    for t in partial:
        assert read_meta(t.run_dir)["resumed"], "an interrupted trial continues from its checkpoint"


@pytest.mark.slow
def test_ctrl_c_mid_sweep_records_interrupted_trials(tmp_path):
    """SIGINT to `qarl sweep` while a trial runs: it stops, the summary says interrupted (the running trial with its
    signal, the rest not started), meta.json says so, the exit status is 130, and `--resume` completes the sweep."""
    path = _write_sweep(
        tmp_path, name="int", tasks=["dmc/cartpole-balance"], methods=["sac", "rarl"], seeds=[0],
        overrides={"loop.iterations": 30, "loop.horizon": 100}, eval={"enabled": False}, checkpoint_every=1,
        method_overrides=None, max_concurrent=1,
    )  # fmt: skip
    first, second = plan_trials(load_sweep(path), path)
    proc = _sweep_proc([str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: trial_state(first).startswith("resume@"), proc, "the first trial's first checkpoint")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        _kill_session(proc)
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert "sweep interrupted by SIGINT" in out and "0/2 trials completed" in out
    assert f"INTERRUPTED {first.label}: iteration " in out and "SIGINT" in out
    assert f"NOT STARTED {second.label}" in out and "FAILED" not in out
    meta = read_meta(first.run_dir)
    assert meta["status"] == "interrupted" and meta["signal"] == "SIGINT"
    assert meta["failure_reason"] == "interrupted: the sweep received SIGINT"
    resumed = _run_sweep([str(path), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert all(read_meta(t.run_dir)["status"] == "completed" for t in (first, second))
    assert read_meta(first.run_dir)["resumed"] and resumed.leftover == []


@pytest.mark.slow
def test_soak_random_kills_and_resumes_end_identical_with_no_stray_process(tmp_path, monkeypatch):
    """A smoke sweep SIGKILLed at 10 random moments (driver only: its Ray is left to the next start) and resumed each
    time ends with every trial's progress and evaluation equal to undisturbed runs', and no process of any of its
    embedded Rays left."""
    import random
    import tempfile

    path = _write_sweep(
        tmp_path, name="soak", tasks=["dmc/cartpole-balance"], methods=["sac", "rarl"], seeds=[0, 1],
        overrides={"loop.iterations": 4, "loop.horizon": 60}, checkpoint_every=1, method_overrides=None,
        eval={"enabled": True, "policy_modes": ["deterministic"], "grid_points": 2},
    )  # fmt: skip
    trials = plan_trials(load_sweep(path), path)
    ray_tmp = Path(tempfile.mkdtemp(prefix="qr", dir="/tmp"))  # short: Ray's socket paths have at most 107 bytes
    monkeypatch.setenv("QARL_RAY_TMPDIR", str(ray_tmp))  # this test's embedded Rays only
    rng, drivers, t0 = random.Random(20261202), [], time.perf_counter()
    try:
        for k in range(10):
            proc = _sweep_proc([str(path), *(["--resume"] if k else [])], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
            drivers.append(proc)
            time.sleep(rng.uniform(2.0, 14.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        final = _run_sweep([str(path), "--resume"], timeout=400)
        # before the sessions are killed below: what the sweeps themselves left
        left = {d.name: embedded.processes_of(d) for d in embedded.root().glob("*")}
    finally:
        for proc in drivers:
            _kill_session(proc)
    assert left == {}, f"embedded Ray folders left (with their processes): {left}"
    ray_tmp.joinpath("qarl-ray").rmdir()
    ray_tmp.rmdir()
    assert final.returncode == 0, final.stdout[-2000:] + final.stderr[-2000:]
    assert final.leftover == []
    for t in trials:
        assert read_meta(t.run_dir)["status"] == "completed"
        direct = tmp_path / "direct" / t.label.replace("/", "_").replace(" ", "_")
        run_trial(t.config, run_dir=direct, log=lambda m: None)
        pd.testing.assert_frame_equal(_progress(direct), _progress(t.run_dir), check_exact=True)
        evals = [pd.read_parquet(d / "eval.parquet") for d in (direct, t.run_dir)]
        pd.testing.assert_frame_equal(*evals)
    print(f"soak: 10 kills and resumes, then completion, in {time.perf_counter() - t0:.0f}s")


def test_interrupted_trials_are_summarised_apart_from_failures(tmp_path, capsys):
    path = _write_sweep(
        tmp_path, name="sum", tasks=["dmc/cartpole-balance"], methods=["sac", "rarl"], seeds=[0, 1],
        overrides={"loop.iterations": 5}, method_overrides=None,
    )  # fmt: skip
    done, running, failed, unstarted = plan_trials(load_sweep(path), path)
    metas = [
        (done, {"status": "completed"}),
        (running, {"status": "running", "iterations": 5}),  # iterations_done: from the progress rows
        (failed, {"status": "failed", "failure_reason": "boom", "finished": "2000-01-01T00:00:00+00:00"}),
    ]
    for t, meta in metas:
        t.run_dir.mkdir(parents=True)
        (t.run_dir / "meta.json").write_text(json.dumps(meta))
    pd.DataFrame({"iteration": [1, 2]}).to_parquet(running.run_dir / "progress.parquet")
    _mark_interrupted([done, running, failed, unstarted], "SIGTERM", time.time())
    assert read_meta(running.run_dir)["status"] == "interrupted" and read_meta(running.run_dir)["signal"] == "SIGTERM"
    assert read_meta(failed.run_dir)["status"] == "failed"  # it had failed before the signal
    assert read_meta(done.run_dir) == {"status": "completed"} and not unstarted.run_dir.exists()
    summary = summarize([done, running, failed, unstarted], {}, {}, 1.0, interrupted_by="SIGTERM")
    out = capsys.readouterr().out
    assert "sweep interrupted by SIGTERM" in out and "1/4 trials completed" in out
    assert "1 interrupted, 1 not started, 1 failed" in out
    assert f"INTERRUPTED {running.label}: iteration 2 of 5, SIGTERM" in out
    assert f"NOT STARTED {unstarted.label}" in out and f"FAILED {failed.label}: failed: boom" in out
    assert list(summary["interrupted"]) == [running.label] and summary["not_started"] == [unstarted.label]


def test_leftovers_of_a_dead_embedded_ray_are_ended_and_nothing_else(tmp_path, monkeypatch):
    """The processes of an embedded Ray folder whose driver is gone are ended and the folder removed; those of a
    live driver's folder, and unrelated ones, are left alone."""
    monkeypatch.setenv("QARL_RAY_TMPDIR", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan_dir, live_dir = embedded.root() / f"{dead.pid}-1", embedded.root() / embedded.driver_name()
    for d in (orphan_dir, live_dir):
        d.mkdir(parents=True)

    def holding(folder: Path | None) -> subprocess.Popen:  # a process with a file open in ``folder``
        opened = f"f = open({str(folder / 'log')!r}, 'w'); " if folder else ""
        code = f"import time; {opened}time.sleep(60)"
        return subprocess.Popen([sys.executable, "-c", code])

    procs = {"orphan": holding(orphan_dir), "live": holding(live_dir), "unrelated": holding(None)}
    try:
        time.sleep(1.0)
        assert embedded.processes_of(orphan_dir) == [procs["orphan"].pid]
        messages: list[str] = []
        assert embedded.end_leftovers(messages.append) == [procs["orphan"].pid]
        assert procs["orphan"].wait(timeout=10) is not None and "ended 1 process(es)" in messages[0]
        assert not orphan_dir.exists() and live_dir.exists()
        assert procs["live"].poll() is None and procs["unrelated"].poll() is None
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


@pytest.mark.slow
def test_multinode_cluster_runs_trials_on_both_nodes(tmp_path):
    """A real head and a second node (separate raylet processes); `qarl sweep --address` spreads trials over both."""
    from ray.cluster_utils import Cluster

    path = _write_sweep(
        tmp_path, name="mn", tasks=["dmc/cartpole-balance"], methods=["sac"], seeds=[0, 1],
        overrides={"loop.iterations": 3, "loop.horizon": 100}, eval={"enabled": False}, method_overrides=None,
    )  # fmt: skip
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        node_ids, address = {cluster.head_node.node_id, worker.node_id}, cluster.address
        proc = _run_sweep([str(path), "--address", address])
    finally:
        cluster.shutdown()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Ray cluster at {address}: 2 node(s), 2 CPU" in proc.stdout
    used = {read_meta(t.run_dir)["node_id"] for t in plan_trials(load_sweep(path), path)}
    assert used == node_ids


@pytest.mark.slow
def test_failed_trial_is_listed_with_its_reason_and_exit_code_is_1(tmp_path):
    """A trial that fails for good (here: a run directory holding a foreign checkpoint) is summarised."""
    path = _write_sweep(
        tmp_path, name="bad", tasks=["dmc/cartpole-balance"], methods=["sac"], seeds=[0, 1],
        overrides={"loop.iterations": 1, "loop.horizon": 50}, eval={"enabled": False}, method_overrides=None,
        max_failures=0,
    )  # fmt: skip
    ok, broken = plan_trials(load_sweep(path), path)
    (broken.run_dir / "checkpoints").mkdir(parents=True)
    (broken.run_dir / "checkpoints" / "iter_000001.pt").write_bytes(b"not a checkpoint")
    proc = _run_sweep([str(path), "--resume"])
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "1/2 trials completed" in proc.stdout
    assert f"FAILED {broken.label}: " in proc.stdout
    assert read_meta(ok.run_dir)["status"] == "completed"


def test_load_sweep_error_names_the_file(tmp_path):
    path = _write_sweep(tmp_path, scale="huge")
    with pytest.raises(ConfigError, match=rf"^{path}: scale: "):
        load_sweep(path)


@pytest.mark.parametrize("name", ["local", "aws"])
def test_cluster_files_pass_rays_schema(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load_yaml(configs_dir() / "cluster" / f"{name}.yaml")
    validate_config(prepare_config(config))
    commands = " ".join(config["setup_commands"])
    assert "torch==2.13.0" in commands and "pip install -q -e ~/qarl" in commands
    assert commands.index("torch==2.13.0") < commands.index("-e ~/qarl")  # the CPU build first
