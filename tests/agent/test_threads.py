"""train.torch_threads=0 splits the process's cores between the learner, the actor thread and envpool."""

import pytest
import torch

from agent.builder import ThreadSplit, split_cores, thread_split, usable_cores
from configs import load_config


@pytest.mark.parametrize(
    ("cores", "overlap", "expected"),
    [
        (1, False, ThreadSplit(1, 1, 1)),
        (2, False, ThreadSplit(2, 2, 2)),  # one thread acts, steps and learns in turn: nothing beside it
        (16, False, ThreadSplit(16, 16, 16)),
        (1, True, ThreadSplit(1, 1, 1)),
        (2, True, ThreadSplit(1, 1, 1)),  # the machine: learner | actor + envpool
        (3, True, ThreadSplit(2, 1, 1)),  # the odd core to the learner
        (16, True, ThreadSplit(8, 8, 8)),
        (0, True, ThreadSplit(1, 1, 1)),
    ],
)
def test_split_cores(cores, overlap, expected):
    assert split_cores(cores, overlap) == expected


def test_thread_split_follows_the_config():
    auto = load_config("quickstart", ["train.torch_threads=0", "train.overlap=true"])
    assert thread_split(auto, cores=2) == ThreadSplit(1, 1, 1)
    pinned_envs = load_config("quickstart", ["train.torch_threads=0", "env.num_threads=3"])
    assert thread_split(pinned_envs, cores=2) == ThreadSplit(2, 2, 3)  # an explicit env.num_threads wins
    manual = load_config(
        "quickstart", ["train.torch_threads=2", "train.actor_threads=0", "train.overlap=true"]
    )
    assert thread_split(manual, cores=16) == ThreadSplit(2, 0, 0)  # the config's own, 0 = library default


def test_usable_cores_respects_affinity_ranks_and_omp(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert usable_cores() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two ranks on this machine
    assert usable_cores() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert usable_cores() == 1


def test_trainer_applies_the_split(tmp_path, monkeypatch):
    import agent.trainer

    monkeypatch.setattr("agent.builder.usable_cores", lambda: 2)
    actor_threads = []

    class RecordingActorThread(agent.trainer.ActorThread):
        def __init__(self, actor, threads: int) -> None:
            actor_threads.append(threads)
            super().__init__(actor, threads)

    monkeypatch.setattr(agent.trainer, "ActorThread", RecordingActorThread)
    tiny = ["env.num_envs=2", "net.d_model=16", "net.num_layers=1", "net.head_dim=8", "net.mlp_dim=16",
            "net.memory_length=4", "net.torso_out=16", "train.progress=false"]  # fmt: skip
    cfg = load_config("quickstart", [*tiny, "train.torch_threads=0", "train.overlap=true"])
    previous = torch.get_num_threads()
    trainer = agent.trainer.Trainer(cfg, tmp_path / "run")
    try:
        assert torch.get_num_threads() == 1 and actor_threads == [1]
    finally:
        trainer.close()
        torch.set_num_threads(previous)
