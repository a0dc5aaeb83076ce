"""Weight initialisation schemes for :class:`networks.agent_net.AgentNet` (``net.init``).

- ``torch``: PyTorch's layer defaults (Kaiming-uniform weights with ``a = sqrt(5)``, uniform biases),
  with the policy head's small-normal initialisation (:class:`networks.heads.PolicyHead`).
- ``orthogonal``: Huang et al. 2022, "The 37 Implementation Details of Proximal Policy Optimization",
  detail 2 (as in the OpenAI baselines and CleanRL Atari PPO): orthogonal weights (Saxe et al. 2014) with
  gain sqrt(2) for layers followed by a ReLU, gain 1 for the linear input projection, 0.01 for the
  policy head (a near-uniform initial policy), 1 for the value head; every bias 0.

The scheme covers the torso, the input projection, the feed-forward core and the heads. Transformer and
LSTM cores keep their own initialisation (the GTrXL gate bias ``b_g`` is part of it).
"""

from __future__ import annotations

import math

from torch import nn

RELU_GAIN = math.sqrt(2.0)


def orthogonal_(module: nn.Module, gain: float) -> None:
    """Orthogonal weights with ``gain`` and zero biases for every conv/linear layer inside ``module``."""
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            nn.init.orthogonal_(layer.weight, gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
