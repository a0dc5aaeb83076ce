"""Sequence-level adapter: V-MPO (and DAR, AWR, GRPO) fine-tuning of HF causal LMs (docs/llm.md).

Samples are completions of prompts with a sequence-level advantage; the E-step, the ``eta``/``alpha``
duals and the weighted-NLL M-step are :mod:`agent.vmpo`'s functions (``llm`` imports ``agent``, never
the reverse). Modules: ``tasks`` (verifiable toy tasks), ``models`` (policies, codecs), ``rollout``
(sampling, teacher-forced log-probs), ``advantages``, ``losses`` (pure functions), ``learner``,
``trainer``, ``train`` (CLI).
"""
