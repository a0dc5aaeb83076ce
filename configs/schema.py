"""Typed configuration: one dataclass per room, defaults mirror the papers' tables.

YAML presets in ``configs/*.yaml`` and ``key=value`` command-line overrides are merged on top of these
defaults by :func:`configs.load_config`; every value is validated here (``__post_init__``) so that a
bad value fails before anything starts, with a one-line message naming the key and the accepted values.

Sources: V-MPO = Song et al. 2019 (section "Method" and the appendix's hyperparameter tables); GTrXL =
Parisotto et al. 2019 (section 3 "Gated Transformer Architectures", appendix C).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid. The message is one line and names the key."""


def check_choice(key: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not valid; accepted values: {', '.join(map(str, choices))}")


def check_bf16(key: str, value: Any) -> str:
    """A ``train.bf16`` setting as ``auto`` | ``on`` | ``off``; YAML 1.1 reads on/off as booleans, so those
    (and true/false) are accepted as on/off."""
    setting = {"true": "on", "false": "off"}.get(str(value).lower(), value)
    check_choice(key, setting, ("auto", "on", "off"))
    return setting


def check_range(
    key: str, value: float, low: float | None = None, high: float | None = None, *, low_inclusive: bool = True
) -> None:
    ok_low = low is None or (value >= low if low_inclusive else value > low)
    ok_high = high is None or value <= high
    if not (ok_low and ok_high):
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        bracket = "[" if low_inclusive else "("
        raise ConfigError(f"{key}={value!r} is out of range; accepted values: {bracket}{lo}, {hi}]")


ENV_FAMILIES = ("atari", "minigrid", "popgym", "memory", "dmlab")
ATARI_PROTOCOLS = ("dqn", "machado")
TASK_SAMPLING = ("fixed", "episode")


@dataclass
class EnvConfig:
    """Environment selection and protocol (envs.make)."""

    family: str = "popgym"  # one of ENV_FAMILIES
    name: str = (
        "RepeatFirstEasy"  # game / task name within the family, e.g. Pong, MemoryS7, RepeatPreviousEasy
    )
    num_envs: int = 16
    num_threads: int = 0  # envpool worker threads; 0 = envpool's default
    seed: int = 0
    protocol: str = "dqn"  # Atari protocol preset: dqn | machado (presets are data in envs/atari.py)
    clip_rewards: bool = True  # training-time reward clipping to [-1, 1]; info keeps the unclipped return
    episodic_life: bool = False  # training-time life-loss termination (Atari); real game-overs are reported
    max_episode_frames: int = 108_000  # per-episode cap in emulator frames (DQN protocol: 108k = 30 min)
    image_size: int = 84  # Atari frame side (84x84 grey)
    frame_stack: int = 4
    full_action_space: bool = False  # Atari: 18 actions whatever the protocol (multi-task suites force it)
    # Atari suites (name=atari57 | atari10 | GAME,GAME,...): which game each env slot plays. fixed: one game
    # per slot for the whole run (as the V-MPO paper's actors); episode: a slot draws its next game uniformly
    # from the suite at every real episode end (envs/multitask.py). One game: no effect.
    task_sampling: str = "fixed"
    # DeepMind Lab (envs/dmlab.py)
    dmlab_width: int = 96  # RGB_INTERLEAVED width (IMPALA / V-MPO: 96x72)
    dmlab_height: int = 72
    action_repeat: int = 4  # DMLab frames per agent step (IMPALA: 4)
    dmlab_renderer: str = "software"  # software (OSMesa, headless) | hardware (EGL, needs a GPU)
    instructions: str = "ignore"  # language levels' INSTR: ignore | tokens (info["instr"], hashed word ids)
    instr_length: int = 16  # tokens kept per instruction
    instr_vocab: int = 1000  # word hash buckets (0 = padding)
    dmlab_dataset_path: str = ""  # DMLab datasetPath (psychlab levels' images); "" = unset

    def __post_init__(self) -> None:
        check_choice("env.family", self.family, ENV_FAMILIES)
        check_choice("env.protocol", self.protocol, ATARI_PROTOCOLS)
        check_choice("env.task_sampling", self.task_sampling, TASK_SAMPLING)
        if self.task_sampling != "fixed" and self.family != "atari":
            raise ConfigError(
                f"env.task_sampling={self.task_sampling!r} needs env.family='atari' (a game suite), "
                f"not {self.family!r}; accepted values for {self.family}: fixed"
            )
        check_range("env.num_envs", self.num_envs, 1)
        check_range("env.num_threads", self.num_threads, 0)
        check_range("env.max_episode_frames", self.max_episode_frames, 1)
        check_range("env.image_size", self.image_size, 8)
        check_range("env.frame_stack", self.frame_stack, 1)
        check_range("env.dmlab_width", self.dmlab_width, 8)
        check_range("env.dmlab_height", self.dmlab_height, 8)
        check_range("env.action_repeat", self.action_repeat, 1)
        check_choice("env.dmlab_renderer", self.dmlab_renderer, ("software", "hardware"))
        check_choice("env.instructions", self.instructions, ("ignore", "tokens"))
        check_range("env.instr_length", self.instr_length, 1)
        check_range("env.instr_vocab", self.instr_vocab, 2)


CORES = ("gtrxl", "trxl", "trxl_i", "lstm", "ff")
GATES = ("gru", "sigmoid_output")
TORSOS = ("auto", "impala", "nature", "mlp", "grid")
INITS = ("torch", "orthogonal")  # networks/init.py


@dataclass
class NetConfig:
    """Network: torso -> core -> policy/value heads (Song et al. 2019, appendix; Parisotto et al. 2019)."""

    torso: str = "auto"  # auto: impala for 84x84 images, grid for small images, mlp for vectors; nature: DQN
    torso_out: int = 256  # dense layer after the torso
    core: str = (
        "gtrxl"  # gtrxl | trxl (post-LN, no gate) | trxl_i (pre-LN, no gate) | lstm | ff (feed-forward)
    )
    gate: str = "gru"  # GTrXL gate type: gru (b_g = 2) | sigmoid_output
    gate_bias: float = 2.0  # b_g in z = sigma(W_z y + U_z x - b_g): layer starts near identity
    d_model: int = 256  # embedding size (V-MPO Atari TrXL: 256)
    num_layers: int = 8
    num_heads: int = 4
    head_dim: int = 32  # key/value size per head
    mlp_dim: int = 512
    memory_length: int = 64  # M: cached past activations per layer (attention span M + 1 incl. current step)
    lstm_hidden: int = 256
    # Added to the LSTM's forget-gate bias at init (Gers et al. 2000; Jozefowicz et al. 2015, section 3):
    # Sonnet's and TensorFlow's LSTM default, so the IMPALA / V-MPO LSTM baselines'. 0: PyTorch's init,
    # whose forget gate starts at ~0.5 and halves the cell state each step.
    lstm_forget_bias: float = 1.0
    num_tasks: int = 1  # PopArt heads (one per task)
    init: str = "torch"  # torch (PyTorch's defaults) | orthogonal (Huang et al. 2022; networks/init.py)

    def __post_init__(self) -> None:
        check_choice("net.torso", self.torso, TORSOS)
        check_choice("net.core", self.core, CORES)
        check_choice("net.gate", self.gate, GATES)
        check_choice("net.init", self.init, INITS)
        for key in (
            "torso_out",
            "d_model",
            "num_layers",
            "num_heads",
            "head_dim",
            "mlp_dim",
            "lstm_hidden",
            "num_tasks",
        ):
            check_range(f"net.{key}", getattr(self, key), 1)
        check_range("net.memory_length", self.memory_length, 0)


ALGOS = ("vmpo", "ppo")
LR_SCHEDULES = ("constant", "linear", "piecewise")
MINIBATCH_OVER = ("auto", "envs", "samples")
DUAL_PARAMS = ("softplus", "projected")


@dataclass
class VMPOConfig:
    """V-MPO hyperparameters (Song et al. 2019, section "Method" and the appendix's hyperparameter tables)."""

    topk_fraction: float = 0.5  # E-step keeps the top 50% of advantages
    eps_eta: float = 0.02  # KL bound of the non-parametric E-step (Atari 0.02, DMLab 0.1)
    eps_alpha: float = 0.005  # KL trust region of the M-step
    eta_init: float = 1.0  # initial temperature
    alpha_init: float = 5.0  # initial trust-region multiplier
    # A floor under alpha (0: none, the paper's). While the per-update KL stays under eps_alpha, alpha's dual
    # gradient eps_alpha - KL > 0 lowers it every step: on Pong's random-play phase it fell from 1.0 to ~1e-3
    # (docs/results.md), so the trust region was off once the policy began to move. alpha_min > 0 keeps the
    # M-step's KL penalty at least alpha_min * KL (its softplus parameter is clamped, as beta_min's).
    alpha_min: float = 0.0
    dual_param: str = "softplus"  # softplus: eta = softplus(xi) + eps_min; projected: clamp to >= eps_min
    dual_eps_min: float = 1e-8
    dual_lr: float = 1e-2  # Adam step size of eta and alpha (acme's MPO default; not given in the paper)
    target_update_period: int = 100  # T_target learner steps between pi_old refreshes
    update_epochs: int = 1  # gradient steps per batch (paper: 1); the trust region keeps extra steps safe
    # Each epoch splits the batch's env columns into this many minibatches of whole segments, one
    # gradient step each, with the E-step (top-k, psi, eta) over the minibatch (1: the whole batch).
    num_minibatches: int = 1
    # Critic targets and advantages: 0 = the paper's n-step targets (algo.n_step); > 0 = TD(lambda)
    # returns G^lambda and A = G^lambda - V (= GAE(lambda), Schulman et al. 2016), as PPO's.
    gae_lambda: float = 0.0
    # Entropy bonus weight c: the policy loss gets - c * mean H(pi) (0: the paper's V-MPO, which has
    # none; PPO's c_2 of Schulman et al. 2017, eq. 9, as a counterweight to the sharpening of weighted
    # maximum likelihood refitted over several epochs).
    ent_coef: float = 0.0
    # Advantages and critic targets computed once per update from the parameters that acted (as PPO's),
    # instead of from each minibatch's forward, whose value head earlier epochs have already fitted to
    # these returns (false: the paper's single step per batch makes the two the same).
    fixed_advantages: bool = False
    # Entropy floor: mean H(pi) >= min_entropy nats, enforced by a Lagrange multiplier beta (started at
    # beta_init, stepped with the other duals); 0: off (the paper's V-MPO).
    min_entropy: float = 0.0
    beta_init: float = 0.01
    # Adam step size of beta alone (0: dual_lr, in the duals' group). The floor must react within an update
    # or two: at dual_lr 1e-2 beta took ~0.5M frames to rise on Pong and never held 0.3 nats on Breakout
    # (docs/results.md). beta_min > 0 keeps beta >= beta_min, so it cannot wind down while the entropy is
    # above the floor (its softplus parameter is clamped; see agent.duals.LagrangeMultiplier.value_min).
    beta_lr: float = 0.0
    beta_min: float = 0.0
    # 0: the floor stays at min_entropy; > 0: it falls linearly from min_entropy to 0 at this many env steps
    # (as algo.lr_schedule=linear falls, counted in the run's global env steps): exploration early, and no
    # floor left to hold a policy that has learned the task away from its best, more deterministic, return.
    min_entropy_anneal_steps: int = 0
    # Where the annealed floor ends (nats, <= min_entropy): it falls from min_entropy to min_entropy_final
    # at min_entropy_anneal_steps and stays there. 0: to no floor. Annealed to 0 inside its budget, MemoryS7's
    # policy lost the task once the floor fell below ~0.04 nats (docs/results.md, 2026-12-06).
    min_entropy_final: float = 0.0

    def __post_init__(self) -> None:
        check_range("algo.vmpo.topk_fraction", self.topk_fraction, 0.0, 1.0, low_inclusive=False)
        check_range("algo.vmpo.eps_eta", self.eps_eta, 0.0, low_inclusive=False)
        check_range("algo.vmpo.eps_alpha", self.eps_alpha, 0.0, low_inclusive=False)
        check_range("algo.vmpo.eta_init", self.eta_init, 0.0, low_inclusive=False)
        check_range("algo.vmpo.alpha_init", self.alpha_init, 0.0, low_inclusive=False)
        check_range("algo.vmpo.alpha_min", self.alpha_min, 0.0, self.alpha_init)
        check_choice("algo.vmpo.dual_param", self.dual_param, DUAL_PARAMS)
        check_range("algo.vmpo.dual_eps_min", self.dual_eps_min, 0.0, low_inclusive=False)
        check_range("algo.vmpo.dual_lr", self.dual_lr, 0.0, low_inclusive=False)
        check_range("algo.vmpo.target_update_period", self.target_update_period, 1)
        check_range("algo.vmpo.update_epochs", self.update_epochs, 1)
        check_range("algo.vmpo.num_minibatches", self.num_minibatches, 1)
        check_range("algo.vmpo.gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("algo.vmpo.ent_coef", self.ent_coef, 0.0)
        check_range("algo.vmpo.min_entropy", self.min_entropy, 0.0)
        check_range("algo.vmpo.beta_init", self.beta_init, 0.0, low_inclusive=False)
        check_range("algo.vmpo.beta_lr", self.beta_lr, 0.0)
        check_range("algo.vmpo.beta_min", self.beta_min, 0.0, self.beta_init)
        check_range("algo.vmpo.min_entropy_anneal_steps", self.min_entropy_anneal_steps, 0)
        check_range("algo.vmpo.min_entropy_final", self.min_entropy_final, 0.0, self.min_entropy)
        if self.min_entropy_final > 0 and self.min_entropy_anneal_steps == 0:
            raise ConfigError(
                "algo.vmpo.min_entropy_final ends an annealed floor: "
                "set algo.vmpo.min_entropy_anneal_steps > 0"
            )


@dataclass
class PPOConfig:
    """PPO baseline (Schulman et al. 2017, section 5 "Algorithm"; CleanRL defaults)."""

    gae_lambda: float = 0.95
    clip_coef: float = 0.1
    clip_value: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    norm_adv: bool = True
    update_epochs: int = 4
    num_minibatches: int = 4
    # What a minibatch splits. envs: whole env columns [T, B/k] (a memory core needs whole segments);
    # samples: single steps shuffled over T*B (CleanRL), for memoryless cores only; auto: samples for
    # net.core=ff, envs for every memory core.
    minibatch_over: str = "auto"

    def __post_init__(self) -> None:
        check_range("algo.ppo.gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("algo.ppo.clip_coef", self.clip_coef, 0.0, low_inclusive=False)
        check_range("algo.ppo.ent_coef", self.ent_coef, 0.0)
        check_range("algo.ppo.vf_coef", self.vf_coef, 0.0)
        check_range("algo.ppo.update_epochs", self.update_epochs, 1)
        check_range("algo.ppo.num_minibatches", self.num_minibatches, 1)
        check_choice("algo.ppo.minibatch_over", self.minibatch_over, MINIBATCH_OVER)


@dataclass
class AlgoConfig:
    name: str = "vmpo"  # vmpo | ppo
    discount: float = 0.99
    n_step: int = 63  # n of the n-step bootstrapped targets (V-MPO: the unroll length)
    unroll_length: int = 63  # T
    lr: float = 1e-4  # Adam (V-MPO Atari: fixed)
    # constant: lr throughout (V-MPO); linear: lr * (1 - env_step / horizon), annealed to 0 at the
    # horizon (CleanRL's --anneal-lr). horizon = lr_anneal_steps, or train.total_steps when 0, fixed when
    # the run starts and kept in the checkpoint: a resumed run continues the same line.
    lr_schedule: str = "constant"
    lr_anneal_steps: int = 0
    # piecewise: lr * a scale interpolated linearly between the points (lr_milestones[i] env steps,
    # lr_scales[i]); the first scale before the first milestone, the last after the last; a milestone given
    # twice is a step. E.g. milestones [0, 500000, 500000, 1000000], scales [1, 1, 2, 0]: lr to 2M Atari
    # frames, then 2 lr annealed to 0 at 4M. In the checkpoint's config (algo.* is fixed on resume).
    lr_milestones: list[int] = field(default_factory=list)
    lr_scales: list[float] = field(default_factory=list)
    adam_eps: float = 1e-8
    max_grad_norm: float = 40.0
    value_coef: float = 0.5  # L_V = 0.5 (G - V)^2
    popart: bool = False
    popart_beta: float = 3e-4  # PopArt statistics step size
    vmpo: VMPOConfig = field(default_factory=VMPOConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        check_choice("algo.name", self.name, ALGOS)
        check_range("algo.discount", self.discount, 0.0, 1.0)
        check_range("algo.n_step", self.n_step, 1)
        check_range("algo.unroll_length", self.unroll_length, 1)
        check_range("algo.lr", self.lr, 0.0, low_inclusive=False)
        check_choice("algo.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_range("algo.lr_anneal_steps", self.lr_anneal_steps, 0)
        self._check_lr_points()
        check_range("algo.max_grad_norm", self.max_grad_norm, 0.0, low_inclusive=False)
        check_range("algo.value_coef", self.value_coef, 0.0)
        check_range("algo.popart_beta", self.popart_beta, 0.0, 1.0, low_inclusive=False)
        if self.popart and self.name != "vmpo":
            raise ConfigError(f"algo.popart=true is implemented for algo.name=vmpo only, not {self.name!r}")

    def _check_lr_points(self) -> None:
        """The points of algo.lr_schedule=piecewise: given with it (only), as many milestones as scales,
        milestones non-decreasing from 0, scales >= 0."""
        if self.lr_schedule != "piecewise":
            if self.lr_milestones or self.lr_scales:
                raise ConfigError(
                    "algo.lr_milestones/lr_scales are read by algo.lr_schedule=piecewise only, "
                    f"not {self.lr_schedule!r}"
                )
            return
        if not self.lr_milestones or len(self.lr_milestones) != len(self.lr_scales):
            raise ConfigError(
                "algo.lr_schedule=piecewise needs as many algo.lr_milestones as algo.lr_scales "
                f"(at least one), got {len(self.lr_milestones)} and {len(self.lr_scales)}"
            )
        for i, (milestone, scale) in enumerate(zip(self.lr_milestones, self.lr_scales, strict=True)):
            check_range(f"algo.lr_milestones[{i}]", milestone, 0)
            check_range(f"algo.lr_scales[{i}]", scale, 0.0)
        if any(b < a for a, b in zip(self.lr_milestones, self.lr_milestones[1:])):
            raise ConfigError(f"algo.lr_milestones must not decrease, got {list(self.lr_milestones)}")


DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Trainer loop, logging and checkpoints."""

    total_steps: int = 200_000  # environment steps (agent steps over all envs)
    device: str = "auto"  # auto = cuda if available
    seed: int = 0
    run_dir: str = "runs"
    run_name: str = ""  # default: <env.name>-<algo>-<core>-<seed>
    resume: str = ""  # path of a run directory to continue
    log_interval: int = 1  # learner updates between scalar logs
    checkpoint_interval: int = 50  # learner updates between checkpoints
    keep_checkpoints: int = 3
    progress: bool = True
    # torch intra-op threads of the learner. 0 = split this process's cores (its CPU affinity, shared with
    # the other local torchrun ranks, at most OMP_NUM_THREADS) between the learner, the actor thread of
    # train.overlap and envpool (unless env.num_threads > 0): agent/builder.py split_cores. On 2 cores:
    # 1 / 1 / 1 with overlap; learner 2, envpool 2 without. N > 0: the learner N, the actor thread
    # train.actor_threads, envpool env.num_threads. Two runs on one machine: set 1 (a learner with more
    # threads than free cores crawls: docs/performance.md, "Threads").
    torch_threads: int = 0
    max_consecutive_skips: int = 20  # non-finite updates in a row before the run stops (with a checkpoint)
    bf16: str = "auto"  # network body in bf16 autocast: auto (where AMX / CUDA bf16) | on | off
    # torchrun (agent/distributed.py): updates between bitwise checks that all ranks hold the same
    # parameters (0 = never), and how long a collective waits for a rank that stopped answering
    sync_check_interval: int = 100
    dist_timeout_s: float = 600.0
    # Asynchronous actor/learner (agent/overlap.py): while the learner trains on unroll k, a thread acts
    # for unroll k+1 with its own copy of the network, one update behind (policy lag 1, as IMPALA's and
    # Sample Factory's double-buffered sampling); PPO's ratio then divides by the behaviour policy the
    # actor recorded; V-MPO's pi_old stays the target network. false: rollout, then update, in one thread.
    overlap: bool = False
    # train.overlap with torch_threads > 0: torch threads of the actor thread (0 = torch's default)
    actor_threads: int = 1

    def __post_init__(self) -> None:
        check_range("train.total_steps", self.total_steps, 1)
        check_choice("train.device", self.device, DEVICES)
        check_range("train.log_interval", self.log_interval, 1)
        check_range("train.checkpoint_interval", self.checkpoint_interval, 1)
        check_range("train.keep_checkpoints", self.keep_checkpoints, 1)
        check_range("train.torch_threads", self.torch_threads, 0)
        check_range("train.max_consecutive_skips", self.max_consecutive_skips, 1)
        check_range("train.sync_check_interval", self.sync_check_interval, 0)
        check_range("train.dist_timeout_s", self.dist_timeout_s, 0.0, low_inclusive=False)
        check_range("train.actor_threads", self.actor_threads, 0)
        self.bf16 = check_bf16("train.bf16", self.bf16)


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    net: NetConfig = field(default_factory=NetConfig)
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.algo.ppo.minibatch_over == "samples" and self.net.core != "ff":
            raise ConfigError(
                f"algo.ppo.minibatch_over='samples' needs a memoryless core (net.core=ff), not "
                f"{self.net.core!r}: a memory core must see whole segments; accepted values: auto, envs"
            )
