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

import argparse
import contextlib
import json
import math
import os
import random
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed
from .async_checkpoint import BackgroundWriter
from .checkpoint import (
    CheckpointError,
    check_finite,
    link_or_copy,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    state_dict_from,
)
from .datasets import collate_skipping_unreadable
from .preemption import Preempted, StopSignals, exit_for_requeue, ignore_stop_signals
from .run_folder import lock_output_dir

LAST = "checkpoint-last.pth"
# torch's fused AdamW kernel, per device type (docs/performance.md: it pays on CPUs too).
FUSED_ADAMW = {"cuda": True, "cpu": True}
# Arguments that do not change what a run computes: they may differ when a run in output_dir is continued.
# Every other argument (model, data, batch, schedule, seed, loss, ...) must match the checkpoint's.
RESULT_NEUTRAL_ARGS = {
    "output_dir", "log_dir", "resume", "start_epoch", "max_steps", "save_every", "save_epochs", "log_every",
    "num_workers", "pin_mem", "device", "compile", "world_size", "local_rank", "dist_on_itp", "dist_url",
    "dist_eval", "eval", "save_best", "allow_changed_args", "preset", "effective_batch", "save_minutes",
}  # fmt: skip


def positive_int(text):
    """argparse type: an integer of at least 1 (a 0 here divides by zero, or trains nothing, much later)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def non_negative_float(text):
    value = float(text)
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def positive_float(text):
    value = float(text)
    if not 0 < value < math.inf:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def add_engine_args(p, *, epochs, warmup_epochs, batch_size, blr, weight_decay):
    """The flags every job shares, with the official names, meanings and each job's defaults."""
    p.add_argument(
        "--batch_size", type=positive_int, default=batch_size, help="images per GPU (process) per micro-step"
    )
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--accum_iter", type=positive_int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--input_size", type=positive_int, default=224)
    p.add_argument("--weight_decay", type=non_negative_float, default=weight_decay)
    p.add_argument(
        "--lr", type=non_negative_float, default=None, help="absolute learning rate (overrides --blr)"
    )
    p.add_argument(
        "--blr", type=non_negative_float, default=blr, help="base lr: lr = blr * effective batch size / 256"
    )
    p.add_argument("--min_lr", type=non_negative_float, default=0.0)
    p.add_argument("--warmup_epochs", type=non_negative_float, default=warmup_epochs)
    p.add_argument("--output_dir", default="./output_dir")
    p.add_argument("--log_dir", default=None, help="TensorBoard folder (default: output_dir)")
    p.add_argument("--device", default="auto",
                   help="auto (default): cuda if the training process sees a GPU, else cpu, decided in each "
                        "training process (not where the command is parsed or submitted); cuda, cuda:N, cpu")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start_epoch", type=non_negative_int, default=0)
    p.add_argument("--num_workers", type=non_negative_int, default=None,
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
                   help="mixed precision (default: bf16 on GPUs that compute it natively, fp16 with a "
                        "gradient scaler on older GPUs, none on CPUs; none on a GPU is float32 with TF32 "
                        "matrix products)")  # fmt: skip
    p.add_argument("--clip_grad", type=non_negative_float, default=None)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    return add_run_args(p)


def add_run_args(p):
    """The flags about the run itself: where it starts, when it saves, logs and stops."""
    p.add_argument("--resume", default="",
                   help="checkpoint a new run starts from; a run that already has output_dir/checkpoint-last.pth "
                        "continues from that, its newest state")  # fmt: skip
    p.add_argument("--allow_changed_args", action="store_true",
                   help="continue the run in output_dir even though arguments that change the result (--epochs, "
                        "--blr, ...) differ from those in its checkpoint")  # fmt: skip
    p.add_argument(
        "--save_every", type=positive_int, default=1000, help="optimizer steps between checkpoints"
    )
    p.add_argument("--save_minutes", type=positive_float, default=None,
                   help="save checkpoint-last.pth when this many minutes have passed since the last save "
                        "(checked at log steps and epoch ends) instead of at every epoch end; --save_every, the "
                        "kept epochs (--save_epochs), the run's end and stop signals still save")  # fmt: skip
    p.add_argument(
        "--save_epochs",
        type=positive_int,
        default=20,
        help="keep checkpoint-<epoch>.pth every this many epochs",
    )
    p.add_argument(
        "--max_steps", type=positive_int, default=None, help="stop after this many optimizer steps in all"
    )
    p.add_argument(
        "--log_every",
        type=positive_int,
        default=10,
        help="optimizer steps between log lines (and host syncs; multi-process runs also agree on stopping there)",
    )
    return p


