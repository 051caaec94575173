"""Runs on a shared cluster: preemption, requeues, reused folders, bad flags and bad data (issue 13).

Each test does what a user or a scheduler would: a real SIGTERM to the process group, a real second process
on the same folder, a real kill during a save, real unreadable files first in the folder, a write to a full
device. Whole training jobs are marked `integration`; the flag and loading checks run in the unit suite.
"""

import errno
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import mae
from mae import engine, finetune, preemption, pretrain, submit
from mae.checkpoint import CheckpointError, read_checkpoint

ROOT = Path(__file__).resolve().parent.parent
LAST = "checkpoint-last.pth"
TINY = ["--model", "mae_vit_tiny_patch8", "--input_size", "32", "--device", "cpu", "--num_workers", "0",
        "--batch_size", "8", "--warmup_epochs", "1", "--log_every", "1"]  # fmt: skip
CLASSIFIER = ["--model", "vit_mini_patch8", "--input_size", "32", "--data_path", "builtin:digits", "--device", "cpu",
              "--num_workers", "0", "--batch_size", "16", "--log_every", "1"]  # fmt: skip


def flags(out, *extra, data="builtin:digits"):
    """mae.pretrain's flags for a tiny CPU run into `out` (later flags win over earlier ones)."""
    return [*TINY, "--data_path", str(data), "--output_dir", str(out), *extra]


def pretrain_here(argv):
    """mae.pretrain in this process, on one thread like the subprocesses."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return pretrain.main(pretrain.get_args_parser().parse_args(argv))
    finally:
        torch.set_num_threads(threads)


def command(argv, module="mae.pretrain"):
    return [sys.executable, "-m", module, *argv]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(argv):
    return subprocess.run(command(argv), capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)


def spawn(argv, **kwargs):
    return subprocess.Popen(
        command(argv), cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def records(out, kind):
    """The log.jsonl records of a kind; a line being written (not whole yet) is left out."""
    path = Path(out) / "log.jsonl"
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("kind") == kind:
            found.append(record)
    return found


def steps(out):
    return [r["step"] for r in records(out, "train")]


def wait_until(condition, process, seconds=300):
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def image_folder(root, good, bad=0):
    """`bad` unreadable files named to sort first (truncated PNGs, text with a .png name), then `good` small PNGs."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(good):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(root / f"img_{i:03d}.png")
    for i in range(bad):
        if i % 2 and good:
            (root / f"000_broken_{i}.png").write_bytes((root / "img_000.png").read_bytes()[:100])
        else:
            (root / f"000_broken_{i}.png").write_text("not an image")
    return root


# --------------------------------------------------------------------------- 1. the run's own state wins


@pytest.mark.integration
def test_a_rerun_continues_from_its_own_checkpoint_not_from_resume(tmp_path, capsys):
    pretrain_here(flags(tmp_path / "first", "--max_steps", "2"))
    out = tmp_path / "run"
    rerun = flags(out, "--resume", str(tmp_path / "first" / LAST), "--max_steps", "4", "--save_every", "1")
    pretrain_here(rerun)
    assert "resuming at epoch 0 step 2 from" in capsys.readouterr().out
    pretrain_here(rerun)  # the same command again (a rerun, a requeue): nothing is redone
    printed = capsys.readouterr().out
    assert f"resuming at epoch 0 step 4 from {out / LAST}" in printed and "nothing to train" in printed
    pretrain_here([*rerun, "--max_steps", "6"])
    printed = capsys.readouterr().out
    assert f"resuming at epoch 0 step 4 from {out / LAST}" in printed
    assert f"note: {out / LAST} exists, so this run continues from it" in printed
    assert steps(out) == [3, 4, 5, 6]


# --------------------------------------------------------------------------- 3. SIGTERM, SIGUSR2 (submitit)


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


# --------------------------------------------------------------------------- 2. unreadable files


