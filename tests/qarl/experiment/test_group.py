"""Many seeds per process: each seed of a grouped run is its single-seed run (issue 10, item 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch as th
from gymnasium import spaces

from qarl.cli import main
from qarl.config import parse_overrides
from qarl.experiment.group import SeedStream, run_group
from qarl.experiment.trial import TrialError, resolve_config, run_dir_for, run_trial
from qarl.sac.alpha import AlphaConditionedSAC
from qarl.sac.grouped import GroupedSACUpdate, group_key
from qarl.sac.learner import QSAC, SACConfig, make_sac
from qarl.training.checkpoint import list_checkpoints, load_checkpoint

TASK = "dmc/cartpole-balance"
SEEDS = (0, 1)
TIMING_COLUMNS = ["wall_time", "steps_per_s"]
OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah-sized
ACT = spaces.Box(-2.0, 2.0, (ACT_DIM,), np.float32)


def _space(dim: int) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, (dim,), np.float64)


def _fill(model: QSAC, n: int, seed: int, alpha_entry: bool) -> None:
    """n random transitions (some terminal, some truncated, some saturated actions; QARL's alpha last when asked)."""
    rng = np.random.default_rng(seed)
    dim = model.observation_space.shape[0]
    for _ in range(n):
        obs, next_obs = rng.normal(size=(2, dim))
        if alpha_entry:
            obs[-1], next_obs[-1] = rng.gamma(50.0, 1 / 1000.0, size=2)
        action = np.clip(rng.uniform(-1.1, 1.1, ACT_DIM), -1, 1).astype(np.float32)
        done = rng.random() < 0.1
        info = {"TimeLimit.truncated": done and rng.random() < 0.5}
        model.replay_buffer.add(obs[None], next_obs[None], action[None], np.array([rng.normal()]), np.array([done]),
                                [info])  # fmt: skip


def _quiet(msg: str) -> None:
    pass


# ---------------------------------------------------------------------------------------------- the batched step
def _models(model_cls: type[QSAC], config: SACConfig, k: int) -> tuple[list[QSAC], list[QSAC]]:
    """k (grouped, reference) pairs with identical weights and buffers; the k models differ from each other."""
    alpha_entry = model_cls is AlphaConditionedSAC
    dim = OBS_DIM + alpha_entry
    grouped, refs = [], []
    for i in range(k):
        th.manual_seed(i)
        m = make_sac(config, _space(dim), ACT, model_cls=model_cls)
        r = make_sac(config, _space(dim), ACT, model_cls=model_cls)
        r.policy.load_state_dict(m.policy.state_dict())
        for model in (m, r):
            _fill(model, 200 + 50 * i, i, alpha_entry)
        grouped.append(m)
        refs.append(r)
    return grouped, refs


def _streams(k: int) -> list[SeedStream]:
    out = []
    for i in range(k):
        np.random.seed(100 + i)
        th.manual_seed(200 + i)
        out.append(SeedStream())
    return out


@pytest.mark.parametrize("model_cls", [QSAC, AlphaConditionedSAC], ids=["QSAC", "qarl-adversary"])
def test_grouped_step_is_each_models_own_fast_step(model_cls: type[QSAC], matmul_backend: str) -> None:
    config, k, steps = SACConfig(net_arch=(64, 64), batch_size=32, buffer_size=1000), 3, 6
    grouped, refs = _models(model_cls, config, k)
    before = [{n: v.clone() for n, v in m.policy.state_dict().items()} for m in grouped]
    rng_ref = []
    for i, r in enumerate(refs):  # reference: each model's own fast update, from its own generators
        np.random.seed(100 + i)
        th.manual_seed(200 + i)
        for _ in range(steps):  # one step per call, as the loop drives it: the logger holds the last step's losses
            r.train(gradient_steps=1, batch_size=config.batch_size)
        assert r._fast is not None
        rng_ref.append((np.random.get_state()[1].copy(), th.get_rng_state()))
    streams = _streams(k)
    update = GroupedSACUpdate(grouped, config.batch_size)
    for _ in range(steps):
        actor, critic, temp, alpha = update.step(streams)
    for i, (m, r) in enumerate(zip(grouped, refs, strict=True)):
        state, ref_state = m.policy.state_dict(), r.policy.state_dict()
        for name in state:
            th.testing.assert_close(state[name], ref_state[name], atol=1e-5, rtol=0, msg=lambda s, n=name: f"{n}: {s}")
            if name.startswith(("actor.", "critic.", "critic_target.")):
                assert not th.equal(state[name], before[i][name]), name  # the step moved it
        if r.ent_coef_optimizer is not None:
            th.testing.assert_close(m.log_ent_coef.detach(), r.log_ent_coef.detach(), atol=1e-6, rtol=0)
            assert temp is not None
            assert temp[i] == pytest.approx(r.logger.name_to_value["train/ent_coef_loss"], abs=1e-5)
        assert actor[i] == pytest.approx(r.logger.name_to_value["train/actor_loss"], rel=1e-4, abs=1e-6)
        assert critic[i] == pytest.approx(r.logger.name_to_value["train/critic_loss"], rel=1e-4, abs=1e-6)
        assert alpha[i] == pytest.approx(r.logger.name_to_value["train/ent_coef"], rel=1e-5)
        # the same random draws: each stream ends where the model's own run left the global generators
        assert np.array_equal(streams[i].numpy[1], rng_ref[i][0]) and th.equal(streams[i].torch, rng_ref[i][1])
        for name in ("actor", "critic"):  # the Adam moments the checkpoints carry
            opt, opt_ref = getattr(m, name).optimizer, getattr(r, name).optimizer
            for p, q in zip(opt.param_groups[0]["params"], opt_ref.param_groups[0]["params"], strict=True):
                assert float(opt.state[p]["step"]) == float(opt_ref.state[q]["step"]) == steps
                th.testing.assert_close(opt.state[p]["exp_avg"], opt_ref.state[q]["exp_avg"], atol=1e-6, rtol=1e-4)


def test_grouped_layout_keeps_sb3_parameters_and_rebinds(matmul_backend: str) -> None:
    config = SACConfig(net_arch=(16,), batch_size=8, buffer_size=1000)
    grouped, _ = _models(QSAC, config, 2)
    params = [list(m.policy.parameters()) for m in grouped]
    update = GroupedSACUpdate(grouped, config.batch_size)
    update.step(_streams(2))
    assert [list(m.policy.parameters()) for m in grouped] == params  # the Parameter objects the optimisers hold
    assert update.is_current(config.batch_size)
    grouped[0].train(gradient_steps=1, batch_size=config.batch_size)  # its own fast update takes the parameters back
    assert not update.is_current(config.batch_size)
    with pytest.raises(ValueError, match="compatible"):
        GroupedSACUpdate([grouped[0], make_sac(SACConfig(net_arch=(8,)), _space(OBS_DIM), ACT)], config.batch_size)
    assert group_key(make_sac(SACConfig(fast_update=False), _space(OBS_DIM), ACT), 8) is None


def test_seed_stream_swaps_the_global_generators() -> None:
    np.random.seed(5)
    th.manual_seed(5)
    stream = SeedStream()  # starts from the current states
    outer = np.random.get_state()[1].copy(), th.get_rng_state()
    with stream:
        a = np.random.rand(), th.rand(1).item()
    assert np.array_equal(np.random.get_state()[1], outer[0]) and th.equal(th.get_rng_state(), outer[1])
    with stream:  # continues where it stopped
        b = np.random.rand(), th.rand(1).item()
    np.random.seed(5)
    th.manual_seed(5)
    assert [a, b] == [(np.random.rand(), th.rand(1).item()), (np.random.rand(), th.rand(1).item())]


# ---------------------------------------------------------------------------------------------- grouped trials
def _config(algo: str, seed: int, iterations: int = 2, task: str = TASK, learning_starts: int = 150):
    """The smoke config, evaluation and diagnostics off; on cartpole 17 updates per learning player from 150."""
    players = ["protagonist"] if algo == "sac" else ["protagonist", "adversary"]
    sets = [f"loop.iterations={iterations}", "eval.enabled=false", "diagnostics.enabled=false"]
    sets += [f"{p}.learning_starts={learning_starts}" for p in players]
    return resolve_config(task, algo, seed, "smoke", parse_overrides(sets))


def _dirs(root: Path, algo: str, task: str = TASK, seeds: tuple[int, ...] = SEEDS) -> list[Path]:
    return [run_dir_for(root, "test", task, algo, s) for s in seeds]


def _final(run_dir: Path) -> dict:
    found = list_checkpoints(run_dir / "checkpoints")
    return load_checkpoint(found[-1][1])["trainer"]


def _assert_same_trial(single: Path, grouped: Path, atol: float = 1e-5) -> None:
    a, b = _final(single), _final(grouped)
    assert a["iteration"] == b["iteration"] and a["env_steps"] == b["env_steps"]
    for name, pa in a["players"].items():
        pb = b["players"][name]
        assert pa["updates"] == pb["updates"] > 0
        for key, value in pa["policy"].items():
            msg = f"{name} {key}"
            th.testing.assert_close(pb["policy"][key], value, atol=atol, rtol=0, msg=lambda m, t=msg: f"{t}: {m}")
        if "log_ent_coef" in pa:
            th.testing.assert_close(pb["log_ent_coef"], pa["log_ent_coef"], atol=atol, rtol=0)
        np.testing.assert_allclose(pb["buffer"]["arrays"]["observations"], pa["buffer"]["arrays"]["observations"],
                                   atol=1e-4)  # fmt: skip
    # every random draw of the seed's single run, in the same number: the generators end in the same state
    assert np.array_equal(a["rng"]["numpy"][1], b["rng"]["numpy"][1]) and a["rng"]["numpy"][2] == b["rng"]["numpy"][2]
    assert th.equal(a["rng"]["torch"], b["rng"]["torch"])
    pa, pb = (pd.read_parquet(d / "progress.parquet").drop(columns=TIMING_COLUMNS) for d in (single, grouped))
    pd.testing.assert_frame_equal(pa, pb, rtol=1e-4, atol=1e-4)


@pytest.fixture
def batched_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The group size of every batched step taken."""
    sizes: list[int] = []
    step = GroupedSACUpdate.step

    def counting(self: GroupedSACUpdate, streams=None, critic_only=False):
        sizes.append(self.k)
        return step(self, streams, critic_only=critic_only)

    monkeypatch.setattr(GroupedSACUpdate, "step", counting)
    return sizes


@pytest.mark.parametrize("algo", ["sac", "rarl", "qarl"])
def test_each_seed_of_a_group_is_its_single_seed_run(tmp_path: Path, algo: str, batched_steps: list[int]) -> None:
    singles = _dirs(tmp_path / "single", algo)
    for seed, run_dir in zip(SEEDS, singles, strict=True):
        assert run_trial(_config(algo, seed), run_dir=run_dir, log=_quiet)["status"] == "completed"
    grouped = _dirs(tmp_path / "group", algo)
    np.random.seed(123)
    caller = np.random.get_state()[1].copy()
    metas = run_group([_config(algo, s) for s in SEEDS], grouped, log=_quiet)
    assert np.array_equal(np.random.get_state()[1], caller)  # the caller's generators are untouched
    assert [m["status"] for m in metas] == ["completed"] * len(SEEDS)
    assert [m["seed"] for m in metas] == list(SEEDS)
    players = 1 if algo == "sac" else 2
    assert batched_steps == [len(SEEDS)] * (17 * players)  # every step of both seeds batched
    for single, group in zip(singles, grouped, strict=True):
        _assert_same_trial(single, group)


def test_seeds_whose_update_schedules_drift_apart_still_match(tmp_path: Path, batched_steps: list[int]) -> None:
    """Hopper's episodes end when it falls: the seeds' steps fall due at different times, in groups of 1 to K."""
    task, seeds = "gym/Hopper-v5", (0, 1, 2)
    singles, grouped = _dirs(tmp_path / "single", "rarl", task, seeds), _dirs(tmp_path / "group", "rarl", task, seeds)
    for seed, run_dir in zip(seeds, singles, strict=True):
        run_trial(_config("rarl", seed, task=task, learning_starts=20), run_dir=run_dir, log=_quiet)
    run_group([_config("rarl", s, task=task, learning_starts=20) for s in seeds], grouped, log=_quiet)
    assert {1, 2} <= set(batched_steps)  # smaller groups were batched too (a layout rebound per membership)
    for single, group in zip(singles, grouped, strict=True):
        _assert_same_trial(single, group)


def test_a_shared_random_stream_breaks_the_equivalence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison above can fail: with one stream shared by the seeds, seed 1's run is another run."""
    single = _dirs(tmp_path / "single", "sac")[1]
    run_trial(_config("sac", SEEDS[1]), run_dir=single, log=_quiet)
    monkeypatch.setattr(SeedStream, "__enter__", lambda self: self)
    monkeypatch.setattr(SeedStream, "__exit__", lambda self, *exc: None)
    grouped = _dirs(tmp_path / "group", "sac")
    run_group([_config("sac", s) for s in SEEDS], grouped, log=_quiet)
    with pytest.raises(AssertionError):
        _assert_same_trial(single, grouped[1])


def test_a_stopped_group_resumes_like_an_uninterrupted_run(tmp_path: Path) -> None:
    singles = _dirs(tmp_path / "single", "sac")
    for seed, run_dir in zip(SEEDS, singles, strict=True):
        run_trial(_config("sac", seed, iterations=3), run_dir=run_dir, log=_quiet)
    grouped = _dirs(tmp_path / "group", "sac")
    metas = run_group([_config("sac", s, iterations=3) for s in SEEDS], grouped, log=_quiet, stop_after=2)
    assert [m["status"] for m in metas] == ["stopped"] * len(SEEDS)
    metas = run_group([None] * len(SEEDS), grouped, resume=True, log=_quiet)
    assert [m["status"] for m in metas] == ["completed"] * len(SEEDS)
    for single, group in zip(singles, grouped, strict=True):
        _assert_same_trial(single, group)
    # a grouped run directory also resumes on its own, as a single-seed trial
    meta = run_trial(None, run_dir=grouped[0], resume=True, iterations=4, log=_quiet)
    assert meta["status"] == "completed" and meta["iterations_done"] == 4


def test_a_failed_batched_step_fails_those_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, streams=None, critic_only=False):
        raise RuntimeError("broken step")

    monkeypatch.setattr(GroupedSACUpdate, "step", broken)
    grouped = _dirs(tmp_path, "sac")
    with pytest.raises(RuntimeError, match="broken step"):
        run_group([_config("sac", s) for s in SEEDS], grouped, log=_quiet)
    for run_dir in grouped:
        meta = pd.read_json(run_dir / "meta.json", typ="series")
        assert meta["status"] == "failed" and "broken step" in meta["failure_reason"]


