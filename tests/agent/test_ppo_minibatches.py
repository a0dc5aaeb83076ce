"""PPO with CleanRL's batch shape: single-step minibatches for memoryless cores, the linear lr schedule
(and its horizon across a resume)."""

from __future__ import annotations

import copy

import pytest
import torch

from agent.learner import PPOBatch, PPOLearner, StepOutput, piecewise_linear
from agent.train import build_config
from agent.trainer import Trainer
from configs import ConfigError, load_config
from tests.agent.test_trainer import TINY as TRAINER_TINY
from tests.agent.test_trainer import scalars

TINY = [*TRAINER_TINY, "algo.name=ppo"]


def lr_curve(run_dir) -> list[tuple[int, float]]:
    return scalars(run_dir, "learner/lr")


def trainer_and_unroll(tmp_path, *overrides: str):
    cfg = load_config("quickstart", [*TINY, f"train.run_dir={tmp_path}", *overrides])
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.net.eval()
    traj, _ = trainer.actor.rollout(cfg.algo.unroll_length)
    trainer.net.train()
    return trainer, traj


def test_steps_view_gives_a_memoryless_core_the_same_outputs(tmp_path):
    trainer, traj = trainer_and_unroll(tmp_path, "net.core=ff")
    T, B = traj.action.shape
    flat = traj.steps()
    assert flat.action.shape == (1, T * B) and flat.obs.shape == (1, T * B, *traj.obs.shape[2:])
    assert torch.equal(flat.action[0].view(T, B), traj.action)  # column t * B + b is step t of env b
    assert torch.equal(flat.first[0].view(T, B), traj.first[:T])
    with torch.no_grad():
        logits, values, _ = trainer.net.unroll(*traj.inputs())
        flat_logits, flat_values, _ = trainer.net.unroll(*flat.inputs())
    torch.testing.assert_close(flat_logits[0].view(T, B, -1), logits[:T], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(flat_values[0].view(T, B, -1), values[:T], atol=1e-5, rtol=1e-5)


def test_steps_view_refuses_a_core_with_memory(tmp_path):
    _, traj = trainer_and_unroll(tmp_path, "net.core=gtrxl")
    with pytest.raises(ValueError, match="memoryless"):
        traj.steps()


def test_one_full_batch_update_is_the_same_over_samples_and_over_envs(tmp_path):
    """With one minibatch and one epoch both modes take one step on the same batch: same parameters."""
    trainer, traj = trainer_and_unroll(
        tmp_path, "net.core=ff", "algo.ppo.num_minibatches=1", "algo.ppo.update_epochs=1"
    )
    learners = {}
    for how in ("samples", "envs"):
        net = copy.deepcopy(trainer.net)
        cfg = copy.deepcopy(trainer.cfg.algo)
        cfg.ppo.minibatch_over = how
        learners[how] = PPOLearner(net, cfg)
        learners[how].update(traj)
    a, b = (dict(learners[k].net.named_parameters()) for k in ("samples", "envs"))
    moved = max(float((a[k] - p).detach().abs().max()) for k, p in trainer.net.named_parameters())
    assert moved > 1e-6  # the update did something
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=1e-5, msg=name)


