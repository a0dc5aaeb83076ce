"""Positive Lagrange multipliers (the V-MPO duals eta and alpha).

V-MPO learns two dual variables by gradient descent on their dual losses (Song et al. 2019, eqs. 4-5):
the E-step temperature ``eta`` (constraint ``KL(psi || p_old) < eps_eta``) and the M-step trust-region
multiplier ``alpha`` (constraint ``E_s KL(pi_old || pi_theta) < eps_alpha``). Both must stay strictly
positive. Two parameterisations are offered:

* ``"softplus"`` (not in the V-MPO paper; acme's MPO losses, ``acme/jax/losses/mpo.py``, do the same):
  ``value = softplus(xi) + eps_min`` with ``xi`` an unconstrained free parameter; gradients reach ``xi``
  by the chain rule ``dL/dxi = dL/dvalue * sigmoid(xi)``. ``project_()`` is a no-op.
* ``"projected"`` (Song et al. 2019, section "M-step", after eq. 15: ``eta`` and ``alpha`` are projected
  to ``eta_min = alpha_min = 1e-8`` after each gradient update): the parameter *is* the value; call
  ``project_()`` after every optimiser step to clamp it back to ``>= eps_min``.

The parameter and ``value()`` are fp32 always, also after ``module.to(torch.bfloat16)``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = ["LagrangeMultiplier", "inverse_softplus"]

Mode = Literal["softplus", "projected"]


def inverse_softplus(y: float) -> float:
    """Returns ``x`` with ``softplus(x) = log(1 + exp(x)) = y`` for ``y > 0`` (stable for any y > 0)."""
    if y <= 0.0:
        raise ValueError(f"inverse_softplus needs y > 0, got y={y}")
    # x = log(exp(y) - 1) = y + log(1 - exp(-y)).
    return y + math.log(-math.expm1(-y))


class LagrangeMultiplier(nn.Module):
    """A strictly positive scalar dual variable (``eta`` or ``alpha``).

    Args:
        init_value: ``value()`` at construction; must be ``> eps_min``.
        mode: ``"softplus"`` (acme's MPO) or ``"projected"`` (V-MPO paper); see the module docstring.
        eps_min: lower bound of ``value()``; the ``epsilon`` of ``eta(xi) = softplus(xi) + epsilon``.
        value_min: a floor that ``project_()`` keeps ``value()`` at or above in both modes (0: none beyond
            ``eps_min``). With softplus it clamps ``xi`` itself, so a long stretch where the constraint is
            slack cannot drive ``xi`` towards ``-inf`` (Adam moves ``xi`` by about its step size per step:
            from ``xi = -50`` the multiplier would need thousands of steps to return, "windup").

    Usage::

        eta = LagrangeMultiplier(1.0, mode="softplus", eps_min=1e-8)
        loss, extras = vmpo_loss(..., temperature=Penalty(eta.value(), eps_eta),
                                 trust_region=Penalty(alpha.value(), eps_alpha), ...)
        loss.backward(); optimizer.step(); eta.project_(); alpha.project_()
    """

    def __init__(
        self, init_value: float, mode: Mode = "softplus", eps_min: float = 1e-8, value_min: float = 0.0
    ) -> None:
        super().__init__()
        if mode not in ("softplus", "projected"):
            raise ValueError(f"LagrangeMultiplier mode must be 'softplus' or 'projected', got mode={mode!r}")
        if eps_min < 0.0:
            raise ValueError(f"LagrangeMultiplier eps_min must be >= 0, got eps_min={eps_min}")
        if not init_value > eps_min:
            raise ValueError(
                f"LagrangeMultiplier init_value must be > eps_min={eps_min}, got init_value={init_value}"
            )
        if value_min < 0.0 or value_min > init_value:
            raise ValueError(
                f"LagrangeMultiplier value_min must be in [0, init_value={init_value}], "
                f"got value_min={value_min}"
            )
        self.mode: Mode = mode
        self.eps_min = float(eps_min)
        # project_'s clamp of the raw parameter: xi >= inverse_softplus(value_min - eps_min), or the value
        self.raw_min: float | None = None
        if mode == "projected":
            self.raw_min = max(self.eps_min, float(value_min))
        elif value_min > eps_min:
            self.raw_min = inverse_softplus(value_min - eps_min)
        raw = inverse_softplus(init_value - eps_min) if mode == "softplus" else float(init_value)
        # softplus: xi, the unconstrained free parameter; projected: the multiplier itself.
        self.raw = nn.Parameter(torch.tensor(raw, dtype=torch.float32))

    def value(self) -> torch.Tensor:
        """The multiplier as a 0-d fp32 tensor, differentiable w.r.t. ``self.raw``."""
        raw = self.raw.float()
        if self.mode == "softplus":
            return nn.functional.softplus(raw) + self.eps_min
        return raw

    def forward(self) -> torch.Tensor:
        """Same as :meth:`value`."""
        return self.value()

    @torch.no_grad()
    def project_(self) -> None:
        """Projects onto ``value >= max(eps_min, value_min)`` (in place; softplus: a no-op without
        ``value_min``)."""
        if self.raw_min is not None:
            self.raw.clamp_(min=self.raw_min)

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        # Keep the dual in fp32 when the surrounding model is cast to bf16/fp16 (DESIGN.md rules):
        # follow the device that ``fn`` moves to, but never its dtype (no rounding through bf16).
        device = fn(torch.zeros((), device=self.raw.device)).device
        return super()._apply(lambda t: t.to(device=device, dtype=torch.float32), recurse)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, eps_min={self.eps_min}, value={self.value().item():.4g}"
