"""What linear probing (mae.linprobe) and fine-tuning (mae.finetune) share.

Both put the pretrained encoder under a linear head and train it with the same engine as
pretraining (mae.engine: DDP, AMP, atomic checkpoints, exact resume); both evaluate acc@1
and acc@5 after every epoch and with `--eval --resume <checkpoint>`, which also reads the
official fine-tuned checkpoints.
"""

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import (
    atomic_save,
    load_classifier,
)
from .data.labelled import LabelledImages, eval_transform, load_labelled
from .data.pretraining import collate_skipping_unreadable
from .engine import distributed
from .engine.data import default_workers
from .engine.flags import add_engine_args, positive_int, scaled_lr
from .engine.logs import read_json_lines
from .engine.loop import Job, fit
from .engine.precision import autocast
from .engine.rng import seed_everything
from .evaluation import ProbeHead
from .models import CLASSIFIERS, evaluating

MAX_CLASSES = 1_000_000  # ImageNet-22k has 21,841; a head this wide is already 1e6 x width weights


def class_count(text):
    """argparse type: a number of classes from 1 to MAX_CLASSES (a typo such as 100000000000 would otherwise ask
    for a head of 1e11 x width weights, terabytes, before any message)."""
    value = int(text)
    if not 1 <= value <= MAX_CLASSES:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_CLASSES:,} classes, got {value:,}")
    return value


def get_args_parser(description, presets, **defaults):
    p = argparse.ArgumentParser(description=description)
    add_engine_args(p, **defaults)
    p.add_argument("--preset", choices=sorted(presets), default=None,
                   help="an official recipe's flags (explicit flags still win): " + "; ".join(
                       f"{name}: " + " ".join(f"--{k} {v}" for k, v in flags.items()) for name, flags in presets.items()))  # fmt: skip
    p.add_argument("--effective_batch", type=positive_int, default=None,
                   help="set --accum_iter so that batch_size x accum_iter x processes equals this")  # fmt: skip
    p.add_argument("--model", default="vit_large_patch16", choices=CLASSIFIERS)
    p.add_argument(
        "--finetune", default="", help="MAE checkpoint whose encoder to start from (official or own)"
    )
    p.add_argument(
        "--data_path",
        default="builtin:digits",
        help="folder with train/ and val/ class folders, an iNaturalist or Places365 folder as distributed, or "
        "builtin:digits",
    )
    p.add_argument("--nb_classes", type=class_count, default=None,
                   help="default: the number of classes in the data (the official default is 1000, ImageNet's)")  # fmt: skip
    p.add_argument(
        "--eval", action="store_true", help="only evaluate the --resume checkpoint on the val split"
    )
    p.add_argument("--dist_eval", action="store_true",
                   help="accepted for the official commands: evaluation is always split across the processes, "
                        "each image counted once")  # fmt: skip
    p.add_argument("--save_best", action="store_true",
                   help="also keep checkpoint-best.pth, the model of the epoch with the best acc@1")  # fmt: skip
    return p


def finish_args(args, context):
    if args.warmup_epochs >= args.epochs and not args.eval and context.is_main:
        print(f"warning: --warmup_epochs {args.warmup_epochs:g} >= --epochs {args.epochs}: the learning rate "
              f"never reaches its peak (lr {args.lr if args.lr is not None else 'from --blr'}); lower "
              f"--warmup_epochs", flush=True)  # fmt: skip
    if args.effective_batch and not args.eval:
        per_pass = args.batch_size * context.world_size
        if args.effective_batch % per_pass:
            raise ValueError(
                f"--effective_batch {args.effective_batch} is not a multiple of batch_size x processes ({per_pass})"
            )
        args.accum_iter = args.effective_batch // per_pass
    if args.lr is None:
        args.lr = scaled_lr(args, context.world_size)


# --------------------------------------------------------------------------- data and evaluation


class EveryNth(torch.utils.data.Sampler):
    """Rank r of w evaluates samples r, r + w, ...: every sample exactly once, no padding duplicates."""

    def __init__(self, length, context):
        self.indices = range(context.rank, length, context.world_size)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def report(stats, count):
    """The official evaluation lines, which researchers' scripts parse."""
    print(f"* Acc@1 {stats['acc1']:.3f} Acc@5 {stats['acc5']:.3f} loss {stats['loss']:.3f}")
    print(f"Accuracy of the network on the {count} test images: {stats['acc1']:.1f}%", flush=True)


def best_logged_accuracy(output_dir):
    """The best test_acc1 in a resumed run's log.txt (only epochs before the resume point remain in it)."""
    lines = read_json_lines(Path(output_dir) / "log.txt")  # a torn last line (a kill mid-write) is left out
    return max((line["test_acc1"] for line in lines if "test_acc1" in line), default=-math.inf)


