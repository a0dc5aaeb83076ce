"""V-MPO's batch options: minibatches of env columns (algo.vmpo.num_minibatches) and TD(lambda) targets
(algo.vmpo.gae_lambda)."""

from __future__ import annotations

import copy

import pytest
import torch

from agent.learner import StepOutput, VMPOBatch, VMPOLearner
from tests.agent.test_ppo_minibatches import trainer_and_unroll
from tests.agent.test_trainer import TINY

VMPO = [*TINY, "algo.name=vmpo", "algo.popart=true", "net.core=gtrxl"]


def learner_copy(trainer, **vmpo: object) -> VMPOLearner:
    cfg = copy.deepcopy(trainer.cfg.algo)
    for key, value in vmpo.items():
        setattr(cfg.vmpo, key, value)
    return VMPOLearner(copy.deepcopy(trainer.net), cfg)


def test_minibatches_split_env_columns_one_step_each(tmp_path):
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO, "algo.vmpo.update_epochs=3")
    learner = learner_copy(trainer, num_minibatches=2)
    seen = []
    original = learner.loss_fn

    def spy(batch: VMPOBatch) -> StepOutput:
        seen.append((tuple(batch.traj.action.shape), tuple(batch.target_logits.shape[:2])))
        return original(batch)

    learner.loss_fn = spy
    learner.update(traj)
    T, B = traj.action.shape
    assert seen == [((T, B // 2), (T, B // 2))] * 6  # 3 epochs x 2 minibatches of whole columns
    assert learner.optimizer.state[next(iter(learner.net.parameters()))]["step"] == 6


def test_popart_sees_every_column_with_minibatches(tmp_path):
    """With lr 0 nothing moves between minibatches, so the PopArt statistics after one update are those
    of the whole batch, as with a single full-batch step."""
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO, "algo.lr=1e-30", "algo.vmpo.dual_lr=1e-30")
    whole, split = learner_copy(trainer), learner_copy(trainer, num_minibatches=4)
    whole.update(traj)
    split.update(traj)
    start = trainer.net.popart
    assert not torch.equal(whole.net.popart.mu, start.mu)  # the statistics did move
    torch.testing.assert_close(split.net.popart.mu, whole.net.popart.mu, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(split.net.popart.sigma, whole.net.popart.sigma, atol=1e-6, rtol=1e-5)


def test_lambda_one_targets_equal_the_full_n_step_targets(tmp_path):
    """G^lambda with lambda = 1 is the n-step target with n = T (agent.returns.gae's docstring)."""
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO)
    T = traj.unroll_length
    assert trainer.cfg.algo.n_step == T
    target_logits = trainer.net.unroll(*traj.inputs())[0][:T].detach()
    batch = VMPOBatch(traj, target_logits)
    nstep = learner_copy(trainer).loss_fn(batch)
    lam1 = learner_copy(trainer, gae_lambda=1.0).loss_fn(batch)
    lam95 = learner_copy(trainer, gae_lambda=0.95).loss_fn(batch)
    torch.testing.assert_close(lam1.returns, nstep.returns, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lam1.loss, nstep.loss, atol=1e-5, rtol=1e-5)
    assert float((lam95.returns - nstep.returns).abs().max()) > 1e-4  # lambda < 1 changes the targets


def test_fixed_advantages_are_the_acting_parameters_and_do_not_drift(tmp_path):
    """algo.vmpo.fixed_advantages: each step gets the G and A that the parameters which acted give before
    the first step, so every epoch's E-step sees the same advantages; the first step's loss is the one
    the per-step forward computes (same parameters then). Without it, A drifts as the value head is
    fitted over the epochs."""
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO, "algo.vmpo.update_epochs=3")
    T = traj.unroll_length
    fixed, free = learner_copy(trainer, fixed_advantages=True), learner_copy(trainer)
    target_logits = trainer.net.unroll(*traj.inputs())[0][:T].detach()
    first_free = free.loss_fn(VMPOBatch(traj, target_logits))
    first_fixed = fixed.loss_fn(VMPOBatch(traj, target_logits, *fixed._acting_targets(traj)))
    torch.testing.assert_close(first_fixed.loss, first_free.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first_fixed.returns, first_free.returns, atol=1e-5, rtol=1e-5)

    adv_means = {}
    for name, learner in (("fixed", fixed), ("free", free)):
        seen = []
        original = learner.loss_fn

        def spy(batch: VMPOBatch, original=original, seen=seen) -> StepOutput:
            out = original(batch)
            seen.append(float(out.metrics["vmpo/adv_mean"]))
            return out

        learner.loss_fn = spy
        learner.update(traj)
        adv_means[name] = seen
    assert len(adv_means["fixed"]) == 3 and len(set(adv_means["fixed"])) == 1  # the same A each epoch
    assert max(adv_means["free"]) - min(adv_means["free"]) > 1e-5  # A moves with the fitted value head


def test_entropy_floor_dual_is_stepped_and_grows_below_the_floor(tmp_path):
    """algo.vmpo.min_entropy > 0 adds the multiplier beta to the duals' optimiser; with a floor above the
    uniform policy's entropy the constraint is always violated, so beta grows; 0 (default) adds none."""
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO, "algo.vmpo.update_epochs=2")
    assert learner_copy(trainer).beta is None
    learner = learner_copy(trainer, min_entropy=10.0, beta_init=0.01)
    duals = next(g for g in learner.optimizer.param_groups if g["name"] == "duals")["params"]
    assert any(p is learner.beta.raw for p in duals)
    metrics = learner.update(traj)
    assert float(learner.beta.value().detach()) > 0.01
    assert metrics["vmpo/beta"] > 0.0 and "loss/beta" in metrics


