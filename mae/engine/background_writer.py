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

benchmarks/checkpoint_stall.py measures the stall (docs/performance.md).
"""

import copy
import threading
from collections import OrderedDict

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
