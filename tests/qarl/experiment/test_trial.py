"""The two-player training core: players, loop, checkpoints, trials and ``qarl train``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch as th

import envs
from qarl.config import ConfigError, configs_dir, from_dict, load_yaml, parse_overrides
from qarl.experiment.registry import get_method, list_methods
from qarl.experiment.trial import TrialError, resolve_config, run_dir_for, run_trial
from qarl.sac.learner import NonFiniteLossError, Player, SACConfig
from qarl.training.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, save_checkpoint
from qarl.training.loop import ADVERSARY, PROTAGONIST

ROOT = Path(__file__).resolve().parents[3]
TIMING_COLUMNS = ["wall_time", "steps_per_s"]


def _quiet(msg: str) -> None:
    pass


def _run(tmp_path: Path, algo: str, seed: int = 0, task: str = "dmc/cartpole-balance", name: str = "a", **over):
    config = resolve_config(task, algo, seed, "smoke", parse_overrides([f"{k}={v}" for k, v in over.items()]))
    run_dir = run_dir_for(tmp_path / name, "test", task, algo, seed)
    meta = run_trial(config, run_dir=run_dir, log=_quiet)
    return run_dir, meta


def _progress(run_dir: Path) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "progress.parquet").drop(columns=TIMING_COLUMNS)


def test_method_yaml_values_match_the_paper_defaults():
    # sac and rarl by name: their players are the papers' SAC settings (SACConfig's defaults); every method's YAML
    # equals its own dataclass defaults: tests/qarl/experiment/test_methods.py
    for algo in ("sac", "rarl"):
        data = load_yaml(configs_dir() / "methods" / f"{algo}.yaml")
        for player, values in data.items():
            assert from_dict(SACConfig, values, player) == SACConfig(), f"{algo}.{player} differs from the defaults"
    assert SACConfig().net_arch == (256, 256, 256) and SACConfig().train_every == 3


def test_every_yaml_under_configs_loads():
    files = list(configs_dir().rglob("*.yaml"))
    assert files
    for f in files:
        assert isinstance(load_yaml(f), dict)


def test_separate_learning_rates_survive_train_calls():
    game = envs.make("dmc/cartpole-balance")
    cfg = SACConfig(net_arch=(8,), batch_size=4, learning_starts=4, train_every=1)
    player = Player(PROTAGONIST, cfg, game.observation_space, game.protagonist_action_space)
    rng = np.random.default_rng(0)
    for _ in range(6):
        obs = rng.normal(size=5)
        player.observe(obs, obs, np.zeros(1, np.float32), 1.0, False, False)
    assert player.updates == 3
    m = player.model
    assert [g["lr"] for g in m.actor.optimizer.param_groups] == [1e-4]
    assert [g["lr"] for g in m.critic.optimizer.param_groups] == [3e-4]
    assert [g["lr"] for g in m.ent_coef_optimizer.param_groups] == [3e-4]
    assert m.temperature == pytest.approx(0.005, rel=0.01)


def test_update_schedule_one_step_per_three_after_3000_transitions():
    game = envs.make("dmc/cartpole-balance")
    cfg = SACConfig(net_arch=(8,), batch_size=8)  # the paper's schedule: train_every 3, learning_starts 3000
    player = Player(PROTAGONIST, cfg, game.observation_space, game.protagonist_action_space)
    rng = np.random.default_rng(0)
    counts = {}
    for step in range(1, 3301):
        obs = rng.normal(size=5)
        player.observe(obs, obs, rng.uniform(-1, 1, 1).astype(np.float32), 0.5, False, step % 1000 == 0)
        counts[step] = player.updates
    assert counts[2999] == 0
    assert counts[3000] == 1
    assert counts[3300] == len(range(3000, 3301, 3)) == 101
    assert player.buffer.size() == 3300


def test_frozen_player_stores_nothing_during_the_other_phase(monkeypatch):
    from baselines.rarl import RARLTrainer

    config = resolve_config("dmc/cartpole-balance", "rarl", 0, "smoke")
    trainer = RARLTrainer(config.task, config.algo, config.loop, 0)
    adv, prot = trainer.players[ADVERSARY], trainer.players[PROTAGONIST]
    sizes = []
    original = trainer.play_episode

    def spy(game, seed, learner, deterministic, adversary_on):
        before = (adv.buffer.size(), prot.buffer.size(), adv.updates, prot.updates)
        out = original(game, seed, learner, deterministic, adversary_on)
        after = (adv.buffer.size(), prot.buffer.size(), adv.updates, prot.updates)
        sizes.append((learner, before, after, out[2]))
        return out

    monkeypatch.setattr(trainer, "play_episode", spy)
    for _ in range(2):
        trainer.run_iteration()
    learners = [s[0] for s in sizes]
    assert learners[:4] == [ADVERSARY, ADVERSARY, PROTAGONIST, PROTAGONIST]  # adversary phase first
    for learner, before, after, length in sizes:
        grew = (after[0] - before[0], after[1] - before[1])
        if learner == ADVERSARY:
            assert grew == (length, 0) and after[3] == before[3]
        elif learner == PROTAGONIST:
            assert grew == (0, length) and after[2] == before[2]
        else:  # evaluation stores nothing
            assert grew == (0, 0)


# representatives of the learner paths, one player and two, on each matmul kernel (more methods on the default path:
# test_methods.py); the other two pairings run with -m slow
@pytest.mark.parametrize(
    ("algo", "matmul_backend"),
    [("rarl", "torch-mm"), ("sac", "onednn"), *(pytest.param(*p, marks=pytest.mark.slow)
                                                for p in (("rarl", "onednn"), ("sac", "torch-mm")))],
    indirect=["matmul_backend"],
)  # fmt: skip
def test_same_seed_same_progress(tmp_path, algo, matmul_backend):
    a, meta = _run(tmp_path, algo, seed=5, name="a")
    b, _ = _run(tmp_path, algo, seed=5, name="b")
    assert meta["status"] == "completed"
    pa, pb = _progress(a), _progress(b)
    assert len(pa) == 3
    pd.testing.assert_frame_equal(pa, pb, check_exact=True)
    c, _ = _run(tmp_path, algo, seed=6, name="c")
    assert not _progress(c)["eval_return_zero_force"].equals(pa["eval_return_zero_force"])


def test_progress_columns_and_run_directory(tmp_path):
    run_dir, meta = _run(tmp_path, "rarl", task="gym/Hopper-v5")
    df = pd.read_parquet(run_dir / "progress.parquet")
    for col in (
        "iteration", "env_steps", "env_steps_protagonist", "env_steps_adversary", "updates_protagonist",
        "updates_adversary", "eval_return_adversary", "eval_return_zero_force", "actor_loss_protagonist",
        "critic_loss_adversary", "temperature_protagonist", "temperature_adversary", "wall_time", "steps_per_s",
    ):  # fmt: skip
        assert col in df.columns, col
    assert df["iteration"].tolist() == [1, 2, 3]
    assert (df["env_steps_protagonist"] + df["env_steps_adversary"]).tolist() == df["env_steps"].tolist()
    assert meta["versions"]["torch"].startswith("2.") and meta["status"] == "completed"
    assert load_yaml(run_dir / "config.yaml")["loop"]["horizon"] == 50
    assert [it for it, _ in list_checkpoints(run_dir / "checkpoints")] == [2, 3]  # keep_checkpoints = 2


def test_resume_in_process_equals_uninterrupted(tmp_path, matmul_backend):
    config = resolve_config("gym/Hopper-v5", "rarl", 1, "smoke", {"loop": {"iterations": 4, "checkpoint_every": 2}})
    full = run_dir_for(tmp_path / "full", "e", config.task, "rarl", 1)
    run_trial(config, run_dir=full, log=_quiet)
    part = run_dir_for(tmp_path / "part", "e", config.task, "rarl", 1)
    meta = run_trial(config, run_dir=part, log=_quiet, stop_after=3)  # checkpoint at 2, progress to 3
    assert meta["status"] == "stopped" and len(pd.read_parquet(part / "progress.parquet")) == 3
    meta = run_trial(None, run_dir=part, resume=True, log=_quiet)
    assert meta["status"] == "completed"
    pd.testing.assert_frame_equal(_progress(full), _progress(part), check_exact=True)


# "rarl-onednn": the fast update's oneDNN kernel forced (QARL_ONEDNN=1), with 256-wide networks at batch 64
_ONEDNN_SIZE = [f"--set={p}.{k}={v}" for p in ("protagonist", "adversary") for k, v in
                (("net_arch", "[256,256]"), ("batch_size", 64))]  # fmt: skip
# every registered method, and rarl on the oneDNN path
KILL_METHODS = [*list_methods(), "rarl-onednn"]


def _kill_extra(algo: str) -> list[str]:
    if algo == "rarl-onednn":
        return _ONEDNN_SIZE
    if "teacher" in {f.name for f in dataclasses.fields(get_method(algo).config_cls)}:
        return ["--set", "teacher.update_every=4"]  # the teacher updates (and is checkpointed) within the run
    return []


# In the default run, the representative chosen for cost: rarl (two players, no method state). The in-process
# resume of sac, rarl, qarl and mixedne_ld (every method with -m slow) is checked by
# tests/qarl/experiment/test_methods.py, on both matmul paths by test_resume_in_process_equals_uninterrupted; the
# other SIGKILL variants (15-20 s each, qarl's teacher and the oneDNN path among them) run with -m slow.
_KILL_DEFAULT = ("rarl",)


@pytest.mark.parametrize(
    "algo", [a if a in _KILL_DEFAULT else pytest.param(a, marks=pytest.mark.slow) for a in KILL_METHODS]
)
def test_kill_and_resume_equals_uninterrupted(tmp_path, algo):
    """SIGKILL a `qarl train` process mid-run, resume it: the progress equals an uninterrupted run's."""
    extra = _kill_extra(algo)
    kernel = "1" if algo.endswith("-onednn") else "0"
    algo = algo.removesuffix("-onednn")
    args = ["--task", "dmc/cartpole-balance", "--algo", algo, "--seed", "2", "--iterations", "6"]
    args += ["--set", "loop.checkpoint_every=2", "--set", "loop.horizon=120", "--set", "eval.enabled=false"]
    args += [*extra, "--experiment", "k"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "QARL_ONEDNN": kernel}
    subprocess.run(
        [sys.executable, "-m", "qarl", "train", *args, "--out", str(tmp_path / "full")],
        check=True,
        env=env,
        capture_output=True,
    )
    proc = subprocess.Popen([sys.executable, "-m", "qarl", "train", *args, "--out", str(tmp_path / "kill")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    run_dir = run_dir_for(tmp_path / "kill", "k", "dmc/cartpole-balance", algo, 2)
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "iter_000002.pt").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_rows = len(pd.read_parquet(run_dir / "progress.parquet"))
    assert killed_rows < 6
    resume_args = [*args[:8], "--experiment", "k", "--out", str(tmp_path / "kill"), "--resume"]
    resumed = subprocess.run(
        [sys.executable, "-m", "qarl", "train", *resume_args], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    full_dir = run_dir_for(tmp_path / "full", "k", "dmc/cartpole-balance", algo, 2)
    pd.testing.assert_frame_equal(_progress(full_dir), _progress(run_dir), check_exact=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_records_interrupted_with_its_name(tmp_path, sig):
    """SIGTERM or SIGINT to `qarl train`: meta.json says interrupted, with the signal; exit status 130."""
    args = ["train", "--task", "dmc/cartpole-balance", "--method", "sac", "--iterations", "200", "--out", str(tmp_path)]
    # started with SIGINT ignored, as a background job of a non-interactive shell (nohup, `cmd &` in a script) is
    proc = subprocess.Popen([sys.executable, "-m", "qarl", *args], env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    run_dir = run_dir_for(tmp_path, "default", "dmc/cartpole-balance", "sac", 0)
    deadline = time.time() + 120
    while not (run_dir / "progress.parquet").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert proc.returncode == 130 and "interrupted" in err, err
    assert meta["status"] == "interrupted" and meta["signal"] == sig.name
    assert meta["failure_reason"] == f"interrupted by {sig.name}" and meta["iterations_done"] >= 1


def test_existing_run_is_never_overwritten(tmp_path):
    run_dir, _ = _run(tmp_path, "sac")
    before = (run_dir / "progress.parquet").read_bytes()
    config = resolve_config("dmc/cartpole-balance", "sac", 0, "smoke")
    with pytest.raises(TrialError, match="--resume"):
        run_trial(config, run_dir=run_dir, log=_quiet)
    assert (run_dir / "progress.parquet").read_bytes() == before
    with pytest.raises(TrialError, match="nothing to resume"):
        run_trial(None, run_dir=tmp_path / "nowhere", resume=True, log=_quiet)


def test_corrupt_and_mismatched_checkpoints_give_clear_errors(tmp_path):
    run_dir, _ = _run(tmp_path, "sac")
    _, path = list_checkpoints(run_dir / "checkpoints")[-1]
    with pytest.raises(CheckpointError, match="belongs to another trial: its task"):
        load_checkpoint(path, expect={"task": "dmc/walker-walk"})
    for _, p in list_checkpoints(run_dir / "checkpoints"):  # none loadable: the clear error
        p.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt"):
        run_trial(None, run_dir=run_dir, resume=True, log=_quiet)
    foreign = tmp_path / "foreign.pt"
    th.save({"weights": th.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a qarl checkpoint"):
        load_checkpoint(foreign)


def test_a_damaged_newest_checkpoint_is_set_aside_and_the_previous_one_resumes(tmp_path):
    """Truncated on disk (a crash mid-copy, a full disk): --resume reports it, keeps it under a new name, continues from
    the checkpoint before it, and ends with the progress of an undisturbed run."""
    over = {"loop": {"iterations": 4, "checkpoint_every": 1}, "eval": {"enabled": False}}
    config = resolve_config("dmc/cartpole-balance", "rarl", 0, "smoke", over)
    full = run_dir_for(tmp_path / "full", "t", config.task, "rarl", 0)
    run_trial(config, run_dir=full, log=_quiet)
    part = run_dir_for(tmp_path / "part", "t", config.task, "rarl", 0)
    run_trial(config, run_dir=part, log=_quiet, stop_after=3)
    (it2, _), (it3, newest) = list_checkpoints(part / "checkpoints")
    assert (it2, it3) == (2, 3)
    newest.write_bytes(newest.read_bytes()[:2000])
    lines: list[str] = []
    meta = run_trial(None, run_dir=part, resume=True, log=lines.append)
    assert meta["status"] == "completed"
    reported = [m for m in lines if "iter_000003.pt" in m and "corrupt" in m]
    assert len(reported) == 1 and "kept as iter_000003.pt.damaged" in reported[0], lines
    assert any("resuming" in m and "from iteration 2" in m for m in lines), lines
    assert (part / "checkpoints" / "iter_000003.pt.damaged").stat().st_size == 2000  # kept, not deleted
    pd.testing.assert_frame_equal(_progress(full), _progress(part), check_exact=True)


def test_checkpoint_roundtrip_keeps_arrays_and_big_ints(tmp_path):
    payload = {"a": np.arange(5, dtype=np.uint32), "b": (np.float64(1.5), 2**100), "c": {"d": np.zeros((2, 3))}}
    save_checkpoint(tmp_path / "x.pt", payload)
    back = load_checkpoint(tmp_path / "x.pt")
    assert back["a"].dtype == np.uint32 and back["a"].tolist() == [0, 1, 2, 3, 4]
    assert back["b"] == (1.5, 2**100) and back["c"]["d"].shape == (2, 3)
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file left behind"


def test_non_finite_loss_fails_the_trial_with_its_reason(tmp_path, monkeypatch):
    original = Player.update

    def poisoned(self):
        original(self)
        if self.updates >= 3:
            raise NonFiniteLossError(f"{self.name} critic_loss is nan at gradient step {self.updates}")

    monkeypatch.setattr(Player, "update", poisoned)
    run_dir, meta = _run(tmp_path, "sac")
    assert meta["status"] == "failed"
    assert "non-finite loss" in meta["failure_reason"] and "critic_loss is nan" in meta["failure_reason"]
    assert '"status": "failed"' in (run_dir / "meta.json").read_text()


def test_player_update_detects_nan_losses():
    game = envs.make("dmc/cartpole-balance")
    cfg = SACConfig(net_arch=(8,), batch_size=4, learning_starts=4, train_every=1)
    player = Player(PROTAGONIST, cfg, game.observation_space, game.protagonist_action_space)
    for _ in range(3):
        player.observe(np.zeros(5), np.zeros(5), np.zeros(1, np.float32), 1.0, False, False)
    with pytest.raises(NonFiniteLossError, match=r"(actor|critic)_loss is nan at gradient step \d+"):
        for _ in range(4):  # a NaN reward poisons the critic's target
            player.observe(np.zeros(5), np.zeros(5), np.zeros(1, np.float32), float("nan"), False, False)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"protagonist\.actor_lr"):
        resolve_config("dmc/cartpole-balance", "sac", 0, "smoke", parse_overrides(["protagonist.actor_lr=abc"]))
    with pytest.raises(ConfigError, match=r"protagonist\.actr_lr.*unknown"):
        resolve_config("dmc/cartpole-balance", "sac", 0, "smoke", parse_overrides(["protagonist.actr_lr=1"]))
    with pytest.raises(ConfigError, match="adversary"):
        resolve_config("dmc/cartpole-balance", "sac", 0, "smoke", parse_overrides(["adversary.gamma=0.9"]))
    with pytest.raises(ConfigError, match=r"loop.*iterations must be at least 1"):
        resolve_config("dmc/cartpole-balance", "sac", 0, "smoke", parse_overrides(["loop.iterations=0"]))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--task", "dmc/cartpole-balance", "--algo", "rarll"], "unknown method 'rarll'; did you mean 'rarl'"),
        (["--task", "dmc/cartpol-balance", "--algo", "sac"], "did you mean 'dmc/cartpole-balance'"),
        (["--task", "dmc/cartpole-balance", "--algo", "sac", "--iterations", "-3"], "--iterations must be at least 1"),
        (["--task", "dmc/cartpole-balance", "--algo", "sac", "--set", "protagonist.actor_lr"], "protagonist.actor_lr"),
        (["--task", "dmc/cartpole-balance", "--algo", "sac", "--set", "loop.horizon=x"], "loop.horizon"),
    ],
)
def test_train_bad_input_is_a_one_line_error(tmp_path, argv, message):
    proc = subprocess.run(
        [sys.executable, "-m", "qarl", "train", *argv, "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir()), "a rejected command must not create a run directory"


def test_temperatures_and_losses_are_finite_in_progress(tmp_path):
    run_dir, _ = _run(tmp_path, "rarl")
    df = pd.read_parquet(run_dir / "progress.parquet")
    last = df.iloc[-1]
    for col in ("actor_loss_protagonist", "critic_loss_adversary", "temperature_protagonist"):
        assert math.isfinite(last[col])
    assert last["updates_protagonist"] > 0 and last["updates_adversary"] > 0


def test_stored_configs_with_an_earlier_versions_diagnostics_keys_still_load(tmp_path):
    """Run directories written before the feature-class diagnostics hold heldout_size, train_size and the retired
    regression_* keys: they load (renamed or dropped; a key given under both names keeps the current name's value),
    while a user's config with a retired key is refused."""
    from qarl.config import dump_yaml
    from qarl.experiment import rundir
    from qarl.experiment.trial import parse_trial_config

    data = resolve_config("dmc/cartpole-balance", "rarl", 0, "smoke").to_dict()
    data["diagnostics"] = {
        "every": 3,
        "heldout_size": 64,
        "train_size": 256,
        "regression_steps": 1000,
        "regression_batch": 256,
        "regression_lr": 0.001,
    }
    dump_yaml(data, tmp_path / rundir.CONFIG_FILE)
    config = parse_trial_config(rundir.read_config(tmp_path))
    assert (config.diagnostics.every, config.diagnostics.recent_size, config.diagnostics.sample_size) == (3, 64, 256)
    data["diagnostics"] = {"recent_size": 16, "heldout_size": 64}
    dump_yaml(data, tmp_path / rundir.CONFIG_FILE)
    assert parse_trial_config(rundir.read_config(tmp_path)).diagnostics.recent_size == 16
    with pytest.raises(ConfigError, match="unknown key"):
        resolve_config("dmc/cartpole-balance", "rarl", 0, "smoke", {"diagnostics": {"regression_steps": 10}})