@pytest.mark.integration
def test_unreadable_files_first_in_the_folder_neither_stop_nor_loop(tmp_path, monkeypatch):
    data = image_folder(tmp_path / "data", good=6, bad=6)
    out = tmp_path / "run"
    # batch 1: each unreadable file is a micro-batch without an image, and accum_iter 2 mixes them with good ones
    argv = flags(out, "--batch_size", "1", "--accum_iter", "2", "--epochs", "2", data=data)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        pretrain_here(argv)
    assert steps(out) == list(range(1, 13))  # 12 files, 6 steps an epoch, none dropped
    epochs = records(out, "epoch")
    assert [(e["epoch"], e["skipped_images"]) for e in epochs] == [(0, 6), (1, 12)]
    assert read_checkpoint(out / LAST)["epoch"] == 2
    events = b"".join(p.read_bytes() for p in out.glob("events.out.tfevents.*"))
    assert events.count(b"reconstruction") == 2  # the figure, from the first readable files

    nothing = image_folder(tmp_path / "unreadable", good=0, bad=4)
    with pytest.raises(ValueError, match=r"no readable image in --data_path .*unreadable: all 4 failed"):
        with pytest.warns(UserWarning):
            pretrain_here(flags(tmp_path / "never", "--batch_size", "2", data=nothing))

    def broken_figure(*args, **kwargs):
        raise RuntimeError("a figure bug")

    monkeypatch.setattr(pretrain, "reconstruction_grid", broken_figure)
    with pytest.warns(
        UserWarning, match="no reconstruction figure for epoch 0 .*a figure bug.*training goes on"
    ):
        pretrain_here(flags(tmp_path / "figure", "--batch_size", "3", "--epochs", "1", data=data))
    assert read_checkpoint(tmp_path / "figure" / LAST)["epoch"] == 1


@pytest.mark.integration
@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun missing"
)
def test_ranks_stay_in_step_when_a_batch_has_no_readable_image(tmp_path):
    """2 processes, 1 image each per micro-batch, half the files unreadable: before, a rank that skipped a batch
    paired its gradient all-reduce with another step of the other rank, and the run hung or diverged."""
    data = image_folder(tmp_path / "data", good=4, bad=4)
    out = tmp_path / "run"
    torchrun = str(Path(sys.executable).parent / "torchrun")
    argv = flags(out, "--batch_size", "1", "--accum_iter", "2", "--max_steps", "4", data=data)
    result = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "mae.pretrain", *argv],
                            capture_output=True, text=True, timeout=600, cwd=ROOT, env=ENV)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert steps(out) == [1, 2, 3, 4]
    assert records(out, "end")[-1]["replicas_identical"] is True


# --------------------------------------------------------------------------- 4. reused folders


@pytest.mark.integration
def test_a_second_run_in_a_used_folder_is_refused_and_a_killed_one_blocks_nothing(tmp_path):
    out = tmp_path / "run"
    first = spawn(flags(out, "--max_steps", "500"))
    wait_until(lambda: len(steps(out)) >= 1, first)
    second = run(flags(out, "--max_steps", "500"))
    assert second.returncode != 0
    assert f"{out} is in use by another run (pid {first.pid} on" in second.stderr
    first.kill()  # kill -9: its lock goes with it (the file stays behind, unlocked)
    first.communicate()
    assert (out / ".lock").exists()
    third = run(flags(out, "--max_steps", "2"))
    assert third.returncode == 0, third.stderr[-3000:]
    assert not (out / ".lock").exists()  # a run that ends removes its lock file


@pytest.mark.integration
def test_other_arguments_are_refused_and_a_finished_run_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    pretrain_here(flags(out, "--max_steps", "2"))
    changed = ["--batch_size", "4", "--blr", "1e-3", "--mask_ratio", "0.5", "--seed", "1", "--model",
               "mae_vit_mini_patch8", "--data_path", "builtin"]  # fmt: skip
    with pytest.raises(ValueError) as refused:
        pretrain_here(flags(out, "--max_steps", "4", *changed))
    message = str(refused.value)
    for flag in ("--batch_size: 8 in the checkpoint, 4 now", "--blr", "--mask_ratio", "--seed", "--model",
                 "--data_path: 'builtin:digits' in the checkpoint, 'builtin' now", "--allow_changed_args"):  # fmt: skip
        assert flag in message
    assert "--max_steps" not in message  # where to stop changes no step's result
    capsys.readouterr()
    pretrain_here(flags(out, "--max_steps", "3", "--epochs", "60", "--allow_changed_args"))  # deliberate
    assert "--epochs: 400 in the checkpoint, 60 now" in capsys.readouterr().out
    assert steps(out) == [1, 2, 3]
    before = (out / LAST).stat().st_mtime_ns
    pretrain_here(flags(out, "--max_steps", "3", "--epochs", "60"))  # pointed at the finished run again
    assert "nothing to train: the run in" in capsys.readouterr().out
    assert steps(out) == [1, 2, 3] and (out / LAST).stat().st_mtime_ns == before


