"""train.overlap: the actor collects unroll k+1 on a thread, one update behind, while the learner trains
on unroll k (agent/overlap.py). Counters, logs and checkpoints stay exact; PPO's ratio uses the behaviour
logits the actor recorded, V-MPO's pi_old stays the target network (the learner's, not the actor's)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import envs
from agent.checkpoint import latest_checkpoint, load_checkpoint
from agent.learner import action_log_probs
from agent.overlap import sync_parameters
from agent.train import main
from agent.trainer import Trainer, TrainingError
from configs import ConfigError, load_config
from tests.agent.test_trainer import TINY

STEPS = 32  # TINY: 4 envs x unroll 8
OVERLAP = ["train.overlap=true", "train.torch_threads=1"]


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def trainer(tmp_path: Path, *extra: str, name: str = "r") -> Trainer:
    cfg = load_config("quickstart", [*TINY, *OVERLAP, "train.device=cpu", *extra])
    return Trainer(cfg, tmp_path / name)


def record_batches(tr: Trainer) -> list[list]:
    """Wrap the learner's loss function: per update, the minibatches it saw and, for the first, the
    log-probs of its actions under the parameters at the start of the update (before any step)."""
    updates: list[list] = []
    loss_fn, update = tr.learner.loss_fn, tr.learner.update

    def recording_update(traj):
        updates.append([])
        return update(traj)

    def recording_loss_fn(batch):
        if not updates[-1]:
            with torch.no_grad():
                logits = tr.net.unroll(*batch.traj.inputs())[0][: batch.traj.unroll_length]
            updates[-1].append(action_log_probs(logits, batch.traj.action)[0])
        updates[-1].append(batch)
        return loss_fn(batch)

    tr.learner.loss_fn, tr.learner.update = recording_loss_fn, recording_update
    return updates


@pytest.mark.parametrize("algo", [["algo.name=vmpo", "algo.popart=true"], ["algo.name=ppo"]])
def test_overlap_trains_with_exact_counters_and_the_synchronous_episode_count(tmp_path, algo):
    """5 updates: global_step = env steps trained on, a curve point per update, and as many finished
    episodes as the synchronous loop (cue recall episodes have a fixed length, so the trained unrolls,
    the first 5 in both loops, hold the same number)."""
    runs = {}
    for name, mode in (("sync", []), ("overlap", OVERLAP)):
        args = [*TINY, *algo, *mode, f"train.run_dir={tmp_path}", f"train.run_name={name}",
                f"train.total_steps={5 * STEPS}", "train.checkpoint_interval=2"]  # fmt: skip
        assert main(["--config", "quickstart", *args]) == 0
        runs[name] = tmp_path / name
    saved = load_checkpoint(latest_checkpoint(runs["overlap"]))
    assert saved["counters"]["num_updates"] == 5 and saved["counters"]["global_step"] == 5 * STEPS
    assert saved["config"]["train"]["overlap"] is True
    assert [s for s, _ in scalars(runs["overlap"], "loss/total")] == [STEPS * (i + 1) for i in range(5)]
    episodes = [scalars(runs[name], "charts/episodes") for name in ("sync", "overlap")]
    assert episodes[0] == episodes[1] and episodes[1][-1][1] > 0
    params = [v for v in saved["learner"]["module"].values() if v.is_floating_point()]
    assert all(torch.isfinite(p).all() for p in params)


def test_a_fixed_seed_repeats_an_overlapped_run_bit_for_bit(tmp_path):
    """The actor samples from its own generator and the learner keeps no autocast weight cache that the
    actor thread could clear under it (bf16 on): thread timing does not enter the numbers."""
    states = []
    for name in ("a", "b"):
        tr = trainer(tmp_path, "train.bf16=on", "train.seed=5", name=name)
        for _ in range(6):
            tr.iteration()
        states.append({k: v.clone() for k, v in tr.learner.state_dict().items()})
        tr.close()
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_the_actor_acts_one_update_behind_on_its_own_synced_copy(tmp_path):
    """Unroll k+1 is collected with the parameters before update k: its initial GTrXL cache is the
    memory projected with those, and the actor's copy equals the learner's after each iteration."""
    tr = trainer(tmp_path, "train.bf16=off")
    assert tr.actor.net is not tr.net and tr.learner.actor is None and tr.learner.lagged_actor
    for _ in range(3):
        before = copy.deepcopy(tr.net)  # the parameters the actor acts with during this iteration
        tr.iteration()
        state = tr.collected[0].initial_state  # the start of the unroll collected during it
        after = {k: v.clone() for k, v in state.items()}
        torch.testing.assert_close(before.refresh_cache(state)["k"], after["k"], rtol=1e-5, atol=1e-6)
        newer = tr.net.refresh_cache(state)["k"]
        assert (newer - after["k"]).abs().max() > 1e-5, "the cache was projected with the new parameters"
        for a, b in zip(tr.actor.net.state_dict().values(), tr.net.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert tr.counters.num_updates == 3 and tr.counters.global_step == 3 * STEPS
    tr.close()


def test_ppo_ratio_is_one_without_lag_and_uses_the_recorded_behaviour_log_probs(tmp_path):
    tr = trainer(tmp_path, "algo.name=ppo", "train.bf16=off", "algo.ppo.num_minibatches=2")
    updates = record_batches(tr)
    for _ in range(3):
        tr.iteration()
    for k, (start_log_probs, first, *rest) in enumerate(updates):
        for batch in (first, *rest):  # PPO's old log-probs are the actor's recorded ones, every step
            recorded = action_log_probs(batch.traj.behaviour_logits, batch.traj.action)[0]
            assert torch.equal(batch.old_log_probs, recorded)
        ratio = (start_log_probs - first.old_log_probs).exp()
        if k == 0:  # unroll 0 was collected with the learner's own parameters: ratio 1 (step vs unroll)
            torch.testing.assert_close(ratio, torch.ones_like(ratio), rtol=0, atol=1e-4)
        else:  # one update behind: the learner's parameters have moved since the actor's
            assert (ratio - 1).abs().max() > 1e-4
    tr.close()


def test_ppo_ratio_is_one_at_the_first_step_of_the_synchronous_loop(tmp_path):
    cfg = load_config("quickstart", [*TINY, "algo.name=ppo", "train.bf16=off", "train.device=cpu"])
    tr = Trainer(cfg, tmp_path / "r")
    updates = record_batches(tr)
    for _ in range(2):
        tr.iteration()
    for start_log_probs, first, *_ in updates:  # recomputed by the learner: exactly its own
        assert torch.equal((start_log_probs - first.old_log_probs).exp(), torch.ones_like(start_log_probs))
        recorded = action_log_probs(first.traj.behaviour_logits, first.traj.action)[0]
        torch.testing.assert_close(recorded, first.old_log_probs, rtol=0, atol=1e-4)
    tr.close()


@pytest.mark.parametrize("period", [1, 3])
def test_vmpo_pi_old_is_the_target_network_not_the_lagged_behaviour(tmp_path, period):
    """The trust region's anchor is the learner's target network, also when the actor lags by one update:
    with period 1 that is the learner's parameters at the update's start, which differ from the actor's."""
    tr = trainer(tmp_path, f"algo.vmpo.target_update_period={period}", "train.bf16=off")
    updates = record_batches(tr)
    for k in range(3):
        target = copy.deepcopy(tr.learner.target_net)  # as the update will see it
        tr.iteration()
        batch = updates[k][1]
        with torch.no_grad():
            expected = target.unroll(*batch.traj.inputs())[0][: batch.traj.unroll_length]
        torch.testing.assert_close(batch.target_logits, expected, rtol=0, atol=1e-6)
        if k > 0 and period == 1:  # the actor acted one update behind: its logits are not pi_old's
            assert (batch.target_logits - batch.traj.behaviour_logits).abs().max() > 1e-4
    # the learner still refreshes the target network every `period` updates (3 is a multiple of both)
    for a, b in zip(tr.learner.target_net.parameters(), tr.net.parameters(), strict=True):
        assert torch.equal(a, b)
    tr.close()


