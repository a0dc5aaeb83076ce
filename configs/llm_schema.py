"""Typed configuration of the sequence-level adapter (``python -m llm.train``); see docs/llm.md.

Loaded with ``configs.load_config(preset, overrides, schema=LLMConfig)``; presets are ``configs/llm_*.yaml``.
Sources: V-MPO = Song et al. 2019 (eqs. 3-5, per completion); DAR = He et al. 2025; AWR = Peng et al. 2019;
GRPO = Shao et al. 2024 (section 4.1), Dr. GRPO = Liu et al. 2025.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from configs.schema import ConfigError, check_bf16, check_choice, check_range

__all__ = ["LLMConfig"]

LLM_METHODS = ("vmpo", "dar", "awr", "grpo")
LLM_ADVANTAGES = ("group_mean", "value")
LLM_TASKS = ("addition", "reversal")
LLM_REWARDS = ("exact", "format", "exact_format", "first_number", "last_number")
LLM_DEVICES = ("auto", "cpu", "cuda")
LLM_DUAL_PARAMS = ("softplus", "projected")


@dataclass
class LLMModelConfig:
    """Policy model: ``tiny`` (random GPT-2 built in code), ``smollm2`` (GGUF wheel) or an HF path."""

    name: str = "tiny"
    gguf_file: str = ""  # for an HF path holding a GGUF file
    chat_template: bool = False  # render the task's question as a chat user turn (instruct models)
    dropout: float = 0.0  # every dropout probability of the model (Srivastava et al. 2014)
    tiny_d_model: int = 64
    tiny_layers: int = 2
    tiny_heads: int = 4

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("model.name must be 'tiny', 'smollm2' or an HF model path")
        check_range("model.dropout", self.dropout, 0.0, 0.99)
        for key in ("tiny_d_model", "tiny_layers", "tiny_heads"):
            check_range(f"model.{key}", getattr(self, key), 1)


@dataclass
class LLMTaskConfig:
    """Verifiable toy task generated in code (llm/tasks.py)."""

    name: str = "addition"
    reward: str = "exact"
    max_operand: int = 9  # addition: operands 0..max_operand
    alphabet: str = "abcd"  # reversal
    min_len: int = 2
    max_len: int = 4
    heldout_fraction: float = 0.2  # disjoint held-out prompts for evaluation
    eval_prompts: int = 100  # held-out prompts scored per evaluation (at most the held-out split)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("task.name", self.name, LLM_TASKS)
        check_choice("task.reward", self.reward, LLM_REWARDS)
        check_range("task.max_operand", self.max_operand, 1)
        check_range("task.min_len", self.min_len, 1)
        check_range("task.max_len", self.max_len, self.min_len)
        check_range("task.heldout_fraction", self.heldout_fraction, 0.0, 0.9, low_inclusive=False)
        check_range("task.eval_prompts", self.eval_prompts, 1)


@dataclass
class LLMSampleConfig:
    """Sampling ``N`` completions per prompt with HF ``generate``."""

    prompts_per_batch: int = 16
    completions_per_prompt: int = 8  # N (the GRPO group size)
    max_new_tokens: int = 6
    temperature: float = 1.0
    top_k: int = 0  # 0 = no top-k filter

    def __post_init__(self) -> None:
        check_range("sample.prompts_per_batch", self.prompts_per_batch, 1)
        check_range("sample.completions_per_prompt", self.completions_per_prompt, 1)
        check_range("sample.max_new_tokens", self.max_new_tokens, 1)
        check_range("sample.temperature", self.temperature, 0.0, low_inclusive=False)
        check_range("sample.top_k", self.top_k, 0)


@dataclass
class SeqVMPOConfig:
    """Sequence-level V-MPO: Song et al. 2019, eqs. 3-5, with a whole completion as the sample."""

    topk_fraction: float = 0.5  # rho: k = max(1, floor(rho N))
    eps_eta: float = 0.1  # E-step KL bound
    eta_init: float = 1.0
    kl_to_ref: bool = False  # KL(pi_ref || pi_theta) trust region with dual alpha
    eps_alpha: float = 0.01
    alpha_init: float = 1.0
    dual_lr: float = 1e-2
    dual_param: str = "softplus"

    def __post_init__(self) -> None:
        check_range("algo.vmpo.topk_fraction", self.topk_fraction, 0.0, 1.0, low_inclusive=False)
        for key in ("eps_eta", "eta_init", "eps_alpha", "alpha_init", "dual_lr"):
            check_range(f"algo.vmpo.{key}", getattr(self, key), 0.0, low_inclusive=False)
        check_choice("algo.vmpo.dual_param", self.dual_param, LLM_DUAL_PARAMS)


@dataclass
class DARConfig:
    """Direct Advantage Regression (He et al. 2025): target pi_ref^(alpha/t) pi_t^(beta/t) exp(A/t)."""

    alpha: float = 0.05  # reference-KL coefficient
    beta: float = 0.45  # sampling-policy KL coefficient; t = alpha + beta
    weight_clip: float = 20.0

    def __post_init__(self) -> None:
        check_range("algo.dar.alpha", self.alpha, 0.0)
        check_range("algo.dar.beta", self.beta, 0.0)
        check_range("algo.dar.alpha+beta", self.alpha + self.beta, 0.0, low_inclusive=False)
        check_range("algo.dar.weight_clip", self.weight_clip, 0.0, low_inclusive=False)


@dataclass
class AWRConfig:
    """Advantage-weighted regression (Peng et al. 2019, section 3): w = min(exp(A / beta), weight_clip)."""

    beta: float = 0.5
    weight_clip: float = 20.0

    def __post_init__(self) -> None:
        check_range("algo.awr.beta", self.beta, 0.0, low_inclusive=False)
        check_range("algo.awr.weight_clip", self.weight_clip, 0.0, low_inclusive=False)


@dataclass
class GRPOConfig:
    """GRPO / PPO-seq baseline (Shao et al. 2024, section 4.1.1, eq. 3) with agent.ppo.ppo_loss."""

    clip_eps: float = 0.2
    kl_coef: float = 0.0  # fixed beta on mean token KL(pi_ref || pi_theta); 0 = no reference (TRL default)

    def __post_init__(self) -> None:
        check_range("algo.grpo.clip_eps", self.clip_eps, 0.0, low_inclusive=False)
        check_range("algo.grpo.kl_coef", self.kl_coef, 0.0)


@dataclass
class LLMAlgoConfig:
    method: str = "vmpo"
    advantage: str = "group_mean"  # group_mean (GRPO baseline) | value (V(x) head on the prompt)
    normalize_std: bool = False  # group_mean / std (GRPO); off = Dr. GRPO
    skip_zero_std_groups: bool = True  # group_mean: groups with equal rewards (A = 0) are not valid samples
    lr: float = 1e-3
    value_lr: float = 1e-2
    update_epochs: int = 1  # gradient steps per sampled batch
    max_grad_norm: float = 1.0
    # model.train() (dropout on) in the M-step forward: weighted maximum likelihood has no probability
    # ratio for dropout's noise to corrupt, unlike PPO's and GRPO's clipped ratio
    mstep_dropout: bool = False
    ref_update_period: int = 0  # refresh pi_ref to the policy every this many updates; 0 = keep the SFT model
    vmpo: SeqVMPOConfig = field(default_factory=SeqVMPOConfig)
    dar: DARConfig = field(default_factory=DARConfig)
    awr: AWRConfig = field(default_factory=AWRConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)

    def __post_init__(self) -> None:
        check_choice("algo.method", self.method, LLM_METHODS)
        check_choice("algo.advantage", self.advantage, LLM_ADVANTAGES)
        check_range("algo.lr", self.lr, 0.0, low_inclusive=False)
        check_range("algo.value_lr", self.value_lr, 0.0, low_inclusive=False)
        check_range("algo.update_epochs", self.update_epochs, 1)
        check_range("algo.max_grad_norm", self.max_grad_norm, 0.0, low_inclusive=False)
        check_range("algo.ref_update_period", self.ref_update_period, 0)


@dataclass
class LLMTrainConfig:
    iterations: int = 100  # RL updates (one sampled batch each)
    sft_steps: int = 0  # SFT warm-start steps on reference answers before RL (llm.losses.sft_loss)
    sft_lr: float = 3e-3
    sft_batch: int = 64
    eval_interval: int = 25  # RL updates between held-out evaluations
    log_interval: int = 1
    checkpoint_interval: int = 50
    keep_checkpoints: int = 2
    seed: int = 0
    device: str = "auto"
    torch_threads: int = 0
    # bf16 autocast for sampling and every forward of the update (log-softmax, losses and duals stay fp32;
    # the weights and Adam stay fp32): auto (where AMX / CUDA bf16) | on | off. off by default so that the
    # tiny model's committed results reproduce; a SmolLM2-135M forward + backward is ~2x faster with it
    # on AMX (docs/llm.md, claim 5).
    bf16: str = "off"
    run_dir: str = "runs"
    run_name: str = ""
    resume: str = ""
    progress: bool = True
    # torchrun: updates between bitwise checks that all ranks hold the same parameters (0 = never),
    # and how long a collective waits for a rank that stopped answering
    sync_check_interval: int = 100
    dist_timeout_s: float = 600.0

    def __post_init__(self) -> None:
        check_range("train.iterations", self.iterations, 0)
        check_range("train.sync_check_interval", self.sync_check_interval, 0)
        check_range("train.dist_timeout_s", self.dist_timeout_s, 0.0, low_inclusive=False)
        check_range("train.sft_steps", self.sft_steps, 0)
        check_range("train.sft_lr", self.sft_lr, 0.0, low_inclusive=False)
        check_range("train.sft_batch", self.sft_batch, 1)
        for key in ("eval_interval", "log_interval", "checkpoint_interval", "keep_checkpoints"):
            check_range(f"train.{key}", getattr(self, key), 1)
        check_choice("train.device", self.device, LLM_DEVICES)
        check_range("train.torch_threads", self.torch_threads, 0)
        self.bf16 = check_bf16("train.bf16", self.bf16)


@dataclass
class LLMConfig:
    model: LLMModelConfig = field(default_factory=LLMModelConfig)
    task: LLMTaskConfig = field(default_factory=LLMTaskConfig)
    sample: LLMSampleConfig = field(default_factory=LLMSampleConfig)
    algo: LLMAlgoConfig = field(default_factory=LLMAlgoConfig)
    train: LLMTrainConfig = field(default_factory=LLMTrainConfig)
