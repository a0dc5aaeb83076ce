"""The evaluation loop on a cheap env (random network): episode quotas, numbering, compatibility errors."""

from pathlib import Path

import pytest

import envs
from configs import load_config
from eval.loading import LoadedAgent
from eval.runner import RunSpec, check_compatible, env_config, run_game
from networks.agent_net import AgentNet


def random_agent(num_actions_offset: int = 0) -> LoadedAgent:
    """An untrained quick-start agent (memory family, vector observations)."""
    cfg = load_config("quickstart", ["net.d_model=16", "net.num_layers=1", "net.memory_length=4"])
    probe = envs.make(cfg.env)
    shape, actions = tuple(probe.observation_shape), probe.num_actions + num_actions_offset
    probe.close()
    net = AgentNet(cfg.net, shape, actions).eval()
    return LoadedAgent(Path("ckpt.pt"), cfg, net, shape, actions, ["CueRecall-L8-K4"], 0)


def test_every_env_contributes_its_quota_and_episodes_are_numbered():
    agent = random_agent()
    ticks = []
    spec = RunSpec(game=agent.cfg.env.name, seed=3, episodes=5, protocol="dqn", num_envs=2)
    episodes = run_game(agent, spec, on_episode=lambda: ticks.append(1))
    assert len(episodes) == len(ticks) == 5
    assert [ep.episode for ep in episodes] == list(range(5))
    assert all(ep.game == "CueRecall-L8" and ep.seed == 3 and ep.protocol == "n/a" for ep in episodes)
    assert all(ep.length > 0 and ep.frames == ep.length for ep in episodes)


def test_eval_env_config_has_no_life_loss_raw_rewards_and_disjoint_seeds():
    agent = random_agent()
    cfg = env_config(agent, RunSpec("CueRecall-L8", 2, 4, "dqn", max_frames=500), num_envs=4)
    assert (cfg.episodic_life, cfg.clip_rewards, cfg.seed, cfg.num_envs) == (False, False, 20_000, 4)
    assert cfg.max_episode_frames == 500


def test_action_space_mismatch_is_a_clear_error():
    agent = random_agent(num_actions_offset=1)
    env = envs.make(env_config(agent, RunSpec("CueRecall-L8", 0, 1, "dqn"), num_envs=1))
    try:
        with pytest.raises(ValueError, match="action-space mismatch") as err:
            check_compatible(agent, env, "CueRecall-L8", "dqn")
    finally:
        env.close()
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="at least 1"):
        run_game(random_agent(), RunSpec("CueRecall-L8", 0, 0, "dqn"))


def test_dmlab_without_deepmind_lab_is_a_clear_error():
    import importlib.util

    from eval.runner import require_backend

    if importlib.util.find_spec("deepmind_lab") is not None:
        pytest.skip("deepmind_lab is installed here")
    with pytest.raises(RuntimeError, match="needs the deepmind_lab Python module"):
        require_backend("dmlab")
    require_backend("atari")  # other families need nothing extra
