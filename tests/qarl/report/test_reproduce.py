"""`qarl reproduce`: every paper figure at smoke scale through the real sweep path (embedded local Ray), the reuse
of completed runs, `--list`, the paper-scale budgets and the errors.

The default run reproduces robust-small (4 trials at calibrated strengths) and the testbed (no training); CI's setup
step reproduces qarl-table1 at smoke scale; every other figure (about 25 more trials) runs with -m slow."""

from __future__ import annotations

import pandas as pd
import pytest

from qarl.cli import main
from qarl.report.reproduce import FIGURES, estimate, get_figure, plan_figure

ALL = list(FIGURES)
DEFAULT = {f.name for f in FIGURES.values() if f.sweep in (None, "robust-small")}


class Reproduced:
    """Figures reproduced at smoke scale into one folder on first use (figures sharing a sweep share its runs)."""

    def __init__(self, out):
        self.out, self.codes = out, {}

    def code(self, name: str) -> int:
        if name not in self.codes:
            self.codes[name] = main(["reproduce", name, "--scale", "smoke", "--out", str(self.out)])
        return self.codes[name]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return Reproduced(tmp_path_factory.mktemp("figures"))


@pytest.mark.parametrize("name", [n if n in DEFAULT else pytest.param(n, marks=pytest.mark.slow) for n in ALL])
def test_every_figure_runs_at_smoke_scale(smoke, name):
    out = smoke.out
    assert smoke.code(name) == 0
    folder = out / "smoke" / name
    pngs = list(folder.glob("*.png"))
    assert pngs and all(p.stat().st_size > 5_000 for p in pngs), pngs
    md = list(folder.glob("*.md"))
    csv = list(folder.glob("*.csv"))
    assert md and csv
    text = md[0].read_text()
    if name != "realizability-testbed":  # the testbed's page is written by `qarl diagnose testbed`
        assert "Runs: " in text and "Versions: " in text and "scale(s) smoke" in text and "qarl reproduce" in text


def test_robust_small_tables_hold_the_runs_numbers(smoke):
    assert smoke.code("robust-small") == 0
    fig = smoke.out / "smoke"
    verdicts = pd.read_csv(fig / "robust-small" / "verdicts.csv")
    assert len(verdicts) == 5 * 3 and (verdicts.verdict == "inconclusive").all()  # 1 seed each: never decisive
    scores = pd.read_csv(fig / "robust-small" / "scores.csv")
    assert len(scores) == 4 and scores[["nominal", "worst_case", "grid_mean"]].notna().all().all()
    configs = [(p / "config.yaml").read_text() for p in (fig / "runs" / "robust-small").rglob("seed=*")]
    assert len(configs) == 4 and all("strength:" in c for c in configs)  # bounds resolved from the calibration


@pytest.mark.slow
def test_main_sweep_figure_tables_hold_the_runs_numbers(smoke):
    assert all(smoke.code(name) == 0 for name in ("qarl-table1", "qarl-temperature"))
    fig = smoke.out / "smoke"
    table1 = pd.read_csv(fig / "qarl-table1" / "table1.csv").set_index("method")
    assert set(table1.index) == {"sac", "rarl", "qarl"}
    assert table1.loc["sac", "performance_pct"] == pytest.approx(0, abs=1e-9)  # the reference vs itself
    assert (table1["seeds"] == 2).all()
    temp = pd.read_csv(fig / "qarl-temperature" / "temperature.csv")
    assert temp[temp.iteration == 1]["iqm_teacher_kappa"].iloc[0] == pytest.approx(50.0)  # the teacher's start


@pytest.mark.slow
def test_the_other_sweeps_figure_tables_hold_the_runs_numbers(smoke):
    names = ("qarl-heatmaps", "rarl-percentile", "qarl-navigation", "realizability-critics", "qarl-ablation")
    assert all(smoke.code(name) == 0 for name in names)
    fig = smoke.out / "smoke"
    cells = pd.read_csv(fig / "qarl-heatmaps" / "heatmaps.csv")
    assert cells.groupby("method").size().to_dict() == {"qarl": 9, "rarl": 9, "sac": 9}  # 3 x 3 smoke grid
    pct = pd.read_csv(fig / "rarl-percentile" / "percentile.csv")
    assert pct.groupby("method").size().to_dict() == {"qarl": 2, "rarl": 2, "sac": 2}
    assert (pct.groupby("method")["return"].apply(lambda r: r.is_monotonic_increasing)).all()
    nav = pd.read_csv(fig / "qarl-navigation" / "navigation.csv")
    assert sorted(nav.wind_factor.unique()) == [1, 2, 3, 4] and set(nav.method) == {"sac", "qarl"}
    critics = pd.read_csv(fig / "realizability-critics" / "critics.csv")
    assert set(critics.method) == {"rarl", "qarl"} and critics["iqm"].notna().all()
    ablation = pd.read_csv(fig / "qarl-ablation" / "ablation.csv")
    assert set(ablation.method) == {"qarl", "qarl_linear", "qarl_point", "qarl_single", "qarl_homogeneous"}


