"""The ``qarl`` command line and the README that documents it."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import envs
from qarl import cli
from qarl.cli import main
from qarl.cli.common import AtLeast, method_name, task_id
from qarl.experiment import registry
from qarl.experiment.registry import list_methods

ROOT = Path(__file__).resolve().parents[3]


def test_tasks_lists_every_registered_task(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for task in envs.list_tasks():
        assert re.search(rf"^{re.escape(task)}\s", out, re.M), task
    assert f"{len(envs.list_tasks())} tasks" in out


def test_tasks_json_has_dimensions_and_params(capsys):
    assert main(["tasks", "--json", "--family", "dmc"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(envs.list_tasks("dmc"))
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


def test_methods_lists_registered_methods_and_algos_is_its_alias(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sac") and "\nrarl" in out
    assert [line.split()[0] for line in out.splitlines()] == list_methods()
    assert main(["algos"]) == 0
    assert capsys.readouterr().out == out


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


# -- the spelling of "method" ------------------------------------------------------------------------------------

TRAIN = ["train", "--task", "dmc/cartpole-balance", "--seed", "3", "--scale", "small", "--set", "loop.horizon=50"]


def _parse(argv: list[str]) -> dict:
    args = vars(cli.build_parser().parse_args(argv))
    return {k: v for k, v in args.items() if k != "func"} | {"func": args["func"].__qualname__}


@pytest.mark.parametrize(
    "command",
    [TRAIN, ["bench", "sweep"], ["bench", "group", "--trial"], ["diagnose", "overhead"]],
    ids=lambda c: " ".join(c[:2]),
)
def test_algo_is_an_alias_of_method(command):
    by_method, by_algo = _parse([*command, "--method", "rarl"]), _parse([*command, "--algo", "rarl"])
    assert by_method == by_algo and by_method["method"] == "rarl" and "algo" not in by_method


def test_method_and_algo_resolve_the_same_trial(tmp_path, monkeypatch):
    """`qarl train` up to the trial itself: ``run_trial`` is patched where the handler looks it up."""
    import qarl.experiment.trial as trial

    got = []

    def fake_run_trial(config, run_dir, resume, iterations):
        got.append((config.to_dict(), run_dir, resume, iterations))
        return {"status": "completed"}

    monkeypatch.setattr(trial, "run_trial", fake_run_trial)
    monkeypatch.setattr(trial, "trial_summary", lambda meta: "done")
    monkeypatch.setattr("signal.signal", lambda *a: None)  # `qarl train` installs a SIGTERM handler
    for spelling in ("--method", "--algo"):
        assert main([*TRAIN, spelling, "rarl", "--out", str(tmp_path), "--iterations", "2"]) == 0
    assert len(got) == 2 and got[0] == got[1]
    config, run_dir, resume, iterations = got[0]
    assert [config[k] for k in ("task", "method", "seed", "scale")] == ["dmc/cartpole-balance", "rarl", 3, "small"]
    assert config["loop"]["horizon"] == 50
    assert run_dir == trial.run_dir_for(tmp_path, "default", "dmc/cartpole-balance", "rarl", 3)
    assert (resume, iterations) == (False, 2)
    assert not any(tmp_path.iterdir())


def test_help_says_method_not_algo():
    top = cli.build_parser().format_help()
    assert "methods" in top and "algos" not in top
    for command in (["train"], ["bench", "sweep"], ["bench", "group"], ["diagnose", "overhead"]):
        proc = subprocess.run([sys.executable, "-m", "qarl", *command, "--help"], capture_output=True, text=True)
        assert proc.returncode == 0 and "--method METHOD" in proc.stdout, proc.stdout
        assert "--algo" not in proc.stdout and "ALGO" not in proc.stdout, proc.stdout


def test_method_type_follows_the_registry_and_imports_no_method(monkeypatch):
    monkeypatch.setitem(registry.METHODS, "test_only", "baselines.nowhere:Nothing")  # as tests register methods
    assert _parse([*TRAIN, "--method", "test_only"])["method"] == "test_only"
    code = "import sys; from qarl.cli.common import method_name; method_name('cat'); print('baselines' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


# -- values refused while parsing: one line, exit status 2 ------------------------------------------------------

N_TASKS = len(envs.list_tasks())
#: argv whose last option has a bad (last) value, and what the one-line error says
BAD_VALUES = [
    (["train", "--method", "sac", "--task", "dmc/cartpol-balance"], "did you mean 'dmc/cartpole-balance'"),
    (["train", "--task", "dmc/cartpole-balance", "--method", "rarll"], "unknown method 'rarll'; did you mean"),
    (["train", "--task", "dmc/cartpole-balance", "--algo", "rarll"], "unknown method 'rarll'; did you mean 'rarl'"),
    (["demo", "--tasks", "dmc/cheetah-run", "dmc/cheeta-run"], "did you mean 'dmc/cheetah-run'"),
    (["bench", "loop", "--task", "nope"], f"unknown task id 'nope' (run `qarl tasks` for the list of {N_TASKS} tasks)"),
    (["bench", "grid", "--tasks", "gym/Hoper-v5"], "did you mean 'gym/Hopper-v5'"),
    (["bench", "trial", "--task", "nope"], "unknown task id 'nope'"),
    (["bench", "sweep", "--task", "nope"], "unknown task id 'nope'"),
    (["bench", "sweep", "--method", "nope"], "unknown method 'nope' (known: sac, rarl, qarl"),
    (["bench", "group", "--trial", "--task", "nope"], "unknown task id 'nope'"),
    (["bench", "group", "--trial", "--method", "sack"], "unknown method 'sack'; did you mean 'sac'"),
    (["diagnose", "overhead", "--task", "nope"], "unknown task id 'nope'"),
    (["diagnose", "overhead", "--method", "nope"], "unknown method 'nope'"),
    (["calibrate", "dmc/cartpol-balance"], "did you mean 'dmc/cartpole-balance'"),
    (["calibrate", "dmc/cartpole-balance", "--method", "sack"], "unknown method 'sack'; did you mean 'sac'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_VALUES, ids=[" ".join(argv) for argv, _ in BAD_VALUES])
def test_bad_value_is_a_one_line_error(argv, message, capsys):
    assert main(argv) == 2  # returned, not raised: like the handlers' user errors
    captured = capsys.readouterr()
    err = captured.err.strip()
    # under the top-level command, as today: "qarl bench: error: ...", not "qarl bench loop: error: ..."
    assert err.startswith(f"qarl {argv[0]}: error: ") and message in err and len(err.splitlines()) == 1, err
    assert captured.out == ""


def _options(parser, path=()):
    """(command path, action) of every option of every command (the alias ``algos`` left out), walking the parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if name != "algos":
                    yield from _options(sub, (*path, name))
        else:
            yield path, action


