"""The learning rate: linear warm-up, then a half-cycle cosine to min_lr, set every iteration and scaled per
parameter group (layer-wise decay in fine-tuning)."""

import math


def learning_rate(epoch, args):
    """Linear warm-up, then a half-cycle cosine to min_lr; `epoch` is fractional (per iteration)."""
    if epoch < args.warmup_epochs:
        return args.lr * epoch / args.warmup_epochs
    progress = (epoch - args.warmup_epochs) / max(args.epochs - args.warmup_epochs, 1e-8)
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_learning_rate(optimizer, lr):
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)  # lr_scale: layer-wise decay in fine-tuning


def mean_epoch_lr(epoch, steps_per_epoch, args):
    """The mean learning rate of an epoch's steps (the official log.txt's train_lr)."""
    steps = steps_per_epoch
    return sum(learning_rate(epoch + i / steps, args) for i in range(steps)) / steps
