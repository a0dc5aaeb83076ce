"""Configuration: typed dataclasses (``configs.schema``), YAML presets beside this file, CLI overrides.

``load_config("quickstart", ["algo.lr=3e-4"])`` merges, in order: the dataclass defaults, the preset
(a name of a YAML file in this folder or a path), then ``key=value`` dotted overrides. Any problem
raises :class:`ConfigError` with a one-line message naming the key and the accepted values.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from configs.schema import Config, ConfigError

PRESET_DIR = Path(__file__).resolve().parent

__all__ = [
    "LLM_PREFIX",
    "Config",
    "ConfigError",
    "check_preset_family",
    "config_from_dict",
    "config_to_dict",
    "list_presets",
    "load_config",
    "merge_config",
    "preset_path",
    "split_overrides",
]


LLM_PREFIX = "llm_"  # presets of llm.train (LLMConfig); the others are agent.train's (Config)


def list_presets(schema: type | None = None) -> list[str]:
    """The preset names beside this file: all of them, or those of one entry point's ``schema``."""
    names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
    if schema is None:
        return names
    llm = schema is not Config  # the LLM adapter's LLMConfig (configs.llm_schema imports this module)
    return [n for n in names if n.startswith(LLM_PREFIX) == llm]


def check_preset_family(preset: str | Path | None, schema: type) -> None:
    """A preset of the other entry point gets a one-line error naming the command that runs it."""
    if preset is None or str(preset) in list_presets(schema) or str(preset) not in list_presets():
        return
    command = "agent.train" if schema is not Config else "llm.train"
    kind = "an agent" if schema is not Config else "an LLM"
    raise ConfigError(
        f"config '{preset}' is {kind} preset; run it with python -m {command} --config {preset}"
    )


def preset_path(name_or_path: str | Path, schema: type | None = None) -> Path:
    """A preset name (``quickstart``) or a path to a YAML file -> an existing path.

    ``schema`` narrows the presets an unknown name's error lists to that entry point's.
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = PRESET_DIR / f"{path.stem if path.suffix in ('.yaml', '.yml') else name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    presets = list_presets(schema)
    close = difflib.get_close_matches(path.stem, presets, n=3, cutoff=0.4)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    raise ConfigError(f"config file '{name_or_path}' not found; presets: {', '.join(presets)}{hint}")


def _accepted_keys(node: Any) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(node)) if dataclasses.is_dataclass(node) else []


def node_at(cfg: Any, dotted: str) -> Any:
    """The value at a dotted key of a config dataclass (None where a part is missing)."""
    node = cfg
    for part in [p for p in dotted.split(".") if p]:
        node = getattr(node, part, None)
    return node


def _one_line(err: OmegaConfBaseException, source: str, schema: type) -> ConfigError:
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, ConfigKeyError) or "not in" in str(err).splitlines()[0]:
        parent, _, leaf = key.rpartition(".")
        accepted = _accepted_keys(node_at(schema(), parent))
        close = difflib.get_close_matches(leaf, accepted, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        where = f"'{parent}'" if parent else "the top level"
        return ConfigError(
            f"unknown config key '{key}' in {source}{hint}; accepted keys in {where}: {', '.join(accepted)}"
        )
    first = str(err).splitlines()[0]
    if key == "?":  # a whole section replaced by a value (e.g. `env: 3` in a YAML file)
        return ConfigError(f"invalid config in {source}: {first} (a section needs a mapping of its keys)")
    if isinstance(err, ValidationError):
        return ConfigError(f"config key '{key}' in {source}: {first}")
    return ConfigError(f"config error at '{key}' in {source}: {str(err).splitlines()[0]}")


def _parse_overrides(overrides: list[str]) -> DictConfig:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. algo.lr=3e-4)")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse overrides {overrides}: {str(err).splitlines()[0]}") from None


def _check_override_paths(overrides: list[str], schema: type) -> None:
    """A key must name a field, not a whole section, and must not go below a field (one-line errors)."""
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        node: Any = schema()
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not dataclasses.is_dataclass(node):
                parent = ".".join(parts[:depth])
                raise ConfigError(
                    f"config key '{key}' goes below '{parent}', which is a value, not a section"
                )
            if part not in {f.name for f in dataclasses.fields(node)}:
                break  # unknown key: omegaconf's merge reports it with the accepted keys
            node = getattr(node, part)
        else:
            if dataclasses.is_dataclass(node):
                fields = ", ".join(_accepted_keys(node))
                raise ConfigError(
                    f"config key '{key}' is a section; set one of its keys ({fields}) as {key}.KEY=VALUE"
                )


def _read_yaml(path: Path) -> DictConfig:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot read config file '{path}': {str(err).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections (env, net, algo, train)")
    return OmegaConf.create(data)


def merge_config(base: Any, layers: list[tuple[str, DictConfig]], schema: type = Config) -> Any:
    """Merge ``layers`` (source name, values) over ``base`` (default: ``schema()``) and validate.

    ``schema`` is the top-level dataclass: :class:`Config` for agents, ``LLMConfig`` for the LLM adapter.
    """
    merged = OmegaConf.structured(base if base is not None else schema)
    for source, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as err:
            raise _one_line(err, source, schema) from None
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise _one_line(err, "config", schema) from None
    assert isinstance(cfg, schema)
    return cfg


def load_config(
    preset: str | Path | None = "quickstart", overrides: list[str] | None = None, schema: type = Config
) -> Any:
    """Defaults <- preset YAML <- ``key=value`` overrides; validated (ConfigError on any problem)."""
    layers: list[tuple[str, DictConfig]] = []
    if preset is not None:
        check_preset_family(preset, schema)
        path = preset_path(preset, schema)
        layers.append((str(path), _read_yaml(path)))
    if overrides:
        parsed = _parse_overrides(overrides)
        _check_override_paths(overrides, schema)
        layers.append(("command-line overrides", parsed))
    return merge_config(None, layers, schema)


def split_overrides(overrides: list[str], allowed_keys: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Split ``key=value`` overrides into (allowed, forbidden keys) by their dotted key."""
    _parse_overrides(overrides)
    allowed, forbidden = [], []
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        (allowed.append(item) if key in allowed_keys else forbidden.append(key))
    return allowed, forbidden


def config_to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def config_from_dict(data: dict[str, Any], source: str = "checkpoint", schema: type = Config) -> Any:
    return merge_config(None, [(source, OmegaConf.create(data))], schema)
