"""The training loop that pretraining, linear probing and fine-tuning share.

One loop, three jobs: each job builds its model, optimizer and data, and hands `fit` a
`compute_loss(model, batch)` and an `end_of_epoch` hook. What the loop guarantees holds
for all three:

- torchrun / SLURM data parallelism (DDP), gradient accumulation, bf16 or fp16 autocast;
- the learning rate set every iteration (warm-up, then half-cycle cosine), scaled per
  parameter group by its "lr_scale" (layer-wise decay in fine-tuning);
- `checkpoint-last.pth` written atomically every --save_every steps and every epoch,
  with the optimizer, scaler, position and every rank's RNG states, so that a killed run
  started again with the same command continues exactly where it stopped;
- no host synchronisation per step: the loss is summed on the device and read every
  --log_every steps; a non-finite loss is caught there (and before every checkpoint), named
  by its step, and the last good checkpoint is never overwritten;
- rank 0 alone writes JSON lines and TensorBoard logs.
"""

import contextlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed
from .checkpoint import read_checkpoint, save_checkpoint, state_dict_from
from .datasets import collate_skipping_unreadable

LAST = "checkpoint-last.pth"
# torch's fused AdamW kernel, per device type (docs/performance.md: it pays on CPUs too).
FUSED_ADAMW = {"cuda": True, "cpu": True}


def add_engine_args(p, *, epochs, warmup_epochs, batch_size, blr, weight_decay):
    """The flags every job shares, with the official names, meanings and each job's defaults."""
    p.add_argument(
        "--batch_size", type=int, default=batch_size, help="images per GPU (process) per micro-step"
    )
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--accum_iter", type=int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--input_size", type=int, default=224)
    p.add_argument("--weight_decay", type=float, default=weight_decay)
    p.add_argument("--lr", type=float, default=None, help="absolute learning rate (overrides --blr)")
    p.add_argument("--blr", type=float, default=blr, help="base lr: lr = blr * effective batch size / 256")
    p.add_argument("--min_lr", type=float, default=0.0)
    p.add_argument("--warmup_epochs", type=float, default=warmup_epochs)
    p.add_argument("--output_dir", default="./output_dir")
    p.add_argument("--log_dir", default=None, help="TensorBoard folder (default: output_dir)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", default="", help="checkpoint to start from (default: output_dir/checkpoint-last.pth if any)")  # fmt: skip
    p.add_argument("--start_epoch", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=None,
                   help="data-loading processes per GPU (default: this machine's cores per process, minus one, at most 10)")  # fmt: skip
    p.add_argument(
        "--pin_mem", action="store_true", default=True, help="pinned host memory for GPU transfers (default)"
    )
    p.add_argument("--no_pin_mem", action="store_false", dest="pin_mem")
    # Accepted so that the official commands run unchanged; torchrun or SLURM say how many processes there are.
    official = "accepted for the official commands; the processes are described by torchrun or SLURM (see mae.distributed)"
    p.add_argument("--world_size", type=int, default=1, help=official)
    p.add_argument("--local_rank", "--local-rank", type=int, default=-1, help=official)
    p.add_argument("--dist_on_itp", action="store_true", help=official)
    p.add_argument("--dist_url", default="env://", help=official)
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default=None,
                   help="mixed precision (default: bf16 on GPUs that support it, else none)")  # fmt: skip
    p.add_argument("--clip_grad", type=float, default=None)
    p.add_argument("--save_every", type=int, default=1000, help="optimizer steps between checkpoints")
    p.add_argument(
        "--save_epochs", type=int, default=20, help="keep checkpoint-<epoch>.pth every this many epochs"
    )
    p.add_argument("--max_steps", type=int, default=None, help="stop after this many optimizer steps in all")
    p.add_argument(
        "--log_every", type=int, default=10, help="optimizer steps between log lines (and host syncs)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    return p


# --------------------------------------------------------------------------- pieces


def default_workers(context):
    """Data-loading processes for each training process: the cores this process may use, shared by the
    processes on its node, minus one for the process itself, and at most 10 (the official default)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    per_process = cores // max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)
    return min(10, max(per_process - 1, 0))


def learning_rate(epoch, args):
    """Linear warm-up, then a half-cycle cosine to min_lr; `epoch` is fractional (per iteration)."""
    if epoch < args.warmup_epochs:
        return args.lr * epoch / args.warmup_epochs
    progress = (epoch - args.warmup_epochs) / max(args.epochs - args.warmup_epochs, 1e-8)
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can start part-way through an epoch (after a resume) and stop early.

    `stop` leaves out the samples of an epoch's last, incomplete accumulation: they would be
    loaded and computed only to be thrown away.
    """

    def __init__(self, dataset, num_replicas, rank, seed, shuffle=True, drop_last=True):
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.start, self.stop = 0, self.num_samples

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start : self.stop])

    def __len__(self):
        return max(self.stop - self.start, 0)