# --------------------------------------------------------------------------- 5. temporary files, double writes


@pytest.mark.integration
def test_a_kill_during_a_save_leaves_no_temporary_file_behind(tmp_path):
    out = tmp_path / "run"
    process = spawn(flags(out, "--max_steps", "500", "--save_every", "1"))
    caught, deadline = None, time.time() + 300
    while caught is None and time.time() < deadline and process.poll() is None:
        partial = list(out.glob(".checkpoint-last.pth.tmp-*")) if (out / LAST).exists() else []
        if partial:  # a save after the first, so that there is a checkpoint to resume from
            process.send_signal(signal.SIGSTOP)  # frozen; still writing if the file is still there
            if partial[0].exists():
                caught = partial[0]
            else:
                process.send_signal(signal.SIGCONT)
        time.sleep(0.001)
    process.kill()
    process.communicate()
    assert caught is not None and caught.exists(), "no save was caught in progress"
    saved = read_checkpoint(out / LAST)["step"]
    result = run(flags(out, "--max_steps", str(saved + 1)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "removed 1 temporary file(s)" in result.stdout and "left in" in result.stdout
    assert not list(out.glob(".*.tmp-*"))


@pytest.mark.integration
def test_each_state_is_written_once(tmp_path, monkeypatch):
    """A run ending on a --save_every multiple, and epoch ends, used to write the same state twice;
    checkpoint-<epoch>.pth is now a link to checkpoint-last.pth, not a second write."""
    data = image_folder(tmp_path / "data", good=16)
    written, real = [], engine.save_checkpoint

    def counted(path, model, **extra):
        written.append((Path(path).name, extra["step"], extra["epoch"], extra["step_in_epoch"]))
        return real(path, model, **extra)

    monkeypatch.setattr(engine, "save_checkpoint", counted)
    out = tmp_path / "run"
    pretrain_here(
        flags(out, "--batch_size", "4", "--epochs", "2", "--save_every", "2", "--save_epochs", "1", data=data)
    )
    assert written == [(LAST, 2, 0, 2), (LAST, 4, 1, 0), (LAST, 6, 1, 2), (LAST, 8, 2, 0)]
    assert [read_checkpoint(out / f"checkpoint-{e}.pth")["step"] for e in (0, 1)] == [4, 8]


# --------------------------------------------------------------------------- 6. torn log lines


@pytest.mark.integration
def test_a_torn_last_log_line_does_not_stop_the_next_run(tmp_path):
    out = tmp_path / "run"
    pretrain_here(flags(out, "--max_steps", "2"))
    with (out / "log.jsonl").open("a") as f:
        f.write('{"kind": "train", "st')  # a kill or a full disk in the middle of a write
    (out / "log.txt").write_text('{"train_lr": 0.001, "train_loss": 0.5, "epoch": 0}\n{"train_lr": 0.0')
    assert mae.classify.best_logged_accuracy(out) == -math.inf
    with pytest.warns(UserWarning, match="left out 1 unreadable line"):
        pretrain_here(flags(out, "--max_steps", "4"))
    lines = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines if '"train"' in line] == [1, 2, 3, 4]


# --------------------------------------------------------------------------- 7. another architecture


def test_resume_from_another_model_names_the_file_and_the_differences(tmp_path):
    probe = mae.create_classifier("vit_tiny_patch8", num_classes=10, img_size=32, in_chans=1)
    torch.save({"model": probe.state_dict()}, tmp_path / "probe.pth")
    with pytest.raises(CheckpointError) as error:
        pretrain_here(flags(tmp_path / "a", "--resume", str(tmp_path / "probe.pth")))
    message = str(error.value)
    assert f"the weights in {tmp_path / 'probe.pth'} do not fit" in message
    assert (
        "decoder missing" in message and "unexpected classifier head" in message and "--finetune" in message
    )
    assert len(message.splitlines()) < 12
    mae.save_checkpoint(tmp_path / "mini.pth", mae.mae_vit_mini_patch8(img_size=32, in_chans=1))
    with pytest.raises(CheckpointError, match=r"(?s)mini\.pth do not fit.*another architecture"):
        pretrain_here(flags(tmp_path / "b", "--resume", str(tmp_path / "mini.pth")))


# --------------------------------------------------------------------------- 8. numeric flags


@pytest.mark.parametrize(
    "flag, value",
    [("--batch_size", "0"), ("--accum_iter", "0"), ("--save_every", "0"), ("--log_every", "0"),
     ("--save_epochs", "0"), ("--epochs", "0"), ("--max_steps", "0"), ("--batch_size", "-2"),
     ("--mask_ratio", "0"), ("--mask_ratio", "1"), ("--warmup_epochs", "-1"), ("--num_workers", "-1")],
)  # fmt: skip
def test_numeric_flags_are_checked_when_parsed(flag, value, capsys):
    with pytest.raises(SystemExit):
        pretrain.get_args_parser().parse_args([flag, value])
    assert f"argument {flag}: must be" in capsys.readouterr().err
    if flag != "--mask_ratio":  # the engine's flags: every job checks them
        with pytest.raises(SystemExit):
            finetune.get_args_parser().parse_args([flag, value])


# --------------------------------------------------------------------------- 9. --nb_classes


def test_fewer_classes_than_the_data_are_refused_before_training(tmp_path):
    with pytest.raises(
        ValueError, match=r"--nb_classes 5 is smaller than the 10 classes .*--nb_classes 10 or more"
    ):
        finetune.main([*CLASSIFIER, "--nb_classes", "5", "--output_dir", str(tmp_path)])
    assert not (tmp_path / "log.jsonl").exists()


# --------------------------------------------------------------------------- 10. NaN and Inf weights


def test_non_finite_weights_are_refused_by_name(tmp_path):
    classifier = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=32, in_chans=1)
    with torch.no_grad():
        classifier.head.weight[0, 0] = float("nan")
        classifier.blocks[1].attn.qkv.bias[:2] = float("inf")
    torch.save({"model": classifier.state_dict()}, tmp_path / "diverged.pth")
    with pytest.raises(CheckpointError, match=r"diverged\.pth holds non-finite .* in 2 tensors: blocks\.1\.attn\.qkv"
                                              r"\.bias \(0 NaN, 2 Inf of \d+\), head\.weight \(1 NaN, 0 Inf"):  # fmt: skip
        finetune.main(
            [*CLASSIFIER, "--eval", "--resume", str(tmp_path / "diverged.pth"), "--output_dir", str(tmp_path)]
        )

    model = mae.mae_vit_tiny_patch8(img_size=32, in_chans=1)
    with torch.no_grad():
        model.blocks[0].mlp.fc1.weight[0, 0] = float("nan")
    mae.save_checkpoint(tmp_path / "mae.pth", model)
    with pytest.raises(CheckpointError, match=r"mae\.pth holds non-finite .*blocks\.0\.mlp\.fc1\.weight"):
        mae.model_from_checkpoint(tmp_path / "mae.pth")
    with pytest.raises(
        CheckpointError, match=r"--finetune .*mae\.pth holds non-finite .*blocks\.0\.mlp\.fc1"
    ):
        finetune.main([*CLASSIFIER, "--model", "vit_tiny_patch8", "--finetune", str(tmp_path / "mae.pth"),
                       "--output_dir", str(tmp_path / "ft")])  # fmt: skip
    with pytest.raises(CheckpointError, match=r"mae\.pth holds non-finite"):
        pretrain_here(flags(tmp_path / "pre", "--resume", str(tmp_path / "mae.pth")))


