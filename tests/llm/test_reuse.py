"""``llm`` calls ``agent``'s E-step, duals and M-step (no second copy); ``agent`` never imports ``llm``."""

import ast
from pathlib import Path

import agent.ppo
import agent.vmpo
import llm.learner
import llm.losses
from agent.duals import LagrangeMultiplier

ROOT = Path(__file__).resolve().parents[2]
SHARED = (
    "topk_mask",
    "e_step_weights",
    "temperature_loss",
    "policy_loss",
    "categorical_kl",
    "trust_region_loss",
)


def test_llm_losses_use_agent_functions():
    for name in SHARED:
        assert getattr(llm.losses, name) is getattr(agent.vmpo, name), name
    assert llm.losses.ppo_loss is agent.ppo.ppo_loss
    assert llm.learner.LagrangeMultiplier is LagrangeMultiplier


def test_no_second_copy_in_llm():
    banned = {*SHARED, "ppo_loss", "masked_mean", "LagrangeMultiplier"}
    for path in (ROOT / "llm").glob("*.py"):
        tree = ast.parse(path.read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        assert not defined & banned, f"{path.name} redefines {defined & banned}"
        text = path.read_text()
        assert "logsumexp" not in text and "log_softmax(adv" not in text, path.name


def test_agent_never_imports_llm():
    for path in (ROOT / "agent").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "llm" for a in node.names), path
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "llm", path
