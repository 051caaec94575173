"""When and how training state is written (mae.engine.checkpointer, mae.engine.background_writer): the save
cadence (--save_every, --save_epochs, --save_minutes), each state written once, in the background from reused
host buffers, in order, atomically; a write that fails (a kill, a full disk) leaves the previous checkpoint.

The engine's writer and clock are passed in (pretrain.main(..., write=, clock=)) where a test counts the
writes or makes the minutes pass. Whole training jobs are marked `integration`.
"""

import errno
import itertools
import os
import signal
import threading
import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from helpers import LAST, TINY_DIGITS, flags, image_folder, pretrain_here, run, spawn

import mae
from mae import pretrain
from mae.checkpoint import read_checkpoint, save_checkpoint
from mae.engine.background_writer import BackgroundWriter, HostBuffers


def test_a_snapshot_is_a_copy_in_reused_host_buffers():
    buffers = HostBuffers()
    state = OrderedDict(w=torch.arange(6.0).reshape(2, 3).t(), step=torch.tensor(3))
    state._metadata = {"": {"version": 1}}
    nest = {"model": state, "groups": [{"lr": 0.1, "params": [0, 1]}], "note": "x"}
    copy, ready = buffers.snapshot(nest)
    ready()
    state["w"].add_(100)  # the next optimizer step, in place
    nest["groups"][0]["lr"] = 0.2
    assert torch.equal(copy["model"]["w"], torch.arange(6.0).reshape(2, 3).t())
    assert copy["groups"] == [{"lr": 0.1, "params": [0, 1]}] and copy["model"]._metadata == state._metadata
    again, _ = buffers.snapshot(nest)
    assert again["model"]["w"].data_ptr() == copy["model"]["w"].data_ptr()  # allocated once
    assert torch.equal(again["model"]["w"], state["w"])


def test_training_goes_on_while_the_write_holds_the_state_it_was_given(tmp_path):
    """The save returns while the write is still blocked; the model then changes (as the next steps change it),
    and the file holds the state of the moment of the save, written atomically."""
    model = mae.create_model("mae_vit_tiny_patch8", img_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    release, writer, path = threading.Event(), BackgroundWriter(), tmp_path / LAST

    def slow_write(frozen, extra):
        assert release.wait(60)
        save_checkpoint(path, frozen, **extra)

    writer.save(slow_write, model, {"step": torch.tensor(7), "args": {"seed": 0}})
    assert writer.pending and not path.exists()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(1.0)
    release.set()
    writer.wait()
    saved = read_checkpoint(path)
    assert saved["step"] == 7 and saved["model_config"] == model.config
    assert all(torch.equal(saved["model"][k], before[k]) for k in before)
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_writes_keep_their_order_and_a_failure_reaches_the_training_thread(tmp_path):
    writer, done = BackgroundWriter(), []
    writer.then(lambda: (time.sleep(0.2), done.append("first")))
    writer.then(done.append, "second")  # queued behind, without waiting
    writer.wait()
    assert done == ["first", "second"]

    def full_disk():
        raise OSError(28, "could not save checkpoint-last.pth: the disk is full")

    writer.then(full_disk)
    writer.then(done.append, "link")  # not linked: the file it names was not written
    with pytest.raises(OSError, match="the disk is full"):
        writer.wait()
    assert done == ["first", "second"]
    writer.wait()  # raised once; the writer goes on
    writer.save(lambda frozen, extra: done.append(extra["step"]), torch.nn.Linear(2, 2), {"step": 1})
    writer.wait()
    assert done[-1] == 1


def test_a_new_save_waits_for_the_write_in_progress(tmp_path):
    """The snapshot reuses the previous one's buffers: it must not overwrite them while they are being written."""
    model, writer, seen = torch.nn.Linear(2, 2), BackgroundWriter(), []
    release = threading.Event()

    def first(frozen, extra):
        assert release.wait(60)
        seen.append(frozen.state_dict()["weight"].clone())

    writer.save(first, model, {})
    expected = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1)
    second = threading.Thread(
        target=writer.save, args=(lambda f, e: seen.append(f.state_dict()["weight"].clone()), model, {})
    )
    second.start()
    time.sleep(0.2)
    assert second.is_alive()  # blocked behind the first write
    release.set()
    second.join(60)
    writer.wait()
    assert torch.equal(seen[0], expected) and torch.equal(seen[1], model.weight.detach())