@pytest.mark.integration
def test_a_nan_stop_before_any_checkpoint_says_there_is_none(tmp_path):
    mae.save_checkpoint(tmp_path / "mae.pth", mae.mae_vit_mini_patch8(img_size=32, in_chans=1))
    out = tmp_path / "ft"
    with pytest.raises(
        FloatingPointError, match=r"at step \d+ .*No checkpoint was written before it .*does not exist"
    ):
        finetune.main([*CLASSIFIER, "--finetune", str(tmp_path / "mae.pth"), "--lr", "1e30", "--warmup_epochs", "0",
                       "--max_steps", "20", "--output_dir", str(out)])  # fmt: skip
    assert not (out / LAST).exists()


# --------------------------------------------------------------------------- 11. a full disk


@pytest.mark.integration
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_named_and_the_previous_checkpoint_kept(tmp_path):
    out = tmp_path / "run"
    pretrain_here(flags(out, "--max_steps", "2"))
    # The next save writes its temporary file here; /dev/full answers every write with ENOSPC, as a full disk.
    (out / f".{LAST}.tmp-{os.getpid()}").symlink_to("/dev/full")
    with pytest.raises(OSError) as error:
        pretrain_here(flags(out, "--max_steps", "3"))
    message = str(error.value)
    assert error.value.errno == errno.ENOSPC
    assert f"could not save {out / LAST}: the disk is full" in message
    assert f"The previous {LAST} is intact" in message and "run the same command again" in message
    assert read_checkpoint(out / LAST)["step"] == 2
    assert not list(out.glob(".*.tmp-*"))


