"""Learners: one update from a :class:`~agent.rollout.Trajectory`, the same shape for V-MPO and PPO.

The learner owns the optimiser, the target network (pi_old of V-MPO), the Lagrange multipliers and the
PopArt statistics. It knows nothing about Atari, DMLab or language models. One update::

    update(traj)
      no gradient: pi_old's logits (V-MPO) | old log-probs, values, GAE advantages and targets (PPO)
      for each epoch, for each minibatch of env columns:
        batch = VMPOBatch(...) | PPOBatch(...)
        loss, metrics, returns = self.loss_fn(batch)   # = forward(batch): net.unroll over [T+1, B] from
                                                       # the actor's memory at the unroll's start, then
                                                       # agent.vmpo.vmpo_loss | agent.ppo.ppo_loss
        self._optimizer_step(loss)                     # backward (DDP all-reduces), clip, Adam step
      PopArt statistics from the returns, target network refresh (V-MPO)
      self.actor.refresh()                             # the acting cache under the new parameters

With ``train.overlap`` the actor acts on its own copy of the network, one update behind
(agent/overlap.py): ``lagged_actor`` is set, the trainer refreshes that copy, and PPO's ratio divides by
the behaviour policy the actor recorded (``Trajectory.behaviour_logits``), not a recomputation with the
learner's newer parameters. V-MPO's KL trust region keeps the target network as pi_old (Song et al. 2019,
whose actors also lag the learner): its anchor is where the learner starts, not where the actor was.

``loss_fn`` is ``forward`` itself or, after :meth:`Learner.distribute`, the call of its
DistributedDataParallel wrapper, which runs the same ``forward`` so that the backward pass all-reduces
the gradients of the network and of the duals. Both algorithms' ``forward`` return a :class:`StepOutput`:
this rank's share of the loss; metrics named where they are computed (``loss/...``, ``vmpo/...``,
``ppo/...``), global over ranks, logged verbatim by the trainer; and the critic's targets, which V-MPO's
PopArt statistics take from the last epoch's forward pass.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from agent.distributed import LOCAL, BatchAxis, wrap
from agent.duals import LagrangeMultiplier
from agent.loss_output import Extras
from agent.masked import masked_mean
from agent.ppo import ppo_loss
from agent.returns import gae, n_step_returns
from agent.rollout import Actor, Trajectory
from agent.vmpo import Penalty, vmpo_loss
from configs.schema import AlgoConfig

Metrics = dict[str, float]


class StepOutput(NamedTuple):
    """What a learner's loss function returns for one minibatch (both algorithms)."""

    loss: torch.Tensor  # this rank's share of the global loss, 0-d fp32, carries the gradient
    metrics: Extras  # detached 0-d fp32 values over every rank's minibatch, named for logging
    returns: torch.Tensor  # [T, B] the critic's targets G, unnormalised (V-MPO's PopArt statistics)


@dataclass(frozen=True)
class VMPOBatch:
    """One V-MPO minibatch: whole env columns of the unroll and pi_old's logits on them."""

    traj: Trajectory  # [T+1, B] inputs, [T, B] actions, rewards and mask
    target_logits: torch.Tensor  # [T, B, A] pi_old (the target network), no gradient
    # algo.vmpo.fixed_advantages: G (unnormalised) and A (PopArt-normalised) [T, B] of the parameters that
    # acted, computed once per update; None: both from this minibatch's forward
    returns: torch.Tensor | None = None
    advantages: torch.Tensor | None = None


@dataclass(frozen=True)
class PPOBatch:
    """One PPO minibatch: its columns and what the no-grad unroll before the update recorded on them."""

    traj: Trajectory  # [T+1, B] (or [1, M] single steps, ``Trajectory.steps``)
    old_log_probs: torch.Tensor  # [T, B] log pi_old(a_t|s_t)
    advantages: torch.Tensor  # [T, B] GAE(lambda)
    old_values: torch.Tensor  # [T+1, B] V_old(s_t) of each step's task (the first T rows are used)
    returns: torch.Tensor  # [T, B] GAE targets A + V_old


