"""The LLM loop: SFT warm start -> [sample -> reward -> update -> log -> evaluate -> checkpoint] -> resume.

Run directory layout::

    <run_dir>/config.yaml                   the resolved LLMConfig
    <run_dir>/events.out.tfevents.*         TensorBoard scalars, named by the learner (TRL names under
                                            train/, duals under vmpo/) and logged verbatim
    <run_dir>/models/update_<n:09d>/        policy (+ tokenizer) via save_pretrained, written atomically
    <run_dir>/models/ref/                   the frozen reference pi_ref, when the method uses one
    <run_dir>/checkpoints/ckpt_<n:09d>.pt   optimisers, duals, value head, counters, RNG (agent.checkpoint)

A checkpoint names its model folder; the folder is complete before the checkpoint exists (temp dir +
rename), so the newest loadable checkpoint always points to a complete model.

Under torchrun every rank samples its own prompts and completions; rank 0 alone evaluates, logs and
saves (a resumed run reads the model folder, so ranks on several nodes need the run directory on a
shared filesystem).
"""

from __future__ import annotations

import dataclasses
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agent.checkpoint import list_checkpoints, save_checkpoint
from agent.distributed import LOCAL, BatchAxis, check_replicas, guarded, resolve_device
from configs import config_to_dict
from llm.learner import SequenceLearner
from llm.models import Codec, load_policy
from llm.rollout import sample_completions, sft_batch
from llm.tasks import Example, Task, make_task
from networks.precision import autocast, resolve_bf16

__all__ = ["LLMTrainer", "evaluate", "make_task_from_config", "peak_memory_mb"]

MODELS_DIR = "models"
REF_DIR = "ref"


def make_task_from_config(task_cfg: Any) -> Task:
    return make_task(
        task_cfg.name,
        max_operand=task_cfg.max_operand,
        alphabet=task_cfg.alphabet,
        min_len=task_cfg.min_len,
        max_len=task_cfg.max_len,
        heldout_fraction=task_cfg.heldout_fraction,
        reward=task_cfg.reward,
        seed=task_cfg.seed,
    )


