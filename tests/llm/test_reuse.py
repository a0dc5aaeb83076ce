"""``llm`` calls ``agent``'s V-MPO (one function, no second copy); ``agent`` never imports ``llm``."""

import ast
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import agent.ppo
import agent.vmpo
import llm.learner
import llm.losses
from agent.duals import LagrangeMultiplier
from agent.vmpo import Penalty, vmpo_loss
from configs.llm_schema import LLMAlgoConfig, SeqVMPOConfig
from llm.learner import SequenceLearner

ROOT = Path(__file__).resolve().parents[2]
SHARED = ("policy_loss", "categorical_kl", "trust_region_loss", "effective_sample_size")
# The E-step's parts: only agent.vmpo.vmpo_sample_loss chains them.
E_STEP_PARTS = {"topk_mask", "e_step_weights", "temperature_loss"}


def test_llm_uses_the_agent_functions():
    for name in SHARED:
        assert getattr(llm.losses, name) is getattr(agent.vmpo, name), name
    assert llm.learner.vmpo_sample_loss is agent.vmpo.vmpo_sample_loss
    assert llm.losses.clipped_surrogate is agent.ppo.clipped_surrogate
    assert llm.learner.LagrangeMultiplier is LagrangeMultiplier


def _names(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.add(node.id)
        elif isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, ast.alias):
            found.add(node.name.rsplit(".", 1)[-1])
    return found


def test_no_second_copy_in_llm():
    banned = {
        *SHARED,
        *E_STEP_PARTS,
        "vmpo_sample_loss",
        "clipped_surrogate",
        "ppo_loss",
        "masked_mean",
        "LagrangeMultiplier",
    }
    for path in (ROOT / "llm").glob("*.py"):
        tree = ast.parse(path.read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        assert not defined & banned, f"{path.name} redefines {defined & banned}"
        used = _names(tree) & E_STEP_PARTS
        assert not used, f"{path.name} chains the E-step itself ({used}): call agent.vmpo.vmpo_sample_loss"
        text = path.read_text()
        assert "logsumexp" not in text and "log_softmax(adv" not in text, path.name


def test_agent_never_imports_llm():
    for path in (ROOT / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "llm" for a in node.names), path
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "llm", path


class _TinyLM(nn.Module):
    """Enough of an HF model for ``SequenceLearner.__init__`` (its ``_method_loss`` never calls it)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(hidden_size=4)
        self.w = nn.Parameter(torch.zeros(1))


@pytest.mark.parametrize("case", ["mixed", "ties", "empty"])
def test_agent_and_llm_paths_give_the_same_vmpo(case: str) -> None:
    """The same samples through the Atari learner's ``vmpo_loss`` (``[T=1, N]`` steps, one action each)
    and the LLM learner's V-MPO (``N`` one-token completions): same loss, gradients and diagnostics."""
    torch.manual_seed(0)
    n, num_actions = 12, 5
    logits0 = torch.randn(1, n, num_actions)
    target = torch.randn(1, n, num_actions)
    actions = torch.randint(num_actions, (1, n))
    adv = torch.randn(1, n) * 3.0
    valid = torch.ones(1, n, dtype=torch.bool)
    if case == "mixed":
        valid[0, [2, 7]] = False
    elif case == "ties":  # every advantage equal (a group whose rewards are all the same)
        adv = torch.full((1, n), 0.5)
    else:  # nothing may be selected (every group skipped for zero reward variance)
        valid[:] = False
    algo = LLMAlgoConfig(method="vmpo", vmpo=SeqVMPOConfig(kl_to_ref=True, eta_init=0.7, alpha_init=2.0))
    v = algo.vmpo

    # Agent path.
    logits_a = logits0.clone().requires_grad_(True)
    eta = LagrangeMultiplier(v.eta_init, mode=v.dual_param)
    alpha = LagrangeMultiplier(v.alpha_init, mode=v.dual_param)
    loss_a, metrics_a = vmpo_loss(
        logits_a, target, actions, adv, valid, temperature=Penalty(eta.value(), v.eps_eta),
        trust_region=Penalty(alpha.value(), v.eps_alpha), topk_fraction=v.topk_fraction,
    )  # fmt: skip
    loss_a.backward()

    # LLM path: [B=N, T=1] tokens; completion tokens are the valid samples (the KL's mask).
    learner = SequenceLearner(_TinyLM(), algo, sft_lr=1e-3)
    logits_l = logits0.transpose(0, 1).clone().requires_grad_(True)  # [N, 1, A]
    token_lp = torch.log_softmax(logits_l, -1).gather(-1, actions.T.unsqueeze(-1)).squeeze(-1)  # [N, 1]
    mask = valid.T.clone()  # [N, 1]
    loss_l, metrics_l = learner._method_loss(
        token_lp, token_lp.detach(), None, adv[0], mask, valid[0], logits_l, target.transpose(0, 1)
    )
    loss_l.backward()

    torch.testing.assert_close(loss_l, loss_a)
    torch.testing.assert_close(logits_l.grad.transpose(0, 1), logits_a.grad)
    torch.testing.assert_close(learner.eta.raw.grad, eta.raw.grad)
    torch.testing.assert_close(learner.alpha.raw.grad, alpha.raw.grad)
    assert set(metrics_a) == set(metrics_l) | {"policy/entropy"}
    for key, value in metrics_l.items():
        torch.testing.assert_close(value, metrics_a[key], msg=key)
        assert torch.isfinite(value), key
    if case == "empty":
        assert float(metrics_l["vmpo/num_selected"]) == 0.0
        assert float(metrics_l["vmpo/adv_topk_min"]) == 0.0 and float(metrics_l["vmpo/ess"]) == 0.0
        assert not logits_l.grad.any()  # no sample selected, no valid token: no policy gradient
