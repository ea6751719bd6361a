"""The ``qarl`` command line and the README that documents it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import envs
from qarl.cli import main

ROOT = Path(__file__).resolve().parents[3]


def test_tasks_lists_all_25(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for task_id in envs.list_tasks():
        assert re.search(rf"^{re.escape(task_id)}\s", out, re.M), task_id
    assert "25 tasks" in out


def test_tasks_json_has_dimensions_and_params(capsys):
    assert main(["tasks", "--json", "--family", "dmc"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 19
    cheetah = next(r for r in rows if r["id"] == "dmc/cheetah-run")
    assert (cheetah["obs_dim"], cheetah["protagonist_dim"], cheetah["adversary_dim"]) == (17, 6, 6)
    assert cheetah["params"]["torso_mass"] == {"nominal": pytest.approx(6.2502, abs=1e-3), "low": 3.0, "high": 9.0}


def test_demo_prints_returns_forces_params(capsys):
    assert main(["demo", "--tasks", "gym/Hopper-v5", "dmc/pendulum-swingup", "--steps", "20", "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("episode 0: return") == 2 and out.count("episode 1: return") == 2
    assert "mean |force|: pole.fx=" in out and "params: torso_mass=" in out


def test_demo_is_reproducible(capsys):
    main(["demo", "--tasks", "dmc/cartpole-swingup", "--steps", "30"])
    first = re.sub(r"\(\d+ steps/s\)", "", capsys.readouterr().out)
    main(["demo", "--tasks", "dmc/cartpole-swingup", "--steps", "30"])
    assert re.sub(r"\(\d+ steps/s\)", "", capsys.readouterr().out) == first


def test_unknown_task_is_a_one_line_error_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "qarl", "demo", "--tasks", "dmc/cheeta-run"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "did you mean 'dmc/cheetah-run'" in proc.stderr


def test_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "qarl", "--help"], capture_output=True, text=True, check=True)
    assert "tasks" in proc.stdout and "demo" in proc.stdout


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, re.S)


def test_readme_has_two_commands_and_ci_runs_them_verbatim():
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].startswith("python3 -m venv .venv") and "torch==2.13.0" in commands[0]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci.splitlines(), f"README command not run verbatim by .ci/run: {command}"


def test_readme_task_table_matches_registry():
    text = (ROOT / "README.md").read_text()
    assert all(task_id in text for task_id in envs.list_tasks())


def test_readme_api_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    code = text.split("## The game API", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "example.py"
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "torso_mass" in proc.stdout


def test_algos_lists_registered_methods(capsys):
    assert main(["algos"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sac") and "\nrarl" in out


def test_curves_writes_figure_and_table(tmp_path):
    from qarl.experiment.trial import resolve_config, run_dir_for, run_trial

    run_dir = run_dir_for(tmp_path, "c", "dmc/cartpole-swingup", "sac", 0)
    run_trial(resolve_config("dmc/cartpole-swingup", "sac", 0, "smoke"), run_dir=run_dir, log=lambda m: None)
    assert main(["curves", str(run_dir), "--out", str(tmp_path / "fig"), "--threshold", "1"]) == 0
    assert (tmp_path / "fig" / "curves.png").stat().st_size > 1000
    text = (tmp_path / "fig" / "curves.md").read_text()
    assert "| dmc/cartpole-swingup | sac | 0 | completed | 300 |" in text
    assert main(["curves", str(tmp_path / "missing"), "--out", str(tmp_path / "fig")]) == 2


@pytest.mark.slow
def test_bench_loop_runs(capsys):
    assert main(["bench", "loop", "--steps", "1000", "--rounds", "1", "--learning-starts", "900"]) == 0
    assert "time per update, loop / stable-baselines3" in capsys.readouterr().out