def amp_dtype(args, device):
    choice = args.amp or ("bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none")
    if choice != "none" and device.type != "cuda":
        raise ValueError(f"--amp {choice} needs a GPU; use --amp none on {device.type}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[choice]


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_states(device=None):
    """Every global generator's full state (numpy's includes its position and cached Gaussian: timm's mixup draws there)."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_position": [int(position), int(has_gauss), float(cached_gauss)],
        "python": list(random.getstate()[1]),
    }
    if device is not None and device.type == "cuda":  # this rank's GPU only: a resume may see fewer GPUs
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states, device=None):
    torch.set_rng_state(states["torch"])
    position, has_gauss, cached_gauss = states.get("numpy_position", (624, 0, 0.0))
    np.random.set_state(
        ("MT19937", states["numpy"].numpy().astype(np.uint32), position, has_gauss, cached_gauss)
    )
    random.setstate((3, tuple(states["python"]), None))
    if "cuda" in states and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)


class Log:
    """Rank 0's outputs: JSON lines (log.jsonl: every log step and epoch), the official log.txt (one JSON
    object per epoch: train_loss, train_lr, epoch, and the job's test_* fields), TensorBoard scalars and
    images. Other ranks write nothing."""

    def __init__(self, args, context, position):
        self.enabled = context.is_main
        if not self.enabled:
            return
        self.path = Path(args.output_dir) / "log.jsonl"
        self.official = Path(args.output_dir) / "log.txt"
        # Drop the lines of steps and epochs that the resumed run will redo.
        _keep_lines(self.path, lambda line: line.get("step", 0) <= position.step)
        _keep_lines(self.official, lambda line: line.get("epoch", 0) < position.epoch)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(args.log_dir or args.output_dir)

    def write(self, record, images=None):
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in record.items():
            if isinstance(value, float) and key != "epoch":
                self.writer.add_scalar(f"{record['kind']}/{key}", value, record["step"])
        if images is not None:
            self.writer.add_image("reconstruction", images, record["step"])
        self.writer.flush()

    def write_official(self, record):
        if self.enabled:
            with self.official.open("a") as f:
                f.write(json.dumps(record) + "\n")


def _keep_lines(path, keep):
    if path.exists():
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines if keep(line)))


@dataclass
class Position:
    """Where a run stands: optimizer steps in all, the epoch, and optimizer steps into that epoch."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0


def resume(args, model, optimizer, scaler, context):
    """Restore an explicit --resume, else output_dir's checkpoint-last.pth; returns (Position, path or "")."""
    last = Path(args.output_dir) / LAST
    path = args.resume or (str(last) if last.exists() else "")
    if not path:
        return Position(epoch=args.start_epoch), ""
    checkpoint = read_checkpoint(path, map_location="cpu")
    model.load_state_dict(state_dict_from(checkpoint, path))
    if "optimizer" in checkpoint:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])
    if "step" in checkpoint:  # this project's checkpoints: the exact position
        rngs = checkpoint["rng"]
        set_rng_states(rngs[context.rank] if context.rank < len(rngs) else rngs[0], context.device)
        return Position(checkpoint["step"], checkpoint["epoch"], checkpoint["step_in_epoch"]), path
    return Position(epoch=checkpoint.get("epoch", -1) + 1), path  # official files saved finished epochs


