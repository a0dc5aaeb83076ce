"""What every loss of :mod:`agent.vmpo`, :mod:`agent.ppo` and :mod:`llm.losses` returns."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["Extras", "LossOutput"]

Extras = dict[str, torch.Tensor]


class LossOutput(NamedTuple):
    """A loss and its diagnostics: ``loss`` is this rank's share (0-d fp32, carries the gradient);
    ``metrics`` are detached 0-d fp32 tensors, named where they are computed (``loss/...``, ``vmpo/...``,
    ``ppo/...``) and logged verbatim. Unpacks as ``loss, metrics = ...``."""

    loss: torch.Tensor
    metrics: Extras
