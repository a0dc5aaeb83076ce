"""Data-parallel training over ``torch.distributed`` ranks (launched with ``torchrun``).

Each rank runs its own shard of the envs (``env.num_envs / world`` slots, distinct seeds), its own actor
and a replica of the learner; the learner's gradients are all-reduced by ``DistributedDataParallel``.

V-MPO's E-step is not a per-sample loss: the top-k set, the softmax weights ``psi`` and the temperature
dual's log-sum-exp are taken over the *whole* batch (Song et al. 2019, eqs. 3-4). A :class:`BatchAxis`
describes the env axis of a ``[T, B]`` batch split over ranks, and the loss functions of ``agent.vmpo``
take it:

* ``gather`` builds the global ``[T, W*B]`` advantages and masks (fixed shapes, rank order), so every rank
  computes the same top-k set, the same ``psi`` and the same ``L_eta``;
* each rank's loss is its *share* of the global loss (per-sample terms over the global count, replicated
  terms divided by ``W``), so the shares sum to the single-process loss on the concatenated batch, and the
  learner back-propagates ``W * share`` because DDP averages gradients over ranks.

With ``world = 1`` (:data:`LOCAL`) every operation is the identity and the maths is the single-process one.
Rank 0 alone writes TensorBoard and checkpoints; the saved state is rank-independent (one replica), so a
run resumes with any world size that divides ``env.num_envs``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import gc
import hashlib
import importlib
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


class DistributedError(RuntimeError):
    """A rank cannot go on with the group (a peer died, a collective failed, replicas diverged)."""


@dataclasses.dataclass(frozen=True)
class BatchAxis:
    """The env axis of ``[T, B, ...]`` batches, split in equal parts over ``world`` ranks (rank order)."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    group: Any = None  # the process group (None = the default group)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs and checkpoints."""
        return self.rank == 0

    def gather(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """``[T, B, ...]`` on every rank -> ``[T, W*B, ...]`` (rank r's columns at ``r*B``); no gradient.

        ``dim`` is the batch axis: 1 for the agent's time-major batches, 0 for the LLM's ``[B]`` sequences.
        """
        if not self.distributed:
            return x
        x = x.detach()
        wire = x.to(torch.uint8) if x.dtype == torch.bool else x  # gloo has no bool all_gather
        parts = [torch.empty_like(wire) for _ in range(self.world)]
        dist.all_gather(parts, wire.contiguous(), group=self.group)
        return torch.cat(parts, dim=dim).to(x.dtype)

    def local(self, x: torch.Tensor, dim: int = 1) -> torch.Tensor:
        """This rank's part of a gathered ``[T, W*B, ...]`` tensor (along the batch axis ``dim``)."""
        if not self.distributed:
            return x
        width = x.shape[dim] // self.world
        return x.narrow(dim, self.rank * width, width)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """Sum over ranks of a detached tensor (the same value on every rank)."""
        return self._all_reduce(x, dist.ReduceOp.SUM)

    def max(self, x: torch.Tensor) -> torch.Tensor:
        """Max over ranks of a detached tensor."""
        return self._all_reduce(x, dist.ReduceOp.MAX)

    def _all_reduce(self, x: torch.Tensor, op: Any) -> torch.Tensor:
        if not self.distributed:
            return x.detach()
        out = x.detach().clone()
        dist.all_reduce(out, op=op, group=self.group)
        return out

    def mean_share(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """This rank's share of the global masked mean: ``sum_local(x * mask) / count_global``.

        Summed over ranks it is the masked mean over the concatenated batch (0 where nothing is valid);
        the gradient flows through the local entries only. With ``world = 1`` it is ``masked_mean``.
        """
        mask = mask.bool()
        count = self.sum(mask.sum()).clamp_min(1)
        return torch.where(mask, x, torch.zeros_like(x)).sum() / count

    def average_gradients(self, params: list[nn.Parameter]) -> None:
        """All-reduce the ``.grad`` of ``params`` to their mean over ranks, in one flat buffer.

        For modules that do not run under DDP (the LLM learner's Hugging Face policy, value head and
        duals). Parameters without a gradient are left out; every rank runs the same code, so they are
        the same parameters on every rank.
        """
        if not self.distributed:
            return
        params = [p for p in params if p.grad is not None]  # the same on every rank (same code path)
        if not params:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        flat /= self.world
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def any_flag(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank (stop signals)."""
        if not self.distributed:
            return flag
        return bool(self.max(torch.tensor([int(flag)], dtype=torch.int64)).item())

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (pickled; small objects: configs, paths, error messages)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order (episode statistics for rank 0's logs)."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out


LOCAL = BatchAxis()


def init_from_env(timeout_s: float = 600.0, prefer_cuda: bool = True) -> BatchAxis:
    """The :class:`BatchAxis` of this process: :data:`LOCAL` unless launched by ``torchrun``.

    ``torchrun`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` and the rendezvous variables. Where CUDA is
    available the group runs NCCL for CUDA tensors and gloo for CPU ones (``"cpu:gloo,cuda:nccl"``: the
    small CPU flags and objects and a ``train.device=cpu`` run work there too), with one GPU per local
    rank; otherwise gloo. ``timeout_s`` bounds how long a collective waits for a rank that stopped
    answering.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return LOCAL
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = prefer_cuda and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # Imported before the default group exists: importing torch._dynamo (which torch.optim and DDP do
        # lazily) while a group exists keeps references to it, so the group outlives
        # destroy_process_group and its gloo threads stay alive into interpreter shutdown (see shutdown).
        importlib.import_module("torch._dynamo")

        dist.init_process_group(
            backend="cpu:gloo,cuda:nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return BatchAxis(world=dist.get_world_size(), rank=dist.get_rank(), local_rank=local_rank)


def with_timeout(axis: BatchAxis, timeout_s: float) -> BatchAxis:
    """The same ranks in a new process group whose collectives wait at most ``timeout_s``.

    ``train.dist_timeout_s``: the default group exists before the config is read. Every rank calls this.
    """
    if not axis.distributed:
        return axis
    group = dist.new_group(timeout=datetime.timedelta(seconds=timeout_s))
    return dataclasses.replace(axis, group=group)


def shutdown(axis: BatchAxis) -> None:
    """Destroy every process group and let their gloo threads join while the interpreter is alive.

    A gloo group's worker threads live until its last reference is freed. One still alive when the
    interpreter shuts down can free its last work (whose tensors need the GIL) too late and abort a
    finished run ("terminate called without an active exception", exit code -6). The trainer holding the
    timeout group sits in reference cycles, freed here by the collector rather than at exit.
    """
    if axis.distributed and dist.is_initialized():
        dist.destroy_process_group()
        gc.collect()


@contextlib.contextmanager
def launched() -> Iterator[BatchAxis]:
    """This process's :class:`BatchAxis` (:func:`init_from_env`), its process group shut down at exit."""
    axis = init_from_env()
    try:
        yield axis
    finally:
        shutdown(axis)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` / ``cpu`` / ``cuda``; under torchrun, CUDA means this process's GPU (its local rank)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA device is available; use train.device=cpu or auto")
    return torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)


def shard_slots(num_envs: int, axis: BatchAxis) -> tuple[int, int]:
    """``env.num_envs`` global slots -> (this rank's count, index of its first global slot)."""
    if num_envs % axis.world:
        raise ValueError(
            f"env.num_envs={num_envs} does not split over {axis.world} ranks; "
            f"accepted: a multiple of the world size {axis.world}"
        )
    local = num_envs // axis.world
    return local, axis.rank * local


def parameter_digest(module: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``module`` (bitwise replica check)."""
    digest = hashlib.sha256()
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_replicas(module: nn.Module, axis: BatchAxis, update: int) -> None:
    """Raise :class:`DistributedError` unless every rank holds bitwise identical parameters."""
    digests = axis.gather_objects(parameter_digest(module))
    differing = [r for r, d in enumerate(digests) if d != digests[0]]
    if differing:
        raise DistributedError(
            f"rank {axis.rank}: replicas diverged at update {update}: rank(s) {differing} hold parameters "
            "that differ from rank 0's"
        )


def guarded(axis: BatchAxis, run_dir: object, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``; under torchrun a failed collective (a peer died or timed out) becomes a one-line
    :class:`DistributedError` that says the checkpoints in ``run_dir`` are intact and how to resume."""
    if not axis.distributed:
        return fn(*args)
    try:
        return fn(*args)
    except DistributedError:
        raise
    except RuntimeError as err:
        if not isinstance(err, dist.DistError) and not _looks_collective(err):
            raise
        raise DistributedError(
            f"rank {axis.rank} of {axis.world} lost the process group ({_cause(err)}): another rank failed "
            f"or was killed; the last checkpoint in '{run_dir}' is intact, resume with "
            f"train.resume={run_dir} (with any world size)"
        ) from None


def _cause(err: BaseException) -> str:
    """The first sentence of a gloo/NCCL error, without its source location prefix."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0]


def _looks_collective(err: BaseException) -> bool:
    text = str(err).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "peer"))


def wrap(module: nn.Module, axis: BatchAxis) -> nn.Module:
    """``module`` under DistributedDataParallel (rank 0's parameters broadcast now, gradients averaged).

    Buffers are not re-broadcast each forward: every rank updates them (PopArt statistics) identically
    from gathered data. ``device_ids`` stays unset: the module lives on one device already and the batch
    is on it, so DDP neither scatters nor moves the inputs.
    """
    return nn.parallel.DistributedDataParallel(module, forward_sync_buffers=False, process_group=axis.group)
