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
from helpers import ENV, LAST, ROOT, command, flags, run, spawn, steps, wait_until

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


def ended_with_its_processes(process, timeout=120):
    """(exit code, stderr) once the process has ended, asserting that no process of its session (a data worker)
    outlives it: the red team's runs hung at exit after a NaN stop and after Ctrl-C, their workers alive."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"the run did not end within {timeout} s: {process.communicate()[1][-2000:]}")
    deadline = time.time() + 30
    while True:
        try:
            os.killpg(process.pid, 0)  # raises once every process of the session is gone
        except ProcessLookupError:
            return process.returncode, stderr
        if time.time() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail("a data worker outlived the run")
        time.sleep(0.1)


@pytest.mark.integration
@pytest.mark.parametrize("end, code", [("finished", 0), ("non-finite loss", 1), ("an error's traceback", 1),
                                       ("SIGINT", 130), ("SIGTERM", 143)])  # fmt: skip
def test_every_way_a_run_ends_ends_its_workers_with_its_exit_code(tmp_path, end, code):
    """With a data worker, as a default run on 2 cores has: finished, a NaN stop (a one-line error), Ctrl-C (to
    the whole process group, as a terminal sends it: saved like SIGTERM) and SIGTERM."""
    out = tmp_path / "run"
    nan = ["--lr", "1e30", "--warmup_epochs", "0"]
    extra = {"finished": ["--max_steps", "3"], "non-finite loss": nan, "an error's traceback": nan}
    argv = flags(out, "--max_steps", "500", "--num_workers", "1", *extra.get(end, []))
    env = (
        {**ENV, "MAE_TRACEBACK": "1"} if "traceback" in end else ENV
    )  # the error raised, not caught by run_cli
    process = subprocess.Popen(command(argv), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)  # fmt: skip
    if end.startswith("SIG"):
        wait_until(lambda: len(steps(out)) >= 3, process)
        os.killpg(process.pid, getattr(signal, end))
    returncode, stderr = ended_with_its_processes(process)
    assert returncode == code, stderr[-3000:]
    if end == "non-finite loss":
        assert "error: loss is nan at step" in stderr and "Traceback" not in stderr
    if end.startswith("SIG"):
        assert f"{end} received: stopped after step" in stderr and f"(exit code {code})" in stderr
        assert read_checkpoint(out / LAST)["step"] == steps(out)[-1]  # nothing lost
    if end == "SIGINT":
        assert "Ctrl-C: stopping after this step and saving it" in stderr


def test_ctrl_c_is_noted_once_and_a_second_quits_at_once(capsys):
    before = signal.getsignal(signal.SIGINT)  # Python's default_int_handler, or SIG_IGN in a background job
    with preemption.StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.received == [signal.SIGINT]  # the loop stops after its step, saving it
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert "Ctrl-C again to quit now" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler, back


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
    assert "SIGTERM received: stopped after step" in stderr, stderr[-3000:]
    # What the README says a script around torchrun sees: its workers exit 143, torchrun itself 1 (SignalException).
    assert process.returncode == 1 and "(exit code 143)" in stderr and "SignalException" in stderr, stderr[
        -3000:
    ]
    saved = read_checkpoint(out / LAST)
    assert saved["step"] == steps(out)[-1] and saved["step"] % 2 == 0 and len(saved["rng"]) == 2
