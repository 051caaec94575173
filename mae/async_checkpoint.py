"""Checkpoints that do not stop training: the state is copied to host memory, then written by a background thread.

A ViT-L checkpoint with its AdamW state is about 4 GB. Written synchronously at every epoch end, all ranks wait for
rank 0's torch.save and fsync; with this module rank 0 waits only for a copy of the state into host buffers that
it allocated once (on GPUs, pinned memory and asynchronous copies: the copy is queued behind the step on the
training stream, and the writer thread waits for it, not the training thread), then goes on training while the
thread writes the file through the usual atomic save (a temporary file, fsync, rename).

What stays as it was: one write at a time (a new snapshot waits for the previous write, whose buffers it
reuses), the order of writes and links, and the exact resume. The training thread waits for the writer before
the next snapshot, before the run ends (normally, by a stop signal or an error), and learns there of a write
that failed.

    python -m mae.async_checkpoint --model mae_vit_large_patch16   # the stall, measured (docs/performance.md)
"""

import argparse
import copy
import json
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch


class FrozenModel:
    """What save_checkpoint asks of a model (its state dict and config), from a snapshot."""

    def __init__(self, state, config):
        self.state, self.config = state, config

    def state_dict(self):
        return self.state


class HostBuffers:
    """Host copies of a nest of dicts, lists and tensors, into buffers kept from one snapshot to the next (keyed
    by the tensor's place in the nest): allocating and pinning 4 GB every epoch would cost more than the copy."""

    def __init__(self):
        self.buffers = {}

    def snapshot(self, obj):
        """(a copy of obj whose tensors live in host buffers, a function that waits until the copy is complete)."""
        on_gpu = []
        copied = self._copy(obj, (), on_gpu)
        if not on_gpu:
            return copied, lambda: None
        events = []
        for device in set(on_gpu):  # each GPU's copies were queued on that GPU's current stream
            events.append(torch.cuda.Event())
            events[-1].record(
                torch.cuda.current_stream(device)
            )  # behind the copies (and the steps before them)
        return copied, lambda: [event.synchronize() for event in events]

    def _copy(self, obj, key, on_gpu):
        if isinstance(obj, torch.Tensor):
            return self._copy_tensor(obj, key, on_gpu)
        if isinstance(obj, dict):
            copied = type(obj)() if isinstance(obj, OrderedDict) else {}
            for name, value in obj.items():
                copied[name] = self._copy(value, (*key, name), on_gpu)
            if hasattr(obj, "_metadata"):  # a state dict's module versions, which load_state_dict reads
                copied._metadata = copy.deepcopy(obj._metadata)
            return copied
        if isinstance(obj, (list, tuple)):
            return type(obj)(self._copy(value, (*key, i), on_gpu) for i, value in enumerate(obj))
        return copy.deepcopy(obj)  # numbers, strings, None: the training thread may change the originals

    def _copy_tensor(self, tensor, key, on_gpu):
        tensor = tensor.detach()
        pinned = tensor.is_cuda  # pinned host memory: the copy from the GPU is asynchronous, and faster
        buffer = self.buffers.get(key)
        if buffer is None or (buffer.shape, buffer.dtype, buffer.is_pinned()) != (
            tensor.shape,
            tensor.dtype,
            pinned,
        ):
            buffer = self.buffers[key] = torch.empty_like(tensor, device="cpu", pin_memory=pinned)
        buffer.copy_(tensor, non_blocking=pinned)
        if pinned:
            on_gpu.append(tensor.device)
        return buffer


