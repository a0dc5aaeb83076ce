"""Data-parallel training (agent/distributed.py) under torchrun, gloo on loopback, 2 processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agent.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from agent.distributed import LOCAL, BatchAxis, DistributedError, guarded, shard_slots
from agent.masked import masked_mean
from agent.train import main
from tests.agent.test_trainer import TINY as TRAINER_TINY

ROOT = Path(__file__).resolve().parents[2]
TINY = [*TRAINER_TINY, "train.torch_threads=1"]


def torchrun(args: list[str], nproc: int = 2, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out.decode(errors="replace")


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def test_local_axis_is_the_single_process_maths():
    x, mask = torch.randn(5, 3), torch.rand(5, 3) > 0.3
    assert LOCAL.gather(x) is x and LOCAL.local(x) is x and not LOCAL.distributed
    torch.testing.assert_close(LOCAL.mean_share(x, mask), masked_mean(x, mask), atol=1e-7, rtol=1e-6)
    assert LOCAL.any_flag(True) and not LOCAL.any_flag(False)


def test_a_failed_collective_is_one_line_that_says_how_to_resume():
    axis = BatchAxis(world=2, rank=1)

    def lost_peer():
        raise RuntimeError("[/src/gloo/tcp/pair.cc:553] Connection closed by peer [::1]:1. More text")

    with pytest.raises(DistributedError) as err:
        guarded(axis, "runs/r", lost_peer)
    assert str(err.value) == (
        "rank 1 of 2 lost the process group (Connection closed by peer [::1]:1): another rank failed or "
        "was killed; the last checkpoint in 'runs/r' is intact, resume with train.resume=runs/r "
        "(with any world size)"
    )
    with pytest.raises(ZeroDivisionError):  # not a collective failure: untouched
        guarded(axis, "runs/r", lambda: 1 / 0)

    def other_error():
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match=r"^shape mismatch$"):
        guarded(axis, "runs/r", other_error)
    with pytest.raises(RuntimeError, match="Connection closed"):  # one process: nothing to translate
        guarded(LOCAL, "runs/r", lost_peer)


def test_env_slots_split_evenly_over_ranks_or_fail_in_one_line():
    assert shard_slots(16, BatchAxis(world=4, rank=2)) == (4, 8)
    assert shard_slots(16, LOCAL) == (16, 0)
    with pytest.raises(ValueError, match=r"env.num_envs=6 does not split over 4 ranks"):
        shard_slots(6, BatchAxis(world=4, rank=0))


COMPARED = (
    "loss/total", "loss/policy", "loss/eta", "loss/alpha", "loss/value", "vmpo/eta", "vmpo/alpha",
    "vmpo/kl_mean", "vmpo/num_selected", "policy/entropy", "popart/mu/1", "popart/sigma/0",
)  # fmt: skip


def test_ddp_update_equals_the_single_process_update_on_the_concatenated_batch(tmp_path):
    """Global top-k, psi, eta/alpha duals and PopArt: 2 ranks x 2 envs == 1 process x 4 envs."""
    code, out = finish(torchrun([str(ROOT / "tests/agent/ddp_worker.py"), str(tmp_path)]))
    assert code == 0, out[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert ranks[0]["digest"] == ranks[1]["digest"], "replicas differ after the updates"
    for result in ranks:  # the LLM adapter's sequence-level E-step over the sequences of both ranks
        seq = result["sequence"]
        for name in ("loss", "grad", "eta_grad"):
            torch.testing.assert_close(seq[name], seq[f"ref_{name}"], rtol=1e-6, atol=1e-7, msg=name)
    for result in ranks:
        for ref, got in zip(result["ref_metrics"], result["metrics"], strict=True):
            for key in COMPARED:
                assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-6), key
        for key, ref in result["reference"].items():
            torch.testing.assert_close(result["ddp"][key], ref, rtol=1e-5, atol=1e-5, msg=key)


def test_two_ranks_resume_a_one_process_run_and_stay_identical(tmp_path):
    """World size 1 -> 2 on resume; parameters checked bitwise equal across ranks after every update."""
    run_dir = tmp_path / "r"
    args = [*TINY, "algo.popart=true", f"train.run_dir={tmp_path}", "train.run_name=r"]
    assert main(["--config", "quickstart", *args, "train.total_steps=64"]) == 0  # 2 updates
    resume = [f"train.resume={run_dir}", "train.total_steps=192", "train.sync_check_interval=1"]
    code, out = finish(torchrun(["-m", "agent.train", *resume]))
    assert code == 0, out[-3000:]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 2, "a rank other than 0 wrote TensorBoard"
    checks = [s for s, _ in scalars(run_dir, "dist/replicas_in_sync")]
    assert checks == [96, 128, 160, 192], "the replica check did not run after every update"
    assert [s for s, _ in scalars(run_dir, "loss/total")] == [32, 64, 96, 128, 160, 192]
    saved = load_checkpoint(latest_checkpoint(run_dir))
    assert saved["counters"]["num_updates"] == 6 and saved["counters"]["global_step"] == 192
    # every rank's finished episodes reach rank 0's logs: as many as one process with all 4 envs has, on
    # the same schedule (cue recall episodes have a fixed length: the count does not depend on the policy)
    one = [*TINY, "algo.popart=true", f"train.run_dir={tmp_path}", "train.run_name=one"]
    assert main(["--config", "quickstart", *one, "train.total_steps=64"]) == 0
    assert main([f"train.resume={tmp_path / 'one'}", "train.total_steps=192"]) == 0
    assert scalars(run_dir, "charts/episodes")[-1] == scalars(tmp_path / "one", "charts/episodes")[-1]


def test_ppo_ranks_stay_identical(tmp_path):
    args = [*TINY, "algo.name=ppo", "algo.ppo.num_minibatches=2", f"train.run_dir={tmp_path}",
            "train.run_name=p", "train.total_steps=96", "train.sync_check_interval=1"]  # fmt: skip
    code, out = finish(torchrun([str(ROOT / "tests/agent/exit_worker.py"), *args]))
    assert code == 0, out[-3000:]
    assert len(scalars(tmp_path / "p", "dist/replicas_in_sync")) == 3
    # the process groups are freed and their threads joined before the interpreter exits (a gloo thread
    # that frees its last work during interpreter shutdown aborts the process: a flaky exit code)
    assert out.count("gloo threads after main: []") == 2, out[-3000:]


def _rank_pid(launcher: int, rank: int) -> int | None:
    """The pid of the torchrun worker with ``RANK=rank`` under the launcher process."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            ancestors = {int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])}
        except OSError:
            continue
        parent = ancestors.pop()
        try:  # torchrun's agent sits between the launcher and the workers
            grand = int((Path("/proc") / str(parent) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            grand = -1
        if launcher in (parent, grand) and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


def test_a_killed_rank_stops_the_job_and_world_size_one_resumes(tmp_path):
    run_dir = tmp_path / "r"
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=100000000",
            "train.checkpoint_interval=2", "train.keep_checkpoints=2", "train.dist_timeout_s=60"]  # fmt: skip
    proc = torchrun(["-m", "agent.train", *args])
    try:
        deadline = time.time() + 180
        while len(list_checkpoints(run_dir)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(list_checkpoints(run_dir)) >= 2, finish(proc)[1][-3000:] if proc.poll() else "timeout"
        victim = _rank_pid(proc.pid, 1)
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        code, out = finish(proc, timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code != 0
    assert "rank 0 of 2 lost the process group" in out and f"train.resume={run_dir}" in out, out[-3000:]
    done = load_checkpoint(latest_checkpoint(run_dir))["counters"]["num_updates"]  # intact, loads
    total = 32 * (done + 2)  # 4 envs x unroll 8 per update
    assert main([f"train.resume={run_dir}", f"train.total_steps={total}"]) == 0
    assert load_checkpoint(latest_checkpoint(run_dir))["counters"]["num_updates"] == done + 2
