"""End-to-end trainer: TensorBoard events, checkpoints, resume after a kill, every core and algorithm."""

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
from agent.train import build_config, main
from agent.trainer import Trainer, TrainingError
from configs import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "env.num_envs=4", "algo.unroll_length=8", "algo.n_step=8", "net.d_model=32", "net.num_layers=1",
    "net.num_heads=2", "net.head_dim=16", "net.mlp_dim=32", "net.memory_length=8", "net.torso_out=32",
    "net.lstm_hidden=32", "train.progress=false",
]  # fmt: skip


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.mark.parametrize(
    "extra",
    [
        ["algo.name=vmpo", "net.core=gtrxl"],
        ["algo.name=vmpo", "net.core=trxl"],
        ["algo.name=vmpo", "net.core=trxl_i", "algo.popart=true"],
        ["algo.name=vmpo", "net.core=lstm", "algo.vmpo.dual_param=projected"],
        ["algo.name=vmpo", "net.core=ff"],
        ["algo.name=ppo", "net.core=gtrxl", "algo.ppo.num_minibatches=2", "algo.ppo.update_epochs=2"],
    ],
)
def test_short_run_writes_events_and_checkpoint(tmp_path, extra):
    args = [*TINY, *extra, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=96",
            "train.checkpoint_interval=2"]  # fmt: skip
    assert main(["--config", "quickstart", *args]) == 0
    run_dir = tmp_path / "r"
    steps = [s for s, _ in scalars(run_dir, "loss/total")]
    assert steps == [32, 64, 96]
    assert all(torch.isfinite(torch.tensor(v)) for _, v in scalars(run_dir, "loss/total"))
    ckpt = load_checkpoint(latest_checkpoint(run_dir))
    assert ckpt["counters"]["num_updates"] == 3 and ckpt["counters"]["global_step"] == 96
    assert (run_dir / "config.yaml").is_file()
    if "algo.name=vmpo" in extra:
        eta = scalars(run_dir, "vmpo/eta")
        assert len(eta) == 3 and all(v > 0 for _, v in eta)