def _typed_options(parser):
    """(command path, option) of every option checked by a task or method type (a positional: its dest)."""
    for path, action in _options(parser):
        if action.type in (task_id, method_name):
            yield " ".join(path), (action.option_strings or [action.dest])[0]


def test_bad_values_cover_every_typed_option():
    covered = set()
    for argv, _ in BAD_VALUES:
        words = [w for w in argv if not w.startswith("-")]
        options = [w for w in argv if w.startswith("--") and w != "--trial"]
        command = " ".join(words[:2] if words[0] in ("bench", "diagnose") else words[:1])
        option = options[-1] if options else "task"  # no option: the positional task id
        covered.add((command, "--method" if option == "--algo" else option))
    assert set(_typed_options(cli.build_parser())) == covered


def test_bad_value_exits_2_without_traceback_from_the_command_line(tmp_path):
    argv = ["train", "--task", "dmc/cartpole-balance", "--algo", "rarll", "--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, "-m", "qarl", *argv], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("qarl train: error: unknown method 'rarll'; did you mean 'rarl'")
    assert len(proc.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_argparse_errors_keep_the_usage_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--task", "dmc/cartpole-balance"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: qarl train") and "required: --method" in err


COUNTED = [
    (path, action.option_strings[0], action.type.minimum)
    for path, action in _options(cli.build_parser())
    if isinstance(action.type, AtLeast)
]


def test_counted_options_exist():
    options = {(" ".join(p), o) for p, o, _ in COUNTED}
    assert {("bench loop", "--rounds"), ("train", "--iterations"), ("diagnose overhead", "--seed")} <= options


@pytest.mark.parametrize(("path", "option", "minimum"), COUNTED, ids=[f"{' '.join(p)} {o}" for p, o, _ in COUNTED])
def test_a_count_below_its_minimum_is_a_one_line_error(path, option, minimum, capsys):
    assert main([*path, option, str(minimum - 1)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"qarl {path[0]}: error: {option} must be at least {minimum}, got {minimum - 1}"
    assert main([*path, option, "three"]) == 2
    assert capsys.readouterr().err.strip() == f"qarl {path[0]}: error: {option} must be an integer, got 'three'"


def _subparsers(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subparsers(sub, (*prefix, name))


def test_every_help_has_an_example_that_parses():
    import shlex

    from qarl.cli import build_parser
    from qarl.cli.diagnose import with_run_subcommand

    parser = build_parser()
    commands = list(_subparsers(parser))
    assert len(commands) >= 20
    for path, sub in commands:
        assert sub.epilog and sub.epilog.startswith("example: qarl "), f"qarl {' '.join(path)} --help has no example"
        argv = shlex.split(sub.epilog.removeprefix("example: qarl "))
        assert argv[: len(path)] == list(path) or path[0] == "diagnose", (path, argv)
        args = build_parser().parse_args(with_run_subcommand(argv))  # the example is a valid command line
        assert callable(getattr(args, "func", None)) or path in (("bench",), ("diagnose",)), path
