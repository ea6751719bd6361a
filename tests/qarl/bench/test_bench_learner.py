"""The learner benchmark: its analytic FLOP count is what the two update paths execute, and its commands run."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from learner_pairs import pair as _pair  # the equivalence tests' pair of models (tests/qarl/learner_pairs.py)
from torch.utils.flop_counter import FlopCounterMode

from qarl import provenance
from qarl.bench.learner import paper_scale_counts, record_matmuls, replay_seconds
from qarl.cli import main
from qarl.sac import fast as fast_sac
from qarl.sac.flops import sac_update_flops
from qarl.sac.learner import QSAC, SACConfig


def _linear_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOP of oneDNN's linear x @ w.T (+ bias, ReLU): 2 per multiply-add, as FlopCounterMode counts mm."""
    return 2 * x_shape[0] * x_shape[1] * w_shape[0]


@pytest.mark.parametrize("onednn", [True, False])
@pytest.mark.parametrize("net_arch", [(32, 24, 16), (256, 256, 256)])
def test_flop_count_is_what_each_path_executes(net_arch, onednn, monkeypatch):
    """torch's FlopCounterMode (2 FLOP per multiply-add of mm/addmm/bmm/baddbmm and of the fast update's oneDNN
    linear op, autograd's included), with the fast update's matmuls through oneDNN and through torch.mm."""
    if not onednn:
        monkeypatch.setenv("QARL_ONEDNN", "0")
    elif fast_sac.onednn_linear() is None:
        pytest.skip("this torch build has no usable oneDNN linear op")
    else:
        monkeypatch.setenv("QARL_ONEDNN", "1")  # forced, also for the small network
    batch = 16
    fast, ref = _pair(QSAC, SACConfig(net_arch=net_arch, batch_size=batch), 17)
    counts = {}
    mapping = {th.ops.mkldnn._linear_pointwise: _linear_flop} if onednn else {}
    for name, model in (("fast", fast), ("sb3", ref)):
        model.train(1, batch)  # the first fast step builds its layout; count a later one
        with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model.train(1, batch)
        counts[name] = counter.get_total_flops()
    expected = sac_update_flops(17, 6, net_arch, batch)
    # The fast update computes the value heads' input gradients, 2 per critic (critic loss, actor loss), each a
    # (B, 1) x (1, width) outer product counted as 2 * B * width, as broadcast products that FlopCounterMode skips
    outer = 2 * 2 * 2 * batch * net_arch[-1]
    assert counts == {"fast": expected["required"] - outer, "sb3": expected["executed by SB3"]}
    # `qarl bench update`'s replay of the fast step's matmul calls covers exactly those FLOP, and replaying them
    # leaves the model untouched (they only write the step's own scratch tensors)
    calls = record_matmuls(fast._fast.step)
    assert sum(flop for *_, flop in calls) == expected["required"] - outer
    assert {op._schema.name for op, *_ in calls} <= {
        "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "mkldnn::_linear_pointwise"
    }  # fmt: skip
    before = [p.detach().clone() for p in fast.policy.parameters()]
    assert replay_seconds(calls, repeats=2) > 0
    assert all(th.equal(a, b) for a, b in zip(before, fast.policy.parameters(), strict=True))


def test_flop_count_at_the_qarl_settings():
    flops = sac_update_flops(17, 6, (256, 256, 256), 256)
    assert flops["required"] == 1_113_980_928
    assert 1.25e9 < flops["executed by SB3"] < 1.28e9  # the "about 1.27 GFLOP"


def test_paper_scale_counts_follow_the_players_update_rule():
    # Player.observe: update after the k-th own transition if k % train_every == 0 and k >= learning_starts
    for own, every, starts in [(10_000, 3, 3000), (1000, 3, 1000), (999, 1, 0), (50, 7, 10)]:
        brute = sum(1 for k in range(1, own + 1) if k % every == 0 and k >= starts)
        got = paper_scale_counts(iterations=1, episodes_per_phase=1, horizon=own, train_every=every,
                                 learning_starts=starts)  # fmt: skip
        assert got["updates"] == 2 * brute
    paper = paper_scale_counts()
    assert paper == {"train_steps": 2_000_000, "updates": 664_668, "eval_steps": 800_000}
    assert np.isclose(paper["updates"], 2 * 1_000_000 / 3, rtol=0.01)  # the "667k gradient updates"