def test_entropy_floor_dual_with_its_own_step_size(tmp_path):
    """algo.vmpo.beta_lr > 0 puts beta in its own optimiser group at that step size (the other duals keep
    dual_lr), so it rises faster below the floor; beta_min reaches LagrangeMultiplier.value_min."""
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO, "algo.vmpo.update_epochs=2")
    slow = learner_copy(trainer, min_entropy=10.0, beta_init=0.01)
    fast = learner_copy(trainer, min_entropy=10.0, beta_init=0.01, beta_lr=0.2, beta_min=1e-3)
    groups = {g["name"]: g for g in fast.optimizer.param_groups}
    assert [p is fast.beta.raw for p in groups["beta"]["params"]] == [True]
    assert groups["beta"]["lr"] == 0.2 and groups["duals"]["lr"] == fast.cfg.vmpo.dual_lr
    assert not any(p is fast.beta.raw for p in groups["duals"]["params"])
    assert fast.beta.raw_min is not None and fast.beta.value().item() >= 1e-3
    slow.update(traj)
    fast.update(traj)
    rise_fast, rise_slow = (float(d.beta.value().detach()) - 0.01 for d in (fast, slow))
    assert rise_slow > 0.0 and rise_fast > 5 * rise_slow  # Adam moves xi ~lr per step: 0.2 against 0.01


@pytest.mark.parametrize("mode", ["softplus", "projected"])
def test_trust_region_floor_keeps_alpha_from_winding_down(tmp_path, mode):
    """With the KL far under eps_alpha, alpha's dual gradient eps_alpha - KL > 0 lowers it every step;
    algo.vmpo.alpha_min holds it at the floor (LagrangeMultiplier.value_min), and the loss uses it."""
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO, "algo.vmpo.update_epochs=3")
    slack = {"alpha_init": 1.0, "eps_alpha": 10.0, "dual_lr": 0.1, "dual_param": mode}
    free = learner_copy(trainer, **slack)
    floored = learner_copy(trainer, **slack, alpha_min=0.9)
    assert free.alpha.raw_min is None or free.alpha.raw_min < 0.9
    free.update(traj)
    metrics = floored.update(traj)
    assert float(free.alpha.value().detach()) < 0.9  # three steps of ~0.1 down (Adam) without a floor
    assert float(floored.alpha.value().detach()) == pytest.approx(0.9, rel=1e-6)
    assert metrics["vmpo/alpha"] >= 0.9 * (1 - 1e-6)  # the loss of the last step saw the floored alpha


def test_entropy_floor_anneals_linearly_over_env_steps(tmp_path):
    """algo.vmpo.min_entropy_anneal_steps > 0: set_step moves the floor from min_entropy to 0 on a line
    over that many env steps (never below 0), the loss uses it, and the metrics report it; 0 keeps it."""
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO)
    fixed = learner_copy(trainer, min_entropy=0.8)
    fixed.set_step(10_000)
    assert fixed.min_entropy == 0.8
    annealed = learner_copy(trainer, min_entropy=0.8, min_entropy_anneal_steps=1000)
    expected = {0: 0.8, 250: 0.6, 1000: 0.0, 5000: 0.0}
    for step, floor in expected.items():
        annealed.set_step(step)
        assert annealed.min_entropy == pytest.approx(floor, abs=1e-12)
    # at a floor of 0 the constraint H >= 0 always holds, so beta's gradient H - 0 > 0 lowers it
    annealed.set_step(1000)
    beta_before = float(annealed.beta.value().detach())
    metrics = annealed.update(traj)
    assert metrics["vmpo/min_entropy"] == 0.0
    assert float(annealed.beta.value().detach()) < beta_before


def test_annealed_entropy_floor_stops_at_its_final_value(tmp_path):
    """algo.vmpo.min_entropy_final > 0: the floor falls on a line from min_entropy to that value at
    min_entropy_anneal_steps and stays there, and the update holds beta's constraint at it."""
    trainer, traj = trainer_and_unroll(tmp_path, *VMPO)
    learner = learner_copy(trainer, min_entropy=0.8, min_entropy_anneal_steps=1000, min_entropy_final=0.2)
    expected = {0: 0.8, 500: 0.5, 1000: 0.2, 5000: 0.2}
    for step, floor in expected.items():
        learner.set_step(step)
        assert learner.min_entropy == pytest.approx(floor, abs=1e-12)
    assert learner.update(traj)["vmpo/min_entropy"] == pytest.approx(0.2, abs=1e-12)