def as_floats(metrics: Extras) -> Metrics:
    """0-d tensors -> Python floats, for the logger (one host synchronisation per metric)."""
    return {k: float(v) for k, v in metrics.items()}


def task_values(values: torch.Tensor, task_id: torch.Tensor) -> torch.Tensor:
    """[T, B, num_tasks] (PopArt-normalised per task) -> [T, B] value of each step's own task."""
    return values.gather(-1, task_id.unsqueeze(-1)).squeeze(-1)


def column_minibatches(action: torch.Tensor, num_minibatches: int) -> tuple[torch.Tensor, ...]:
    """A random split of the columns of ``action`` [T, B] into ``min(num_minibatches, B)`` index sets."""
    columns = action.shape[1]
    return torch.randperm(columns, device=action.device).chunk(max(1, min(num_minibatches, columns)))


def action_log_probs(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(a|s) [T, B] and the policy entropy [T, B], in fp32."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    return log_p.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy


def linear_anneal(value: float, env_step: int, horizon: int) -> float:
    """``value * max(0, 1 - env_step / horizon)``: from ``value`` at step 0 to 0 at ``horizon`` (> 0) and
    after (the lr of ``algo.lr_schedule=linear``, V-MPO's entropy floor)."""
    return value * max(0.0, 1.0 - env_step / horizon)


def piecewise_linear(env_step: int, milestones: Sequence[int], scales: Sequence[float]) -> float:
    """The scale at ``env_step`` on the line through the points ``(milestones[i], scales[i])``
    (milestones non-decreasing; one given twice is a step, its later scale from that step on);
    ``scales[0]`` before the first milestone and ``scales[-1]`` after the last (``algo.lr_schedule=
    piecewise``)."""
    i = bisect.bisect_right(milestones, env_step) - 1  # the last point at or before env_step
    if i < 0:
        return float(scales[0])
    if i == len(milestones) - 1:
        return float(scales[-1])
    (x0, x1), (y0, y1) = milestones[i : i + 2], scales[i : i + 2]  # x0 <= env_step < x1
    return float(y0 + (y1 - y0) * (env_step - x0) / (x1 - x0))


class Learner(nn.Module):
    """Shared machinery: Adam, gradient clipping, non-finite guard, counters, checkpoint state, the
    actor's cache refresh. Subclasses define ``forward(batch) -> StepOutput`` (the loss function) and
    ``update(traj)``.

    Args:
        net: the :class:`~networks.agent_net.AgentNet` the actor also acts with.
        cfg: ``algo`` section of the config.
        task_names: the env's tasks, one per PopArt head (metric names ``popart/mu/<task>``); default
            ``"0"``, ``"1"``, ...
    """

    def __init__(self, net: nn.Module, cfg: AlgoConfig, *, task_names: Sequence[str] = ()) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.task_names = tuple(task_names)
        self.axis: BatchAxis = LOCAL
        # The loss function of one minibatch: forward, or its DDP wrapper's call (distribute).
        self.loss_fn: Callable[..., StepOutput] = self.forward
        self.actor: Actor | None = None  # acts with self.net; its cache is refreshed after each update
        # train.overlap: the actor acts one update behind on its own copy of the network; PPO's ratio then
        # divides by the behaviour policy it recorded (Trajectory.behaviour_logits), V-MPO keeps its target
        self.lagged_actor = False
        self.num_updates = 0
        self.num_skipped = 0  # gradient steps skipped because the loss or the gradients were not finite
        self.consecutive_skipped = 0  # skips since the last good step (the trainer stops past a limit)
        self.lr_horizon = 0  # env steps over which algo.lr_schedule=linear anneals (set by the builder)

    def _param_groups(self) -> list[dict]:
        return [{"params": list(self.net.parameters()), "name": "net"}]

    def build_optimizer(self) -> None:
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=self.cfg.lr, eps=self.cfg.adam_eps)

    def set_lr(self, env_step: int) -> float:
        """Set the network's step size for the update at ``env_step`` (``algo.lr_schedule``) -> the lr.

        linear: ``lr * max(0, 1 - env_step / lr_horizon)`` (CleanRL's ``--anneal-lr``, which anneals by
        iteration: the same line, since each iteration adds the same env steps). piecewise: ``lr *
        piecewise_linear(env_step, lr_milestones, lr_scales)``. The duals of V-MPO keep their own fixed
        step size.
        """
        lr = self.cfg.lr
        if self.cfg.lr_schedule == "linear":
            if self.lr_horizon <= 0:
                raise ValueError("algo.lr_schedule=linear needs the learner's lr_horizon (train.total_steps)")
            lr = linear_anneal(lr, env_step, self.lr_horizon)
        elif self.cfg.lr_schedule == "piecewise":
            lr *= piecewise_linear(env_step, self.cfg.lr_milestones, self.cfg.lr_scales)
        for group in self.optimizer.param_groups:
            if group.get("name") == "net":
                group["lr"] = lr
        return lr

    def set_step(self, env_step: int) -> None:
        """Before an update: set what is scheduled over the run's env steps (here the lr, ``set_lr``)."""
        self.set_lr(env_step)

    def distribute(self, axis: BatchAxis) -> None:
        """Train as one of ``axis.world`` data-parallel replicas (rank 0's parameters are broadcast now).

        From now on ``loss_fn`` runs ``forward`` through DistributedDataParallel, whose backward pass
        all-reduces the gradients. The wrapper's call is kept rather than the wrapper: a module attribute
        would make the wrapper a submodule of the module it wraps.
        """
        self.axis = axis
        if axis.distributed:
            self.loss_fn = wrap(self, axis).__call__

    def _optimizer_step(self, loss: torch.Tensor) -> Metrics:
        """Backward + clip + step; a non-finite loss or gradient skips the step (logged, counted).

        ``loss`` is this rank's share; DDP averages gradients over ranks, hence ``world * share``. The
        skip decision uses the global loss and the all-reduced gradient norm, the same on every rank.
        """
        self.optimizer.zero_grad(set_to_none=True)
        global_loss = self.axis.sum(loss)
        (loss * self.axis.world).backward()  # always: a rank that skipped would stall the all-reduce
        grad_norm = nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.max_grad_norm)
        if not torch.isfinite(global_loss):
            grad_norm = torch.tensor(math.nan)
        if torch.isfinite(grad_norm):
            self.optimizer.step()
            self.consecutive_skipped = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.num_skipped += 1
            self.consecutive_skipped += 1
        return {"learner/grad_norm": float(grad_norm), "learner/skipped_updates": float(self.num_skipped)}

    def _end_update(self, metrics: Metrics) -> Metrics:
        """Refresh the actor's cached memory under the new parameters; -> metrics with ``learner/lr``."""
        metrics["learner/lr"] = self.optimizer.param_groups[0]["lr"]
        if self.actor is not None:
            self.actor.refresh()
        return metrics

    def training_state(self) -> dict:
        return {
            "module": self.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_updates": self.num_updates,
            "num_skipped": self.num_skipped,
            "lr_horizon": self.lr_horizon,
        }

    def load_training_state(self, state: dict) -> None:
        self.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.num_updates = int(state["num_updates"])
        self.num_skipped = int(state["num_skipped"])
        self.lr_horizon = int(state.get("lr_horizon", self.lr_horizon))  # older checkpoints: the trainer's

    def update(self, traj: Trajectory) -> Metrics:
        """One update on an unroll ``traj`` ([T+1, B] inputs) -> the last minibatch's metrics (floats)."""
        raise NotImplementedError

    def _behaviour_logits(self, traj: Trajectory) -> torch.Tensor:
        """[T, B, A] the logits the actor sampled ``traj``'s actions from (``lagged_actor`` only)."""
        if traj.behaviour_logits is None:
            raise ValueError("an actor one update behind (train.overlap) must record behaviour_logits")
        return traj.behaviour_logits


