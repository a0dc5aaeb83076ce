"""Return and advantage estimators over time-major trajectories.

Pure functions of tensors (no modules, no state). Conventions shared by every function here:

* Shapes are time-major: ``rewards``, ``terminated``, ``truncated`` are ``[T, B]``; ``values`` is
  ``[T + 1, B]`` with ``values[t] = V(obs_t)`` and ``values[T]`` the bootstrap value of the observation
  after the last step.
* Environments use NEXT_STEP autoreset (gymnasium 1.x / envpool). If step ``t`` reports
  ``done_t = terminated_t | truncated_t`` then ``obs_{t+1}`` is that episode's *final* observation and step
  ``t + 1`` is a "reset step" (action ignored, reward 0). Hence ``values[t + 1]`` is V(final obs) and is
  the right bootstrap for a truncation. Accumulation never crosses ``done``; the outputs at reset steps
  are meaningless and must be excluded by the learner's ``mask``.
* Termination cuts the bootstrap (``1 - terminated``); truncation and the unroll end bootstrap.
* No gradient flows into ``values``: they are detached inside (targets, not predictions).
* Maths is fp32 whatever the input dtype (bf16 inputs are cast up); outputs are fp32 on the inputs' device.
"""

from __future__ import annotations

import torch

__all__ = ["gae", "n_step_returns"]


def _prepare(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checks shapes and returns fp32 (rewards, detached values, terminated, done) tensors."""
    if rewards.dim() < 1:
        raise ValueError(f"rewards must be time-major [T, ...], got shape {tuple(rewards.shape)}")
    t_len = rewards.shape[0]
    if values.shape != (t_len + 1, *rewards.shape[1:]):
        raise ValueError(
            f"values must have shape [T + 1, ...] = {(t_len + 1, *rewards.shape[1:])} "
            f"(values[T] is the bootstrap), got {tuple(values.shape)}"
        )
    for name, x in (("terminated", terminated), ("truncated", truncated)):
        if x.shape != rewards.shape:
            raise ValueError(f"{name} must match rewards' shape {tuple(rewards.shape)}, got {tuple(x.shape)}")
    term = terminated.bool()
    done = (term | truncated.bool()).float()
    return rewards.float(), values.detach().float(), term.float(), done


def n_step_returns(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    discount: float,
    n: int,
) -> torch.Tensor:
    r"""n-step bootstrapped returns for the V-MPO critic (Song et al. 2019, section "Policy evaluation").

    The target of the value loss (their eq. 6) is the standard n-step return
    :math:`G_t^{(n)} = \sum_{k=t}^{t+n-1} \gamma^{k-t} r_k + \gamma^n V(s_{t+n})`; in the paper every step
    ``l`` of an unroll of length ``n`` bootstraps from the unroll's end, which ``n >= T`` gives here.
    With episode boundaries and a finite unroll it becomes

    .. math::
        G_t = \sum_{k=0}^{m-1} \gamma^k r_{t+k} + \gamma^m (1 - \mathrm{term}_{t+m-1}) V_{t+m},
        \qquad m = \min(n,\; T - t,\; 1 + \min\{k \ge 0 : \mathrm{done}_{t+k}\}),

    i.e. accumulation stops at an episode end; a termination cuts the bootstrap; a truncation bootstraps
    from V(final obs) = ``values[t + k + 1]``; the unroll end bootstraps from ``values[T]``.

    Args:
        rewards: ``[T, B]`` rewards ``r_t``.
        values: ``[T + 1, B]`` state values ``V(obs_t)``; ``values[T]`` bootstraps the unroll. Detached
            inside: no gradient flows into ``values``.
        terminated: ``[T, B]`` bool/0-1, the episode ended in a terminal state at step ``t``.
        truncated: ``[T, B]`` bool/0-1, the episode was cut (time limit) at step ``t``.
        discount: ``gamma`` in [0, 1].
        n: number of steps ``n >= 1``; ``n >= T`` gives Monte-Carlo returns with bootstrap.

    Returns:
        ``[T, B]`` fp32 returns ``G_t`` (meaningless at reset steps; mask them).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got n={n}")
    r, v, term, done = _prepare(rewards, values, terminated, truncated)
    t_len = r.shape[0]
    n = min(n, t_len)

    def shift(x: torch.Tensor, k: int) -> torch.Tensor:
        """Row t of the result is x[t + k]; rows past the end are zero."""
        if k == 0:
            return x
        return torch.cat([x[k:], torch.zeros_like(x[:k])], dim=0)

    in_range = torch.ones_like(r)  # 1 where t + k < T
    is_last = torch.zeros_like(r)  # 1 at t = T - 1: the unroll ends after this step
    is_last[-1] = 1.0
    active = torch.ones_like(r)  # the return starting at t is still accumulating at offset k
    returns = torch.zeros_like(r)
    for k in range(n):
        active = active * shift(in_range, k)
        gamma_k = discount**k
        returns = returns + active * gamma_k * shift(r, k)  # + gamma^k r_{t+k}
        # m = k + 1 if step t + k ends the episode, is the n-th step, or is the last of the unroll.
        stop = torch.ones_like(r) if k == n - 1 else torch.clamp(shift(done, k) + shift(is_last, k), max=1.0)
        stop = active * stop
        # + gamma^m (1 - term_{t+m-1}) V_{t+m}; values[k + 1:] has T - k rows, V_{t+k+1} at row t.
        v_next = torch.cat([v[k + 1 :], torch.zeros_like(v[:k])], dim=0)
        returns = returns + stop * (gamma_k * discount) * (1.0 - shift(term, k)) * v_next
        active = active * (1.0 - stop)
    return returns


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    discount: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalised Advantage Estimation (Schulman et al. 2016, eq. 16; truncated to the unroll as in
    Schulman et al. 2017, eqs. 11-12).

    .. math::
        \delta_t = r_t + \gamma (1 - \mathrm{term}_t) V_{t+1} - V_t, \qquad
        A_t = \delta_t + \gamma \lambda (1 - \mathrm{done}_t) A_{t+1}, \qquad A_T = 0,

    with ``done = terminated | truncated``: the recursion is cut at every episode end, a truncation
    bootstraps from V(final obs) = ``values[t + 1]`` (NEXT_STEP autoreset), a termination does not.
    ``returns = A + V[:T]`` are the critic targets (TD(lambda) returns). With ``lam = 1`` the returns equal
    :func:`n_step_returns` with ``n = T`` (discounted Monte-Carlo with bootstrap).

    Args:
        rewards: ``[T, B]`` rewards.
        values: ``[T + 1, B]`` values, ``values[T]`` the bootstrap. Detached inside.
        terminated: ``[T, B]`` bool/0-1.
        truncated: ``[T, B]`` bool/0-1.
        discount: ``gamma``.
        lam: ``lambda`` in [0, 1].

    Returns:
        ``(advantages [T, B], returns [T, B])``, fp32, no gradient. Advantages are *not* normalised here
        (see :func:`agent.ppo.ppo_loss` ``norm_adv``).
    """
    r, v, term, done = _prepare(rewards, values, terminated, truncated)
    deltas = r + discount * (1.0 - term) * v[1:] - v[:-1]
    carry = discount * lam * (1.0 - done)
    advantages = torch.zeros_like(r)
    last = torch.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        advantages[t] = last
    return advantages, advantages + v[:-1]
