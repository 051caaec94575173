"""The command line every job shares: the official flags with their meanings and checks, presets, the learning-rate
rule, and the console-script wrapper that reports bad input in one line."""

import argparse
import math
import os
import sys
import traceback
from pathlib import Path

from .preemption import exit_for_requeue


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
    """argparse type: a finite number of 0 or more (inf as a learning rate or a decay trains nothing useful)."""
    value = float(text)
    if not 0 <= value < math.inf:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a finite number of 0 or more, got {text}")
    return value


def probability(text):
    """argparse type: a number from 0 to 1, both included."""
    value = float(text)
    if not 0 <= value <= 1:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a probability, from 0 to 1, got {text}")
    return value


def below_one(text):
    """argparse type: a fraction from 0 (included) to 1 (excluded): label smoothing, drop path."""
    value = float(text)
    if not 0 <= value < 1:  # NaN too
        raise argparse.ArgumentTypeError(f"must be from 0 up to, not including, 1, got {text}")
    return value


def seed(text):
    """argparse type: a seed numpy and torch both take, 0 to 2**32 - 1 (each process adds its rank)."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2**32 - 1 = 4294967295, got {value}")
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
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--start_epoch", type=non_negative_int, default=0)
    p.add_argument("--num_workers", type=non_negative_int, default=None,
                   help="data-loading processes per GPU (default: this machine's cores per process, minus one, at most 10)")  # fmt: skip
    p.add_argument(
        "--pin_mem", action="store_true", default=True, help="pinned host memory for GPU transfers (default)"
    )
    p.add_argument("--no_pin_mem", action="store_false", dest="pin_mem")
    # Accepted so that the official commands run unchanged; torchrun or SLURM say how many processes there are.
    official = "accepted for the official commands; the processes are described by torchrun or SLURM (see mae.engine.distributed)"
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
    missing or corrupt file, a checkpoint of another model, a folder in use) and a non-finite stop end with their
    message alone, not under a traceback, and exit code 1; MAE_TRACEBACK=1 shows the traceback."""
    with exit_for_requeue():
        try:
            main(argv)
        except (ValueError, OSError, FloatingPointError) as error:  # FloatingPointError: a non-finite stop
            if os.environ.get("MAE_TRACEBACK"):
                raise
            raised = traceback.extract_tb(error.__traceback__)[-1]  # where: a bug caught here still says it
            where = f"{Path(raised.filename).name}:{raised.lineno}, in {raised.name}"
            sys.exit(f"error: {error}\n(raised at {where}; MAE_TRACEBACK=1 shows the whole traceback)")


def scaled_lr(args, world_size):
    """The paper's rule for the absolute learning rate: lr = blr x effective batch size / 256."""
    return args.blr * args.batch_size * args.accum_iter * world_size / 256