def checkpoint_args(args):
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


# --------------------------------------------------------------------------- the loop


@dataclass
class Job:
    """What a job hands to `fit`."""

    model: torch.nn.Module  # the bare model (its state dict is what checkpoints hold)
    optimizer: torch.optim.Optimizer
    dataset: torch.utils.data.Dataset  # yields tuples of tensors (or None for an unreadable sample)
    compute_loss: callable  # (train_model, *batch on device) -> scalar loss
    end_of_epoch: callable = (
        None  # (epoch index from 0, step) -> (log record fields, TensorBoard image or None)
    )
    official_fields: callable = None  # end_of_epoch's fields -> the official log.txt's (test_acc1, ...)
    name: str = "training"
    collate: callable = collate_skipping_unreadable
    prepare: callable = None  # (batch, device) -> tensors on the device, or None; default: move every tensor


# --------------------------------------------------------------------------- one optimizer step


def micro_step(train_model, compute_loss, batch, scaler, amp, accum_iter, sync=None):
    """Forward and backward of one micro-batch, its gradients added to the accumulated ones; returns the loss.

    amp is (device type, autocast dtype or None). `sync` is DDP's no_sync() on all but the last
    micro-batch of an accumulation: gradients are averaged across ranks once per optimizer step.
    """
    device_type, dtype = amp
    with (
        sync or contextlib.nullcontext(),
        torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        loss = compute_loss(train_model, *batch)
        scaler.scale(loss / accum_iter).backward()
    return loss.detach()


def optimizer_step(model, optimizer, scaler, clip_grad=None):
    """Apply the accumulated gradients (unscaled first, and clipped if asked) and clear them."""
    if clip_grad is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


def set_learning_rate(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # lr_scale: layer-wise decay in fine-tuning


# --------------------------------------------------------------------------- losses and checkpoints


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
        bad = (~torch.isfinite(loss)) & (self.first_bad[0] < 0)
        self.first_bad.copy_(torch.where(bad, torch.stack([self.step, loss.double()]), self.first_bad))
        self.window += loss.double()
        self.epoch += loss.double()
        self.window_micro, self.epoch_micro = self.window_micro + 1, self.epoch_micro + 1
        self.window_images += images

    def read_window(self):
        """(mean loss of the window, images in it, seconds it took): one host sync."""
        return (
            self.window.item() / self.window_micro,
            self.window_images,
            time.perf_counter() - self.window_start,
        )

    def read_epoch(self):
        return self.epoch.item() / max(self.epoch_micro, 1)


class Checkpointer:
    """checkpoint-*.pth in output_dir, written atomically by rank 0 with every rank's RNG states, and
    never after a non-finite loss: the last good checkpoint stays as it was."""

    def __init__(self, args, context, model, optimizer, scaler, losses, position):
        self.args, self.context, self.position, self.losses = args, context, position, losses
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.folder = Path(args.output_dir)

    def raise_if_non_finite(self):
        bad = self.losses.first_bad.clone()
        if self.context.distributed:  # every rank stops together, not only the one that saw it
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        step, value = bad.tolist()  # one host sync
        if step >= 0:
            raise FloatingPointError(
                f"loss is {value} at step {int(step)} (epoch {self.position.epoch}); stopping. The last good "
                f"checkpoint, {self.folder / LAST}, is untouched."
            )

    def save(self, name, epoch, step_in_epoch):
        self.raise_if_non_finite()
        rng = [rng_states(self.context.device)]
        if self.context.distributed:
            gathered = [None] * self.context.world_size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if self.context.is_main:
            save_checkpoint(
                self.folder / name, self.model, optimizer=self.optimizer.state_dict(),
                scaler=self.scaler.state_dict(), epoch=epoch, step_in_epoch=step_in_epoch,
                step=self.position.step, rng=rng, args=checkpoint_args(self.args),
            )  # fmt: skip


# --------------------------------------------------------------------------- the loop


@dataclass
class Run:
    """Everything one run's epochs share."""

    args: object
    context: object
    job: Job
    train_model: torch.nn.Module  # the model as trained: compiled and/or wrapped in DDP
    sampler: ResumableSampler
    steps_per_epoch: int
    dtype: object
    scaler: object
    position: Position
    losses: Losses
    checkpointer: Checkpointer
    log: Log
    num_workers: int
    skipped: int = 0  # unreadable images so far
    loader_generator: torch.Generator = None  # the DataLoader's own seeds: never the global RNG


def fit(args, context, job):
    """Train `job` until --epochs (or --max_steps), resuming from where a previous run stopped."""
    run = start(args, context, job)
    position = run.position
    finished = args.max_steps is not None and position.step >= args.max_steps
    while position.epoch < args.epochs and not finished:
        finished = train_one_epoch(run)
        if not finished or position.step_in_epoch == run.steps_per_epoch:
            end_epoch(run)
        run.checkpointer.save(LAST, position.epoch, position.step_in_epoch)
    identical = distributed.replicas_identical(job.model, context)
    if context.is_main:
        run.log.write(
            {"kind": "end", "step": position.step, "epoch": position.epoch, "replicas_identical": identical}
        )
        print(f"done: {position.step} steps, {position.epoch} epochs; checkpoint {Path(args.output_dir) / LAST}",
              flush=True)  # fmt: skip
    if not identical:
        raise RuntimeError("the ranks' parameters differ at the end of training")
    return position


def start(args, context, job):
    """Sampler, resume, DDP and logs: a Run ready for its first (or next) epoch."""
    device, model = context.device, job.model
    sampler = ResumableSampler(job.dataset, context.world_size, context.rank, args.seed)
    per_step = args.batch_size * args.accum_iter
    if sampler.num_samples < per_step:
        raise ValueError(
            f"{len(job.dataset)} images give {sampler.num_samples} per process, fewer than one optimizer step "
            f"(batch_size {args.batch_size} x accum_iter {args.accum_iter})"
        )
    steps_per_epoch = sampler.num_samples // per_step
    sampler.stop = steps_per_epoch * per_step  # whole optimizer steps only
    dtype = amp_dtype(args, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    position, resumed_from = resume(args, model, job.optimizer, scaler, context)
    train_model = torch.compile(model) if args.compile else model
    if context.distributed:
        ids = [context.local_rank] if device.type == "cuda" else None
        train_model = DistributedDataParallel(train_model, device_ids=ids)
    losses = Losses(device, position.step)
    num_workers = default_workers(context) if args.num_workers is None else args.num_workers
    if context.is_main:
        resuming = (
            f", resuming at epoch {position.epoch} step {position.step} from {resumed_from}"
            if resumed_from
            else ""
        )
        print(f"{job.name}: world size {context.world_size}, effective batch {per_step * context.world_size} "
              f"({args.batch_size} per process x {args.accum_iter} accumulation x {context.world_size}), "
              f"lr {args.lr:.3g} (blr {args.blr:.3g}), {steps_per_epoch} steps per epoch, device {device}, "
              f"amp {dtype}, {num_workers} data workers{resuming}", flush=True)  # fmt: skip
    return Run(
        args, context, job, train_model, sampler, steps_per_epoch, dtype, scaler, position, losses,
        Checkpointer(args, context, model, job.optimizer, scaler, losses, position), Log(args, context, position),
        num_workers, loader_generator=torch.Generator(),
    )  # fmt: skip


def train_one_epoch(run):
    """Train from the run's position to the end of its epoch (or to --max_steps); True if --max_steps was hit."""
    args, job, position, losses = run.args, run.job, run.position, run.losses
    device = run.context.device
    if hasattr(job.dataset, "set_epoch"):
        job.dataset.set_epoch(position.epoch)
    run.sampler.set_epoch(position.epoch)
    run.sampler.start = position.step_in_epoch * args.batch_size * args.accum_iter
    loader = DataLoader(
        job.dataset, batch_size=args.batch_size, sampler=run.sampler, num_workers=run.num_workers,
        pin_memory=args.pin_mem and device.type == "cuda", drop_last=True, collate_fn=job.collate,
        generator=run.loader_generator, persistent_workers=False,
    )  # fmt: skip
    from tqdm.auto import tqdm

    progress = tqdm(total=run.steps_per_epoch, initial=position.step_in_epoch, desc=f"epoch {position.epoch}",
                    disable=not run.context.is_main)  # fmt: skip
    run.train_model.train()
    losses.new_epoch()
    job.optimizer.zero_grad(set_to_none=True)
    micro, finished = 0, False
    for batch in loader:
        batch = move(batch, job, device)
        if batch is None:
            run.skipped += args.batch_size
            continue
        run.skipped += args.batch_size - batch[0].shape[0]
        if micro == 0:
            lr = learning_rate(position.epoch + position.step_in_epoch / run.steps_per_epoch, args)
            set_learning_rate(job.optimizer, lr)
        micro += 1
        last_micro = micro == args.accum_iter
        sync = run.train_model.no_sync() if run.context.distributed and not last_micro else None
        amp = (device.type, run.dtype)
        loss = micro_step(run.train_model, job.compute_loss, batch, run.scaler, amp, args.accum_iter, sync)
        losses.add(loss, batch[0].shape[0])
        if not last_micro:
            continue
        micro = 0
        optimizer_step(job.model, job.optimizer, run.scaler, args.clip_grad)
        position.step, position.step_in_epoch = position.step + 1, position.step_in_epoch + 1
        losses.step += 1
        progress.update(1)
        finished = args.max_steps is not None and position.step >= args.max_steps
        if position.step % args.log_every == 0 or position.step_in_epoch == run.steps_per_epoch or finished:
            log_window(run, lr, progress)
        if position.step % args.save_every == 0:
            run.checkpointer.save(LAST, position.epoch, position.step_in_epoch)
        if finished:
            break
    progress.close()
    return finished


def move(batch, job, device):
    """The batch on the training device (or None if every image in it was unreadable)."""
    if batch is None:
        return None
    if job.prepare:
        return job.prepare(batch, device)
    return [t.to(device, non_blocking=True) for t in batch]


def log_window(run, lr, progress):
    run.checkpointer.raise_if_non_finite()
    loss, images, seconds = run.losses.read_window()
    position = run.position
    record = {
        "kind": "train", "step": position.step, "epoch": position.epoch + position.step_in_epoch / run.steps_per_epoch,
        "loss": distributed.mean_across_ranks(loss, run.context), "lr": lr,
        "images_per_s": images * run.context.world_size / seconds,
    }  # fmt: skip
    run.log.write(record)
    progress.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", img_s=f"{record['images_per_s']:.0f}")
    run.losses.new_window()


def end_epoch(run):
    """After an epoch's last step: the job's evaluation, the logs, and checkpoint-<epoch>.pth when due."""
    args, position, losses = run.args, run.position, run.losses
    done = position.epoch  # epochs count from 0, as in the progress bar, the logs and checkpoint-N.pth
    position.epoch, position.step_in_epoch = position.epoch + 1, 0
    job = run.job
    fields, images = job.end_of_epoch(done, position.step) if job.end_of_epoch else ({}, None)
    record = {"kind": "epoch", "step": position.step, "epoch": done, "skipped_images": run.skipped}
    run.log.write({**record, **fields}, images)
    train_loss = distributed.mean_across_ranks(losses.read_epoch(), run.context)
    official = job.official_fields(fields) if job.official_fields else {}
    run.log.write_official(
        {"train_lr": lr_of_epoch(done, run), "train_loss": train_loss, **official, "epoch": done}
    )
    if run.skipped:
        print(f"warning: {run.skipped} unreadable images skipped so far", flush=True)
    if position.epoch % args.save_epochs == 0 or position.epoch == args.epochs:
        run.checkpointer.save(f"checkpoint-{done}.pth", position.epoch, 0)


def lr_of_epoch(epoch, run):
    """The mean learning rate of an epoch's steps (the official log.txt's train_lr)."""
    steps = run.steps_per_epoch
    return sum(learning_rate(epoch + i / steps, run.args) for i in range(steps)) / steps
