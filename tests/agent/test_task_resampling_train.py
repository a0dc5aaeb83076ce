"""A short V-MPO run on an Atari suite whose env slots draw a new game at each episode end."""

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agent.checkpoint import latest_checkpoint, load_checkpoint
from agent.train import main

GAMES = ["Pong", "Breakout", "Boxing"]


def test_training_with_task_resampling_logs_every_game_from_two_slots(tmp_path):
    args = [
        "--config", "atari_multitask_cpu", f"env.name={','.join(GAMES)}", "env.task_sampling=episode",
        "env.num_envs=2", "env.max_episode_frames=120", "algo.unroll_length=16", "algo.n_step=16",
        "net.d_model=32", "net.num_layers=1", "net.num_heads=2", "net.head_dim=16", "net.mlp_dim=32",
        "net.memory_length=8", "net.torso_out=32", "train.progress=false", "train.torch_threads=1",
        f"train.run_dir={tmp_path}", "train.run_name=rs", "train.total_steps=320",
    ]  # fmt: skip
    assert main(args) == 0
    run_dir = tmp_path / "rs"
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["env"]["task_sampling"] == "episode"
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    # Two slots start on Pong and Breakout; Boxing is only reached by re-sampling at an episode end.
    for game in GAMES:
        assert f"charts/episodic_return/{game}" in tags and f"charts/hns/{game}" in tags
        assert f"popart/mu/{game}" in tags
    assert "charts/median_hns" in tags
    ckpt = load_checkpoint(latest_checkpoint(run_dir))
    assert ckpt["task_names"] == GAMES and ckpt["config"]["env"]["task_sampling"] == "episode"
