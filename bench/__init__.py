"""Benchmarks that print ratios measured side by side in one run (never a bare time).

``python -m bench`` runs them all and prints one table; ``python -m bench.NAME`` runs one
(``collector``, ``memory_cache``, ``unroll``, ``mixed_precision``, ``end_to_end``, ``peak_memory``,
``llm``). Each module exposes ``run(quick: bool) -> list[Row]``. Results and the machine they were
measured on are recorded in ``docs/performance.md``.
"""
