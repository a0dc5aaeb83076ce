"""Acting and learning at the same time (``train.overlap``): the actor runs one update behind.

The synchronous loop leaves one core idle half the time on a small machine (rollout, then update). Here
the actor steps the envs on a worker thread while the main thread's learner trains on the unroll before::

    main thread   | update(unroll 0) | sync | update(unroll 1) | sync | update(unroll 2) | ...
    actor thread  | unroll 1 (th_0)  |      | unroll 2 (th_1)  |      | unroll 3 (th_2)  | ...

``th_k`` are the learner's parameters after ``k`` updates; unroll 0 is collected before the first update
(with ``th_0``, nothing to overlap it with). Unroll ``k+1`` is thus collected with ``th_k`` while the
learner moves from ``th_k`` to ``th_k+1``: a policy lag of one update, as IMPALA's actors and Sample
Factory's double-buffered sampling. The actor acts on its *own* copy of the network, so the learner's
in-place optimiser steps never change the parameters in the middle of an unroll; between updates (nothing
runs then) :func:`sync_parameters` copies the learner's parameters and buffers (PopArt statistics
included) into it and ``Actor.refresh`` re-projects its cached GTrXL keys/values with them. The memory in
each trajectory's ``initial_state`` is the one the actor had; the learner re-projects it with its own
parameters, as in the synchronous loop.

Why a thread, not a process: torch kernels and envpool release the GIL, intra-op thread counts are per
thread (``torch.set_num_threads`` in the worker sets the actor's alone), and a thread shares the
trajectory tensors without copies or shared-memory plumbing. Measurements: docs/performance.md.

At a stop (signal, end of run, error) the unroll in flight is waited for and discarded: checkpoints and
counters hold only trained data, and a resumed run collects its first unroll afresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from torch import nn

from agent.rollout import Actor, EpisodeStats, Trajectory

__all__ = ["ActorThread", "no_autocast_weight_cache", "sync_parameters"]


def sync_parameters(dst: nn.Module, src: nn.Module) -> None:
    """Copy every parameter and buffer of ``src`` into ``dst`` (same architecture) in place.

    ``load_state_dict`` copies under no_grad into the existing tensors: ``dst``'s storage stays, and the
    version counters move, which invalidates caches keyed on them (the GTrXL positional table).
    """
    dst.load_state_dict(src.state_dict())


@contextlib.contextmanager
def no_autocast_weight_cache() -> Iterator[None]:
    """Turn off autocast's cache of low-precision weight copies in this thread (the learner's).

    That cache is one map for the whole process, and every thread that leaves its outermost autocast
    region clears it: the actor thread does so after each step, at any point of the learner's forward.
    The learner then casts a weight again that it had already cast, and a weight used twice in one
    forward gets its two gradients summed in fp32 instead of in bf16: both are correct, but which one
    happens would depend on the thread timing, and a fixed seed would not repeat a run. Without the
    cache each use casts afresh (whether the flag is set is per thread, so the actor is unaffected).
    """
    previous = torch.is_autocast_cache_enabled()
    torch.set_autocast_cache_enabled(False)
    try:
        yield
    finally:
        torch.set_autocast_cache_enabled(previous)


class ActorThread:
    """Runs ``actor.rollout`` on one worker thread, one unroll at a time.

    ``threads``: torch intra-op threads of the worker (0 = torch's default); the count is per thread, so
    the learner's (main thread's) setting is untouched.
    """

    def __init__(self, actor: Actor, threads: int) -> None:
        self.actor = actor
        self._pool = ThreadPoolExecutor(
            1, thread_name_prefix="actor", initializer=_set_threads, initargs=(threads,)
        )
        self._pending: Future | None = None

    def start(self, unroll_length: int) -> None:
        """Begin collecting the next unroll (none may be in flight)."""
        if self._pending is not None:
            raise RuntimeError("ActorThread.start: an unroll is already in flight")
        self._pending = self._pool.submit(self.actor.rollout, unroll_length)

    def wait(self) -> tuple[Trajectory, EpisodeStats]:
        """The unroll in flight, once collected; an exception of the actor is raised here."""
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("ActorThread.wait: no unroll in flight")
        return pending.result()

    def close(self) -> None:
        """Wait for the unroll in flight (its result and any error are discarded), end the thread."""
        if self._pending is not None:
            self._pending.exception()  # waits; the env must not be closed under a stepping actor
            self._pending = None
        self._pool.shutdown(wait=True)


def _set_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)
