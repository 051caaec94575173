"""The training loop that pretraining, linear probing and fine-tuning share.

One loop, three jobs: each job builds its model, optimizer and data, and hands `fit` a
`compute_loss(model, batch)` and an `end_of_epoch` hook. What the loop guarantees holds
for all three:

- torchrun / SLURM data parallelism (DDP), gradient accumulation, bf16 or fp16 autocast;
- the learning rate set every iteration (warm-up, then half-cycle cosine), scaled per
  parameter group by its "lr_scale" (layer-wise decay in fine-tuning);
- `checkpoint-last.pth` written atomically every --save_every steps and every epoch,
  with the optimizer, scaler, position and every rank's RNG states, so that a killed run
  started again with the same command continues exactly where it stopped; the folder's own
  checkpoint-last.pth wins over --resume, which only names where a new run starts;
- SIGTERM, SIGUSR1 and SIGUSR2 (what SLURM and submitit send before a preemption or the time
  limit) finish the step in progress, save, and end the run with the signal's exit code;
- output_dir is locked while a run uses it, and a run whose result-changing arguments differ
  from those of the folder's checkpoint is refused (--allow_changed_args to go on anyway);
- no host synchronisation per step: the loss is summed on the device and read every
  --log_every steps; a non-finite loss is caught there (and before every checkpoint), named
  by its step, and the last good checkpoint is never overwritten;
- a batch without a readable image still takes its micro-step (with a weight of zero), so
  every rank takes every step; a figure or a log line that fails is a warning, not a stop;
- rank 0 alone writes JSON lines and TensorBoard logs.
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ..checkpoint import save_checkpoint
from ..data.pretraining import collate_skipping_unreadable
from . import distributed
from .checkpointer import Checkpointer
from .data import EpochSamples, ResumableSampler, WithEpoch, default_workers
from .logs import Log
from .precision import amp_dtype
from .preemption import Preempted, StopSignals, ignore_stop_signals
from .resume import LAST, Position, resume
from .run_folder import lock_output_dir
from .schedule import learning_rate, mean_epoch_lr, set_learning_rate
from .step import Losses, micro_step, optimizer_step


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
    # False where no trained weight's gradient passes through float16 (the linear probe's head runs in float32):
    # --amp fp16 then skips the GradScaler, whose step waits for the GPU every step with optimizers that have no
    # fused AMP support (LARS).
    scale_gradients: bool = True
    # More that every checkpoint records, JSON-like (a classifier's class names, in the order of its outputs).
    checkpoint_fields: dict = field(default_factory=dict)


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
    stop: StopSignals = field(default_factory=StopSignals)
    skipped: int = 0  # unreadable images so far
    loader_generator: torch.Generator = None  # the DataLoader's own seeds: never the global RNG
    stopping: bool = False  # a stop signal was received (by any rank) and the loop is leaving
    stand_in: tuple = None  # (epoch, a batch of one readable sample) for batches with no readable image
    loader: DataLoader = None  # made at the first epoch (epoch_loader), its workers kept to the end


def fit(args, context, job, *, write=save_checkpoint, clock=time.monotonic):
    """Train `job` until --epochs (or --max_steps), continuing from where a previous run in output_dir stopped.

    Raises Preempted after a stop signal, once the step in progress is finished and saved. `write(path, model,
    **extra)` writes each checkpoint (in the background thread) and `clock()` tells the seconds for --save_minutes:
    save_checkpoint and time.monotonic, unless a caller (a test) counts the writes or moves the time."""
    lock = lock_output_dir(args, context)
    try:
        with StopSignals() as stop:
            run = start(args, context, job, stop, write, clock)
            if nothing_to_train(run):
                return run.position
            try:
                train_epochs(run)
            except BaseException:
                run.checkpointer.wait(raise_errors=False)  # the last good state lands before the lock goes
                raise
            finally:
                stop_workers(run)
            run.checkpointer.wait()
        return finish(run)
    finally:
        lock.release()


def stop_workers(run):
    """End the data workers now, however the run ends. Left to the garbage collector, the persistent workers of a
    loader that the traceback of an error still holds (a NaN stop, Ctrl-C) outlive the run, and the process hangs
    at exit waiting for them."""
    iterator = getattr(run.loader, "_iterator", None)  # DataLoader's own, alive between epochs
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    run.loader = None


def train_epochs(run):
    args, position = run.args, run.position
    finished = False
    while position.epoch < args.epochs and not finished:
        finished = train_one_epoch(run)
        if run.stopping:
            break
        done = position.epoch
        epoch_over = not finished or position.step_in_epoch == run.steps_per_epoch
        keep = end_epoch(run) if epoch_over else False
        more = position.epoch < args.epochs and not finished
        stop, due = agree(run, sync_point=True) if more else (False, False)
        # Every epoch end saves, unless --save_minutes chose a time-based cadence; a kept epoch, the run's end
        # and a stop always do.
        if run.checkpointer.minutes is None or keep or not more or stop or due:
            run.checkpointer.save(position.epoch, position.step_in_epoch)
        if keep:
            run.checkpointer.keep(f"checkpoint-{done}.pth")
        if stop:
            run.stopping = True
            break
    if run.stopping:
        run.checkpointer.save(position.epoch, position.step_in_epoch)
        run.checkpointer.wait()  # written before the requeue: the next job resumes from it
        raise Preempted(run.stop.received, position.step, Path(args.output_dir) / LAST)


def nothing_to_train(run):
    """True (and said) when output_dir's run already reached --epochs or --max_steps."""
    args, position = run.args, run.position
    done = position.epoch >= args.epochs or (args.max_steps is not None and position.step >= args.max_steps)
    if done and run.context.is_main:
        print(f"nothing to train: the run in {args.output_dir} already ended (step {position.step}, epoch "
              f"{position.epoch}; --epochs {args.epochs}, --max_steps {args.max_steps}). To train further, raise "
              f"--max_steps (or --epochs, with --allow_changed_args); to train again from the start, give "
              f"another --output_dir.", flush=True)  # fmt: skip
    return done


