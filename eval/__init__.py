"""Evaluation of trained agents: suites, reference scores, human-normalised scores, tables, plots, videos.

Entry points: ``python -m eval.evaluate`` (one checkpoint on a suite) and ``python -m eval.compare``
(several evaluations side by side). Modules, one job each:

- ``references``: human/random scores (DQN Zoo, scalable_agent) and the Atari-10 subset, as data.
- ``scores``: HNS, per-game summaries, suite median/mean, the Atari-10 median estimate.
- ``suites``: ``--suite`` -> env family and games.
- ``loading``: checkpoint -> network.
- ``runner``: the batched evaluation loop (reuses ``agent.rollout.Actor``).
- ``report``: ``scores.csv`` and ``summary.md`` (and reading them back).
- ``plots``, ``video``: PNG charts and mp4 videos.
- ``results`` (``python -m eval.results``): learning curves and tables of training runs; ``runlogs``: reading
  run directories, grouping them by config keys, and the seed statistics (t and Welch intervals) that
  ``eval.results`` and ``llm.compare`` share (numpy only, so ``llm`` may import it).
"""
