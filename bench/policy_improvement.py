"""Policy improvement per update, V-MPO against PPO, on a contextual bandit with noisy advantages.

Not a speed benchmark: it measures how far one learner update moves the policy when the batch is small
(512 samples, as ``configs/atari_cpu.yaml``), which is what decided that preset's learning rate. The
bandit: state ``s ~ N(0, I_16)``, 4 actions, reward ``r = 0.25 w.s + delta 1[a = a*(s)] + 0.5 noise``
with ``a*(s) = argmax W*^T s`` and ``delta = 0.3``, so most of the spread of ``A = r - V(s)`` comes from
the state and the noise, little from the action (as in Atari early in training). Policy: MLP 16-64-4,
value: linear, one Adam for both. Each update samples a fresh on-policy batch; the figure is the mean
``pi(a*|s)`` over the last 20% of updates (0.25 = uniform, 1 = solved).

Both learners use the package's own losses: :func:`agent.vmpo.vmpo_loss` with its duals and a target
refreshed every 20 updates (as atari_cpu was first) or every update (as it is now);
:func:`agent.ppo.ppo_loss` with CleanRL's Atari settings: 4 epochs x 4 minibatches, clip 0.1, entropy
0.01, normalised advantages.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from agent.duals import LagrangeMultiplier
from agent.ppo import ppo_loss
from agent.vmpo import Penalty, vmpo_loss
from bench.common import Row, main

STATE_DIM, NUM_ACTIONS, BATCH = 16, 4, 512
DELTA, BASE_SCALE, NOISE = 0.3, 0.25, 0.5
TARGET_PERIOD = 20


class Bandit:
    """The contextual bandit; its own generator, so every learner sees the same task."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.w_best = torch.randn(STATE_DIM, NUM_ACTIONS, generator=self.gen)
        self.w_base = torch.randn(STATE_DIM, generator=self.gen)

    def states(self) -> torch.Tensor:
        return torch.randn(BATCH, STATE_DIM, generator=self.gen)

    def best(self, s: torch.Tensor) -> torch.Tensor:
        return (s @ self.w_best).argmax(-1)

    def reward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(len(s), generator=self.gen)
        return BASE_SCALE * (s @ self.w_base) + DELTA * (a == self.best(s)).float() + NOISE * noise


def vmpo_update(
    pi, value, opt, duals, dual_opt, target, s, a, r, epochs: int, minibatches: int = 1, *,
    eps_alpha: float = 0.005, ent_coef: float = 0.0, fixed_advantages: bool = False,
) -> None:  # fmt: skip
    """``epochs`` x ``minibatches`` steps of the V-MPO loss (E-step top half, eta, alpha) plus the value
    loss; each minibatch (a random split of the batch) takes one step with its own E-step. The advantage
    is ``r - V(s)`` of the value before the update (``fixed_advantages``) or of each step's value."""
    eta, alpha = duals
    with torch.no_grad():
        target_logits = target(s)
        adv_before = r - value(s).squeeze(-1)
    for _ in range(epochs):
        for idx in torch.randperm(len(s)).view(minibatches, -1):
            v = value(s[idx]).squeeze(-1)
            adv = adv_before[idx] if fixed_advantages else (r[idx] - v).detach()
            loss, _ = vmpo_loss(
                pi(s[idx])[None], target_logits[idx][None], a[idx][None], adv[None],
                torch.ones(1, len(idx), dtype=torch.bool), temperature=Penalty(eta.value(), 0.02),
                trust_region=Penalty(alpha.value(), eps_alpha), topk_fraction=0.5, ent_coef=ent_coef,
            )  # fmt: skip
            opt.zero_grad()
            dual_opt.zero_grad()
            (loss + 0.5 * (v - r[idx]).pow(2).mean()).backward()
            opt.step()
            dual_opt.step()
            eta.project_()
            alpha.project_()


def ppo_update(pi, value, opt, s, a, r, old_logp, old_v) -> None:
    """CleanRL's Atari PPO update: 4 epochs x 4 minibatches of the clipped surrogate + value + entropy."""
    for _ in range(4):
        for idx in torch.randperm(len(s)).view(4, -1):
            logp = torch.log_softmax(pi(s[idx]), -1)
            v = value(s[idx]).squeeze(-1)
            loss, _ = ppo_loss(
                logp.gather(1, a[idx, None]).squeeze(1), old_logp[idx], (r - old_v)[idx], v, old_v[idx],
                r[idx], torch.ones(len(idx), dtype=torch.bool), -(logp.exp() * logp).sum(-1),
                clip_coef=0.1, clip_value=False, vf_coef=0.5, ent_coef=0.01, norm_adv=True,
            )  # fmt: skip
            opt.zero_grad()
            loss.backward()
            opt.step()