def finish(run):
    args, context, position = run.args, run.context, run.position
    identical = distributed.replicas_identical(run.job.model, context)
    if context.is_main:
        run.log.write(
            {"kind": "end", "step": position.step, "epoch": position.epoch, "replicas_identical": identical}
        )
        print(
            f"done: {position.step} steps, {position.epoch} epochs; checkpoint {Path(args.output_dir) / LAST}",
            flush=True,
        )
    if not identical:
        raise RuntimeError("the ranks' parameters differ at the end of training")
    return position


def start(args, context, job, stop, write=save_checkpoint, clock=time.monotonic):
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
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16 and job.scale_gradients)
    position, resumed_from = resume(args, model, job.optimizer, scaler, context)
    train_model = torch.compile(model) if args.compile else model
    if context.distributed:
        ids = [device.index] if device.type == "cuda" else None  # not local_rank: one GPU per task is cuda:0
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
        Checkpointer(args, context, model, job.optimizer, scaler, losses, position, write=write, clock=clock,
                     fields=job.checkpoint_fields), Log(args, context, position),
        num_workers, stop, loader_generator=torch.Generator(),
    )  # fmt: skip


def train_one_epoch(run):
    """Train from the run's position to the end of its epoch, to --max_steps (then True), or to a stop signal
    (then run.stopping)."""
    args, job, position = run.args, run.job, run.position
    loader = epoch_loader(run)
    from tqdm.auto import tqdm

    progress = tqdm(total=run.steps_per_epoch, initial=position.step_in_epoch, desc=f"epoch {position.epoch}",
                    disable=not run.context.is_main)  # fmt: skip
    run.train_model.train()
    run.losses.new_epoch()
    job.optimizer.zero_grad(set_to_none=True)
    micro, finished = 0, False
    for batch in loader:
        if micro == 0:
            lr = learning_rate(position.epoch + position.step_in_epoch / run.steps_per_epoch, args)
            set_learning_rate(job.optimizer, lr)
        micro += 1
        forward_backward(run, batch, last=micro == args.accum_iter)
        if micro < args.accum_iter:
            continue
        micro = 0
        optimizer_step(job.model, job.optimizer, run.scaler, args.clip_grad)
        position.step, position.step_in_epoch = position.step + 1, position.step_in_epoch + 1
        run.losses.step += 1
        progress.update(1)
        finished = args.max_steps is not None and position.step >= args.max_steps
        ends = finished or position.step_in_epoch == run.steps_per_epoch  # train_epochs saves right after
        logged = position.step % args.log_every == 0 or ends
        if logged:
            log_window(run, lr, progress)
        if finished:
            break
        stop, due = agree(run, sync_point=logged)
        if stop:
            run.stopping = True
            break
        if (position.step % args.save_every == 0 or due) and not ends:
            run.checkpointer.save(position.epoch, position.step_in_epoch)
    progress.close()
    return finished


