"""Regression guard for the size of one V-MPO update (``python -m bench.policy_improvement``, short).

On the bench's contextual bandit, 150 updates of 512 samples: V-MPO at ``atari_cpu``'s settings (lr 1e-3,
4 gradient steps per batch) reached pi(a*) 0.364 on seed 0 when this test was written (0.36-0.41 over
seeds 0-2; uniform is 0.25, PPO 0.57-0.61), while the paper's single step at lr 2e-4 stays at 0.25.
The test fails if a change brings the update back towards the single-step size (half today's gain).
"""

from __future__ import annotations

from bench.policy_improvement import improvement

UNIFORM = 0.25
TODAY = 0.364  # seed 0, 150 updates, lr 1e-3, 4 steps per batch
FLOOR = UNIFORM + 0.5 * (TODAY - UNIFORM)


def test_one_vmpo_update_moves_the_policy_as_far_as_atari_cpu_needs():
    gain = improvement("vmpo", 1e-3, 4, 150, seed=0)
    assert gain >= FLOOR, f"V-MPO pi(a*) {gain:.3f} after 150 updates, below {FLOOR:.3f} (today {TODAY})"


def test_the_guard_tells_the_single_step_update_apart():
    assert improvement("vmpo", 2e-4, 1, 150, seed=0) < FLOOR  # the size the guard is there to catch