class VMPOLearner(Learner):
    """V-MPO (Song et al. 2019, eqs. 1-6): critic + E-step + M-step with eta/alpha duals.

    Per update, on a [T, B] unroll:
      G_t = n-step bootstrapped target, A_t = G_t - V(s_t)       (section "Policy evaluation", eq. 6)
      L = L_V + L_pi + L_eta + L_alpha                              (eqs. 1-2, the total loss)
    pi_old is the target network, refreshed every ``target_update_period`` updates. With PopArt
    (van Hasselt et al. 2016) the value head predicts per-task normalised values; targets and advantages
    are normalised by the task's statistics, which are updated after the gradient steps with outputs
    preserved. In multi-task runs the E-step top-k and the eta dual run over the whole batch of all
    tasks, as in the paper (the PopArt-normalised advantages make tasks comparable); there is no per-task
    E-step option.
    """

    def __init__(self, net: nn.Module, cfg: AlgoConfig, *, task_names: Sequence[str] = ()) -> None:
        super().__init__(net, cfg, task_names=task_names)
        v = cfg.vmpo
        self.target_net = copy.deepcopy(net).requires_grad_(False)
        self.eta = LagrangeMultiplier(v.eta_init, v.dual_param, v.dual_eps_min)  # temperature of psi
        # KL trust region; alpha_min > 0 keeps it from winding down while the KL is under its bound
        self.alpha = LagrangeMultiplier(v.alpha_init, v.dual_param, v.dual_eps_min, value_min=v.alpha_min)
        # entropy floor (algo.vmpo.min_entropy > 0): mean H(pi) >= min_entropy
        self.beta = (
            LagrangeMultiplier(v.beta_init, v.dual_param, v.dual_eps_min, value_min=v.beta_min)
            if v.min_entropy > 0
            else None
        )
        self.min_entropy = v.min_entropy  # the floor of the next update (set_step anneals it)
        self.build_optimizer()

    def set_step(self, env_step: int) -> None:
        """The lr, and with ``algo.vmpo.min_entropy_anneal_steps > 0`` the entropy floor
        ``final + (min_entropy - final) * max(0, 1 - env_step / min_entropy_anneal_steps)``, with
        ``final = min_entropy_final``."""
        super().set_step(env_step)
        v = self.cfg.vmpo
        if v.min_entropy_anneal_steps > 0:
            span = v.min_entropy - v.min_entropy_final
            self.min_entropy = v.min_entropy_final + linear_anneal(span, env_step, v.min_entropy_anneal_steps)

    def _duals(self) -> list[LagrangeMultiplier]:
        """eta, alpha and, with an entropy floor, beta."""
        return [dual for dual in (self.eta, self.alpha, self.beta) if dual is not None]

    def _param_groups(self) -> list[dict]:
        v = self.cfg.vmpo
        own_beta = self.beta is not None and v.beta_lr > 0  # the floor's dual with its own step size
        duals = [
            p for dual in self._duals() if not (own_beta and dual is self.beta) for p in dual.parameters()
        ]
        groups = [*super()._param_groups(), {"params": duals, "lr": v.dual_lr, "name": "duals"}]
        if own_beta:
            groups.append({"params": list(self.beta.parameters()), "lr": v.beta_lr, "name": "beta"})
        return groups

    def forward(self, batch: VMPOBatch) -> StepOutput:
        """The loss function: ``L_V + L_pi + L_eta + L_alpha`` on one minibatch (Song et al. 2019, eqs. 1-2).

        Returns this rank's share, the metrics of :func:`agent.vmpo.vmpo_loss` with ``loss/value``,
        ``loss/total``, ``value/mean``, ``value/return_mean``, and the unnormalised returns G [T, B].
        """
        cfg, traj = self.cfg, batch.traj
        T = traj.unroll_length
        logits, values, _ = self.net.unroll(*traj.inputs())  # [T+1, B, A], [T+1, B, tasks]
        v_norm = task_values(values.float(), traj.task_id)  # [T+1, B]
        v, returns, target = self._targets(traj, v_norm, batch.returns)  # V, G_t, normalised G_t
        # A = G - V (normalised with PopArt)
        advantages = (target - v_norm[:T]).detach() if batch.advantages is None else batch.advantages
        axis = self.axis
        # 0.5 (G - V)^2, this rank's share of the mean over the global batch
        value_loss = cfg.value_coef * axis.mean_share((target - v_norm[:T]) ** 2, traj.mask)
        v_cfg = cfg.vmpo
        floor = None if self.beta is None else Penalty(self.beta.value(), self.min_entropy)
        policy_loss, metrics = vmpo_loss(
            logits[:T], batch.target_logits, traj.action, advantages, traj.mask,
            temperature=Penalty(self.eta.value(), v_cfg.eps_eta),
            trust_region=Penalty(self.alpha.value(), v_cfg.eps_alpha),
            topk_fraction=v_cfg.topk_fraction, ent_coef=v_cfg.ent_coef, entropy_floor=floor, axis=axis,
        )  # fmt: skip
        loss = value_loss + policy_loss
        metrics.update({
            "loss/value": axis.sum(value_loss), "loss/total": axis.sum(loss),
            "value/mean": axis.sum(axis.mean_share(v[:T].detach(), traj.mask)),
            "value/return_mean": axis.sum(axis.mean_share(returns, traj.mask)),
        })  # fmt: skip
        return StepOutput(loss, metrics, returns)

    def _returns(self, traj: Trajectory, v: torch.Tensor) -> torch.Tensor:
        """Critic targets G [T, B], unnormalised, bootstrapped on the values ``v`` [T+1, B] (no gradient):
        n-step (the paper's), or TD(lambda) ``G^lambda = A^GAE + V`` with ``algo.vmpo.gae_lambda > 0``."""
        cfg = self.cfg
        if cfg.vmpo.gae_lambda > 0:
            return gae(
                traj.reward, v.detach(), traj.terminated, traj.truncated, cfg.discount, cfg.vmpo.gae_lambda
            )[1]
        return n_step_returns(
            traj.reward, v.detach(), traj.terminated, traj.truncated, cfg.discount, cfg.n_step
        )

    @torch.no_grad()
    def _acting_targets(self, traj: Trajectory) -> tuple[torch.Tensor, torch.Tensor]:
        """G (unnormalised) and A (PopArt-normalised) [T, B] from the parameters that acted, before any
        gradient step of this update (as PPO's advantages): with several epochs, each minibatch's own
        forward has a value head already fitted to these returns, which shrinks A towards noise. With an
        actor one update behind (``lagged_actor``) these are the learner's parameters before the update,
        one update newer than the actor's (a critic's values, as PPO's under overlap)."""
        v_norm = task_values(self.net.unroll(*traj.inputs())[1].float(), traj.task_id)  # [T+1, B]
        _, returns, target = self._targets(traj, v_norm)
        return returns, target - v_norm[: traj.unroll_length]

    def _targets(
        self, traj: Trajectory, v_norm: torch.Tensor, returns: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From the value head's output ``v_norm`` [T+1, B] (PopArt-normalised with PopArt on): the values
        V [T+1, B], the returns G [T, B] (``returns`` if given, else :meth:`_returns` on V) and the critic's
        target, G normalised by PopArt [T, B]."""
        popart = self.net.popart if self.cfg.popart else None
        v = popart.unnormalize(v_norm, traj.task_id) if popart is not None else v_norm
        if returns is None:
            returns = self._returns(traj, v)
        target = (
            popart.normalize(returns, traj.task_id[: traj.unroll_length]) if popart is not None else returns
        )
        return v, returns, target

    def update(self, traj: Trajectory) -> Metrics:
        """pi_old's logits, ``update_epochs`` x minibatches of (loss_fn, Adam step, dual projection), then
        PopArt statistics, the target network every ``target_update_period`` updates, the actor's cache."""
        cfg, T = self.cfg, traj.unroll_length
        # pi_old is the target network in both loops, also with an actor one update behind (overlap):
        # taking the recorded behaviour logits instead made the previous update's step count against this
        # update's KL budget, and alpha choked learning (docs/performance.md, "Overlapped acting")
        with torch.no_grad():
            target_logits = self.target_net.unroll(*traj.inputs())[0][:T]  # pi_old [T, B, A]
        fixed = self._acting_targets(traj) if cfg.vmpo.fixed_advantages else None
        split = cfg.vmpo.num_minibatches > 1  # whole env columns, as PPO's minibatch_over=envs
        returns = torch.zeros_like(traj.reward)  # [T, B]: each column's G from the last epoch
        for _ in range(cfg.vmpo.update_epochs):
            parts = column_minibatches(traj.action, cfg.vmpo.num_minibatches) if split else (slice(None),)
            for index in parts:
                batch = VMPOBatch(traj.select(index) if split else traj, target_logits[:, index])
                if fixed is not None:
                    batch = dataclasses.replace(
                        batch, returns=fixed[0][:, index], advantages=fixed[1][:, index]
                    )
                loss, step_metrics, step_returns = self.loss_fn(batch)
                returns[:, index] = step_returns
                metrics = {**as_floats(step_metrics), **self._optimizer_step(loss)}  # read before the step
                for dual in self._duals():
                    dual.project_()
        if cfg.popart:
            metrics.update(self._update_popart(returns, traj))
        if self.beta is not None:
            metrics["vmpo/min_entropy"] = self.min_entropy
        self.num_updates += 1
        if self.num_updates % cfg.vmpo.target_update_period == 0:
            self.target_net.load_state_dict(self.net.state_dict())
        return self._end_update(metrics)

    def _update_popart(self, returns: torch.Tensor, traj: Trajectory) -> Metrics:
        """PopArt statistics (van Hasselt et al. 2016) from the returns [T, B] of every rank's columns
        (the moments of the global batch, the same on every rank) -> ``popart/{mu,sigma}/<task>``."""
        popart, T = self.net.popart, traj.unroll_length
        valid = self.axis.gather(traj.mask.bool())
        returns, task_id = self.axis.gather(returns), self.axis.gather(traj.task_id[:T])
        if valid.any():
            popart.update_stats(returns[valid], task_id[valid], self.cfg.popart_beta)
        names = self.task_names or tuple(str(k) for k in range(popart.mu.shape[0]))
        metrics = {}
        for k, task in enumerate(names):
            metrics[f"popart/mu/{task}"] = float(popart.mu[k])
            metrics[f"popart/sigma/{task}"] = float(popart.sigma[k])
        return metrics


class PPOLearner(Learner):
    """PPO baseline (Schulman et al. 2017): clipped surrogate (eq. 7), value loss and entropy bonus
    (eq. 9), GAE(lambda) advantages (Schulman et al. 2016), epochs over env minibatches.

    Old log-probabilities and values come from a no-grad unroll of the acting parameters at the start of
    the update (identical to the actor's, since the learner refreshes the actor's cache after every
    update). With an actor one update behind (``lagged_actor``, ``train.overlap``) the old log-probs
    are the behaviour log-probs the actor recorded, and values, advantages and targets come from the
    learner's parameters (as IMPALA's critic). Minibatches (``algo.ppo.minibatch_over``) split the envs,
    so that every minibatch keeps whole memory segments; with a memoryless core they may instead be
    single steps shuffled over all T*B, as CleanRL's (``samples``; ``auto`` picks it for such cores).
    Data parallel: each rank draws its own minibatches of its own envs and DDP averages the gradients (as
    CleanRL's multi-GPU PPO); advantages are normalised per rank's minibatch.
    """

    def __init__(self, net: nn.Module, cfg: AlgoConfig, *, task_names: Sequence[str] = ()) -> None:
        super().__init__(net, cfg, task_names=task_names)
        self.build_optimizer()
        # algo.ppo.minibatch_over: samples, or auto with a core that carries no state (memoryless);
        # samples with a memory core is refused by Trajectory.steps() (and by the config)
        how, memoryless = cfg.ppo.minibatch_over, not net.initial_state(1)
        self.minibatch_over_samples = how == "samples" or (how == "auto" and memoryless)

    def forward(self, batch: PPOBatch) -> StepOutput:
        """The loss function: PPO's clipped loss on one minibatch; this rank's share is its loss / world
        (DDP averages the ranks' minibatch gradients). Metrics: :func:`agent.ppo.ppo_loss`'s, averaged
        over ranks, and ``loss/total``; ``returns`` are the batch's GAE targets."""
        p, mb, axis = self.cfg.ppo, batch.traj, self.axis
        T = mb.unroll_length
        logits, values, _ = self.net.unroll(*mb.inputs())
        log_probs, entropy = action_log_probs(logits[:T], mb.action)
        loss, metrics = ppo_loss(
            log_probs, batch.old_log_probs, batch.advantages, task_values(values.float(), mb.task_id)[:T],
            batch.old_values[:T], batch.returns, mb.mask, entropy, clip_coef=p.clip_coef,
            clip_value=p.clip_value, vf_coef=p.vf_coef, ent_coef=p.ent_coef, norm_adv=p.norm_adv,
        )  # fmt: skip
        share = loss / axis.world
        metrics = {k: axis.sum(x) / axis.world for k, x in metrics.items()}  # the mean of the ranks'
        metrics["loss/total"] = axis.sum(share)
        return StepOutput(share, metrics, batch.returns)

    def update(self, traj: Trajectory) -> Metrics:
        """Old log-probs, values and GAE from one no-grad unroll, ``update_epochs`` x minibatches of
        (loss_fn, Adam step), then the actor's cache."""
        cfg, p, T = self.cfg, self.cfg.ppo, traj.unroll_length
        with torch.no_grad():
            old_logits, old_values, _ = self.net.unroll(*traj.inputs())
            old_v = task_values(old_values.float(), traj.task_id)  # [T+1, B]
            behaviour = self._behaviour_logits(traj) if self.lagged_actor else old_logits[:T]
            old_log_probs, _ = action_log_probs(behaviour, traj.action)
            advantages, returns = gae(
                traj.reward, old_v, traj.terminated, traj.truncated, cfg.discount, p.gae_lambda
            )
        if self.minibatch_over_samples:  # [T, B] -> [1, T*B]: each step its own column, no bootstrap row
            traj = traj.steps()
            old_log_probs, advantages, old_v, returns = (
                x[:T].reshape(1, -1) for x in (old_log_probs, advantages, old_v, returns)
            )
        metrics: Metrics = {}
        for _ in range(p.update_epochs):
            for index in column_minibatches(traj.action, p.num_minibatches):
                batch = PPOBatch(
                    traj.select(index), old_log_probs[:, index], advantages[:, index], old_v[:, index],
                    returns[:, index],
                )  # fmt: skip
                loss, step_metrics, _ = self.loss_fn(batch)
                metrics = {**self._optimizer_step(loss), **as_floats(step_metrics)}
        metrics["value/return_mean"] = float(masked_mean(returns, traj.mask))
        self.num_updates += 1
        return self._end_update(metrics)


def make_learner(net: nn.Module, cfg: AlgoConfig, *, task_names: Sequence[str] = ()) -> Learner:
    """The learner of ``algo.name`` (``vmpo`` | ``ppo``) for ``net``."""
    return {"vmpo": VMPOLearner, "ppo": PPOLearner}[cfg.name](net, cfg, task_names=task_names)