@torch.no_grad()
def evaluate(model, dataset, args, context, dtype=None):
    """{"acc1", "acc5", "loss"} over the whole dataset (percentages, as the official logs), and "images": how many
    were read (an unreadable file is skipped)."""
    workers = default_workers(context) if args.num_workers is None else args.num_workers  # as training's
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, sampler=EveryNth(len(dataset), context),
        num_workers=workers, collate_fn=collate_skipping_unreadable,
        pin_memory=args.pin_mem and context.device.type == "cuda",
    )  # fmt: skip
    with evaluating(model):
        # Loss, top-1 and top-k summed on the device; the count on the host (a tensor made from it per batch would
        # wait for the GPU).
        sums, count = torch.zeros(3, dtype=torch.float64, device=context.device), 0
        for batch in loader:
            if batch is None:
                continue
            imgs, labels = (t.to(context.device, non_blocking=True) for t in batch)
            with autocast(context.device, dtype):
                logits = model(imgs)
            k = min(5, logits.shape[1])
            top = logits.float().topk(k, dim=1).indices  # (B, k)
            hits = top == labels[:, None]
            sums += torch.stack([
                F.cross_entropy(logits.float(), labels, reduction="sum"), hits[:, 0].sum(), hits.any(1).sum(),
            ]).double()  # fmt: skip
            count += len(labels)
        totals = torch.cat([sums, sums.new_tensor([count])])  # one copy to the device, after the last batch
        if context.distributed:
            torch.distributed.all_reduce(totals)
    loss, top1, topk, count = totals.tolist()
    images, count = int(count), max(count, 1)
    return {"acc1": 100 * top1 / count, "acc5": 100 * topk / count, "loss": loss / count, "images": images}


# --------------------------------------------------------------------------- the run


def check_classes(args, data):
    """--nb_classes must cover every label of the data (a label past the head fails mid-training: an
    IndexError on CPUs, a device-side assert on GPUs); more classes than the data has is fine (ImageNet's
    1000-way head on a subset)."""
    labels = max(max(data.train_labels, default=-1), max(data.val_labels, default=-1)) + 1
    needed = max(labels, data.num_classes)
    if args.nb_classes < needed:
        raise ValueError(
            f"--nb_classes {args.nb_classes} is smaller than the {needed} classes of --data_path "
            f"{args.data_path} (labels 0 to {needed - 1}): pass --nb_classes {needed} or more, or leave it out "
            f"to take the data's"
        )


def run(args, name, build, **engine):
    """Set up processes and data, let `build(args, context, data)` make (model, optimizer, train transform,
    compute_loss), then evaluate (--eval) or train, evaluating after every epoch."""
    context = distributed.init(args.device)
    try:
        if context.is_main:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        seed_everything(args.seed + context.rank)
        finish_args(args, context)
        data = load_labelled(args.data_path)
        origin = "given by --nb_classes"
        if args.nb_classes is None:
            args.nb_classes, origin = (
                data.num_classes,
                "the classes in --data_path (the official default is 1000)",
            )
        check_classes(args, data)
        if context.is_main:
            print(f"{name}: {args.nb_classes} classes ({origin}), {len(data.train_labels)} training and "
                  f"{len(data.val_labels)} validation images", flush=True)  # fmt: skip
        model, optimizer, train_transform, compute_loss = build(args, context, data)
        model.to(context.device)
        mode = "L" if data.in_chans == 1 else "RGB"
        val = LabelledImages(data.val_images, data.val_labels, eval_transform(data, args.input_size), mode)
        from .engine.precision import amp_dtype

        dtype = amp_dtype(args, context.device)
        if args.eval:
            if not args.resume:
                raise ValueError(
                    "--eval needs --resume <checkpoint> (a fine-tuned or linear-probe checkpoint)"
                )
            load_classifier(model, args.resume)
            stats = evaluate(model, val, args, context, dtype)
            if context.is_main:
                report(stats, len(val))
            return stats
        train = LabelledImages(data.train_images, data.train_labels, train_transform, mode, seed=args.seed)
        best = {"acc1": best_logged_accuracy(args.output_dir) if context.is_main else -math.inf}
        n_parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)

        def end_of_epoch(epoch, step):
            stats = evaluate(model, val, args, context, dtype)
            if context.is_main:
                print(f"epoch {epoch}:", flush=True)
                report(stats, len(val))
                if stats["acc1"] > best["acc1"] and args.save_best:
                    atomic_save({"model": model.state_dict(), "epoch": epoch, "acc1": stats["acc1"],
                                 "args": vars(args)}, Path(args.output_dir) / "checkpoint-best.pth")  # fmt: skip
                best["acc1"] = max(best["acc1"], stats["acc1"])
                print(f"Max accuracy: {best['acc1']:.2f}%", flush=True)
            return {"acc1": stats["acc1"], "acc5": stats["acc5"], "val_loss": stats["loss"]}, None

        def official_fields(fields):
            return {"test_acc1": fields["acc1"], "test_acc5": fields["acc5"], "test_loss": fields["val_loss"],
                    "n_parameters": n_parameters}  # fmt: skip

        job = Job(
            model, optimizer, train, compute_loss, end_of_epoch, official_fields=official_fields, name=name,
            scale_gradients=not isinstance(model.head, ProbeHead),  # the probe trains in float32 only
            checkpoint_fields={"class_names": list(data.class_names)},  # output i is class_names[i]
        )  # fmt: skip
        fit(args, context, job, **engine)
        return evaluate(model, val, args, context, dtype)
    finally:
        distributed.finish(context)
