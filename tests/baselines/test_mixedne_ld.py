"""MixedNE-LD (``baselines.mixedne_ld``): the Langevin step, the NR-MDP mixture, one gradient step, trials."""

from __future__ import annotations

import copy
import math
import signal

import numpy as np
import pandas as pd
import pytest
import torch as th

from baselines.mixedne_ld import JOINT, MixedNELDConfig, MixedNELDTrainer, PreconditionedSGLD
from qarl.cli import main as qarl_main
from qarl.config import ConfigError, configs_dir, from_dict, load_yaml
from qarl.experiment.trial import resolve_config, run_dir_for
from qarl.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from qarl.training.loop import ADVERSARY, PROTAGONIST

ALGO = "mixedne_ld"
TIMING = ["wall_time", "steps_per_s"]


def _trainer(task: str = "dmc/cartpole-balance", seed: int = 0, **overrides) -> MixedNELDTrainer:
    config = resolve_config(task, ALGO, seed, "smoke", overrides)
    return MixedNELDTrainer(config.task, config.algo, config.loop, seed)


def test_yaml_lists_the_defaults_and_validation_names_the_key():
    data = load_yaml(configs_dir() / "methods" / f"{ALGO}.yaml")
    assert from_dict(MixedNELDConfig, data) == MixedNELDConfig()
    assert set(data) == {f for f in MixedNELDConfig.__dataclass_fields__}, "every field listed explicitly"
    c = MixedNELDConfig()
    assert (c.delta, c.sgld_lr, c.sgld_noise, c.sgld_beta, c.alpha, c.alpha_adv) == (
        0.1,
        3e-4,
        1e-3,
        0.999,
        0.005,
        0.005,
    )
    with pytest.raises(ConfigError, match="delta must lie in"):
        from_dict(MixedNELDConfig, {**data, "delta": 1.5})
    with pytest.raises(ConfigError, match="sgld_beta"):
        from_dict(MixedNELDConfig, {**data, "sgld_beta": 1.0})
    # the smoke scale shrinks the SACConfig-typed fields: networks and schedule
    trainer = _trainer()
    assert trainer.paper.startswith("Kamalaruban et al., NeurIPS 2020")
    assert trainer.critic.q1[0].out_features == 32 and trainer.players[ADVERSARY].actor.mu.in_features == 32
    assert trainer.buffer.capacity == 10_000


def test_sgld_two_steps_match_a_hand_computation(tmp_path):
    p = th.nn.Parameter(th.tensor([0.5, -1.0, 2.0], dtype=th.float64))
    q = th.nn.Parameter(th.tensor([[0.1, 0.2]], dtype=th.float64))
    lr, noise, lr_decay, noise_decay, beta, eps = 0.1, 0.5, 0.1, 0.2, 0.9, 1e-3
    opt = PreconditionedSGLD(
        [p, q], lr=lr, noise=noise, generator=th.Generator().manual_seed(123),
        lr_decay=lr_decay, noise_decay=noise_decay, beta=beta, eps=eps,
    )  # fmt: skip
    grads = [
        (th.tensor([0.3, -2.0, 0.0], dtype=th.float64), th.tensor([[1.0, -0.5]], dtype=th.float64)),
        (th.tensor([-0.1, 1.0, 0.4], dtype=th.float64), th.tensor([[0.2, 0.7]], dtype=th.float64)),
    ]
    ref = th.Generator().manual_seed(123)  # the same draws, in the optimizer's order: step by step, p then q
    theta = [p.detach().clone(), q.detach().clone()]
    v = [th.zeros_like(theta[0]), th.zeros_like(theta[1])]
    for k, gs in enumerate(grads):
        lr_k, sigma_k = lr * (1 - lr_decay) ** k, noise * (1 - noise_decay) ** k
        for i, g in enumerate(gs):
            v[i] = beta * v[i] + (1 - beta) * g**2
            precond = 1 / (eps + v[i].sqrt())
            xi = th.randn(g.shape, generator=ref, dtype=th.float64)
            theta[i] = theta[i] - lr_k * precond * g + (2 * lr_k * precond).sqrt() * sigma_k * xi
        p.grad, q.grad = gs[0].clone(), gs[1].clone()
        opt.step()
        th.testing.assert_close(p.detach(), theta[0], rtol=0, atol=1e-12)
        th.testing.assert_close(q.detach(), theta[1], rtol=0, atol=1e-12)
        th.testing.assert_close(opt.state[p]["square_avg"], v[0], rtol=0, atol=1e-15)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(lr * 0.9**2, abs=1e-15) and group["noise"] == pytest.approx(noise * 0.8**2)
    assert group["steps"] == 2

    # the state (V, decayed lr and noise, generator) survives a weights-only checkpoint round trip
    save_checkpoint(tmp_path / "sgld.pt", {"sgld": opt.state_dict()})
    p2, q2 = th.nn.Parameter(p.detach().clone()), th.nn.Parameter(q.detach().clone())
    opt2 = PreconditionedSGLD([p2, q2], lr=lr, noise=noise, generator=th.Generator().manual_seed(999))
    opt2.load_state_dict(load_checkpoint(tmp_path / "sgld.pt")["sgld"])
    for o, (a, b) in ((opt, (p, q)), (opt2, (p2, q2))):
        a.grad, b.grad = grads[0][0].clone(), grads[0][1].clone()
        o.step()
    assert th.equal(p, p2) and th.equal(q, q2)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] and opt2.param_groups[0]["steps"] == 3