# --------------------------------------------------------------------------- pieces


def default_workers(context):
    """Data-loading processes for each training process: the cores this process may use, shared by the
    processes on its node, minus one for the process itself, and at most 10 (the official default).

    The cores: this process's CPU affinity, and no more than SLURM_CPUS_PER_TASK where SLURM gave the task
    that many but does not bind it to them (mae.submit's 10 CPUs per task would otherwise get 10 workers
    beside the training process); torchrun's processes (LOCAL_WORLD_SIZE) share them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        cores = min(cores, int(os.environ["SLURM_CPUS_PER_TASK"]))
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


def default_amp(device):
    """bf16 on GPUs that compute it natively (compute capability 8.0 and later, ROCm), fp16 with the GradScaler
    on older ones, none on CPUs. Not torch.cuda.is_bf16_supported()'s default: it also says True where bf16
    is only emulated (V100, T4), which has no bf16 tensor cores and sends attention to the slow math kernel."""
    if device.type != "cuda":
        return "none"
    return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"


def amp_dtype(args, device):
    """The autocast dtype (None for float32). bf16 and fp16 also run on CPUs, which is how CI tests the
    autocast and GradScaler code, but more slowly than float32 there: said once.

    float32 on a GPU multiplies matrices in TF32 on the tensor cores (Ampere and later; cuDNN's convolutions already
    do by default), as PyTorch did by default when MAE was published (before 1.12): the full-precision matmul is
    several times slower and changes no result that matters here."""
    choice = args.amp or default_amp(device)
    if choice == "none" and device.type == "cuda":
        # The one setting that sets both of PyTorch's switches (the legacy allow_tf32, which torch.compile's
        # Inductor reads, and the newer fp32_precision): setting only the newer one makes reading the legacy fail.
        torch.set_float32_matmul_precision("high")
    if choice != "none" and device.type != "cuda":
        warnings.warn(
            f"--amp {choice} on {device.type}: it runs, but usually more slowly than float32 there; it is "
            f"meant for GPUs (--amp none for the fastest {device.type} run)",
            stacklevel=2,
        )
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[choice]


def autocast(device, dtype):
    """The autocast context of every forward pass (training, evaluation): `dtype` from amp_dtype, None for
    float32 (a disabled autocast). `device` is a torch.device or its type ("cuda", "cpu")."""
    device_type = getattr(device, "type", device)
    return torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None)


def parse_job_args(args, parser, presets=None):
    """A job's arguments. Already parsed (a Namespace, what the official main(args) takes): as they are. Else a list
    of command-line strings (None: sys.argv), parsed in two passes: a --preset sets defaults, then the command line
    overrides them."""
    if isinstance(args, argparse.Namespace):
        return args
    preset = argparse.ArgumentParser(add_help=False)
    preset.add_argument("--preset", default=None)
    chosen = preset.parse_known_args(args)[0].preset
    if chosen in (presets or {}):  # an unknown one is refused by `parser`, with the choices
        parser.set_defaults(**presets[chosen])
    return parser.parse_args(args)


def run_cli(main, argv=None):
    """A job's console script: main(argv), its result not printed (sys.exit would print it); after a stop signal
    the run has saved, and the process exits with 128 + the signal's number (schedulers read: requeue).

    Bad input (the ValueErrors and OSErrors raised with a message for the user: flags that do not fit together, a
    missing or corrupt file, a checkpoint of another model) ends with its message alone, not under a traceback;
    MAE_TRACEBACK=1 shows the traceback."""
    with exit_for_requeue():
        try:
            main(argv)
        except (ValueError, OSError) as error:
            if os.environ.get("MAE_TRACEBACK"):
                raise
            raised = traceback.extract_tb(error.__traceback__)[-1]  # where: a bug caught here still says it
            where = f"{Path(raised.filename).name}:{raised.lineno}, in {raised.name}"
            sys.exit(f"error: {error}\n(raised at {where}; MAE_TRACEBACK=1 shows the whole traceback)")


def scaled_lr(args, world_size):
    """The paper's rule for the absolute learning rate: lr = blr x effective batch size / 256."""
    return args.blr * args.batch_size * args.accum_iter * world_size / 256


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
    images. Other ranks write nothing. A write that fails (a full disk, a TensorBoard error) is a warning:
    logs never stop training, and resuming never depends on them."""

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
        if self.enabled:
            _never_fatal(
                self._write, record, images, what=f"the {record['kind']} log line of step {record['step']}"
            )

    def _write(self, record, images):
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
            _never_fatal(
                _append_line, self.official, record, what=f"log.txt's line of epoch {record['epoch']}"
            )


def _append_line(path, record):
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _never_fatal(function, *args, what):
    try:
        function(*args)
    except Exception as error:  # noqa: BLE001 - a log is worth less than the training it describes
        warnings.warn(
            f"could not write {what} ({type(error).__name__}: {error}); training goes on", stacklevel=3
        )


def read_json_lines(path):
    """The JSON objects of a log, one a line; a line that does not parse (torn by a kill or a full disk
    in the middle of a write) is left out with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    records, torn = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            torn += 1
    if torn:
        warnings.warn(f"left out {torn} unreadable line(s) of {path} (a write was interrupted)", stacklevel=2)
    return [r for r in records if isinstance(r, dict)]


