"""``--suite`` -> the env family and the list of games/levels to evaluate.

Accepted: ``atari57``, ``atari10`` (Aitchison et al. 2022), ``dmlab30`` (the 30 training levels of
scalable_agent), or any comma list of names in the checkpoint's family (``Pong,Breakout``; Atari names are
matched case-insensitively and may carry ``-v5``). Without ``--suite`` a checkpoint is evaluated on its own
games: every task it was trained on, or the ``env.name`` of its config.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs import ATARI57
from envs.base import unknown_name_error
from envs.dmlab import DMLAB30_LEVELS
from envs.references import ATARI10

NAMED_SUITES: dict[str, tuple[str, list[str]]] = {
    "atari57": ("atari", list(ATARI57)),
    "atari10": ("atari", list(ATARI10)),
    "dmlab30": ("dmlab", list(DMLAB30_LEVELS)),
}


@dataclass(frozen=True)
class Suite:
    """What to evaluate: a label for tables, the env family and its games."""

    name: str
    family: str
    games: list[str]


def _atari_name(name: str) -> str:
    by_lower = {g.lower(): g for g in ATARI57}
    game = by_lower.get(name.removesuffix("-v5").lower())
    if game is None:
        raise unknown_name_error("atari game", name, ATARI57)
    return game


def resolve_suite(spec: str | None, family: str, own_games: list[str]) -> Suite:
    """Resolve ``--suite`` for a checkpoint trained in env ``family`` on ``own_games``.

    Raises ``ValueError`` (one line) for an empty entry, an unknown Atari game, or a named suite of
    another family than the checkpoint's.
    """
    if spec is None or not spec.strip():
        return Suite("checkpoint games", family, list(own_games))
    key = spec.strip().lower()
    if key in NAMED_SUITES:
        suite_family, games = NAMED_SUITES[key]
        if suite_family != family:
            raise ValueError(
                f"--suite {key} needs a checkpoint trained on env.family={suite_family!r}; "
                f"this checkpoint was trained on env.family={family!r} ({', '.join(own_games)})"
            )
        return Suite(key, family, games)
    names = [part.strip() for part in spec.split(",")]
    if any(not part for part in names):
        raise ValueError(
            f"--suite {spec!r} has an empty entry; give {', '.join(NAMED_SUITES)} or a comma list of names"
        )
    if family == "atari":
        names = [_atari_name(n) for n in names]
    unique = list(dict.fromkeys(names))
    return Suite(",".join(unique) if len(unique) <= 3 else f"{len(unique)} games", family, unique)