def test_an_actor_thread_exception_is_a_one_line_training_error(tmp_path, monkeypatch, capsys):
    real_make = envs.make

    def failing_make(cfg, *slots):
        env = real_make(cfg, *slots)
        real_step, calls = env.step, {"n": 0}

        def step(actions):
            calls["n"] += 1
            if calls["n"] == 20:  # after the first unroll (8 steps, main thread): on the actor thread
                raise RuntimeError("emulator exploded\nsecond line")
            return real_step(actions)

        env.step = step
        return env

    monkeypatch.setattr(envs, "make", failing_make)
    args = [*TINY, *OVERLAP, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=100000",
            "train.checkpoint_interval=1"]  # fmt: skip
    assert main(["--config", "quickstart", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: the actor thread (train.overlap) failed: RuntimeError: emulator exploded"
    saved = load_checkpoint(latest_checkpoint(tmp_path / "r"))  # the updates before it were saved
    assert saved["counters"]["global_step"] == STEPS * saved["counters"]["num_updates"] >= STEPS


def test_an_actor_error_from_trainer_iteration_is_training_error(tmp_path):
    tr = trainer(tmp_path)
    tr.iteration()

    def broken(unroll_length):
        raise ValueError("bad observation")

    tr.actor.rollout = broken
    with pytest.raises(TrainingError, match=r"^the actor thread \(train\.overlap\) failed: ValueError: bad"):
        tr.iteration()
    tr.close()


def test_resume_mid_overlap_keeps_counters_and_curve_exact(tmp_path):
    """Stop after 3 updates (the unroll in flight is discarded), resume to 7 (also switching loops)."""
    run_dir = tmp_path / "r"
    args = [*TINY, *OVERLAP, f"train.run_dir={tmp_path}", "train.run_name=r", "train.checkpoint_interval=2"]
    assert main(["--config", "quickstart", *args, f"train.total_steps={3 * STEPS}"]) == 0
    assert load_checkpoint(latest_checkpoint(run_dir))["counters"]["num_updates"] == 3
    assert main([f"train.resume={run_dir}", f"train.total_steps={5 * STEPS}"]) == 0
    assert main([f"train.resume={run_dir}", f"train.total_steps={7 * STEPS}", "train.overlap=false"]) == 0
    saved = load_checkpoint(latest_checkpoint(run_dir))
    assert saved["counters"]["num_updates"] == 7 and saved["counters"]["global_step"] == 7 * STEPS
    assert saved["learner"]["num_updates"] == 7
    steps = [s for s, _ in scalars(run_dir, "loss/total")]
    assert steps == [STEPS * (i + 1) for i in range(7)], "a gap or a duplicate in the curve"


def test_overlap_keys_are_validated_in_one_line():
    with pytest.raises(ConfigError, match=r"train\.overlap") as err:
        load_config("quickstart", ["train.overlap=maybe"])
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.overlapp'.*did you mean overlap"):
        load_config("quickstart", ["train.overlapp=true"])
    with pytest.raises(ConfigError, match=r"train\.actor_threads=-1 is out of range"):
        load_config("quickstart", ["train.actor_threads=-1"])


def test_sync_parameters_copies_parameters_and_buffers_in_place(tmp_path):
    tr = trainer(tmp_path, "algo.popart=true")
    with torch.no_grad():
        for p in tr.net.parameters():
            p.add_(1.0)
        tr.net.popart.mu.add_(2.0)
    storage = [t.data_ptr() for t in tr.actor.net.state_dict().values()]
    sync_parameters(tr.actor.net, tr.net)
    assert [t.data_ptr() for t in tr.actor.net.state_dict().values()] == storage
    for a, b in zip(tr.actor.net.state_dict().values(), tr.net.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    tr.close()


@pytest.mark.parametrize("algo", [["algo.name=vmpo", "algo.popart=true"], ["algo.name=ppo"]])
def test_torchrun_ranks_each_overlap_their_own_actor_and_stay_identical(tmp_path, algo):
    """Each rank acts on its own thread; collectives stay on the main threads, so the replicas match
    bitwise after every update (dist/replicas_in_sync) and the counters count both ranks' envs."""
    from tests.agent.test_distributed import finish, torchrun

    args = [*TINY, *algo, "train.overlap=true", "train.torch_threads=1", f"train.run_dir={tmp_path}",
            "train.run_name=r", f"train.total_steps={4 * STEPS}", "train.sync_check_interval=1"]  # fmt: skip
    code, out = finish(torchrun(["-m", "agent.train", *args]))
    assert code == 0, out[-3000:]
    assert [s for s, _ in scalars(tmp_path / "r", "dist/replicas_in_sync")] == [
        STEPS * (i + 1) for i in range(4)
    ]
    saved = load_checkpoint(latest_checkpoint(tmp_path / "r"))
    assert saved["counters"]["num_updates"] == 4 and saved["counters"]["global_step"] == 4 * STEPS