# --------------------------------------------------------------------------- 12. 16-bit images


def test_16_bit_pngs_are_scaled_to_8_bits(tmp_path):
    from mae.datasets import ImageFiles

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    (tmp_path / "train").mkdir()
    Image.fromarray(ramp).save(tmp_path / "train" / "depth.png")
    with Image.open(tmp_path / "train" / "depth.png") as raw:
        assert raw.mode.startswith("I")  # what Pillow gives for 16-bit PNGs
    image = ImageFiles(tmp_path)[0]
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert abs(rgb.mean() - ramp.mean() / 257) < 0.5 and rgb.min() == 0 and rgb.max() == 255


# --------------------------------------------------------------------------- 13. mae.submit without SLURM


def test_submit_without_slurm_refuses_unless_asked_to_run_locally(tmp_path, monkeypatch, capsys):
    import submitit

    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch
    argv = ["--output_dir", str(tmp_path / "run"), "--max_steps", "1"]
    with pytest.raises(SystemExit, match=r"no SLURM on this machine .*--local"):
        submit.main(argv)
    submitted = []
    monkeypatch.setattr(
        submitit.AutoExecutor,
        "submit",
        lambda self, trainer: submitted.append(trainer) or SimpleNamespace(job_id="7"),
    )
    submit.main([*argv, "--local"])
    assert "job 7 runs locally, in the background on this machine" in capsys.readouterr().out
    assert isinstance(submitted[0], submit.Trainer) and not hasattr(submitted[0].args, "local")


# --------------------------------------------------------------------------- autocast on CPUs


@pytest.mark.integration
def test_bf16_and_fp16_autocast_run_on_cpus(tmp_path):
    """The autocast and GradScaler paths, tested without a GPU: finite, and close to float32."""
    losses = {}
    for amp in ("none", "bf16", "fp16"):
        out = tmp_path / amp
        if amp == "none":
            pretrain_here(flags(out, "--max_steps", "3", "--amp", amp))
        else:
            with pytest.warns(UserWarning, match=f"--amp {amp} on cpu: it runs, but usually more slowly"):
                pretrain_here(flags(out, "--max_steps", "3", "--amp", amp))
        losses[amp] = [r["loss"] for r in records(out, "train")]
    for amp in ("bf16", "fp16"):
        assert all(math.isfinite(x) for x in losses[amp])
        assert losses[amp] == pytest.approx(losses["none"], rel=5e-3)
    scaler = read_checkpoint(tmp_path / "fp16" / LAST)["scaler"]
    assert scaler["scale"] > 0  # the GradScaler's state, saved for the resume
    with pytest.warns(UserWarning):
        pretrain_here(flags(tmp_path / "fp16", "--max_steps", "4", "--amp", "fp16"))
    assert steps(tmp_path / "fp16") == [1, 2, 3, 4]
