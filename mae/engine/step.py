"""One optimizer step: micro-steps (forward, backward, gradients accumulated under autocast), the step itself, and
the losses summed on the device so that no step waits for the host."""

import contextlib
import math
import time

import torch

from .precision import autocast

# torch's fused AdamW kernel, per device type (docs/performance.md: it pays on CPUs too).
FUSED_ADAMW = {"cuda": True, "cpu": True}


def micro_step(train_model, compute_loss, batch, scaler, amp, accum_iter, sync=None, weight=1):
    """Forward and backward of one micro-batch, its gradients added to the accumulated ones; returns the loss.

    amp is (device type, autocast dtype or None). `sync` is DDP's no_sync() on all but the last
    micro-batch of an accumulation: gradients are averaged across ranks once per optimizer step.
    weight=0 (a stand-in for a batch without readable images) adds zero gradients, but still takes part
    in DDP's all-reduce.
    """
    device_type, dtype = amp
    with sync or contextlib.nullcontext(), autocast(device_type, dtype):
        loss = compute_loss(train_model, *batch)
        scaled = loss / accum_iter
        scaler.scale(scaled if weight == 1 else scaled * weight).backward()
    return loss.detach()


def optimizer_step(model, optimizer, scaler, clip_grad=None):
    """Apply the accumulated gradients (unscaled first, and clipped if asked) and clear them."""
    if clip_grad is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


class Losses:
    """Losses summed on the device, over the log window and over the epoch, and the first non-finite one.

    Nothing here reads a value on the host, so a step never waits for the device; `read_window`
    (at log lines) and `first_non_finite` (before checkpoints) are the only syncs.
    """

    def __init__(self, device, step):
        self.window = torch.zeros((), dtype=torch.float64, device=device)
        self.epoch = torch.zeros((), dtype=torch.float64, device=device)
        self.first_bad = torch.full((2,), -1.0, dtype=torch.float64, device=device)  # (step, loss value)
        self.step = torch.full((), float(step), dtype=torch.float64, device=device)  # the step, on the device
        self.new_epoch()

    def new_epoch(self):
        self.epoch.zero_()
        self.epoch_micro = 0
        self.new_window()

    def new_window(self):
        self.window.zero_()
        self.window_micro, self.window_images, self.window_start = 0, 0, time.perf_counter()

    def add(self, loss, images):
        """Note a micro-batch's loss; a stand-in's (images=0) is checked for NaN but not counted."""
        bad = (~torch.isfinite(loss)) & (self.first_bad[0] < 0)
        # The step it belongs to, counted from 1 as checkpoints count steps (`step` is the number already done).
        self.first_bad.copy_(torch.where(bad, torch.stack([self.step + 1, loss.double()]), self.first_bad))
        if not images:
            return
        self.window += loss.double()
        self.epoch += loss.double()
        self.window_micro, self.epoch_micro = self.window_micro + 1, self.epoch_micro + 1
        self.window_images += images

    def read_window(self):
        """(mean loss of the window (NaN if no image in it was readable), images in it, seconds): one host sync."""
        total = self.window.item()
        return (
            total / self.window_micro if self.window_micro else math.nan,
            self.window_images,
            time.perf_counter() - self.window_start,
        )

    def read_epoch(self):
        return self.epoch.item() / max(self.epoch_micro, 1)