def epoch_loader(run):
    """The run's DataLoader (made once: its workers serve every epoch), set to the rest of the run's epoch."""
    args, job, position = run.args, run.job, run.position
    if hasattr(job.dataset, "set_epoch"):  # the main process's copy (the stand-in batch reads it)
        job.dataset.set_epoch(position.epoch)
    run.sampler.set_epoch(position.epoch)
    run.sampler.start = position.step_in_epoch * args.batch_size * args.accum_iter
    if run.loader is None:
        run.loader = DataLoader(
            EpochSamples(job.dataset), batch_size=args.batch_size, sampler=WithEpoch(run.sampler),
            num_workers=run.num_workers, pin_memory=args.pin_mem and run.context.device.type == "cuda",
            drop_last=True, collate_fn=job.collate, generator=run.loader_generator,
            persistent_workers=run.num_workers > 0, worker_init_fn=ignore_stop_signals,
        )  # fmt: skip
    return run.loader


def forward_backward(run, batch, last):
    """One micro-batch: forward, backward, its loss noted.

    A batch in which no image was readable is not skipped: a stand-in (one readable sample) takes its
    micro-step with a weight of zero. So every rank takes the same micro-steps (DDP averages gradients at
    an accumulation's last one, and a rank that skipped would pair its collectives with the wrong step of
    the others), and an accumulation keeps its length.
    """
    args, device = run.args, run.context.device
    batch = move(batch, run.job, device)
    images = 0 if batch is None else batch[0].shape[0]
    run.skipped += args.batch_size - images
    if batch is None:
        batch = stand_in(run)
    sync = run.train_model.no_sync() if run.context.distributed and not last else None
    amp = (device.type, run.dtype)
    loss = micro_step(run.train_model, run.job.compute_loss, batch, run.scaler, amp, args.accum_iter, sync,
                      weight=1 if images else 0)  # fmt: skip
    run.losses.add(loss, images)


def stand_in(run):
    """A batch of the epoch's first readable sample (the same after a resume, so resumes stay exact)."""
    epoch = run.position.epoch
    if run.stand_in is None or run.stand_in[0] != epoch:
        for index in range(len(run.job.dataset)):
            sample = run.job.dataset[index]
            batch = None if sample is None else move(run.job.collate([sample]), run.job, run.context.device)
            if batch is not None:
                run.stand_in = (epoch, batch)
                break
        else:
            raise ValueError(
                f"no readable image in --data_path {getattr(run.args, 'data_path', '')}: all "
                f"{len(run.job.dataset)} failed to open (see the warnings above)"
            )
    return run.stand_in[1]


def agree(run, sync_point):
    """(stop now for a stop signal, save now for --save_minutes). One process: as soon as it has one. Several:
    when any rank has one, decided at sync points only (log steps, epoch ends), where the ranks synchronise
    anyway; they must all stop (and save: a save is a collective) after the same step, and an all-reduce per
    step would cost a host sync per step. Both flags travel in one all-reduce."""
    flags = (bool(run.stop.received), run.checkpointer.due())
    if not run.context.distributed:
        return flags
    if not sync_point:
        return False, False
    tensor = torch.tensor([float(f) for f in flags], device=run.context.device)
    torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
    stop, due = tensor.tolist()
    return bool(stop), bool(due)


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
    loss = distributed.mean_across_ranks(loss, run.context)
    loss = None if math.isnan(loss) else loss  # no readable image in the window: null in the JSON, not NaN
    position = run.position
    record = {
        "kind": "train", "step": position.step, "epoch": position.epoch + position.step_in_epoch / run.steps_per_epoch,
        "loss": loss, "lr": lr, "images_per_s": images * run.context.world_size / seconds,
    }  # fmt: skip
    run.log.write(record)
    shown = "n/a" if loss is None else f"{loss:.4f}"
    progress.set_postfix(loss=shown, lr=f"{lr:.2e}", img_s=f"{record['images_per_s']:.0f}")
    run.losses.new_window()


def end_epoch(run):
    """After an epoch's last step: the job's evaluation and the logs; True when checkpoint-<epoch>.pth is due."""
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
        {
            "train_lr": mean_epoch_lr(done, run.steps_per_epoch, run.args),
            "train_loss": train_loss,
            **official,
            "epoch": done,
        }
    )
    if run.skipped and run.context.is_main:
        print(f"warning: {run.skipped} unreadable images skipped so far", flush=True)
    return position.epoch % args.save_epochs == 0 or position.epoch == args.epochs