def _keep_lines(path, keep):
    """Rewrite a log with the lines `keep` accepts, atomically: a kill during the rewrite loses nothing."""
    if path.exists():
        lines = "".join(json.dumps(line) + "\n" for line in read_json_lines(path) if keep(line))
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(lines)
        os.replace(tmp, path)


@dataclass
class Position:
    """Where a run stands: optimizer steps in all, the epoch, and optimizer steps into that epoch."""

    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0


def resume(args, model, optimizer, scaler, context):
    """Restore the run's own newest state, output_dir/checkpoint-last.pth, else the checkpoint --resume names
    (where a new run starts); returns (Position, path or ""). A rerun or a requeue of a command that contains
    --resume thus continues from where it stopped instead of redoing the work since that file."""
    last = Path(args.output_dir) / LAST
    own = last.exists()
    path = str(last) if own else args.resume
    if not path:
        return Position(epoch=args.start_epoch), ""
    if own and args.resume and Path(args.resume).resolve() != last.resolve() and context.is_main:
        print(f"note: {last} exists, so this run continues from it (its newest state); --resume "
              f"{args.resume} names where a new run starts", flush=True)  # fmt: skip
    checkpoint = read_checkpoint(path, map_location="cpu")
    check_arguments(args, checkpoint, path, own, context)
    load_training_state(checkpoint, path, model, optimizer, scaler)
    if "step" in checkpoint:  # this project's checkpoints: the exact position
        rngs = checkpoint["rng"]
        set_rng_states(rngs[context.rank] if context.rank < len(rngs) else rngs[0], context.device)
        return Position(checkpoint["step"], checkpoint["epoch"], checkpoint["step_in_epoch"]), path
    return Position(epoch=checkpoint.get("epoch", -1) + 1), path  # official files saved finished epochs