def test_run_group_checks_its_arguments(tmp_path: Path) -> None:
    dirs = _dirs(tmp_path, "sac")
    with pytest.raises(TrialError, match="one run directory per config"):
        run_group([_config("sac", 0)], dirs)
    with pytest.raises(TrialError, match="seeds of a group must differ"):
        run_group([_config("sac", 0), _config("sac", 0)], dirs)
    with pytest.raises(TrialError, match="one \\(task, method\\)"):
        run_group([_config("sac", 0), _config("rarl", 1)], dirs)
    with pytest.raises(TrialError, match="must differ"):
        run_group([_config("sac", 0), _config("sac", 1)], [dirs[0], dirs[0]])


def test_cli_train_with_several_seeds_writes_one_run_directory_each(tmp_path: Path, capsys) -> None:
    args = ["train", "--task", TASK, "--algo", "sac", "--seeds", "3", "4", "--iterations", "1", "--out", str(tmp_path)]
    args += ["--experiment", "e", "--set", "eval.enabled=false", "--set", "protagonist.learning_starts=60"]
    assert main(args) == 0
    for seed in (3, 4):
        run_dir = run_dir_for(tmp_path, "e", TASK, "sac", seed)
        assert (run_dir / "progress.parquet").exists() and list_checkpoints(run_dir / "checkpoints")
        assert pd.read_json(run_dir / "meta.json", typ="series")["status"] == "completed"
    assert main([*args[:-4], "--resume", "--iterations", "2"]) == 0
    assert main([*args, "--seed", "1"]) == 2  # --seed and --seeds together
    assert "not both" in capsys.readouterr().err