def improvement(
    algo: str,
    lr: float,
    epochs: int,
    updates: int,
    seed: int = 0,
    alpha_init: float = 5.0,
    target_period: int = TARGET_PERIOD,
    minibatches: int = 1,
    **vmpo_options: float | bool,
) -> float:
    """Mean ``pi(a*|s)`` of the behaviour policy over the last 20% of ``updates`` learner updates.

    V-MPO's pi_old (the KL trust region's reference) is refreshed every ``target_period`` updates:
    1 makes it the policy that sampled the batch, as PPO's pi_old. ``vmpo_options``: ``eps_alpha``,
    ``ent_coef``, ``fixed_advantages`` of :func:`vmpo_update`."""
    torch.manual_seed(seed)
    bandit = Bandit(seed)
    pi = nn.Sequential(nn.Linear(STATE_DIM, 64), nn.ReLU(), nn.Linear(64, NUM_ACTIONS))
    value = nn.Linear(STATE_DIM, 1)
    opt = torch.optim.Adam([*pi.parameters(), *value.parameters()], lr=lr)
    duals = (LagrangeMultiplier(1.0), LagrangeMultiplier(alpha_init))
    dual_opt = torch.optim.Adam([*duals[0].parameters(), *duals[1].parameters()], lr=1e-2)
    target = copy.deepcopy(pi)
    p_best = []
    for u in range(updates):
        s = bandit.states()
        with torch.no_grad():
            probs = torch.softmax(pi(s), -1)
            a = torch.multinomial(probs, 1, generator=bandit.gen).squeeze(1)
            old_v = value(s).squeeze(-1)
        p_best.append(probs.gather(1, bandit.best(s)[:, None]).mean().item())
        r = bandit.reward(s, a)
        if algo == "vmpo":
            vmpo_update(pi, value, opt, duals, dual_opt, target, s, a, r, epochs, minibatches, **vmpo_options)
            if (u + 1) % target_period == 0:
                target.load_state_dict(pi.state_dict())
        else:
            ppo_update(pi, value, opt, s, a, r, probs.gather(1, a[:, None]).squeeze(1).log(), old_v)
    tail = p_best[-max(1, updates // 5) :]
    return sum(tail) / len(tail)


def run(quick: bool) -> list[Row]:
    updates = 60 if quick else 300
    ppo = improvement("ppo", 2.5e-4, 4, updates)
    rows = [
        Row(
            "policy_improvement", f"PPO lr 2.5e-4, 16 steps/batch: pi(a*), last 20% of {updates} updates", ppo
        )
    ]
    now = {"eps_alpha": 0.005}
    variants = (  # lr, epochs, alpha_init, target period, minibatches, options, what
        (2e-4, 1, 5.0, TARGET_PERIOD, 1, now, "the paper's 1 step"),
        (2e-4, 4, 5.0, TARGET_PERIOD, 1, now, "4 steps"),
        (2e-4, 4, 0.01, TARGET_PERIOD, 1, now, "4 steps, alpha from 0.01: is the trust region the brake?"),
        (1e-3, 4, 5.0, TARGET_PERIOD, 1, now, "atari_cpu before target_update_period=1"),
        (1e-3, 4, 5.0, 1, 1, now, "pi_old refreshed every update"),
        (1e-3, 4, 5.0, 1, 4, now, "pi_old every update, 4 epochs x 4 minibatches"),
        (1e-3, 4, 5.0, 1, 4, {"eps_alpha": 0.02}, "4 x 4, eps_alpha 0.02"),
        (1e-3, 4, 5.0, 1, 4, {"eps_alpha": 0.005, "ent_coef": 0.01}, "4 x 4, entropy bonus 0.01"),
        (1e-3, 4, 5.0, 1, 4, {"eps_alpha": 0.005, "fixed_advantages": True}, "4 x 4, advantages fixed"),
    )
    for lr, epochs, alpha_init, period, minibatches, options, what in variants:
        gain = improvement(
            "vmpo", lr, epochs, updates, alpha_init=alpha_init, target_period=period,
            minibatches=minibatches, **options,
        )  # fmt: skip
        rows.append(
            Row(
                "policy_improvement",
                f"V-MPO lr {lr:g}, {epochs * minibatches} steps/batch, target every {period} ({what}): "
                "gain over uniform / PPO's",
                (gain - 0.25) / (ppo - 0.25),
                note=f"pi(a*) {gain:.3f}",
            )
        )
    return rows


if __name__ == "__main__":
    main(run)
