"""What a trial writes for people and tools: train.log, progress.csv, TensorBoard events (qarl/experiment/logs.py)."""

from __future__ import annotations

import dataclasses

import pandas as pd

from qarl.cli import main
from qarl.experiment import rundir
from qarl.experiment.trial import resolve_config, run_dir_for, run_trial

TASK = "dmc/cartpole-balance"


def _scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / rundir.TENSORBOARD_DIR))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_qarl_train_writes_train_log_progress_csv_and_tensorboard_events(tmp_path, capsys):
    args = ["train", "--task", TASK, "--algo", "rarl", "--out", str(tmp_path), "--experiment", "t"]
    assert main([*args, "--set", "eval.enabled=false", "--set", "diagnostics.every=2"]) == 0
    run_dir = run_dir_for(tmp_path, "t", TASK, "rarl", 0)
    printed = capsys.readouterr().err.strip().splitlines()
    log_lines = (run_dir / rundir.TRAIN_LOG).read_text().strip().splitlines()
    assert log_lines and all(line in printed for line in log_lines)  # the same messages, in the file
    assert any("iter 3/3" in line for line in log_lines)
    progress = rundir.read_progress(run_dir)
    csv = pd.read_csv(run_dir / rundir.PROGRESS_CSV)
    assert list(csv.columns) == list(progress.columns) and len(csv) == len(progress) == 3
    pd.testing.assert_frame_equal(csv, progress, check_dtype=False)
    scalars = _scalars(run_dir)
    assert [s for s, _ in scalars["eval_return_adversary"]] == [1, 2, 3]
    assert [v for _, v in scalars["eval_return_adversary"]] == list(progress["eval_return_adversary"].astype("float32"))
    diag = scalars["diag/protagonist/feature_class/bellman_error"]  # NaN rows (not diagnosed) are left out
    assert [s for s, _ in diag] == [2]


def test_a_resumed_trial_has_each_iteration_once_in_tensorboard(tmp_path):
    overrides = {"eval": {"enabled": False}, "diagnostics": {"enabled": False}, "loop": {"checkpoint_every": 2}}
    config = resolve_config(TASK, "sac", 0, "smoke", overrides)
    config = dataclasses.replace(config, loop=dataclasses.replace(config.loop, iterations=4))
    run_dir = tmp_path / "run"
    run_trial(config, run_dir=run_dir, log=lambda m: None, stop_after=3)  # iteration 3 is logged, not checkpointed
    first = _scalars(run_dir)["train_return_protagonist_phase"]
    assert [s for s, _ in first] == [1, 2, 3]
    run_trial(None, run_dir=run_dir, resume=True, log=lambda m: None)  # from the checkpoint of iteration 2
    final = rundir.read_progress(run_dir)["train_return_protagonist_phase"].astype("float32").tolist()
    assert _scalars(run_dir)["train_return_protagonist_phase"] == list(enumerate(final, start=1))
    assert first[:2] == list(enumerate(final[:2], start=1))


def test_progress_bar_shows_episodes_and_steps_per_second(tmp_path, capsys):
    from qarl.experiment.logs import TrialLogs

    logs = TrialLogs(tmp_path, lambda m: None, tensorboard=False, progress_bar=True)
    logs.begin_iteration(2, 5, episodes=4)
    for _ in range(4):
        logs.episode_done(50, 123.0)
    logs.end_iteration()
    logs.close()
    err = capsys.readouterr().err
    assert "iteration 2/5" in err and "4/4" in err and "123 steps/s" in err
    quiet = TrialLogs(tmp_path, lambda m: None, tensorboard=False)  # stderr is not a terminal under pytest
    quiet.begin_iteration(1, 5, episodes=4)
    quiet.episode_done(50, 1.0)
    quiet.close()
    assert capsys.readouterr().err == ""
