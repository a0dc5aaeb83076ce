"""Peak memory of one learner step at the paper config, relative to the parameter + optimiser bytes.

AgentNet from ``configs/atari_vmpo.yaml``'s ``net`` section (IMPALA torso, 8 x 256 GTrXL, memory 64),
observations 4x84x84 uint8, 18 actions, V-MPO learner with its target network and Adam. The batch is
reduced from the paper's B=128, T=63 (the IMPALA torso's activations for 8k frames do not fit a 24 GiB
machine on CPU, and one update would take minutes on one core): the note says which B and T ran.

Measured: the growth of the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` before the step; ``ru_maxrss`` growth where that is not allowed) over one
``learner.update`` after a warm-up update (Adam state allocated), divided by the bytes of every
parameter, buffer and optimiser-state tensor the learner holds. CUDA ``max_memory_allocated`` growth over
the same bytes when a CUDA device is present, else ``n/a``.
"""

from __future__ import annotations

import resource

import torch

from agent.builder import build_net
from agent.learner import Learner, make_learner
from agent.rollout import Trajectory
from bench.common import Row, main
from configs import Config, load_config
from networks.agent_net import AgentNet

OBS, ACTIONS = (4, 84, 84), 18


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _peak_kib() -> int:
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def state_bytes(learner: torch.nn.Module) -> int:
    """Parameters + buffers of the learner (net, target net, duals, PopArt) + Adam's state tensors."""
    opt = [v for s in learner.optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return _bytes(learner.parameters()) + _bytes(learner.buffers()) + _bytes(opt)


def trajectory(net: AgentNet, T: int, B: int, device: torch.device) -> Trajectory:
    g = torch.Generator().manual_seed(0)

    def rand(*shape, high=2, dtype=torch.long):
        return torch.randint(0, high, shape, generator=g, dtype=dtype).to(device)

    return Trajectory(
        obs=rand(T + 1, B, *OBS, high=256, dtype=torch.uint8),
        first=rand(T + 1, B).bool() & (torch.rand(T + 1, B, generator=g) < 0.01).to(device),
        prev_action=rand(T + 1, B, high=ACTIONS),
        prev_reward=torch.randn(T + 1, B, generator=g).to(device).clamp(-1, 1),
        task_id=torch.zeros(T + 1, B, dtype=torch.long, device=device),
        action=rand(T, B, high=ACTIONS),
        reward=torch.randn(T, B, generator=g).to(device).clamp(-1, 1),
        terminated=torch.zeros(T, B, dtype=torch.bool, device=device),
        truncated=torch.zeros(T, B, dtype=torch.bool, device=device),
        mask=torch.ones(T, B, device=device),
        initial_state=net.initial_state(B, device),
    )


def _net_and_learner(cfg: Config, device: torch.device) -> tuple[AgentNet, Learner]:
    """The trainer's network (precision from ``train.bf16`` for ``device``) and its learner."""
    net = build_net(cfg, OBS, ACTIONS, device=device)
    return net, make_learner(net, cfg.algo).to(device)  # .to keeps Adam's parameters


def run(quick: bool) -> list[Row]:
    T, B = (8, 2) if quick else (63, 16)
    cfg = load_config("atari_vmpo", [f"algo.unroll_length={T}", f"algo.n_step={T}"])
    torch.manual_seed(0)
    net, learner = _net_and_learner(cfg, torch.device("cpu"))
    traj = trajectory(net, T, B, torch.device("cpu"))
    learner.update(traj)  # warm-up: Adam state, allocator pools
    held = state_bytes(learner)
    rss_before = _status_kib("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    exact = _reset_hwm()
    base = rss_before if exact else _peak_kib()
    learner.update(traj)
    growth = (_peak_kib() - base) * 1024
    how = "VmHWM reset via clear_refs" if exact else "peak RSS growth (HWM not resettable: lower bound)"
    rows = [
        Row("peak_memory", "CPU peak RSS growth of one learner step / param+optimizer bytes", growth / held,
            "", None, f"paper net, B={B} T={T}, {held / 2**20:.0f} MiB held, +{growth / 2**20:.0f} MiB peak; "
            f"{how}; bf16={net.bf16}"),
    ]  # fmt: skip
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        net_c, learner_c = _net_and_learner(cfg, dev)
        traj_c = trajectory(net_c, T, B, dev)
        learner_c.update(traj_c)
        torch.cuda.synchronize()
        held_c = state_bytes(learner_c)
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        learner_c.update(traj_c)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        metric = "CUDA max allocated growth of one learner step / param+optimizer bytes"
        note = f"B={B} T={T}, +{peak / 2**20:.0f} MiB, bf16={net_c.bf16}"
        rows.append(Row("peak_memory", metric, peak / held_c, "", None, note))
    else:
        rows.append(Row("peak_memory", "CUDA max allocated / param+optimizer bytes", float("nan"), "", None,
                        "n/a: no CUDA device"))  # fmt: skip
    return rows


if __name__ == "__main__":
    main(run)
