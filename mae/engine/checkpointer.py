"""The run's checkpoint-last.pth: when it is written (--save_every, epoch ends, --save_minutes, stops), never after
a non-finite loss, with every rank's RNG states, by a background thread (background_writer.py)."""

import time
import warnings
from pathlib import Path

import torch

from ..checkpoint import link_or_copy, non_finite_tensors, save_checkpoint
from ..models import whose_code
from .background_writer import BackgroundWriter
from .resume import LAST, checkpoint_args
from .rng import rng_states


class Checkpointer:
    """checkpoint-last.pth in output_dir, written atomically by rank 0 with every rank's RNG states, never twice
    for the same position, and never after a non-finite loss: the last good checkpoint stays as it was.

    Rank 0 copies the state to host memory and a background thread writes it (background_writer.py): training
    goes on during the write. wait() blocks until the writes are done, and raises a failed one.

    write(path, model, **extra) writes one checkpoint (save_checkpoint); clock() gives the seconds that
    --save_minutes counts (time.monotonic). Both are arguments so that a test can count writes or move time."""

    def __init__(self, args, context, model, optimizer, scaler, losses, position, *, write=save_checkpoint,
                 clock=time.monotonic, fields=None):  # fmt: skip
        self.args, self.context, self.position, self.losses = args, context, position, losses
        self.fields = dict(fields or {})  # recorded in every checkpoint beside the run's state
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.folder = Path(args.output_dir)
        self.saved_at = (
            None  # (step, epoch, step in epoch) that checkpoint-last.pth holds, if this run wrote it
        )
        self.writer, self.write, self.clock = BackgroundWriter(), write, clock
        self.minutes = getattr(args, "save_minutes", None)
        # For --save_minutes: a run's first timed save comes that long after its start.
        self.last_save = clock()

    def raise_if_non_finite(self):
        bad = self.losses.first_bad.clone()
        if self.context.distributed:  # every rank stops together, not only the one that saw it
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        step, value = bad.tolist()  # one host sync
        if step >= 0:
            raise FloatingPointError(
                f"loss is {value} at step {int(step)} (epoch {self.position.epoch}); stopping. {self._kept()}"
            )

    def raise_if_weights_non_finite(self):
        """Before a save: weights or optimizer states with NaN or Inf after a step whose loss was finite (an update
        that overflowed, a learning rate far too large) are never written over the last good checkpoint."""
        tensors = [p for p in self.model.parameters()] + [
            t for state in self.optimizer.state.values() for t in state.values()
            if torch.is_tensor(t) and t.is_floating_point()
        ]  # fmt: skip
        if torch.stack([t.isfinite().all() for t in tensors]).all():  # one host sync
            return
        bad = non_finite_tensors(self.model.state_dict()) or ["the optimizer's moments"]
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise FloatingPointError(
            f"the weights hold NaN or Inf after step {self.position.step} (epoch {self.position.epoch}), whose loss "
            f"was finite: the update overflowed (is the learning rate far too large?): {shown}; stopping without "
            f"saving them. {self._kept()}"
        )

    def _kept(self):
        """What a non-finite stop leaves, said once the write of a good state in progress has landed."""
        self.wait(raise_errors=False)
        last = self.folder / LAST
        if not last.exists():
            return f"No checkpoint was written before it ({last} does not exist)."
        return f"The last good checkpoint, {last}, is untouched."

    def due(self):
        """True when --save_minutes have passed since the last save (this rank's clock; see agree())."""
        return self.minutes is not None and self.clock() - self.last_save >= 60 * self.minutes

    def save(self, epoch, step_in_epoch):
        """checkpoint-last.pth at (epoch, step_in_epoch), unless it already holds exactly that."""
        at = (self.position.step, epoch, step_in_epoch)
        if at == self.saved_at:  # a run ending on a --save_every multiple, a stop right after a save
            return
        self.raise_if_non_finite()
        self.raise_if_weights_non_finite()
        rng = [rng_states(self.context.device)]
        if self.context.distributed:
            gathered = [None] * self.context.world_size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if self.context.is_main:
            extra = dict(optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(), epoch=epoch,
                         step_in_epoch=step_in_epoch, step=self.position.step, rng=rng,
                         args=checkpoint_args(self.args), model_code=whose_code(self.model), **self.fields)  # fmt: skip
            path = self.folder / LAST
            self.writer.save(lambda model, extra: self.write(path, model, **extra), self.model, extra)
        self.saved_at, self.last_save = at, self.clock()

    def keep(self, name):
        """The checkpoint-last.pth just saved, kept as `name` too (a hard link: the same bytes, not written twice),
        once its write is done."""
        if self.context.is_main:
            self.writer.then(link_or_copy, self.folder / LAST, self.folder / name)

    def wait(self, raise_errors=True):
        """Block until the writes in progress are done. A failed write raises here, or, with raise_errors=False
        (another error is on its way out), is a warning."""
        error = self.writer.wait(raise_errors=raise_errors)
        if error is not None:
            warnings.warn(f"a checkpoint write failed too ({type(error).__name__}: {error})", stacklevel=2)