def load_training_state(checkpoint, path, model, optimizer, scaler):
    """Weights (finite, and explained when they do not fit), optimizer and scaler from a checkpoint."""
    state = state_dict_from(checkpoint, path)
    check_finite(state, f"checkpoint {path}")
    try:
        load_weights(model, state, source=f"the weights in {path}")
    except CheckpointError as error:
        raise CheckpointError(
            f"{error}\n--resume (and output_dir's checkpoint-last.pth) continues a run of this job with this "
            f"--model; to start from another model's weights use --finetune (probing, fine-tuning), or give "
            f"the run another --output_dir."
        ) from None
    if "optimizer" in checkpoint:
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError) as error:
            raise CheckpointError(
                f"the optimizer state in {path} does not fit this job's optimizer ({error}): was it saved by "
                f"another job (pretraining, linear probing, fine-tuning)?"
            ) from None
    if checkpoint.get("scaler"):
        scaler.load_state_dict(checkpoint["scaler"])


def changed_arguments(args, saved):
    """'--name: old -> new' for each argument that changes the result and differs from the saved ones."""
    saved = vars(saved) if isinstance(saved, argparse.Namespace) else dict(saved or {})
    now = checkpoint_args(args)
    keys = sorted(k for k in now if k in saved and k not in RESULT_NEUTRAL_ARGS and saved[k] != now[k])
    return [f"--{k}: {saved[k]!r} in the checkpoint, {now[k]!r} now" for k in keys]


def check_arguments(args, checkpoint, path, own, context):
    """Refuse to continue output_dir's run with arguments that would change its result (a new run pointed at
    a used folder); for an explicit --resume of another file, only say what differs."""
    changes = changed_arguments(args, checkpoint.get("args") if isinstance(checkpoint, dict) else None)
    if not changes:
        return
    listed = "\n  - " + "\n  - ".join(changes)
    if own and not args.allow_changed_args:
        raise ValueError(
            f"{args.output_dir} holds a run with other arguments ({path}):{listed}\nUse another --output_dir "
            f"for a new run, or pass --allow_changed_args to continue this one with the new values (a "
            f"deliberate change of --epochs, say)."
        )
    if context.is_main:
        print(f"note: continuing from {path} with arguments that differ from its own:{listed}", flush=True)


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
    # False where no trained weight's gradient passes through float16 (the linear probe's head runs in float32):
    # --amp fp16 then skips the GradScaler, whose step waits for the GPU every step with optimizers that have no
    # fused AMP support (LARS).
    scale_gradients: bool = True


# --------------------------------------------------------------------------- one optimizer step


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
        """Note a micro-batch's loss; a stand-in's (images=0) is checked for NaN but not counted."""
        bad = (~torch.isfinite(loss)) & (self.first_bad[0] < 0)
        self.first_bad.copy_(torch.where(bad, torch.stack([self.step, loss.double()]), self.first_bad))
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


