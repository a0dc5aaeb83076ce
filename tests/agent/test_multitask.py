"""Multi-task training on an Atari suite: per-game logs, PopArt per game, and evaluation on the suite."""

import csv

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import envs
from agent.checkpoint import latest_checkpoint, load_checkpoint
from agent.train import main
from configs.schema import EnvConfig
from eval.evaluate import main as evaluate

GAMES = ["Pong", "Breakout", "Skiing"]  # Skiing has 9 legal actions: the suite maps the rest to NOOP


def test_suite_env_spreads_slots_over_games_with_one_action_head():
    env = envs.make(EnvConfig(family="atari", name=",".join(GAMES), num_envs=5, max_episode_frames=200))
    try:
        assert env.task_names == GAMES and env.num_actions == 18 and env.num_envs == 5
        env.reset()
        _, _, _, _, info = env.step(np.full(5, 17))  # action 17 does not exist in Skiing: NOOP there
        assert info["task_id"].tolist() == [0, 0, 1, 1, 2]
    finally:
        env.close()


def test_multitask_run_logs_per_game_hns_and_evaluates_on_its_games(tmp_path):
    args = [
        "--config", "atari_multitask_cpu", f"env.name={','.join(GAMES)}", "env.num_envs=3",
        "env.max_episode_frames=400", "algo.unroll_length=16", "algo.n_step=16", "net.d_model=32",
        "net.num_layers=1", "net.num_heads=2", "net.head_dim=16", "net.mlp_dim=32", "net.memory_length=8",
        "net.torso_out=32", "train.progress=false", "train.torch_threads=1", f"train.run_dir={tmp_path}",
        "train.run_name=mt", "train.total_steps=384",
    ]  # fmt: skip
    assert main(args) == 0
    run_dir = tmp_path / "mt"
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for game in GAMES:
        assert f"charts/episodic_return/{game}" in tags and f"charts/hns/{game}" in tags
        assert f"popart/mu/{game}" in tags and f"popart/sigma/{game}" in tags
    assert "charts/median_hns" in tags
    median = acc.Scalars("charts/median_hns")[-1].value
    per_game = [acc.Scalars(f"charts/hns/{g}")[-1].value for g in GAMES]
    assert np.isclose(median, np.median(per_game), atol=1e-5)

    ckpt = load_checkpoint(latest_checkpoint(run_dir))
    assert ckpt["task_names"] == GAMES and ckpt["config"]["net"]["num_tasks"] == 3
    sigma = ckpt["learner"]["module"]["net.popart.nu"]
    assert sigma.shape == (3,) and torch.isfinite(sigma).all()

    out = tmp_path / "eval"
    eval_args = ["--checkpoint", str(run_dir), "--episodes", "1", "--max-frames", "400", "--num-envs", "1",
                 "--out", str(out), "--no-progress", "--torch-threads", "1"]  # fmt: skip
    assert evaluate(eval_args) == 0
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted({r["game"] for r in rows}) == sorted(GAMES)
