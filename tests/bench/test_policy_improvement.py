"""Regression guard for the size of one V-MPO update (``python -m bench.policy_improvement``, short).

On the bench's contextual bandit, 150 updates of 512 samples: V-MPO at the settings that first made it
learn Breakout (``atari_cpu``'s until 2026-12-06: lr 1e-3, 4 epochs x 4 minibatches, pi_old refreshed
every update, eps_alpha 0.02) reached pi(a*) 0.857 on seed 0 (0.84-0.86 over seeds 0-2; uniform is
0.25; 0.852 with the earlier eps_alpha 0.005). The preset before (4 full-batch steps, pi_old every 20
updates) reached 0.364 (0.36-0.41), the paper's single step at lr 2e-4 stays at 0.25. The test fails if a
change brings the update back towards the older sizes (half today's gain).
"""

from __future__ import annotations

from bench.policy_improvement import improvement

UNIFORM = 0.25
TODAY = 0.857  # seed 0, 150 updates, lr 1e-3, 4 epochs x 4 minibatches, target period 1, eps_alpha 0.02
FLOOR = UNIFORM + 0.5 * (TODAY - UNIFORM)


def test_one_vmpo_update_moves_the_policy_as_far_as_atari_cpu_needs():
    gain = improvement("vmpo", 1e-3, 4, 150, seed=0, target_period=1, minibatches=4, eps_alpha=0.02)
    assert gain >= FLOOR, f"V-MPO pi(a*) {gain:.3f} after 150 updates, below {FLOOR:.3f} (today {TODAY})"


def test_the_guard_tells_the_stale_target_and_the_single_step_apart():
    assert improvement("vmpo", 1e-3, 4, 150, seed=0, target_period=20) < FLOOR  # the previous preset
    assert improvement("vmpo", 2e-4, 1, 150, seed=0) < FLOOR  # the paper's single step
