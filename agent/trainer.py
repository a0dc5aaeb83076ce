"""The training loop: rollout -> learn -> log (TensorBoard) -> checkpoint (atomic) -> resume.

Read top to bottom like CleanRL's single file, but each piece lives in its own module:
``agent.builder`` makes the env shard, the network, the learner and the actor (seeding and precision
included), ``agent.rollout.Actor`` collects unrolls with the GTrXL memory carried across them,
``agent.learner`` does the update and refreshes the actor's cache. The learner names its metrics
(``loss/...``, ``vmpo/...``, ``popart/mu/<task>``); the trainer logs them verbatim. Under ``torchrun``
(``agent.distributed``) each rank runs this loop on its shard of the envs with a DDP learner; rank 0
alone logs and checkpoints, and the ranks agree on when to stop. With ``train.overlap`` the rollout of
the next unroll runs on a thread during the update (``agent.overlap``; each rank its own actor thread);
the counters, logs and checkpoints count only unrolls the learner has trained on.
"""

from __future__ import annotations

import collections
import dataclasses
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agent.builder import build_agent, make_env, thread_split
from agent.checkpoint import list_checkpoints, save_checkpoint
from agent.distributed import LOCAL, BatchAxis, DistributedError, check_replicas, guarded, resolve_device
from agent.overlap import ActorThread, no_autocast_weight_cache, sync_parameters
from agent.rollout import EpisodeStats, Trajectory
from configs import Config, config_to_dict
from envs.references import human_normalized, reference


def default_run_name(cfg: Config) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{cfg.env.name}-{cfg.algo.name}-{cfg.net.core}-s{cfg.train.seed}-{stamp}"


def wait_for_newer_event_file_name(run_dir: Path) -> None:
    """Make the next TensorBoard file sort after the run's existing ones.

    Event files are read in name order, ``events.out.tfevents.<seconds>.<host>.<pid>...``; a resumed
    writer created in the same second as the killed run's (a fast crash/restart) would sort by pid and
    could be read first, and then its purge of the stale steps would not apply.
    """
    stamps = [
        int(p.name.split(".")[3])
        for p in run_dir.glob("events.out.tfevents.*")
        if p.name.split(".")[3].isdigit()
    ]
    while stamps and int(time.time()) <= max(stamps):
        time.sleep(0.05)


