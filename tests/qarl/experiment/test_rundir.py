"""Run-directory files: one reader and writer, clear errors, and the files of earlier versions still read."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from qarl.experiment import rundir
from qarl.experiment.trial import load_trainer, parse_trial_config, resolve_config, run_trial
from qarl.report.leaderboard import load_evals
from qarl.training.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "results/figures/small/runs/qarl-main/dmc/cartpole-balance/rarl/seed=0"


def test_written_files_read_back(tmp_path):
    rundir.write_config(tmp_path, {"task": "t", "method": "m", "seed": 1})
    rundir.write_meta(tmp_path, {"status": "completed", "method": "m"})
    rundir.write_progress(tmp_path, [{"iteration": 1, "x": 0.5}])
    rundir.write_eval(tmp_path, pd.DataFrame({"method": ["m"], "return": [1.0]}))
    assert rundir.read_config(tmp_path) == {"task": "t", "method": "m", "seed": 1}
    assert rundir.read_meta(tmp_path) == {"status": "completed", "method": "m"}
    assert rundir.read_progress(tmp_path).to_dict("records") == [{"iteration": 1, "x": 0.5}]
    assert rundir.read_eval(tmp_path, ["method", "return"])["return"].tolist() == [1.0]
    assert not list(tmp_path.glob(".*tmp*")), "no temporary file left behind"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "meta.json: no such file"),
        (lambda d: (d / "meta.json").write_text("{not json"), "meta.json: cannot read"),
        (lambda d: (d / "meta.json").write_text("[1, 2]"), "meta.json: not a JSON object"),
    ],
)
def test_bad_meta_is_a_clear_error(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(rundir.RunDirError, match=message):
        rundir.read_meta(tmp_path)


def test_bad_eval_files_are_clear_errors(tmp_path):
    with pytest.raises(rundir.RunDirError, match="no such file"):
        rundir.read_eval(tmp_path)
    (tmp_path / "eval.parquet").write_bytes(b"")
    with pytest.raises(rundir.RunDirError, match="empty file"):
        rundir.read_eval(tmp_path)
    (tmp_path / "eval.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(rundir.RunDirError, match="unreadable parquet"):
        rundir.read_eval(tmp_path)
    rundir.write_eval(tmp_path, pd.DataFrame({"method": ["m"]}))
    with pytest.raises(rundir.RunDirError, match="missing column"):
        rundir.read_eval(tmp_path, ["method", "return"])


def test_files_of_earlier_versions_read_algorithm_as_method(tmp_path):
    """Earlier versions wrote ``algorithm``; the committed results are such files, and they still load."""
    assert yaml.safe_load((COMMITTED / "config.yaml").read_text())["algorithm"] == "rarl"  # the old spelling on disk
    assert json.loads((COMMITTED / "meta.json").read_text())["algorithm"] == "rarl"
    assert "algorithm" in pd.read_parquet(COMMITTED / "eval.parquet").columns
    assert rundir.read_config(COMMITTED)["method"] == rundir.read_meta(COMMITTED)["method"] == "rarl"
    config = parse_trial_config(rundir.read_config(COMMITTED))
    assert (config.method, config.task, config.seed) == ("rarl", "dmc/cartpole-balance", 0)
    evals, records = load_evals([COMMITTED])
    assert set(evals["method"]) == {"rarl"} and records[0]["method"] == "rarl"


def test_a_checkpoint_of_an_earlier_version_resumes(tmp_path):
    """A run whose config.yaml, meta.json and checkpoint say ``algorithm`` loads and resumes."""
    config = resolve_config("dmc/cartpole-balance", "sac", 0, "smoke", {"eval": {"enabled": False}})
    run_trial(config, run_dir=tmp_path, log=lambda m: None, stop_after=1)
    _, ckpt = rundir_checkpoints(tmp_path)[-1]
    state = load_checkpoint(ckpt)
    state["algorithm"] = state.pop("method")
    state["config"]["algorithm"] = state["config"].pop("method")
    save_checkpoint(ckpt, state)
    for name in ("config.yaml", "meta.json"):
        text = (tmp_path / name).read_text()
        (tmp_path / name).write_text(text.replace('"method"', '"algorithm"').replace("method:", "algorithm:"))
    assert "algorithm" in json.loads((tmp_path / "meta.json").read_text())
    assert load_trainer(tmp_path)[0].method == "sac"
    meta = run_trial(None, run_dir=tmp_path, resume=True, log=lambda m: None)
    assert meta["status"] == "completed" and meta["method"] == "sac"


def rundir_checkpoints(run_dir: Path):
    from qarl.training.checkpoint import list_checkpoints

    return list_checkpoints(run_dir / rundir.CHECKPOINT_DIR)
