"""Resuming (mae.engine.resume): a run continues from its own checkpoint-last.pth, exactly as if never stopped
(kill -9 included, for pretraining, probing and fine-tuning); arguments that would change the results are
refused; a checkpoint of another model is named. Whole training jobs are marked `integration`.
"""

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from helpers import (
    LAST,
    ROOT,
    SMALL_CLASSIFIER,
    flags,
    losses,
    make_folder,
    pretrain_command,
    pretrain_here,
    run_command,
    run_here,
    steps,
)

import mae
from mae import finetune, linprobe
from mae.checkpoint import CheckpointError, read_checkpoint


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


@pytest.mark.integration
def test_kill_9_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    data = make_folder(tmp_path / "data")
    steps = ["--max_steps", "14", "--save_every", "3"]
    straight = tmp_path / "straight"
    run_here(pretrain_command(data, straight, *steps))
    reference = losses(straight)
    assert [s for s, _ in reference] == list(range(1, 15))
    epochs = [
        json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines() if '"epoch"' in line
    ]
    assert any(
        e["kind"] == "epoch" and e["skipped_images"] > 0 for e in epochs
    )  # the broken file was counted

    killed = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        pretrain_command(data, killed, *steps),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if (killed / "log.jsonl").exists() and len(losses(killed)) >= 8:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / "checkpoint-last.pth").exists()
    interrupted_at = torch.load(killed / "checkpoint-last.pth", weights_only=True)["step"]
    assert 0 < interrupted_at < 14
    result = run_command(
        pretrain_command(data, killed, *steps)
    )  # same command: resumes from checkpoint-last.pth by itself
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming at epoch" in result.stdout
    assert losses(killed) == reference  # every step's loss, bit for bit


def _weights(path):
    return read_checkpoint(path)["model"]


@pytest.mark.integration
@pytest.mark.parametrize("job", [linprobe, finetune])
def test_killed_run_resumes_exactly_and_eval_reads_the_checkpoint(job, pretrained, tmp_path):
    """Stopped after 2 steps and started again = 4 steps in one go (RandAugment, erasing, mixup, cutmix included)."""
    argv = [*SMALL_CLASSIFIER, "--finetune", str(pretrained), "--epochs", "2"]
    if job is finetune:
        argv += ["--mixup", "0.8", "--cutmix", "1.0", "--drop_path", "0.1"]
    else:
        argv += ["--lr", "1.0"]
    job.main([*argv, "--max_steps", "4", "--output_dir", str(tmp_path / "whole")])
    job.main([*argv, "--max_steps", "2", "--output_dir", str(tmp_path / "parts")])
    job.main([*argv, "--max_steps", "4", "--output_dir", str(tmp_path / "parts")])
    whole, parts = (
        _weights(tmp_path / "whole" / "checkpoint-last.pth"),
        _weights(tmp_path / "parts" / "checkpoint-last.pth"),
    )
    assert whole.keys() == parts.keys()
    for key in whole:
        assert torch.equal(whole[key], parts[key]), key
    log = (tmp_path / "parts" / "log.jsonl").read_text()
    assert log.count('"kind": "train"') == 4  # the resumed run dropped nothing and redid nothing

    stats = job.main([*SMALL_CLASSIFIER, "--eval", "--resume", str(tmp_path / "whole" / "checkpoint-last.pth"),
                      "--output_dir", str(tmp_path / "eval")])  # fmt: skip
    assert 0 <= stats["acc1"] <= stats["acc5"] <= 100


def test_another_spelling_of_the_same_data_folder_is_no_change(tmp_path, monkeypatch):
    from argparse import Namespace

    from mae.engine.resume import changed_arguments

    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    monkeypatch.chdir(tmp_path)
    saved = {"data_path": str(data), "finetune": "", "blr": 1e-3}
    for spelling in (f"{data}/", "data", "./data/", str(tmp_path / "link"), f"{tmp_path}/x/../data"):
        assert changed_arguments(Namespace(data_path=spelling, finetune="", blr=1e-3), saved) == [], spelling
    other = tmp_path / "other"
    other.mkdir()
    assert changed_arguments(Namespace(data_path=str(other), finetune="", blr=1e-3), saved) == [
        f"--data_path: {str(data)!r} in the checkpoint, {str(other)!r} now"
    ]
    assert changed_arguments(
        Namespace(data_path="builtin", finetune="", blr=1e-3), {"data_path": "builtin:digits"}
    )