@dataclasses.dataclass
class Counters:
    global_step: int = 0  # environment steps summed over envs
    num_updates: int = 0
    episodes: int = 0
    wall_time: float = 0.0  # seconds of training before this process (for resumed runs)


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite updates, unwritable checkpoint); the message says why and where."""


class _NoWriter:
    """The TensorBoard writer of ranks other than 0: they log nothing."""

    def add_scalar(self, *args: object, **kwargs: object) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class StopFlag:
    """SIGINT/SIGTERM -> finish the current update, checkpoint, exit cleanly."""

    def __init__(self) -> None:
        self.raised: int | None = None
        self._previous = {}

    def __enter__(self) -> StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.raised = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Owns env, network, actor, learner, writer and counters for one run directory."""

    def __init__(
        self, cfg: Config, run_dir: Path, checkpoint: dict[str, Any] | None = None, axis: BatchAxis = LOCAL
    ) -> None:
        self.run_dir = run_dir
        self.axis = axis
        self.device = resolve_device(cfg.train.device, axis.local_rank)
        threads = thread_split(cfg)  # train.torch_threads=0: a split of this process's cores
        if threads.learner:
            torch.set_num_threads(threads.learner)
        self.counters = Counters(**checkpoint["counters"]) if checkpoint is not None else Counters()
        self.env = make_env(cfg, axis, resumed_updates=self.counters.num_updates)
        agent = build_agent(cfg, self.env, device=self.device, axis=axis, checkpoint=checkpoint)
        self.cfg, self.net, self.learner, self.actor = agent.cfg, agent.net, agent.learner, agent.actor
        # train.overlap: the actor's thread, and the unroll it collected that the learner has not trained
        # on yet (discarded at a stop: checkpoints hold trained data only)
        self.actor_thread = ActorThread(self.actor, threads.actor) if cfg.train.overlap else None
        self.collected: tuple[Trajectory, EpisodeStats] | None = None
        self.writer: SummaryWriter | _NoWriter = _NoWriter()
        if axis.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(self.cfg), sort_keys=False))
            # purge_step drops events logged after the checkpoint we resume from: no gap, no duplicates.
            # A run restarted from scratch (killed before its first checkpoint) drops all its old steps.
            restarted = checkpoint is None and any(run_dir.glob("events.out.tfevents.*"))
            purge = self.counters.global_step + 1 if checkpoint is not None or restarted else None
            if purge is not None:
                wait_for_newer_event_file_name(run_dir)
            self.writer = SummaryWriter(str(run_dir), purge_step=purge)
        self.recent_returns: collections.deque[float] = collections.deque(maxlen=100)
        self.task_returns = [collections.deque(maxlen=20) for _ in self.env.task_names]  # per-task window
        total = self.cfg.train.total_steps
        self.bar = tqdm(total=total, initial=min(self.counters.global_step, total),
                        disable=not self.cfg.train.progress, unit="step", dynamic_ncols=True)  # fmt: skip

    # ---------------------------------------------------------------- checkpoints
    def save(self) -> Path:
        self.writer.flush()  # every curve point up to the checkpoint is on disk before it exists
        payload = {
            "config": config_to_dict(self.cfg),
            "learner": self.learner.training_state(),
            "counters": dataclasses.asdict(self.counters),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "obs_shape": list(self.env.observation_shape),
            "num_actions": self.env.num_actions,
            "task_names": list(self.env.task_names),
        }
        return save_checkpoint(
            self.run_dir, self.counters.num_updates, payload, self.cfg.train.keep_checkpoints
        )

    # ---------------------------------------------------------------- logging
    def _log(self, metrics: dict[str, float], episodes: EpisodeStats, sps: float) -> None:
        step = self.counters.global_step
        if len(episodes.returns):
            self.writer.add_scalar("charts/episodic_return", float(np.mean(episodes.returns)), step)
            self.writer.add_scalar("charts/episodic_length", float(np.mean(episodes.lengths)), step)
            if len(self.env.task_names) > 1:
                self._log_tasks(episodes, step)
        if self.counters.num_updates % self.cfg.train.log_interval == 0:
            for key, value in metrics.items():  # named by the learner where computed
                self.writer.add_scalar(key, value, step)
            self.writer.add_scalar("charts/sps", sps, step)
            self.writer.add_scalar("charts/episodes", self.counters.episodes, step)

    def _log_tasks(self, episodes: EpisodeStats, step: int) -> None:
        """Per-task return; where reference scores exist, per-task and median HNS (last 20 episodes)."""
        names = self.env.task_names
        for task in np.unique(episodes.task_ids):
            returns = episodes.returns[episodes.task_ids == task]
            self.task_returns[int(task)].extend(returns.tolist())
            self.writer.add_scalar(
                f"charts/episodic_return/{names[int(task)]}", float(np.mean(returns)), step
            )
        scores = {}
        for name, window in zip(names, self.task_returns):
            hns = (
                human_normalized(float(np.mean(window)), reference(self.cfg.env.family, name))
                if window
                else None
            )
            if hns is not None and np.isfinite(hns):
                scores[name] = hns
                self.writer.add_scalar(f"charts/hns/{name}", hns, step)
        if scores:
            self.writer.add_scalar("charts/median_hns", float(np.median(list(scores.values()))), step)
            self.writer.add_scalar("charts/mean_hns", float(np.mean(list(scores.values()))), step)
            self.writer.add_scalar("charts/hns_tasks_seen", len(scores), step)

    # ---------------------------------------------------------------- loop
    def _collective(self, fn: Any, *args: Any) -> Any:
        """Run ``fn``; under torchrun, a failure of the process group becomes a one-line TrainingError."""
        try:
            return guarded(self.axis, self.run_dir, fn, *args)
        except DistributedError as err:
            raise TrainingError(str(err)) from None

    def _save_or_fail(self) -> Path | None:
        """Rank 0 writes the checkpoint (the state is the same on every rank); others return None."""
        if not self.axis.is_main:
            return None
        try:
            return self.save()
        except OSError as err:
            raise TrainingError(
                f"could not write a checkpoint in '{self.run_dir}' ({err.strerror or err}); "
                "the earlier checkpoints are intact"
            ) from None

    def _stop_diverged(self) -> None:
        path = self._save_or_fail()
        skips, update = self.learner.consecutive_skipped, self.counters.num_updates
        where = f"parameters saved in '{path}'" if path else "rank 0 saved the parameters"
        raise TrainingError(
            f"stopped: {skips} consecutive updates had a non-finite loss or gradient (update {update}); "
            + where
        )

    def _rollout_then_update(self, T: int) -> tuple[dict[str, float], EpisodeStats]:
        """Synchronous: one rollout, then one update on it (which refreshes the actor's cache)."""
        self.net.eval()
        traj, episodes = self.actor.rollout(T)
        self.net.train()
        self.learner.set_step(self.counters.global_step)  # the lr (and V-MPO's floor) at the env steps so far
        return self.learner.update(traj), episodes

    def _update_while_acting(self, T: int) -> tuple[dict[str, float], EpisodeStats]:
        """Overlapped (agent/overlap.py): update on the unroll collected before while the actor thread
        collects the next one with the parameters before this update; then the actor's copy of the network
        and its cache take the new parameters."""
        assert self.actor_thread is not None
        if self.collected is None:  # this process's first unroll: nothing to overlap it with
            self.collected = self.actor.rollout(T)
        traj, episodes = self.collected
        self.collected = None
        self.actor_thread.start(T)
        self.learner.set_step(self.counters.global_step)
        with no_autocast_weight_cache():  # the actor thread would clear it at random points
            metrics = self.learner.update(traj)
        try:
            self.collected = self.actor_thread.wait()
        except Exception as err:  # any failure of the actor ends the run, in one line
            detail = str(err).strip().splitlines()[0] if str(err).strip() else "no message"
            raise TrainingError(
                f"the actor thread (train.overlap) failed: {type(err).__name__}: {detail}"
            ) from err
        sync_parameters(self.actor.net, self.net)
        self.actor.refresh()
        return metrics, episodes

    def iteration(self) -> dict[str, float]:
        """One rollout + one learner update (which refreshes the actor's cache) + logging; returns the
        learner's metrics. With ``train.overlap`` the rollout is the next unroll's, on the actor thread."""
        T, N = self.cfg.algo.unroll_length, self.env.num_envs * self.axis.world
        t0 = time.perf_counter()
        step = self._update_while_acting if self.actor_thread is not None else self._rollout_then_update
        metrics, episodes = step(T)
        if self.axis.distributed:  # every rank's finished episodes, for rank 0's logs
            parts = self.axis.gather_objects(episodes)
            episodes = EpisodeStats(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                                      ("returns", "lengths", "task_ids")))  # fmt: skip
        sps = T * N / (time.perf_counter() - t0)
        self.counters.global_step += T * N
        self.counters.num_updates = self.learner.num_updates
        self.counters.episodes += len(episodes.returns)
        self.recent_returns.extend(episodes.returns.tolist())
        self._log(metrics, episodes, sps)
        self.bar.update(T * N)
        recent = np.mean(self.recent_returns) if self.recent_returns else float("nan")
        self.bar.set_postfix(sps=f"{sps:.0f}", ret=f"{recent:.3f}", upd=self.counters.num_updates)
        return metrics

    def close(self) -> None:
        """Close the progress bar, the TensorBoard writer, the actor thread (after its unroll in flight,
        which is discarded) and the envs."""
        self.bar.close()
        self.writer.close()
        if self.actor_thread is not None:
            self.actor_thread.close()
            self.collected = None
        self.env.close()

    def train(self) -> dict[str, float]:
        """Train until ``train.total_steps`` or a stop signal; checkpoint at the interval and at the end.

        Raises :class:`TrainingError` (after checkpointing what it can) when the updates keep being
        non-finite or a checkpoint cannot be written.
        """
        cfg = self.cfg.train
        start_wall = time.time() - self.counters.wall_time
        last_saved = self.counters.num_updates
        metrics: dict[str, float] = {}
        stopping = False
        try:
            with StopFlag() as stop:
                while self.counters.global_step < cfg.total_steps and not stopping:
                    metrics = self._collective(self.iteration)
                    self.counters.wall_time = time.time() - start_wall
                    if self.learner.consecutive_skipped >= cfg.max_consecutive_skips:
                        self._stop_diverged()
                    interval = cfg.sync_check_interval if self.axis.distributed else 0
                    if interval and self.counters.num_updates % interval == 0:
                        self._collective(check_replicas, self.learner, self.axis, self.counters.num_updates)
                        self.writer.add_scalar("dist/replicas_in_sync", 1.0, self.counters.global_step)
                    if self.counters.num_updates % cfg.checkpoint_interval == 0:
                        self._save_or_fail()
                        last_saved = self.counters.num_updates
                    # a signal on any rank stops every rank after the same update
                    stopping = self._collective(self.axis.any_flag, stop.raised is not None)
                if self.counters.num_updates != last_saved or not list_checkpoints(self.run_dir):
                    self._save_or_fail()
        finally:
            self.close()
        return {
            "global_step": float(self.counters.global_step),
            "num_updates": float(self.counters.num_updates),
            "recent_return": float(np.mean(self.recent_returns)) if self.recent_returns else float("nan"),
            "stopped_by_signal": float(stop.raised is not None),
            **metrics,
        }
