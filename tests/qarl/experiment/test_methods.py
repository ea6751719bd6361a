"""Every registered method (``qarl.experiment.registry``): its class, its YAML, and smoke trials that are
deterministic and resumable.

Parametrized over ``list_methods()`` (and ``envs.list_tasks()``), so that a new method or task is covered without
editing a test. The tests of one method's own mechanism live with it (tests/baselines/, tests/qarl/quantal/).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import envs
from qarl.config import configs_dir, from_dict, load_yaml
from qarl.experiment.registry import get_method, list_methods
from qarl.experiment.trial import resolve_config, run_dir_for, run_trial
from qarl.sac.learner import SACConfig

METHODS = list_methods()
TASK = "dmc/cartpole-balance"
TIMING = ["wall_time", "steps_per_s"]


def _quiet(msg: str) -> None:
    pass


def _progress(run_dir) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "progress.parquet").drop(columns=TIMING)


def _fields(algo: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(get_method(algo).config_cls)}


def _learners(algo: str) -> list[str]:
    """The method's config fields that hold a SAC learner's config (``protagonist``, ``adversary``)."""
    defaults = get_method(algo).config_cls()
    return [name for name in _fields(algo) if isinstance(getattr(defaults, name), SACConfig)]


def test_the_method_yamls_are_the_registered_methods():
    """One configs/methods/<name>.yaml per registered method, and none for an unregistered one."""
    assert sorted(p.stem for p in (configs_dir() / "methods").glob("*.yaml")) == sorted(METHODS)


@pytest.mark.parametrize("algo", METHODS)
def test_method_yaml_equals_its_dataclass_defaults(algo):
    cls = get_method(algo).config_cls
    assert from_dict(cls, load_yaml(configs_dir() / "methods" / f"{algo}.yaml")) == cls()


@pytest.mark.parametrize("algo", METHODS)
def test_trainer_class_declares_its_name_paper_config_and_phases(algo):
    cls = get_method(algo)
    assert cls.name == algo
    assert isinstance(cls.paper, str) and cls.paper.strip(), "the source `qarl methods` shows"
    assert dataclasses.is_dataclass(cls.config_cls)
    assert cls.phases and len(set(cls.phases)) == len(cls.phases)
    assert _learners(algo), "every method trains at least one SAC-configured player"


# the learner paths in the default run (one player, two, the teacher, MixedNE-LD's shared critic); the variants that
# share them with another method run with -m slow
RESUME_DEFAULT = {"sac", "rarl", "qarl", "mixedne_ld"}


@pytest.mark.parametrize(
    "algo", [a if a in RESUME_DEFAULT else pytest.param(a, marks=pytest.mark.slow) for a in METHODS]
)
def test_same_seed_same_progress_and_resume_equals_uninterrupted(tmp_path, algo):
    over: dict = {"loop": {"iterations": 4, "checkpoint_every": 2}}
    if "teacher" in _fields(algo):  # 4 pairs per update: the teacher moves within the run, the checkpoint carries it
        over["teacher"] = {"update_every": 4, "xi": -1e9}
    full = run_dir_for(tmp_path / "full", "t", TASK, algo, 3)
    meta = run_trial(resolve_config(TASK, algo, 3, "smoke", over), run_dir=full, log=_quiet)
    assert meta["status"] == "completed"  # the end-of-trial evaluation included
    expected = _progress(full)
    # "part" repeats iterations 1-3 from scratch (same seed: the same rows) and, stopped after 3, resumes from the
    # iteration-2 checkpoint (resume equality): both must equal "full". The end-of-trial evaluation writes no
    # progress row, so "part" skips it.
    quick = resolve_config(TASK, algo, 3, "smoke", {**over, "eval": {"enabled": False}})
    part = run_dir_for(tmp_path / "part", "t", TASK, algo, 3)
    assert run_trial(quick, run_dir=part, log=_quiet, stop_after=3)["status"] == "stopped"
    assert run_trial(None, run_dir=part, resume=True, log=_quiet)["status"] == "completed"
    pd.testing.assert_frame_equal(expected, _progress(part), check_exact=True)
    updates = [c for c in expected.columns if c.startswith("updates_")]
    assert updates and (expected.loc[expected["iteration"] == 2, updates] > 0).any(axis=None), (
        "the checkpoint holds learned state"
    )
    if "teacher_updates" in expected:
        assert expected["teacher_updates"].iloc[-1] >= 2
        assert expected["teacher_kappa"].iloc[-1] < 50, "the teacher moved (returns far above xi)"
    # another seed, another first row
    other = run_dir_for(tmp_path / "other", "t", TASK, algo, 4)
    run_trial(resolve_config(TASK, algo, 4, "smoke", {**over, "eval": {"enabled": False}}), run_dir=other,
              log=_quiet, stop_after=1)  # fmt: skip
    assert not _progress(other).iloc[0].equals(expected.iloc[0])


@pytest.mark.slow
@pytest.mark.parametrize("task", envs.list_tasks())
@pytest.mark.parametrize("algo", METHODS)
def test_every_method_trains_on_every_task(tmp_path, algo, task):
    # few transitions before updates: on tasks whose episodes end early (InvertedPendulum) too
    over: dict = {"loop": {"iterations": 2}}
    over.update({player: {"learning_starts": 8} for player in _learners(algo)})
    run_dir = run_dir_for(tmp_path, "s", task, algo, 0)
    assert run_trial(resolve_config(task, algo, 0, "smoke", over), run_dir=run_dir, log=_quiet)["status"] == "completed"
    df = pd.read_parquet(run_dir / "progress.parquet")
    assert len(df) == 2
    last = df.iloc[-1]
    for player in _learners(algo):  # every SAC-configured player learned, with finite losses
        assert last[f"updates_{player}"] > 0, player
        assert np.isfinite(last[f"critic_loss_{player}"]) and np.isfinite(last[f"actor_loss_{player}"]), player
