"""``python -m eval.evaluate``: evaluate a checkpoint on a suite and write scores, tables, plots and videos.

Examples::

    python -m eval.evaluate --checkpoint runs/Pong-vmpo-gtrxl-s0 --episodes 30 --out evals/pong
    python -m eval.evaluate --checkpoint ckpt.pt --suite atari10 --protocol machado --out evals/a10
    python -m eval.evaluate --checkpoint ckpt.pt --suite Pong,SpaceInvaders --episodes 2 --video --out /tmp/e

Which games: without ``--suite`` the checkpoint's own games. With ``--suite`` any games of the checkpoint's
env family whose observation and action spaces match the checkpoint's; otherwise a one-line error before
anything runs. Under the dqn protocol each Atari game has its minimal action set, so a single-game agent
usually fits only its game; under machado every game has 18 actions (Skiing 9).

Outputs in ``--out``: ``scores.csv``, ``summary.md``, ``hns.png`` (games with references), ``returns.png``,
``videos/<game>.mp4`` with ``--video`` (the first episode of the first seed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from agent.checkpoint import CheckpointError
from agent.distributed import resolve_device
from configs import ConfigError
from envs import PROTOCOLS
from envs.references import reference, reference_source
from eval.loading import LoadedAgent, load_agent
from eval.plots import plot_hns, plot_returns
from eval.report import SummaryInfo, summary_markdown, write_scores
from eval.runner import RunSpec, precheck, run_game
from eval.scores import Episode, suite_hns, summarize
from eval.suites import Suite, resolve_suite
from eval.video import EpisodeVideo


def protocol_description(name: str) -> str:
    """Human-readable Atari protocol, from the preset data in ``envs.atari.PROTOCOLS``."""
    p = PROTOCOLS[name]
    noops = f"up to {p.noop_max} no-op starts" if p.noop_max > 1 else "no no-op starts"
    actions = "full 18-action set" if p.full_action_space else "minimal action set"
    return (
        f"{name} ({noops}, frame skip {p.frame_skip}, sticky actions p={p.repeat_action_probability}, "
        f"{actions}, no life-loss signal)"
    )


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; ``ValueError`` (one line) otherwise."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise ValueError(f"--seeds {text!r} must be a comma list of integers, e.g. 0,1,2") from None
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r} must be distinct non-negative integers")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint file, or run directory (its newest)")
    parser.add_argument("--suite", help="atari57 | atari10 | dmlab30 | GAME[,GAME...] (default: own games)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per game and seed (default 10)")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), help="Atari protocol (default: training's)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seeds", default="0", help="comma list of evaluation seeds (default 0)")
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument("--greedy", action="store_true", help="act with the policy's argmax")
    policy.add_argument("--sample", action="store_true", help="sample from the policy (default)")
    parser.add_argument("--video", action="store_true", help="write videos/<game>.mp4 of the first episode")
    parser.add_argument("--max-frames", type=int, default=108_000, help="episode cap in emulator frames")
    parser.add_argument("--num-envs", type=int, default=16, help="parallel envs per game (default 16)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--torch-threads", type=int, default=0, help="CPU threads for torch (0: default)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing evaluation in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _check_args(args: argparse.Namespace, agent: LoadedAgent) -> tuple[str, list[int]]:
    """Validate the arguments that depend on the checkpoint; returns (protocol, seeds)."""
    for key in ("episodes", "max_frames", "num_envs"):
        if getattr(args, key) < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be at least 1, got {getattr(args, key)}")
    family = agent.cfg.env.family
    if args.protocol is not None and family != "atari":
        raise ValueError(f"--protocol applies to Atari only; this checkpoint's env.family is {family!r}")
    if args.video and len(agent.obs_shape) != 3:
        raise ValueError(f"--video needs image observations; env.family={family!r} has {agent.obs_shape}")
    out = Path(args.out)
    if (out / "scores.csv").exists() and not args.overwrite:
        raise ValueError(f"'{out}' already holds an evaluation (scores.csv); pass --overwrite or a new --out")
    return args.protocol or agent.cfg.env.protocol, parse_seeds(args.seeds)


def evaluate(args: argparse.Namespace) -> tuple[Suite, list[Episode], Path]:
    """Run the evaluation ``args`` describes and write all outputs -> (suite, episodes, summary path)."""
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    agent = load_agent(args.checkpoint, resolve_device(args.device))
    protocol, seeds = _check_args(args, agent)
    family = agent.cfg.env.family
    suite = resolve_suite(args.suite, family, agent.own_games)
    precheck(agent, suite.games, protocol, args.max_frames)
    foreign = [g for g in suite.games if g not in agent.own_games]
    if foreign and family == "atari":
        print(
            f"note: checkpoint trained on {', '.join(agent.own_games)}; also evaluating {', '.join(foreign)} "
            f"(same {agent.num_actions}-action count; under dqn the actions may mean different moves)",
            file=sys.stderr,
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fps = 60 / PROTOCOLS[protocol].frame_skip if family == "atari" else 15
    episodes: list[Episode] = []
    total = len(suite.games) * len(seeds) * args.episodes
    with tqdm(total=total, desc="episodes", unit="ep", disable=args.no_progress, file=sys.stderr) as bar:
        for game in suite.games:
            for k, seed in enumerate(seeds):
                bar.set_postfix_str(f"{game} seed {seed}")
                spec = RunSpec(
                    game, seed, args.episodes, protocol, args.greedy, args.max_frames, args.num_envs
                )
                video = None
                if args.video and k == 0:
                    video = EpisodeVideo(out / "videos" / f"{game}.mp4", game, fps, rgb=family == "dmlab")
                episodes += run_game(agent, spec, video, on_episode=lambda: bar.update(1))
    write_outputs(out, suite, episodes, agent, protocol, seeds, args)
    return suite, episodes, out / "summary.md"


def write_outputs(
    out: Path,
    suite: Suite,
    episodes: list[Episode],
    agent: LoadedAgent,
    protocol: str,
    seeds: list[int],
    args: argparse.Namespace,
) -> None:
    """``scores.csv``, ``summary.md``, ``hns.png`` (if any game has a reference) and ``returns.png``."""
    refs = {game: reference(suite.family, game) for game in suite.games}
    summaries = summarize(episodes, refs)
    info = SummaryInfo(
        protocol=protocol_description(protocol) if suite.family == "atari" else f"{suite.family} defaults",
        checkpoint=f"{agent.path} (trained on {', '.join(agent.own_games)}, {agent.global_step} env steps)",
        policy="greedy" if args.greedy else "sample",
        seeds=seeds,
        episodes=args.episodes,
        max_frames=args.max_frames,
        suite=suite.name,
        family=suite.family,
        reference_source=reference_source(suite.family),
    )
    write_scores(out / "scores.csv", episodes)
    (out / "summary.md").write_text(summary_markdown(info, summaries))
    (out / "hns.png").unlink(missing_ok=True)  # a stale chart from an overwritten evaluation
    plot_hns(out / "hns.png", summaries, f"{suite.name} ({protocol})")
    plot_returns(out / "returns.png", episodes, suite.name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        suite, episodes, summary = evaluate(args)
    except (CheckpointError, ConfigError, ValueError, RuntimeError, ImportError, NotImplementedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    refs = {game: reference(suite.family, game) for game in suite.games}
    median, mean, count = suite_hns(summarize(episodes, refs))
    hns = f"; median HNS {100 * median:.1f}%, mean HNS {100 * mean:.1f}% over {count} games" if count else ""
    print(f"{len(episodes)} episodes on {len(suite.games)} game(s) -> {summary}{hns}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
