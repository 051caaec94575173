"""Stop signals (mae.engine.preemption): SIGTERM from SLURM or torchrun, submitit's SIGUSR2, each finishing
the step, saving it, and exiting for the requeue, which continues from that step. All whole training jobs
(`integration`), with real signals to real processes.
"""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from helpers import ENV, LAST, ROOT, flags, run, spawn, steps, wait_until

from mae import submit
from mae.checkpoint import read_checkpoint
from mae.engine import preemption


@pytest.mark.integration
def test_sigterm_finishes_the_step_saves_and_exits_for_requeue(tmp_path):
    """As SLURM does it: SIGTERM to every process of the job (a data worker included), save_every far away."""
    out = tmp_path / "run"
    process = spawn(flags(out, "--max_steps", "500", "--num_workers", "1"), start_new_session=True)
    wait_until(lambda: len(steps(out)) >= 3, process)
    os.killpg(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "SIGTERM received: stopped after step" in stderr and "(exit code 143)" in stderr
    saved = read_checkpoint(out / LAST)["step"]
    assert (
        3 <= saved < 500 and steps(out)[-1] == saved
    )  # the last step trained is the one saved: nothing lost
    result = run(flags(out, "--max_steps", str(saved + 2)))  # the requeued command
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming at epoch 0 step {saved} from" in result.stdout
    assert steps(out) == list(range(1, saved + 3))


@pytest.mark.integration
def test_submitit_requeue_hook_runs_after_the_step_is_saved(tmp_path, monkeypatch):
    """submitit's preemption signal (SIGUSR2 since 1.5) arrives mid-run: the engine finishes the step and saves,
    then hands the signal to submitit's handler, which calls Trainer.checkpoint and requeues."""
    import submitit

    for key, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="localhost",
                           MASTER_PORT="29541", SUBMITIT_DEBUG_JOB_ID="1").items():  # fmt: skip
        monkeypatch.setenv(key, value)  # Trainer sets these: restored after the test
    out = tmp_path / "run"
    trainer = submit.Trainer(
        submit.engine_args(submit.get_args_parser().parse_args(flags(out, "--max_steps", "500")))
    )
    calls = []

    def submitits_handler(signum, frame):  # what submitit installs: checkpoint_and_try_requeue
        calls.append((signum, read_checkpoint(out / LAST)["step"], steps(out)[-1], trainer.checkpoint()))

    def send_the_signal():
        while len(steps(out)) < 3:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, submitits_handler)
    try:
        threading.Thread(target=send_the_signal, daemon=True).start()
        with pytest.raises(preemption.Preempted, match="SIGUSR2 received"):
            torch.set_num_threads(1)
            trainer()
    finally:
        signal.signal(signal.SIGUSR2, previous)
        torch.set_num_threads(2)
    [(signum, saved, logged, requeued)] = calls
    assert signum == signal.SIGUSR2 and saved == logged >= 3
    assert isinstance(requeued, submitit.helpers.DelayedSubmission)
    requeued.function.args.max_steps = saved + 1
    torch.set_num_threads(1)
    try:
        requeued.result()  # the requeued job
    finally:
        torch.set_num_threads(2)
    assert steps(out) == list(range(1, saved + 2))


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun missing"
)
def test_sigterm_to_torchrun_stops_both_ranks_after_the_same_step(tmp_path):
    """torchrun passes SIGTERM on to its workers; the ranks agree at the next log step, and save that step."""
    out = tmp_path / "run"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    argv = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "mae.pretrain",
            *flags(out, "--batch_size", "4", "--max_steps", "500", "--log_every", "2")]  # fmt: skip
    process = subprocess.Popen(
        argv, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_until(lambda: len(steps(out)) >= 2, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0 and "SIGTERM received: stopped after step" in stderr, stderr[-3000:]
    saved = read_checkpoint(out / LAST)
    assert saved["step"] == steps(out)[-1] and saved["step"] % 2 == 0 and len(saved["rng"]) == 2