def test_bench_update_runs(capsys, monkeypatch):
    import qarl.bench.learner as bench

    monkeypatch.setattr(bench, "sbx_available", lambda: False)  # the peer's rows: test_bench_update_with_sbx
    assert main(["bench", "update", "--rounds", "1", "--updates", "2"]) == 0
    captured = capsys.readouterr()
    assert "sbx-rl is not installed" in captured.err and "sbx-rl SAC" not in captured.out
    out = captured.out
    assert out.startswith("# qarl bench update\n") and provenance.cpu_model() in out  # the shared header first
    assert "FLOP per update: 1.114 GFLOP required by the algorithm" in out
    assert "qarl fast update" in out and "stable-baselines3 SAC.train" in out and "of limit" in out
    assert "matmul calls alone (1.113 GFLOP), replayed in order" in out
    assert main(["bench", "update", "--rounds", "0"]) == 2


@pytest.mark.slow
def test_bench_update_with_sbx(capsys):
    """With sbx-rl installed (`pip install -e ".[bench]"`), its SAC is measured beside the suite's and the ratio
    printed."""
    pytest.importorskip("sbx")
    assert main(["bench", "update", "--rounds", "1", "--updates", "64"]) == 0
    out = capsys.readouterr().out
    assert "sbx-rl SAC (JAX), 1 per call" in out and "sbx-rl SAC (JAX), 64 per call" in out
    assert "qarl fast update vs sbx-rl SAC (JAX), 1 per call: " in out and "XLA_FLAGS: " in out


@pytest.mark.slow
def test_bench_trial_runs(capsys):
    assert main(["bench", "trial", "--task", "dmc/cartpole-balance", "--episodes", "1", "--learning-starts", "900",
                 "--rounds", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "paper-scale trial" in out and "5.8 h" in out


def test_the_kernel_chosen_is_the_faster_measured_and_a_forced_one_is_honoured(monkeypatch) -> None:
    """choose_kernel keeps the faster of the two timed kernels (timings injected), once per process and shape;
    QARL_ONEDNN=0/1 forces one whatever the timings; off the CPU it is torch.mm."""
    if fast_sac.onednn_linear() is None:
        pytest.skip("this torch build has no usable oneDNN linear op")
    monkeypatch.delenv("QARL_ONEDNN", raising=False)
    monkeypatch.setattr(fast_sac, "_kernel_cache", {})
    cpu, calls = th.device("cpu"), []

    def timer(times):
        def measure(shapes, batch, networks):
            calls.append((tuple(shapes), batch, networks))
            return times

        return measure

    shapes = [(256, 23), (256, 256), (1, 256)]
    assert fast_sac.choose_kernel(shapes, 256, 2, cpu, timer({"onednn": 2e-3, "mm": 3e-3})) == "onednn"
    assert fast_sac.choose_kernel(shapes, 64, 2, cpu, timer({"onednn": 3e-3, "mm": 2e-3})) == "mm"
    assert fast_sac.choose_kernel(shapes, 256, 2, cpu, timer({"onednn": 9.0, "mm": 1e-3})) == "onednn"  # cached
    assert len(calls) == 2
    for forced, kernel in (("0", "mm"), ("1", "onednn")):
        monkeypatch.setenv("QARL_ONEDNN", forced)
        assert fast_sac.choose_kernel(shapes, 32, 2, cpu, timer({"onednn": 1.0, "mm": 1.0} | {kernel: 2.0})) == kernel
    assert len(calls) == 2  # a forced kernel is never timed
    monkeypatch.setenv("QARL_ONEDNN", "maybe")
    with pytest.raises(ValueError, match="QARL_ONEDNN='maybe'"):
        fast_sac.choose_kernel(shapes, 32, 2, cpu)
    monkeypatch.delenv("QARL_ONEDNN")
    assert fast_sac.choose_kernel(shapes, 256, 2, th.device("meta"), timer({"onednn": 0.0, "mm": 1.0})) == "mm"


def test_the_real_timing_picks_its_own_argmin_and_the_model_records_it(monkeypatch) -> None:
    if fast_sac.onednn_linear() is None:
        pytest.skip("this torch build has no usable oneDNN linear op")
    monkeypatch.delenv("QARL_ONEDNN", raising=False)
    monkeypatch.setattr(fast_sac, "_kernel_cache", {})
    fast, _ = _pair(QSAC, SACConfig(net_arch=(64, 64), batch_size=128), 17)
    fast.matmul_kernel = None
    fast.train(1, 128)
    key = (tuple(fast_sac.critic_shapes(fast)), 128, 2)
    timings = fast_sac.kernel_timings[key]
    assert set(timings) == {"onednn", "mm"} and all(t > 0 for t in timings.values())
    assert fast.matmul_kernel == min(timings, key=timings.get) == fast._fast.kernel
    assert (fast._fast.critics.linear is not None) == (fast.matmul_kernel == "onednn")