def test_bench_group_reports_total_updates_per_second(capsys) -> None:
    from qarl.bench.learner import bench_group

    summary = bench_group(ks=(1, 2), rounds=1, updates=1)
    learners = summary["learners"]
    assert [v["k"] for v in learners.values()] == [1, 1, 2]
    assert all(v["updates_per_s"] > 0 for v in learners.values())
    assert "grouped, K = 2" in capsys.readouterr().out


def test_a_grouped_critic_only_step_is_each_models_own(matmul_backend: str) -> None:
    """Below actor_learning_starts (the QARL authors' separate warm-up) the batched step holds every actor and
    temperature, as each model's own fast step does, and moves the critics the same way."""
    config = SACConfig(net_arch=(64, 64), batch_size=32, buffer_size=1000, learning_starts=10,
                       actor_learning_starts=5000)  # fmt: skip
    grouped, refs = _models(QSAC, config, 2)
    assert all(m.critic_only() for m in grouped)
    before = [{n: v.clone() for n, v in m.policy.state_dict().items()} for m in grouped]
    for i, r in enumerate(refs):
        np.random.seed(100 + i)
        th.manual_seed(200 + i)
        for _ in range(3):
            r.train(gradient_steps=1, batch_size=config.batch_size)
    streams = _streams(2)
    update = GroupedSACUpdate(grouped, config.batch_size)
    for _ in range(3):
        update.step(streams, critic_only=True)
    for i, (m, r) in enumerate(zip(grouped, refs, strict=True)):
        for name, value in m.policy.state_dict().items():
            th.testing.assert_close(value, r.policy.state_dict()[name], atol=1e-5, rtol=0)
            assert th.equal(value, before[i][name]) == name.startswith("actor."), name
        assert th.equal(m.log_ent_coef.detach(), r.log_ent_coef.detach())