def test_existing_run_dir_is_never_overwritten(tmp_path, capsys):
    args = [
        "--config",
        "quickstart",
        *TINY,
        f"train.run_dir={tmp_path}",
        "train.run_name=r",
        "train.total_steps=32",
    ]
    assert main(args) == 0
    before = sorted(p.name for p in (tmp_path / "r").rglob("*"))
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "r").rglob("*")) == before


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    assert main(["--config", "quickstart", "env.num_envs=abc"]) == 2
    assert main(["--config", "quickstart", f"train.resume={tmp_path / 'missing'}"]) == 2
    assert main(["--config", "quickstart", "env.family=atari", "env.name=Pongg"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("error: ") for line in errors)
    assert "env.num_envs" in errors[0] and "missing" in errors[1] and "Pong" in errors[2]


def test_kill_and_resume_continues_counters_duals_and_optimizer(tmp_path):
    """A run killed with SIGKILL mid-way resumes from its last checkpoint with the same state."""
    run_dir = tmp_path / "r"
    args = [*TINY, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=100000000",
            "train.checkpoint_interval=2", "train.keep_checkpoints=2"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "agent.train", "--config", "quickstart", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    try:
        deadline = time.time() + 120
        while len(list_checkpoints(run_dir)) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert len(list_checkpoints(run_dir)) >= 2, proc.stderr.read().decode() if proc.poll() else "timeout"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    path = latest_checkpoint(run_dir)
    saved = load_checkpoint(path)
    done = saved["counters"]["num_updates"]
    assert done >= 4

    cfg, resumed_dir, payload = build_config(
        "quickstart", [f"train.resume={run_dir}", f"train.total_steps={32 * (done + 2)}"]
    )
    # the run's own command repeated with train.resume is accepted; a changed value is not
    assert build_config("quickstart", [*TINY, f"train.resume={run_dir}"])[0].env.num_envs == cfg.env.num_envs
    with pytest.raises(ConfigError, match=r"cannot change env\.num_envs when resuming"):
        build_config("quickstart", [*TINY, f"train.resume={run_dir}", f"env.num_envs={cfg.env.num_envs + 1}"])
    trainer = Trainer(cfg, resumed_dir, payload)
    assert trainer.counters.num_updates == done and trainer.learner.num_updates == done
    module = trainer.learner.state_dict()
    for key, value in saved["learner"]["module"].items():
        assert torch.equal(module[key], value), key
    assert float(trainer.learner.eta.value().detach()) > 0
    opt = trainer.learner.optimizer.state_dict()["state"]
    for index, state in saved["learner"]["optimizer"]["state"].items():
        assert torch.equal(opt[index]["exp_avg"], state["exp_avg"])
        assert float(opt[index]["step"]) == float(state["step"])
    result = trainer.train()
    assert result["num_updates"] == done + 2
    steps = [s for s, _ in scalars(run_dir, "loss/total")]
    assert steps == sorted(set(steps)), "a step was logged twice"
    assert steps == [32 * (i + 1) for i in range(done + 2)], "a gap or duplicate in the curve"
    assert load_checkpoint(latest_checkpoint(run_dir))["counters"]["num_updates"] == done + 2


def test_a_signal_while_a_failed_run_closes_does_not_cut_off_its_error(tmp_path, monkeypatch, capsys):
    """Under torchrun a dead rank's launcher signals the survivors at once; a signal that arrives while the
    trainer closes after an error is held until the one-line error (how to resume) is printed."""
    message = "rank 0 of 2 lost the process group (peer gone): resume with train.resume=r"

    def lost(self):
        raise TrainingError(message)

    close = Trainer.close

    def close_under_signal(self):
        os.kill(os.getpid(), signal.SIGINT)  # not held: KeyboardInterrupt here (SIGTERM would end pytest)
        close(self)

    monkeypatch.setattr(Trainer, "iteration", lost)
    monkeypatch.setattr(Trainer, "close", close_under_signal)
    before = signal.getsignal(signal.SIGINT)
    try:
        code = main(["--config", "quickstart", *TINY, f"train.run_dir={tmp_path}", "train.run_name=r"])
    except KeyboardInterrupt:
        pytest.fail("a signal during the trainer's close cut off the error report")
    assert code == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {message}"
    assert signal.getsignal(signal.SIGINT) is before  # the handlers are restored


@pytest.mark.parametrize(
    "env",
    [
        ["env.family=atari", "env.name=Breakout", "env.num_envs=2"],
        ["env.family=atari", "env.name=Pong", "env.protocol=machado", "env.num_envs=2", "algo.name=ppo"],
        ["env.family=minigrid", "env.name=MemoryS7"],
        ["env.family=popgym", "env.name=RepeatPreviousEasy"],
    ],
)
def test_every_env_family_trains(tmp_path, env):
    args = [*TINY, *env, f"train.run_dir={tmp_path}", "train.run_name=r", "train.total_steps=16"]
    assert main(["--config", "quickstart", *args]) == 0
    ckpt = load_checkpoint(latest_checkpoint(tmp_path / "r"))
    assert ckpt["counters"]["num_updates"] >= 1 and ckpt["task_names"]


def test_resumed_event_file_sorts_after_a_killed_runs_file_from_the_same_second(tmp_path):
    """TensorBoard reads event files in name order; the resumed writer's purge must come last."""
    from torch.utils.tensorboard import SummaryWriter

    from agent.trainer import wait_for_newer_event_file_name

    killed = (
        tmp_path / f"events.out.tfevents.{int(time.time()):010d}.host.999999.0"
    )  # larger pid, same second
    killed.write_bytes(b"")
    wait_for_newer_event_file_name(tmp_path)
    writer = SummaryWriter(str(tmp_path))
    writer.close()
    names = sorted(p.name for p in tmp_path.glob("events.out.tfevents.*"))
    assert names[0] == killed.name and len(names) == 2
