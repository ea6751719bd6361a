"""Adversary strength calibration: b50 on synthetic curves, the table, relative bounds, ``qarl calibrate``."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import yaml

from qarl.cli import main
from qarl.config import ConfigError
from qarl.evaluation import calibration as C
from qarl.experiment.trial import resolve_config, run_dir_for, run_trial

LADDER = [0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0]


def test_b50_interpolates_in_log_bound_between_positive_points():
    # half of 800 is 400, crossed between 0.5 (600) and 1.0 (200): halfway in return, so halfway in log bound
    returns = [800, 790, 700, 600, 200, 100, 50]
    assert C.find_b50(LADDER, returns) == pytest.approx(math.sqrt(0.5 * 1.0))


def test_b50_interpolates_linearly_from_zero():
    # 1000 at 0 and 0 at 0.125: the half is crossed at 0.0625
    assert C.find_b50(LADDER, [1000, 0, 0, 0, 0, 0, 0]) == pytest.approx(0.0625)


def test_b50_is_the_first_crossing_and_exact_on_a_point():
    # falls to exactly half at 0.25, recovers above it later: the first crossing counts
    assert C.find_b50(LADDER, [900, 800, 450, 500, 460, 300, 100]) == pytest.approx(0.25)


def test_a_curve_that_never_halves_is_beyond_the_ladder():
    assert C.find_b50(LADDER, [900, 899, 850, 800, 700, 600, 451]) is None


@pytest.mark.parametrize(
    ("bounds", "returns", "match"),
    [
        ([0.0, 1.0], [0.0, 0.0], "nominal return"),
        ([0.5, 1.0], [10.0, 1.0], "increase from 0"),
        ([0.0, 1.0, 1.0], [10.0, 5.0, 1.0], "increase from 0"),
        ([0.0, 1.0], [10.0, float("nan")], "finite"),
        ([0.0], [10.0], "at least 2"),
    ],
)
def test_b50_refuses_bad_curves(bounds, returns, match):
    with pytest.raises(C.CalibrationError, match=match):
        C.find_b50(bounds, returns)


def test_ladder_and_summary():
    assert C.ladder(2.0) == [0.0, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0]
    with pytest.raises(C.CalibrationError, match="start at 0"):
        C.ladder(2.0, [0.1, 1.0])
    points = pd.DataFrame(
        {
            "run_dir": ["a", "a", "b", "b"] * 2,
            "seed": [0, 0, 1, 1] * 2,
            "fraction": [0.0] * 4 + [1.0] * 4,
            "bound": [0.0] * 4 + [2.0] * 4,
            "return": [10, 20, 30, 50, 1, 3, 5, 5],
        }
    )
    s = C.summarize(points)
    assert s["mean"].tolist() == [27.5, 3.5]  # the mean over protagonists of their means: (15 + 40) / 2, (2 + 5) / 2
    assert s["low"].tolist() == [15, 2] and s["high"].tolist() == [40, 5]
    assert s["protagonists"].tolist() == [2, 2] and s["episodes"].tolist() == [4, 4]
    assert C.protagonist_b50(points) == {
        "a": pytest.approx(2.0 * (15 - 7.5) / (15 - 2)),
        "b": pytest.approx(2.0 * 20 / 35),
    }


TABLE = {"dmc/cartpole-balance": {"b50": 0.8, "date": "2026-12-02"}, "dmc/walker-stand": {"b50": None}}


def test_relative_bounds_resolve_and_are_recorded():
    data = {
        "task": "dmc/cartpole-balance",
        "loop": {"adversary_bound": {"b50": 0.5}, "horizon": 50},
        "eval": {"worst_case_bound": {"b50": 1}},
    }
    out = C.resolve_relative_bounds(data, TABLE, "t.yaml")
    assert out["loop"] == {"adversary_bound": 0.4, "horizon": 50} and out["eval"]["worst_case_bound"] == 0.8
    assert out["strength"]["loop.adversary_bound"] == {
        "b50": 0.5,
        "task_b50": 0.8,
        "bound": 0.4,
        "calibrated": "2026-12-02",
        "table": "t.yaml",
    }
    assert data["loop"]["adversary_bound"] == {"b50": 0.5}  # the input is not changed
    absolute = {"task": "dmc/cartpole-balance", "loop": {"adversary_bound": 1.5}}
    assert C.resolve_relative_bounds(absolute, TABLE, "t.yaml") == absolute


@pytest.mark.parametrize(
    ("task", "value", "match"),
    [
        ("dmc/hopper-stand", {"b50": 0.5}, r"needs dmc/hopper-stand's calibration, which t.yaml does not have"),
        ("dmc/walker-stand", {"b50": 0.5}, "has no b50"),
        ("dmc/cartpole-balance", {"b75": 0.5}, r"a relative bound is \{b50: FRACTION\}"),
        ("dmc/cartpole-balance", {"b50": -1}, "must be a number > 0"),
        ("dmc/cartpole-balance", {"b50": True}, "must be a number > 0"),
    ],
)
def test_bad_relative_bounds_are_one_line_errors(task, value, match):
    with pytest.raises(ConfigError, match=match) as info:
        C.resolve_relative_bounds({"task": task, "loop": {"adversary_bound": value}}, TABLE, "t.yaml")
    assert str(info.value).startswith("loop.adversary_bound: ") and "\n" not in str(info.value)


@pytest.fixture
def table_file(tmp_path, monkeypatch):
    path = tmp_path / "calibration.yaml"
    C.write_entry("dmc/cartpole-balance", {"b50": 0.8, "date": "2026-12-02"}, path)
    monkeypatch.setattr(C, "table_path", lambda: path)
    return path


def test_write_entry_keeps_other_tasks_and_the_header(tmp_path):
    path = tmp_path / "c.yaml"
    C.write_entry("dmc/walker-stand", {"b50": 0.3}, path)
    C.write_entry("dmc/cartpole-balance", {"b50": 0.8}, path)
    C.write_entry("dmc/walker-stand", {"b50": 0.4}, path)
    assert path.read_text().startswith("# Adversary strength per task")
    assert C.load_table(path) == {"dmc/cartpole-balance": {"b50": 0.8}, "dmc/walker-stand": {"b50": 0.4}}
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        C.load_table(path)
    path.write_text("dmc/walker-stand: 0.4\n")
    with pytest.raises(C.CalibrationError, match="expected a mapping of task id to calibration entry"):
        C.load_table(path)


def test_trial_config_holds_the_absolute_bound_and_meta_records_it(table_file, tmp_path):
    config = resolve_config("dmc/cartpole-balance", "rarl", 0, "smoke", {"loop": {"adversary_bound": {"b50": 0.5}}})
    assert config.loop.adversary_bound == pytest.approx(0.4)
    assert config.strength["loop.adversary_bound"]["b50"] == 0.5
    run_dir = run_dir_for(tmp_path, "e", "dmc/cartpole-balance", "rarl", 0)
    meta = run_trial(dataclasses_replace_eval(config), run_dir=run_dir, iterations=1, log=lambda m: None)
    assert meta["adversary_bound"] == pytest.approx([0.4, 0.4])
    assert meta["strength"]["loop.adversary_bound"]["task_b50"] == 0.8
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["loop"]["adversary_bound"] == pytest.approx(0.4) and saved["strength"] == meta["strength"]
    # a stored run means the bound that ran: resuming re-reads config.yaml, not the table
    C.write_entry("dmc/cartpole-balance", {"b50": 2.0}, table_file)
    meta = run_trial(None, run_dir=run_dir, resume=True, iterations=2, log=lambda m: None)
    assert meta["status"] == "completed" and meta["adversary_bound"] == pytest.approx([0.4, 0.4])


def dataclasses_replace_eval(config):
    return dataclasses.replace(config, eval=dataclasses.replace(config.eval, enabled=False))


def test_a_task_without_calibration_is_a_clear_cli_error(table_file, capsys):
    code = main(["train", "--task", "dmc/hopper-stand", "--method", "rarl", "--set", "loop.adversary_bound={b50: 0.5}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "loop.adversary_bound: {b50: 0.5} needs dmc/hopper-stand's calibration" in err
    code = main(["train", "--task", "dmc/cartpole-balance", "--method", "rarl", "--set", "strength={}"])
    assert code == 2 and "strength: written by the resolution" in capsys.readouterr().err


def test_qarl_calibrate_end_to_end(tmp_path, capsys):
    run_dir = run_dir_for(tmp_path, "p", "dmc/cartpole-balance", "sac", 3)
    config = dataclasses_replace_eval(resolve_config("dmc/cartpole-balance", "sac", 3, "smoke"))
    run_trial(config, run_dir=run_dir, iterations=1, log=lambda m: None)
    out, table = tmp_path / "cal", tmp_path / "table.yaml"
    args = [
        "calibrate",
        "dmc/cartpole-balance",
        "--runs",
        str(run_dir),
        "--fractions",
        "0",
        "1/2",
        "2",
        "--worst-case-steps",
        "30",
        "--episodes",
        "2",
        "--out",
        str(out),
        "--write",
        "--table",
        str(table),
    ]
    assert main(args) == 0
    points = pd.read_csv(out / "points.csv")
    assert sorted(points["bound"].unique()) == [0.0, 1.0, 4.0]  # fractions of cartpole's default bound, 2 N
    assert (points.groupby("bound").size() == 2).all() and (points["worst_case_steps"] == 30).all()
    summary = pd.read_csv(out / "calibration.csv")
    entry = C.load_table(table)["dmc/cartpole-balance"]
    b50 = C.find_b50(summary["bound"], summary["mean"])
    assert entry["b50"] == (None if b50 is None else pytest.approx(b50, abs=1e-4))
    assert entry["protagonists"] == {"method": "sac", "scale": "smoke", "seeds": [3]}
    assert entry["ladder_max"] == 4.0 and entry["command"].startswith("qarl calibrate dmc/cartpole-balance")
    assert (out / "calibration.png").stat().st_size > 0 and "b50" in (out / "calibration.md").read_text()
    # a second call reuses every measured point
    capsys.readouterr()
    assert main(args[:-3]) == 0
    assert "3 of 3 points reused" in capsys.readouterr().err
    other = run_dir_for(tmp_path, "p", "dmc/cartpole-balance", "sac", 4)
    config4 = dataclasses_replace_eval(resolve_config("dmc/cartpole-balance", "sac", 4, "smoke"))
    config4 = dataclasses.replace(config4, eval=dataclasses.replace(config4.eval, worst_case_steps=77))
    run_trial(config4, run_dir=other, iterations=1, log=lambda m: None)
    assert main(["calibrate", "dmc/cartpole-balance", "--runs", str(run_dir), str(other), "--out", str(out)]) == 2
    assert "evaluation settings differ" in capsys.readouterr().err
    assert main(["calibrate", "dmc/walker-stand", "--runs", str(run_dir), "--out", str(out)]) == 2
    assert "hold runs of ['dmc/cartpole-balance'], not dmc/walker-stand" in capsys.readouterr().err
