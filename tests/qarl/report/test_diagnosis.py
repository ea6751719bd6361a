"""`qarl diagnose RUN_DIR`: a trial's critic diagnostics as a figure and a verdict per player."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from qarl.cli import main
from qarl.cli.diagnose import with_run_subcommand
from qarl.experiment.trial import resolve_config, run_dir_for, run_trial
from qarl.report.diagnosis import diagnose_run, diagnosed_rows, verdict

TASK = "dmc/cartpole-balance"


def _trial(tmp_path: Path, diagnostics: dict) -> Path:
    config = resolve_config(TASK, "rarl", 0, "smoke", {"eval": {"enabled": False}, "diagnostics": diagnostics})
    run_dir = run_dir_for(tmp_path, "d", TASK, "rarl", 0)
    assert run_trial(config, run_dir=run_dir, log=lambda m: None)["status"] == "completed"
    return run_dir


def test_diagnose_run_dir_writes_figure_table_and_verdicts(tmp_path, capsys):
    run_dir = _trial(tmp_path, {"every": 2})
    assert main(["diagnose", str(run_dir), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("protagonist (iteration 2):") and "\nadversary (iteration 2):" in printed
    for ext in ("png", "md", "csv"):
        assert (tmp_path / "out" / f"diagnosis.{ext}").stat().st_size > 0
    table = pd.read_csv(tmp_path / "out" / "diagnosis.csv")
    assert list(table["iteration"]) == [2]  # only the diagnosed iteration
    md = (tmp_path / "out" / "diagnosis.md").read_text()
    assert "Rules of the verdicts" in md and "completeness ratio" in md and "rarl, seed 0" in md
    # `qarl diagnose RUN_DIR` is `qarl diagnose run RUN_DIR`; without --out the files go to RUN_DIR/diagnosis
    assert with_run_subcommand(["diagnose", str(run_dir)]) == ["diagnose", "run", str(run_dir)]
    assert with_run_subcommand(["diagnose", "testbed"]) == ["diagnose", "testbed"]
    files, _ = diagnose_run(run_dir)
    assert files[0] == run_dir / "diagnosis" / "diagnosis.png" and files[0].exists()


def test_verdict_follows_its_rules():
    rows = pd.DataFrame(
        {
            "iteration": [2, 4],
            "diag/p/feature_class/bellman_error": [1.0, 1.0],
            "diag/p/feature_class/local_ibe": [0.9, 0.9],
            "diag/p/feature_class/projected_bellman_error": [0.43, 0.43],
            "diag/p/feature_class/completeness_ratio": [0.9, 0.9],
            "diag/p/feature_class/td_distance": [1.0, 2.0],
            "diag/p/feature_class/td_distance_rel": [0.1, 0.2],
            "diag/p/feature_class/td_margin": [0.1, -0.1],
        }
    )
    text = verdict(rows, "p")
    assert text.startswith("p (iteration 4):")
    assert "near its class's TD fixed point" in text and "unstable" in text
    assert "mostly outside the class" in text and "distance 2 [1, 2]" in text  # iterations >= 4 / 2
    rows["diag/p/feature_class/completeness_ratio"] = [0.5, 0.5]
    assert "mostly inside the class" in verdict(rows, "p")


def test_diagnose_refuses_runs_without_diagnostics(tmp_path, capsys):
    run_dir = _trial(tmp_path, {"enabled": False})
    assert main(["diagnose", str(run_dir)]) == 2
    assert "no diag/ columns" in capsys.readouterr().err
    assert main(["diagnose", str(tmp_path / "nothing-here")]) == 2
    with pytest.raises(ValueError, match="no iteration has been diagnosed"):
        diagnosed_rows(pd.DataFrame({"iteration": [1], "diag/p/mc/bias": [float("nan")]}))
