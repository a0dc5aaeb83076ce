"""Config loading, overrides and one-line errors naming the key and the accepted values."""

import pytest

from configs import ConfigError, config_from_dict, config_to_dict, list_presets, load_config, split_overrides


def test_every_preset_loads_and_round_trips():
    presets = list_presets()
    assert {"quickstart", "atari_vmpo", "atari_ppo", "dmlab_vmpo"} <= set(presets)
    for name in (p for p in presets if not p.startswith("llm_")):  # llm_* presets use LLMConfig
        cfg = load_config(name)
        assert config_from_dict(config_to_dict(cfg)) == cfg


def test_preset_values_and_override_types():
    cfg = load_config("atari_vmpo")
    assert (cfg.net.d_model, cfg.net.num_layers, cfg.net.num_heads, cfg.net.head_dim, cfg.net.mlp_dim) == (
        256, 8, 4, 32, 512,
    )  # fmt: skip
    assert (cfg.algo.lr, cfg.algo.unroll_length, cfg.env.num_envs) == (1e-4, 63, 128)
    cfg = load_config(
        "quickstart", ["algo.lr=3e-4", "env.num_envs=4", "env.clip_rewards=false", "net.core=lstm"]
    )
    assert cfg.algo.lr == pytest.approx(3e-4)
    assert isinstance(cfg.env.num_envs, int) and cfg.env.num_envs == 4
    assert cfg.env.clip_rewards is False and cfg.net.core == "lstm"
    nested = load_config("quickstart", ["algo.vmpo.eps_eta=0.1"])
    assert nested.algo.vmpo.eps_eta == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("env.foo=1", ["env.foo", "accepted keys", "num_envs"]),
        ("algo.vmpo.eps_etta=0.1", ["algo.vmpo.eps_etta", "did you mean eps_eta"]),
        ("envv.name=Pong", ["envv", "did you mean env"]),
        ("env.num_envs=abc", ["env.num_envs", "abc"]),
        ("env.clip_rewards=maybe", ["env.clip_rewards", "maybe"]),
        ("algo.name=sac", ["algo.name", "vmpo, ppo"]),
        ("net.core=gtrx", ["net.core", "gtrxl, trxl, trxl_i, lstm, ff"]),
        ("algo.vmpo.topk_fraction=1.5", ["algo.vmpo.topk_fraction", "(0.0, 1.0]"]),
        ("env.num_envs=0", ["env.num_envs", "[1, inf]"]),
        ("train.device=tpu", ["train.device", "auto, cpu, cuda"]),
        ("lr", ["'lr'", "key=value"]),
        ("net=0", ["'net' is a section", "d_model"]),
        ("env.name.x=1", ["'env.name.x' goes below 'env.name'"]),
    ],
)
def test_bad_overrides_give_one_line_errors(override, expected):
    with pytest.raises(ConfigError) as info:
        load_config("quickstart", [override])
    message = str(info.value)
    assert "\n" not in message
    for fragment in expected:
        assert fragment in message


def test_unknown_preset_lists_close_matches():
    with pytest.raises(ConfigError, match="did you mean: quickstart"):
        load_config("quickstrat")


def test_bad_yaml_files(tmp_path):
    bad_key = tmp_path / "bad.yaml"
    bad_key.write_text("env:\n  nmae: Pong\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'env.nmae' in .*bad.yaml \(did you mean name"):
        load_config(bad_key)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(not_mapping)
    broken = tmp_path / "broken.yaml"
    broken.write_text("env: [unclosed\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(broken)


def test_split_overrides_for_resume():
    allowed, forbidden = split_overrides(["train.total_steps=10", "algo.lr=1"], ("train.total_steps",))
    assert allowed == ["train.total_steps=10"] and forbidden == ["algo.lr"]


def test_cross_field_check_popart_needs_vmpo():
    with pytest.raises(ConfigError, match=r"algo\.popart=true is implemented for algo\.name=vmpo only"):
        load_config("atari_vmpo", ["algo.name=ppo"])
    assert load_config("atari_vmpo", ["algo.name=ppo", "algo.popart=false"]).algo.name == "ppo"


def test_cross_field_check_min_entropy_final():
    """The annealed floor's end lies in [0, min_entropy] and needs an annealing horizon."""
    base = ["algo.vmpo.min_entropy=0.5"]
    with pytest.raises(ConfigError, match=r"algo\.vmpo\.min_entropy_final=0\.7 is out of range"):
        load_config(
            "quickstart",
            [*base, "algo.vmpo.min_entropy_anneal_steps=1000", "algo.vmpo.min_entropy_final=0.7"],
        )
    with pytest.raises(ConfigError, match=r"set algo\.vmpo\.min_entropy_anneal_steps > 0"):
        load_config("quickstart", [*base, "algo.vmpo.min_entropy_final=0.1"])
    cfg = load_config(
        "quickstart", [*base, "algo.vmpo.min_entropy_anneal_steps=1000", "algo.vmpo.min_entropy_final=0.1"]
    )
    assert cfg.algo.vmpo.min_entropy_final == pytest.approx(0.1)


def test_alpha_floor_lies_between_zero_and_alpha_init():
    """algo.vmpo.alpha_min is a floor under the trust-region multiplier: in [0, alpha_init]."""
    with pytest.raises(
        ConfigError, match=r"algo\.vmpo\.alpha_min=6\.0 is out of range; accepted values: \[0\.0, 5\.0\]"
    ):
        load_config("quickstart", ["algo.vmpo.alpha_min=6.0"])
    with pytest.raises(ConfigError, match=r"algo\.vmpo\.alpha_min=-0\.1 is out of range"):
        load_config("quickstart", ["algo.vmpo.alpha_min=-0.1"])
    assert load_config("quickstart", ["algo.vmpo.alpha_min=1.0"]).algo.vmpo.alpha_min == pytest.approx(1.0)