class BackgroundWriter:
    """Writes checkpoints in background threads, one job after another.

    `save` waits for the jobs before it (its snapshot reuses their buffers), copies the state to host memory
    and hands the write to a thread; `then` queues a job (a hard link, say) behind the writes without waiting;
    `wait` blocks until every job is done and raises the first failure there, in the training thread.
    """

    def __init__(self):
        self.buffers = HostBuffers()
        self.thread, self.error = None, None

    def save(self, write, model, extra):
        """write(FrozenModel, extra) in the background, with a host snapshot of model's state and of extra
        (dicts, lists, tensors, numbers: the optimizer's state, RNG states, arguments)."""
        self.wait()
        config = copy.deepcopy(getattr(model, "config", None))
        state, ready = self.buffers.snapshot({"model": model.state_dict(), "extra": extra})

        def job():
            ready()
            write(FrozenModel(state["model"], config), state["extra"])

        self.then(job)

    def then(self, job, *args):
        """job(*args) in the background once the jobs before it are done; skipped if one of them failed."""
        previous = self.thread

        def run():
            if previous is not None:
                previous.join()
            if self.error is not None:
                return
            try:
                job(*args)
            except BaseException as error:  # noqa: BLE001 - handed to the training thread by wait()
                self.error = error

        # A daemon thread: an interpreter leaving without wait() (an unhandled error elsewhere) is not held
        # by it; the temporary file it leaves is removed when the next run starts.
        self.thread = threading.Thread(target=run, name="checkpoint-writer", daemon=True)
        self.thread.start()

    def wait(self, raise_errors=True):
        """Block until every job is done. A failed one raises here (raise_errors), else is returned."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        error, self.error = self.error, None
        if error is not None and raise_errors:
            raise error
        return error

    @property
    def pending(self):
        return self.thread is not None and self.thread.is_alive()


# --------------------------------------------------------------------------- the measurement


def training_state(model_name, device="cpu"):
    """A model and an AdamW optimizer whose state is filled (one step on zero gradients: no forward pass)."""
    from .models import create_model

    model = create_model(model_name).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def busy_work(seconds, size=256):
    """Steps of a stand-in training loop (small matrix products and Python between them) for `seconds`; returns
    the steps per second, to see how much a background write slows the loop beside it."""
    a = torch.randn(size, size)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a = torch.tanh(a @ a.T / size)
        steps += 1
    return steps / (time.perf_counter() - start)


def timed_write(path, written):
    """A write function for BackgroundWriter.save that notes when it ended."""
    from .checkpoint import save_checkpoint

    def write(model, extra):
        save_checkpoint(path, model, **extra)
        written.append(time.perf_counter())

    return write


def measure(model_name, folder, rounds=2, alone_seconds=2.0, device="cpu"):
    """Seconds the training thread is held by a synchronous save and by a background one, and how fast a
    stand-in loop runs beside the background write (relative to alone). On a GPU the state lives there, and the
    snapshot is the copy into pinned host buffers that the training thread only queues."""
    from .checkpoint import save_checkpoint

    model, optimizer = training_state(model_name, device)
    path = Path(folder) / "checkpoint-last.pth"
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    size += sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values())
    extra = lambda: dict(optimizer=optimizer.state_dict(), step=1)  # noqa: E731
    result = {"model": model_name, "device": str(device), "state_gb": size / 1e9, "sync_s": [], "blocked_first_s": [], "blocked_s": [], "write_s": [],
              "gpu_copy_s": [], "loop_alone": busy_work(alone_seconds), "loop_during_write": []}  # fmt: skip
    for _ in range(rounds):
        start = time.perf_counter()
        save_checkpoint(path, model, **extra())
        result["sync_s"].append(time.perf_counter() - start)
        writer = BackgroundWriter()
        for first_snapshot in (True, False):  # the first allocates the host buffers; later ones reuse them
            written = []  # when the background write ended
            start = time.perf_counter()
            writer.save(timed_write(path, written), model, extra())
            blocked = time.perf_counter() - start
            if (
                torch.device(device).type == "cuda"
            ):  # the copy itself runs on the GPU's stream, after `blocked`
                torch.cuda.synchronize()
                result["gpu_copy_s"].append(time.perf_counter() - start)
            rate = [busy_work(0.2)]
            while writer.pending:
                rate.append(busy_work(0.2))
            writer.wait()
            if first_snapshot:
                result["blocked_first_s"].append(blocked)
            else:
                result["blocked_s"].append(blocked)
                result["write_s"].append(written[0] - start)
                result["loop_during_write"].append(sum(rate) / len(rate))
        del writer
    return result


def main(argv=None):
    p = argparse.ArgumentParser(
        description="the training-loop stall of a checkpoint: synchronous vs background"
    )
    p.add_argument("--model", default="mae_vit_large_patch16")
    p.add_argument("--folder", default=None, help="where to write (default: a temporary folder)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--device", default="cpu", help="where the model and its optimizer live (cpu, cuda)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        result = measure(args.model, folder, args.rounds, device=args.device)
    print(f"{result['model']} on {result['device']}: {result['state_gb']:.2f} GB of weights and AdamW state")
    print(f"  synchronous save, training blocked (s):    {', '.join(f'{s:.2f}' for s in result['sync_s'])}")
    print(
        f"  background save, training blocked (s):     {', '.join(f'{s:.2f}' for s in result['blocked_s'])} "
        f"(the first, which allocates the buffers: {', '.join(f'{s:.2f}' for s in result['blocked_first_s'])})"
    )
    if result["gpu_copy_s"]:  # what the GPU's stream spends copying, which the next step queues behind
        print(
            f"  background save, the copy from the GPU (s): {', '.join(f'{s:.2f}' for s in result['gpu_copy_s'])}"
        )
    print(f"  background save, until written (s):        {', '.join(f'{s:.2f}' for s in result['write_s'])}")
    during = ", ".join(f"{r / result['loop_alone']:.2f}" for r in result["loop_during_write"])
    print(f"  a stand-in loop beside the write, speed:   {during} of its speed alone")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