def test_completed_runs_are_reused_not_rerun(smoke, capsys):
    assert smoke.code("robust-small") == 0
    out = smoke.out
    capsys.readouterr()
    runs = sorted((out / "smoke" / "runs").rglob("progress.parquet"))
    before = {p: p.stat().st_mtime_ns for p in runs}
    assert main(["reproduce", "robust-small", "--scale", "smoke", "--out", str(out)]) == 0
    assert "all 4 trials completed earlier" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in runs} == before


def test_list_shows_every_figure_with_trials_and_cpu_hours(capsys):
    assert main(["reproduce", "--list"]) == 0
    text = capsys.readouterr().out
    for name in ALL:
        assert f"| {name} |" in text
    assert "configs/sweeps/qarl-main.yaml" in text and "no training" in text
    assert estimate(get_figure("qarl-table1"), "paper")[0] == 18 * 8 * 5


def test_paper_scale_is_the_papers_budget(tmp_path):
    sweep, trials = plan_figure(get_figure("qarl-temperature"), "paper", tmp_path)
    qarl = next(t for t in trials if t.method == "qarl")
    loop = qarl.config.loop
    # QARL: 200 iterations of 10 episodes (5 adversary + 5 protagonist) of 1000 steps, 3x256 SAC players
    assert (loop.iterations, 2 * loop.episodes_per_phase, loop.horizon) == (200, 10, 1000)
    assert qarl.config.algo.protagonist.net_arch == (256, 256, 256)
    assert sweep.scale == "paper" and not any(tmp_path.iterdir())  # planning writes nothing


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["reproduce", "qarl-tabel1"], "unknown figure 'qarl-tabel1'; did you mean qarl-table1"),
        (["reproduce"], "name a figure"),
    ],
)
def test_bad_figure_is_a_one_line_error(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_reproduce_block_is_checked(tmp_path):
    from qarl.config import ConfigError
    from qarl.sweep.config import parse_sweep

    base = {"name": "x", "tasks": ["dmc/cartpole-balance"], "methods": ["sac"], "seeds": [0]}
    with pytest.raises(ConfigError, match=r"reproduce.smoke.taks: unknown key"):
        parse_sweep({**base, "reproduce": {"smoke": {"taks": []}}})
    with pytest.raises(ConfigError, match=r"reproduce.huge: unknown scale"):
        parse_sweep({**base, "reproduce": {"huge": {}}})
    assert parse_sweep({**base, "reproduce": {"small": {"seeds": [1]}}}).reproduce == {"small": {"seeds": [1]}}


def test_small_scale_selection_adds_method_overrides(tmp_path):
    """rarl-gym's small scale gives the pendulum a budget of its own, per player of each method."""
    _, trials = plan_figure(get_figure("rarl-percentile"), "small", tmp_path)
    by_method = {t.method: t.config.algo for t in trials if t.seed == 0}
    assert set(by_method) == {"sac", "rarl", "qarl"} and len(trials) == 15
    assert all((t.config.loop.iterations, t.config.loop.horizon) == (80, 300) for t in trials)
    for method, algo in by_method.items():
        for name in ("protagonist", "adversary"):  # the players the method has (sac: no adversary)
            if hasattr(algo, name):
                player = getattr(algo, name)
                assert (player.net_arch, player.learning_starts, player.train_every) == ((64, 64), 100, 1), method
    assert by_method["rarl"].adversary.initial_temperature == 0.2
    assert by_method["qarl"].protagonist.initial_temperature == 0.2
    # paper scale: the file as written (the QARL settings)
    _, paper = plan_figure(get_figure("rarl-percentile"), "paper", tmp_path)
    assert all(t.config.algo.protagonist.net_arch == (256, 256, 256) for t in paper)
    assert not any(tmp_path.iterdir())