class Checkpointer:
    """checkpoint-last.pth in output_dir, written atomically by rank 0 with every rank's RNG states, never twice
    for the same position, and never after a non-finite loss: the last good checkpoint stays as it was.

    Rank 0 copies the state to host memory and a background thread writes it (mae.async_checkpoint): training
    goes on during the write. wait() blocks until the writes are done, and raises a failed one."""

    def __init__(self, args, context, model, optimizer, scaler, losses, position):
        self.args, self.context, self.position, self.losses = args, context, position, losses
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.folder = Path(args.output_dir)
        self.saved_at = (
            None  # (step, epoch, step in epoch) that checkpoint-last.pth holds, if this run wrote it
        )
        self.writer = BackgroundWriter()
        self.minutes = getattr(args, "save_minutes", None)
        # For --save_minutes: a run's first timed save comes that long after its start.
        self.last_save = time.monotonic()

    def raise_if_non_finite(self):
        bad = self.losses.first_bad.clone()
        if self.context.distributed:  # every rank stops together, not only the one that saw it
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
        step, value = bad.tolist()  # one host sync
        if step >= 0:
            self.wait(raise_errors=False)  # a good state still being written: let it land before saying so
            last = self.folder / LAST
            kept = (
                f"The last good checkpoint, {last}, is untouched."
                if last.exists()
                else f"No checkpoint was written before it ({last} does not exist)."
            )
            raise FloatingPointError(
                f"loss is {value} at step {int(step)} (epoch {self.position.epoch}); stopping. {kept}"
            )

    def due(self):
        """True when --save_minutes have passed since the last save (this rank's clock; see agree())."""
        return self.minutes is not None and time.monotonic() - self.last_save >= 60 * self.minutes

    def save(self, epoch, step_in_epoch):
        """checkpoint-last.pth at (epoch, step_in_epoch), unless it already holds exactly that."""
        at = (self.position.step, epoch, step_in_epoch)
        if at == self.saved_at:  # a run ending on a --save_every multiple, a stop right after a save
            return
        self.raise_if_non_finite()
        rng = [rng_states(self.context.device)]
        if self.context.distributed:
            gathered = [None] * self.context.world_size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if self.context.is_main:
            extra = dict(optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(), epoch=epoch,
                         step_in_epoch=step_in_epoch, step=self.position.step, rng=rng,
                         args=checkpoint_args(self.args))  # fmt: skip
            path = self.folder / LAST
            # save_checkpoint is looked up when the thread writes (tests count the writes through it).
            self.writer.save(lambda model, extra: save_checkpoint(path, model, **extra), self.model, extra)
        self.saved_at, self.last_save = at, time.monotonic()

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
    stop: StopSignals = field(default_factory=StopSignals)
    skipped: int = 0  # unreadable images so far
    loader_generator: torch.Generator = None  # the DataLoader's own seeds: never the global RNG
    stopping: bool = False  # a stop signal was received (by any rank) and the loop is leaving
    stand_in: tuple = None  # (epoch, a batch of one readable sample) for batches with no readable image
    loader: DataLoader = None  # made at the first epoch (epoch_loader), its workers kept to the end


def fit(args, context, job):
    """Train `job` until --epochs (or --max_steps), continuing from where a previous run in output_dir stopped.

    Raises Preempted after a stop signal, once the step in progress is finished and saved."""
    lock = lock_output_dir(args, context)
    try:
        with StopSignals() as stop:
            run = start(args, context, job, stop)
            if nothing_to_train(run):
                return run.position
            try:
                train_epochs(run)
            except BaseException:
                run.checkpointer.wait(raise_errors=False)  # the last good state lands before the lock goes
                raise
            finally:
                run.loader = None  # the last reference to it (once any traceback holding its loop is gone)
            run.checkpointer.wait()
        return finish(run)
    finally:
        lock.release()


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


def start(args, context, job, stop):
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
        Checkpointer(args, context, model, job.optimizer, scaler, losses, position), Log(args, context, position),
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


class EpochSamples(torch.utils.data.Dataset):
    """`dataset` read with (epoch, index) keys (from WithEpoch).

    The data workers live for the whole run (persistent_workers: not started again at every epoch), each with its
    own copy of the dataset, whose epoch the main process cannot set: each key carries it, so every sample is
    still fixed by (seed, epoch, index), whatever the number of workers.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class WithEpoch(torch.utils.data.Sampler):
    """The indices of a ResumableSampler as (its epoch, index) keys, for EpochSamples."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        return ((self.sampler.epoch, index) for index in self.sampler)

    def __len__(self):
        return len(self.sampler)


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
        {"train_lr": lr_of_epoch(done, run), "train_loss": train_loss, **official, "epoch": done}
    )
    if run.skipped and run.context.is_main:
        print(f"warning: {run.skipped} unreadable images skipped so far", flush=True)
    return position.epoch % args.save_epochs == 0 or position.epoch == args.epochs


def lr_of_epoch(epoch, run):
    """The mean learning rate of an epoch's steps (the official log.txt's train_lr)."""
    steps = run.steps_per_epoch
    return sum(learning_rate(epoch + i / steps, run.args) for i in range(steps)) / steps