def test_save_minutes_is_checked_when_parsed():
    parser = pretrain.get_args_parser()
    assert parser.parse_args(["--save_minutes", "30"]).save_minutes == 30
    for bad in ("0", "-1", "nan"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--save_minutes", bad])


def count_writes():
    """(written, write): a checkpoint writer for the engine (write=) that records (step, epoch, step_in_epoch) of
    each checkpoint it writes, and writes it with mae.checkpoint.save_checkpoint, as the engine's own writer does."""
    written = []

    def counted(path, model, **extra):
        written.append((extra["step"], extra["epoch"], extra["step_in_epoch"]))
        return save_checkpoint(path, model, **extra)

    return written, counted


@pytest.mark.integration
def test_save_minutes_replaces_the_epoch_end_saves(tmp_path, no_launcher):
    """4-step epochs (16 images, batch 4): every epoch end saves by default; with --save_minutes only the kept
    epochs, the end of the run, and the log steps and epoch ends at which the minutes have passed."""
    from PIL import Image

    data = tmp_path / "data"
    data.mkdir()
    for i in range(16):
        Image.new("RGB", (40, 40), (i * 15, 0, 0)).save(data / f"{i:02d}.png")
    argv = [*TINY_DIGITS, "--data_path", str(data), "--device", "cpu", "--batch_size", "4", "--epochs", "3",
            "--save_epochs", "2", "--save_every", "100"]  # fmt: skip
    written, counted = count_writes()
    pretrain_here([*argv, "--output_dir", str(tmp_path / "every_epoch")], write=counted)
    assert written == [(4, 1, 0), (8, 2, 0), (12, 3, 0)]
    written.clear()
    pretrain_here([*argv, "--output_dir", str(tmp_path / "timed"), "--save_minutes", "600"], write=counted)
    assert written == [(8, 2, 0), (12, 3, 0)]  # the kept epoch (checkpoint-1.pth) and the end only
    assert read_checkpoint(tmp_path / "timed" / "checkpoint-1.pth")["step"] == 8
    written.clear()
    hours = itertools.count(0, 3600)  # a clock an hour later at every reading: --save_minutes 1 is always due
    often = [*argv, "--output_dir", str(tmp_path / "often"), "--save_minutes", "1"]
    pretrain_here(often, write=counted, clock=lambda: float(next(hours)))
    assert [step for step, _, _ in written] == list(range(1, 13))  # at every log step (--log_every 1)


@pytest.mark.integration
def test_each_state_is_written_once(tmp_path):
    """A run ending on a --save_every multiple, and epoch ends, used to write the same state twice;
    checkpoint-<epoch>.pth is now a link to checkpoint-last.pth, not a second write."""
    data = image_folder(tmp_path / "data", good=16)
    written = []

    def counted(path, model, **extra):
        written.append((Path(path).name, extra["step"], extra["epoch"], extra["step_in_epoch"]))
        return save_checkpoint(path, model, **extra)

    out = tmp_path / "run"
    pretrain_here(
        flags(
            out, "--batch_size", "4", "--epochs", "2", "--save_every", "2", "--save_epochs", "1", data=data
        ),
        write=counted,
    )
    assert written == [(LAST, 2, 0, 2), (LAST, 4, 1, 0), (LAST, 6, 1, 2), (LAST, 8, 2, 0)]
    assert [read_checkpoint(out / f"checkpoint-{e}.pth")["step"] for e in (0, 1)] == [4, 8]


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