def test_executed_action_is_the_mixture_within_the_protagonists_bounds():
    # the quadruped's actuator bounds are not [-1, 1] (and not symmetric), so the rescaling is exercised
    trainer = _trainer("dmc/quadruped-walk", loop={"horizon": 12})
    space = trainer.game.protagonist_action_space
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    sent, acted = [], {PROTAGONIST: [], ADVERSARY: []}
    original_step = trainer.game.step

    def step(a_p, force):
        sent.append((np.array(a_p), np.array(force)))
        return original_step(a_p, force)

    trainer.game.step = step
    for name, player in trainer.players.items():
        act = player.act
        player.act = lambda obs, det, act=act, name=name: acted[name].append(act(obs, det)) or acted[name][-1]

    def rescale(x):
        return low + (x + 1) / 2 * (high - low)

    trainer.play_episode(trainer.game, 7, JOINT, False, True)
    a_pi, a_adv = np.array(acted[PROTAGONIST]), np.array(acted[ADVERSARY])
    executed = np.array([a for a, _ in sent])
    np.testing.assert_allclose(executed, rescale(0.9 * a_pi + 0.1 * a_adv), rtol=0, atol=1e-12)
    assert np.abs(a_adv - a_pi).max() > 0.1, "the adversary's action really enters the mixture"
    assert all(np.all(f == 0) for _, f in sent), "no external force: the adversary acts through the mixture"
    buf = trainer.buffer
    np.testing.assert_allclose(buf.a_exec[: buf.size()], 0.9 * buf.a_pi[: buf.size()] + 0.1 * buf.a_adv[: buf.size()],
                               rtol=0, atol=1e-6)  # fmt: skip

    # zero-adversary evaluation: delta mixing off, the protagonist's own (mean) action is executed
    sent.clear()
    for actions in acted.values():
        actions.clear()
    trainer.play_episode(trainer.game, 8, None, True, False)
    assert not acted[ADVERSARY]
    np.testing.assert_allclose(np.array([a for a, _ in sent]), rescale(np.array(acted[PROTAGONIST])), atol=1e-12)

    # saturated actors: the executed action sits exactly on the bounds, never beyond
    with th.no_grad():
        for player in trainer.players.values():
            player.actor.mu.bias.fill_(50.0)
    sent.clear()
    trainer.play_episode(trainer.game, 9, None, False, True)
    executed = np.array([a for a, _ in sent])
    assert np.all(executed <= high) and np.all(executed >= low)
    np.testing.assert_allclose(executed, np.broadcast_to(high, executed.shape), rtol=0, atol=1e-6)