def test_sample_minibatches_split_all_steps(tmp_path):
    """Four minibatches per epoch, each a quarter of the T*B single steps."""
    trainer, traj = trainer_and_unroll(tmp_path, "net.core=ff", "algo.ppo.num_minibatches=4")
    learner = trainer.learner
    assert learner.minibatch_over_samples
    seen = []
    original = learner.loss_fn

    def spy(batch: PPOBatch) -> StepOutput:
        seen.append(batch.traj.action.shape)
        return original(batch)

    learner.loss_fn = spy
    learner.update(traj)
    T, B = traj.action.shape
    assert seen == [(1, T * B // 4)] * (4 * trainer.cfg.algo.ppo.update_epochs)


def test_memory_core_keeps_env_minibatches_and_refuses_samples(tmp_path):
    trainer, _ = trainer_and_unroll(tmp_path, "net.core=gtrxl")
    assert not trainer.learner.minibatch_over_samples
    with pytest.raises(ConfigError, match="minibatch_over='samples' needs a memoryless core"):
        load_config("quickstart", [*TINY, "net.core=lstm", "algo.ppo.minibatch_over=samples"])


def test_linear_lr_anneals_over_env_steps_and_resume_keeps_the_horizon(tmp_path):
    lr = 1e-3
    args = [*TINY, "net.core=ff", "algo.lr_schedule=linear", f"algo.lr={lr}", f"train.run_dir={tmp_path}",
            "train.run_name=r", "train.total_steps=64"]  # fmt: skip
    cfg, run_dir, _ = build_config("quickstart", args)
    Trainer(cfg, run_dir).train()
    # each update sets lr * (1 - steps so far / horizon); the horizon is train.total_steps = 64
    got = lr_curve(run_dir)
    assert [s for s, _ in got] == [32, 64]
    assert [v for _, v in got] == pytest.approx([lr, lr * 0.5], rel=1e-6)
    # resumed with a larger budget: the line keeps its horizon of 64 (lr 0 from there on), not 128
    cfg, run_dir, payload = build_config("quickstart", [f"train.resume={run_dir}", "train.total_steps=96"])
    trainer = Trainer(cfg, run_dir, payload)
    assert trainer.learner.lr_horizon == 64
    trainer.train()
    assert lr_curve(run_dir)[-1] == (96, pytest.approx(0.0, abs=1e-12))


def test_lr_anneal_steps_sets_the_horizon_and_constant_keeps_lr(tmp_path):
    args = ["net.core=ff", "algo.lr_schedule=linear", "algo.lr_anneal_steps=128", "algo.lr=1e-3"]
    trainer, _ = trainer_and_unroll(tmp_path / "a", *args)
    assert trainer.learner.lr_horizon == 128
    assert trainer.learner.set_lr(32) == pytest.approx(1e-3 * 0.75, rel=1e-9)
    assert trainer.learner.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.75, rel=1e-9)
    assert trainer.learner.set_lr(1000) == 0.0  # past the horizon: 0, never negative
    trainer, _ = trainer_and_unroll(tmp_path / "b", "net.core=ff", "algo.lr=1e-3")
    assert trainer.learner.set_lr(10_000) == 1e-3  # constant: the configured value, untouched


def test_piecewise_linear_interpolates_steps_and_holds_the_ends():
    milestones, scales = (100, 200, 200, 400), (1.0, 1.0, 2.0, 0.0)
    assert piecewise_linear(0, milestones, scales) == 1.0  # before the first milestone: its scale
    assert piecewise_linear(150, milestones, scales) == 1.0
    assert piecewise_linear(199, milestones, scales) == 1.0
    assert piecewise_linear(200, milestones, scales) == 2.0  # a milestone given twice: the step, at it
    assert piecewise_linear(300, milestones, scales) == pytest.approx(1.0, rel=1e-12)
    assert piecewise_linear(400, milestones, scales) == 0.0
    assert piecewise_linear(10**9, milestones, scales) == 0.0  # after the last: its scale
    assert piecewise_linear(5, (10,), (0.5,)) == 0.5 == piecewise_linear(50, (10,), (0.5,))


def test_piecewise_lr_follows_its_points_and_resume_keeps_them(tmp_path):
    lr = 1e-3
    points = ["algo.lr_schedule=piecewise", "algo.lr_milestones=[0,32,32,96]", "algo.lr_scales=[1,1,2,0]"]
    args = [*TINY, "net.core=ff", f"algo.lr={lr}", *points, f"train.run_dir={tmp_path}", "train.run_name=r",
            "train.total_steps=64"]  # fmt: skip
    cfg, run_dir, _ = build_config("quickstart", args)
    Trainer(cfg, run_dir).train()
    # updates at 0 and 32 env steps (logged at 32, 64): lr, then the step to 2 lr
    assert [v for _, v in lr_curve(run_dir)] == pytest.approx([lr, 2 * lr], rel=1e-6)
    # resumed with a larger budget: the run's points (its checkpoint's config) continue, 2 lr * 1/2 at 64
    cfg, run_dir, payload = build_config("quickstart", [f"train.resume={run_dir}", "train.total_steps=96"])
    assert (cfg.algo.lr_milestones, cfg.algo.lr_scales) == ([0, 32, 32, 96], [1.0, 1.0, 2.0, 0.0])
    trainer = Trainer(cfg, run_dir, payload)
    trainer.train()
    assert lr_curve(run_dir)[-1] == (96, pytest.approx(lr, rel=1e-6))


PIECEWISE = "algo.lr_schedule=piecewise"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([PIECEWISE], "needs as many algo.lr_milestones as algo.lr_scales"),
        ([PIECEWISE, "algo.lr_milestones=[0,10]", "algo.lr_scales=[1]"], "got 2 and 1"),
        ([PIECEWISE, "algo.lr_milestones=[10,0]", "algo.lr_scales=[1,1]"], "must not decrease"),
        ([PIECEWISE, "algo.lr_milestones=[0]", "algo.lr_scales=[-1]"], "algo.lr_scales\\[0\\]"),
        (["algo.lr_milestones=[0]", "algo.lr_scales=[1]"], "read by algo.lr_schedule=piecewise only"),
    ],
)
def test_piecewise_points_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("quickstart", overrides)


def test_vmpo_duals_keep_their_own_step_size_under_the_schedule(tmp_path):
    trainer, _ = trainer_and_unroll(
        tmp_path, "algo.name=vmpo", "algo.lr_schedule=linear", "algo.lr_anneal_steps=100"
    )
    trainer.learner.set_lr(50)
    groups = {g["name"]: g["lr"] for g in trainer.learner.optimizer.param_groups}
    assert groups["net"] == pytest.approx(trainer.cfg.algo.lr * 0.5, rel=1e-9)
    assert groups["duals"] == trainer.cfg.algo.vmpo.dual_lr