def evaluate(
    model: torch.nn.Module,
    codec: Codec,
    task: Task,
    examples: list[Example],
    max_new_tokens: int,
    samples_per_prompt: int = 4,
    temperature: float = 1.0,
) -> dict[str, float]:
    """Mean reward on ``examples``: greedy decoding and ``samples_per_prompt`` sampled completions."""
    greedy = sample_completions(model, codec, examples, 1, max_new_tokens, greedy=True)
    sampled = sample_completions(model, codec, examples, samples_per_prompt, max_new_tokens, temperature)
    score = lambda r: sum(task.reward(e, t) for e, t in zip(r.examples, r.texts)) / len(r.texts)
    return {"reward_greedy": score(greedy), "reward_sampled": score(sampled)}


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak memory so far: ``perf/peak_rss_mb`` (the process's maximum resident set, ``ru_maxrss``, which
    Linux reports in KiB) and, on CUDA, ``perf/peak_gpu_mb`` (``torch.cuda.max_memory_allocated``)."""
    peak = {"perf/peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["perf/peak_gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def _save_pretrained_atomic(model: torch.nn.Module, codec: Codec, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp_", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        codec.save(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclasses.dataclass
class LLMCounters:
    num_updates: int = 0
    sft_steps: int = 0
    samples: int = 0  # completions generated
    wall_time: float = 0.0


class LLMTrainer:
    """Owns task, policy, learner, writer and counters for one run directory."""

    def __init__(
        self, cfg: Any, run_dir: Path, checkpoint: dict[str, Any] | None = None, axis: BatchAxis = LOCAL
    ) -> None:
        self.cfg = cfg
        self.run_dir = run_dir
        self.axis = axis
        t = cfg.train
        self.device = resolve_device(t.device, axis.local_rank)
        if t.torch_threads:
            torch.set_num_threads(t.torch_threads)
        torch.manual_seed(t.seed)
        self.task = make_task_from_config(cfg.task)
        self.eval_examples = self.task.heldout[: cfg.task.eval_prompts]
        self.counters = LLMCounters(**checkpoint["counters"]) if checkpoint else LLMCounters()
        model_dir = run_dir / MODELS_DIR / checkpoint["model_dir"] if checkpoint else None
        policy, self.codec = load_policy(cfg.model, self.task.alphabet(), model_dir)
        self.policy = policy.to(self.device)
        self.bf16 = resolve_bf16(t.bf16, self.device)
        self.learner = SequenceLearner(self.policy, cfg.algo, t.sft_lr, bf16=self.bf16).to(self.device)
        if checkpoint:
            self.learner.load_training_state(checkpoint["learner"])
            self.task.set_rng_state(checkpoint["rng"]["task"])
            torch.set_rng_state(checkpoint["rng"]["torch"])
            if self.learner.needs_ref:
                ref, _ = load_policy(cfg.model, self.task.alphabet(), run_dir / MODELS_DIR / REF_DIR)
                self.learner.ref = ref.to(self.device).eval().requires_grad_(False)
        if axis.distributed:  # the same parameters everywhere; each rank its own prompts and samples
            self.learner.distribute(axis)
            shard_seed = t.seed + 7_919 * axis.rank + 10_007 * self.counters.num_updates
            torch.manual_seed(shard_seed)
            self.task.reseed(shard_seed)
        self.writer: SummaryWriter | None = None
        if axis.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
            purge = self._step() + 1 if checkpoint else None
            self.writer = SummaryWriter(str(run_dir), purge_step=purge)

    def _step(self) -> int:
        """TensorBoard x-axis: SFT steps then RL updates, one shared counter."""
        return self.counters.sft_steps + self.counters.num_updates

    # ---------------------------------------------------------------- checkpoints
    def save(self) -> Path | None:
        """Rank 0 saves the model folder and the checkpoint (every rank holds the same state)."""
        if self.writer is None:
            return None
        self.writer.flush()
        name = f"update_{self.counters.num_updates:09d}"
        _save_pretrained_atomic(self.policy, self.codec, self.run_dir / MODELS_DIR / name)
        payload = {
            "config": config_to_dict(self.cfg),
            "learner": self.learner.training_state(),
            "counters": dataclasses.asdict(self.counters),
            "rng": {"torch": torch.get_rng_state(), "task": self.task.rng_state()},
            "model_dir": name,
        }
        path = save_checkpoint(
            self.run_dir, self.counters.num_updates, payload, self.cfg.train.keep_checkpoints
        )
        kept = {f"update_{int(p.stem.split('_')[1]):09d}" for p in list_checkpoints(self.run_dir)}
        for folder in (self.run_dir / MODELS_DIR).glob("update_*"):
            if folder.name not in kept:
                shutil.rmtree(folder, ignore_errors=True)
        return path

    # ---------------------------------------------------------------- phases
    def log(self, metrics: dict[str, float]) -> None:
        """Rank 0 writes the scalars under their names, which the learner (``train/reward``, ``vmpo/eta``,
        ``sft/loss`` ...) or this trainer (``eval/...``, ``dist/...``) gave them where they were computed."""
        if self.writer is None:
            return
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, self._step())

    def evaluate(self) -> dict[str, float]:
        if not self.axis.is_main:
            return {}
        s = self.cfg.sample
        with autocast(self.device, self.bf16):
            result = evaluate(self.policy, self.codec, self.task, self.eval_examples, s.max_new_tokens,
                              temperature=s.temperature)  # fmt: skip
        self.log({f"eval/{k}": v for k, v in result.items()})
        return result

    def sft(self) -> None:
        t = self.cfg.train
        for _ in range(self.counters.sft_steps, t.sft_steps):
            batch = sft_batch(self.codec, self.task.sample(t.sft_batch), self.device)
            metrics = guarded(self.axis, self.run_dir, self.learner.sft_step, batch)
            self.counters.sft_steps += 1
            if self.counters.sft_steps % t.log_interval == 0:
                self.log(metrics)

    def train(self) -> dict[str, float]:
        """SFT (if not done), then RL up to ``train.iterations``; returns held-out rewards before/after RL,
        the RL samples per second (sampling + update, without evaluation) and the peak memory."""
        t, s = self.cfg.train, self.cfg.sample
        start = time.time() - self.counters.wall_time
        fresh_rl = self.counters.num_updates == 0
        if fresh_rl:
            self.sft()
            self.learner.refresh_ref()
            if self.learner.ref is not None:
                _save_pretrained_atomic(self.learner.ref, self.codec, self.run_dir / MODELS_DIR / REF_DIR)
        before = self.evaluate() if fresh_rl else {}
        bar = tqdm(total=t.iterations, initial=self.counters.num_updates, disable=not t.progress, unit="upd")
        rl_samples, rl_seconds = 0, 0.0  # this session's RL updates, sampling + update (no evaluation)
        while self.counters.num_updates < t.iterations:
            tick = time.perf_counter()
            examples = self.task.sample(s.prompts_per_batch)
            with autocast(self.device, self.bf16):
                rollout = sample_completions(self.policy, self.codec, examples, s.completions_per_prompt,
                                             s.max_new_tokens, s.temperature, s.top_k)  # fmt: skip
            rewards = torch.tensor([self.task.reward(e, y) for e, y in zip(rollout.examples, rollout.texts)])
            metrics = guarded(self.axis, self.run_dir, self.learner.update, rollout, rewards)
            self.counters.num_updates = self.learner.num_updates
            samples = len(rollout.texts) * self.axis.world  # this update's completions, every rank's
            self.counters.samples += samples
            seconds = time.perf_counter() - tick
            rl_samples, rl_seconds = rl_samples + samples, rl_seconds + seconds
            metrics["perf/samples_per_s"] = samples / max(seconds, 1e-9)
            metrics.update(peak_memory_mb(self.device))
            interval = t.sync_check_interval
            if self.axis.distributed and interval and self.counters.num_updates % interval == 0:
                guarded(
                    self.axis,
                    self.run_dir,
                    check_replicas,
                    self.learner,
                    self.axis,
                    self.counters.num_updates,
                )
                self.log({"dist/replicas_in_sync": 1.0})
            self.counters.wall_time = time.time() - start
            if self.counters.num_updates % t.log_interval == 0:
                self.log(metrics)
            if self.counters.num_updates % t.eval_interval == 0:
                self.evaluate()
            if self.counters.num_updates % t.checkpoint_interval == 0:
                self.save()
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['train/reward']:.3f}")
        bar.close()
        after = self.evaluate()
        self.save()
        if self.writer is not None:
            self.writer.close()
        summary = {f"after/{k}": v for k, v in after.items()}
        summary.update({f"before/{k}": v for k, v in before.items()})
        summary["wall_time"] = time.time() - start
        summary["samples_per_s"] = rl_samples / rl_seconds if rl_seconds > 0 else 0.0
        summary.update({k.removeprefix("perf/"): v for k, v in peak_memory_mb(self.device).items()})
        return summary