def test_one_gradient_step_matches_the_soft_bellman_target_and_actor_losses():
    trainer = _trainer(alpha=0.5, alpha_adv=0.3, protagonist={"learning_starts": 10**6})  # no update while filling
    trainer.play_episode(trainer.game, 0, JOINT, False, True)
    assert trainer.buffer.size() == 50 and trainer.gradient_steps == 0
    pi, nu = (copy.deepcopy(trainer.players[n].actor) for n in (PROTAGONIST, ADVERSARY))
    critic, target = copy.deepcopy(trainer.critic), copy.deepcopy(trainer.critic_target)
    np_state, th_state = np.random.get_state(), th.get_rng_state()
    trainer.update()
    stats = {n: trainer.players[n].pop_stats() for n in (PROTAGONIST, ADVERSARY)}

    np.random.set_state(np_state)
    th.set_rng_state(th_state)
    buf = trainer.buffer
    idx = np.random.randint(0, buf.size(), size=32)
    b = {k: th.as_tensor(getattr(buf, k)[idx]) for k in buf.FIELDS}
    with th.no_grad():
        a2, logp2 = pi(b["next_obs"])
        c2, logq2 = nu(b["next_obs"])
        q1t, q2t = target(b["next_obs"], 0.9 * a2 + 0.1 * c2)
        y = b["reward"] + 0.99 * (1 - b["terminated"]) * (th.min(q1t, q2t) - 0.5 * logp2 + 0.3 * logq2)
        q1, q2 = critic(b["obs"], b["a_exec"])
        critic_loss = 0.5 * (((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean())
        a, logp = pi(b["obs"])
        c, logq = nu(b["obs"])
        q = th.min(*trainer.critic(b["obs"], 0.9 * a + 0.1 * c))  # the critic after its own step
    assert stats[PROTAGONIST]["critic_loss"] == pytest.approx(float(critic_loss), rel=1e-5)
    assert stats[ADVERSARY]["critic_loss"] == stats[PROTAGONIST]["critic_loss"], "one shared critic"
    assert stats[PROTAGONIST]["actor_loss"] == pytest.approx(float((0.5 * logp - q).mean()), rel=1e-5)
    assert stats[ADVERSARY]["actor_loss"] == pytest.approx(float((0.3 * logq + q).mean()), rel=1e-5)
    assert stats[PROTAGONIST]["temperature"] == 0.5 and stats[ADVERSARY]["temperature"] == 0.3
    params = (trainer.critic_target.parameters(), target.parameters(), trainer.critic.parameters())
    for p_t, p0, p in zip(*params, strict=True):
        th.testing.assert_close(p_t, 0.995 * p0 + 0.005 * p)
    for name, before in ((PROTAGONIST, pi), (ADVERSARY, nu)):
        after = trainer.players[name].actor
        assert not th.equal(after.mu.weight, before.mu.weight), f"the {name} actor moved"


def test_buffer_grows_by_the_training_steps_and_evaluation_stores_nothing(monkeypatch):
    trainer = _trainer()
    seen = []
    original = trainer.play_episode

    def spy(game, seed, learner, deterministic, adversary_on):
        before = (trainer.buffer.size(), trainer.gradient_steps)
        out = original(game, seed, learner, deterministic, adversary_on)
        seen.append((learner, adversary_on, before, (trainer.buffer.size(), trainer.gradient_steps), out[2]))
        return out

    monkeypatch.setattr(trainer, "play_episode", spy)
    rows = [trainer.run_iteration() for _ in range(2)]
    assert [s[0] for s in seen] == [JOINT, JOINT, None, None] * 2
    assert [s[1] for s in seen] == [True, True, True, False] * 2, "evaluation: against the adversary, then without"
    for learner, _, before, after, length in seen:
        if learner == JOINT:
            assert after[0] - before[0] == length
        else:
            assert after == before, "evaluation stores nothing and learns nothing"
    assert trainer.buffer.size() == trainer.env_steps == 200
    for row in rows:
        assert row["env_steps_protagonist"] == row["env_steps_adversary"] == row["env_steps"]
        assert row["updates_protagonist"] == row["updates_adversary"]
    assert rows[-1]["updates_protagonist"] == trainer.gradient_steps == len(range(66, 201, 3))  # learning_starts 64


# same seed same progress, another seed another run, resume equality: as every registered method's,
# tests/qarl/experiment/test_methods.py


def test_checkpoint_restores_every_piece(tmp_path):
    a = _trainer(seed=2)
    a.run_iteration()
    save_checkpoint(tmp_path / "c.pt", {"trainer": a.state_dict()})
    b = _trainer(seed=2)
    b.load_state_dict(load_checkpoint(tmp_path / "c.pt")["trainer"])  # weights_only=True
    for name in (PROTAGONIST, ADVERSARY):
        oa, ob = a.players[name].optimizer, b.players[name].optimizer
        assert oa.param_groups[0]["lr"] < 3e-4 and oa.param_groups[0]["noise"] < 1e-3, "decayed"
        assert [g["lr"] for g in ob.param_groups] == [g["lr"] for g in oa.param_groups]
        assert [g["noise"] for g in ob.param_groups] == [g["noise"] for g in oa.param_groups]
        assert th.equal(ob.generator.get_state(), oa.generator.get_state())
    assert b.buffer.size() == a.buffer.size() == 100 and b.joint_steps == a.joint_steps
    # the global generators are shared by both trainers in this process: give each the checkpoint's
    rng = rng_state()
    ra = a.run_iteration()
    set_rng_state(rng)
    rb = b.run_iteration()
    for k in TIMING:
        ra.pop(k), rb.pop(k)
    assert ra == rb


@pytest.mark.parametrize("task", ["dmc/cartpole-balance", "gym/Hopper-v5"])
def test_qarl_train_smoke(tmp_path, task):
    argv = ["train", "--task", task, "--algo", ALGO, "--iterations", "2", "--out", str(tmp_path), "--experiment", "s"]
    argv += ["--set", "protagonist.learning_starts=8"]  # Hopper's early episodes end within a few steps
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert qarl_main(argv) == 0
    finally:
        signal.signal(signal.SIGTERM, handler)  # `qarl train` installs its own
    df = pd.read_parquet(run_dir_for(tmp_path, "s", task, ALGO, 0) / "progress.parquet")
    assert len(df) == 2
    last = df.iloc[-1]
    for col in ("actor_loss_protagonist", "actor_loss_adversary", "critic_loss_protagonist", "eval_return_adversary",
                "eval_return_zero_force", "train_return_joint_phase"):  # fmt: skip
        assert math.isfinite(last[col]), col
    assert last["updates_protagonist"] > 0 and last["updates_adversary"] > 0
    assert last["temperature_protagonist"] == last["temperature_adversary"] == 0.005
