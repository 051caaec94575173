"""Fine-tuning: the whole MAE encoder trained as a classifier, with the paper's regularisation.

    python -m mae.finetune --model vit_mini_patch8 --input_size 32 --finetune checkpoints/mae_mini_digits.pth \\
        --data_path builtin:digits --epochs 10 --device cpu
    torchrun --nproc_per_node 8 -m mae.finetune --preset vit_base --finetune mae_pretrain_vit_base.pth \\
        --data_path /imagenet
    python -m mae.finetune --eval --resume mae_finetuned_vit_base.pth --model vit_base_patch16 --data_path /imagenet

The encoder's patch tokens are averaged and normalised by `fc_norm` (global pooling), then a
Linear head. Layer-wise learning-rate decay (timm's parameter groups: block i of d trains at
lr x decay^(d - i)), stochastic depth, and timm's RandAugment, random erasing, mixup, cutmix
and label smoothing. The presets are the official ImageNet recipes for ViT-B/L/H (effective
batch 1024, warm-up 5 epochs, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25).
"""

import argparse
import functools
import re

import torch
from PIL import Image
from timm.data import Mixup, auto_augment, create_transform
from timm.data.mixup import mixup_target
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import param_groups_layer_decay

from . import classify
from .checkpoint import load_pretrained_encoder
from .engine.flags import (
    below_one,
    non_negative_float,
    parse_job_args,
    positive_float,
    positive_int,
    probability,
    run_cli,
)
from .engine.step import FUSED_ADAMW
from .models import create_classifier

_RECIPE = dict(effective_batch=1024, batch_size=32, warmup_epochs=5, weight_decay=0.05, mixup=0.8, cutmix=1.0,
               reprob=0.25, smoothing=0.1)  # fmt: skip
PRESETS = {
    "vit_base": dict(
        _RECIPE, model="vit_base_patch16", epochs=100, blr=5e-4, layer_decay=0.65, drop_path=0.1
    ),
    "vit_large": dict(
        _RECIPE, model="vit_large_patch16", epochs=50, blr=1e-3, layer_decay=0.75, drop_path=0.2
    ),
    "vit_huge": dict(_RECIPE, model="vit_huge_patch14", epochs=50, blr=1e-3, layer_decay=0.75, drop_path=0.3),
}


def _posterize(img, bits_to_keep, **_):
    """timm's posterize, with 0 bits meaning a black image as in Pillow < 12 (newer Pillow raises instead).

    RandAugment's increasing posterize asks for 0 bits at magnitude 10, which m9 with mstd 0.5 reaches.
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    from PIL import ImageOps

    return ImageOps.posterize(img, bits_to_keep)


def _use_our_posterize():
    """Point timm's RandAugment at `_posterize` (done when a fine-tuning transform is built, not at import)."""
    for name in ("Posterize", "PosterizeIncreasing", "PosterizeOriginal"):
        auto_augment.NAME_TO_OP[name] = _posterize


def augment_policy(text):
    """argparse type: a timm auto-augment policy ('rand-m9-mstd0.5-inc1', 'augmix-m5-w4-d2', 'original', ...) or
    'none', checked by building it as create_transform will; a section timm would pass over (rand-bogus) is refused."""
    if text == "none":
        return text
    name, *sections = text.split("-")
    unread = [part for part in sections if not re.fullmatch(r"[a-z]+\d.*", part)]
    if unread and name in ("rand", "augmix"):
        raise argparse.ArgumentTypeError(
            f"{text!r}: {', '.join(unread)} is not a setting (a letter code and a number: m9, n2, mstd0.5, inc1)"
        )
    build = {"rand": auto_augment.rand_augment_transform, "augmix": auto_augment.augment_and_mix_transform}
    try:
        next(
            (f for prefix, f in build.items() if text.startswith(prefix)), auto_augment.auto_augment_transform
        )(text, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except (AssertionError, KeyError, ValueError) as error:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a timm auto-augment policy ({error or 'unknown setting'}); e.g. rand-m9-mstd0.5-inc1 "
            f"(the recipe's), augmix-m5-w4-d2, original, v0, or none"
        ) from None
    return text


def get_args_parser():
    p = classify.get_args_parser(__doc__.splitlines()[0], PRESETS, epochs=50, warmup_epochs=5,
                                 batch_size=64, blr=1e-3, weight_decay=0.05)  # fmt: skip
    p.set_defaults(min_lr=1e-6)
    p.add_argument("--layer_decay", type=positive_float, default=0.75, help="layer-wise lr decay")
    p.add_argument("--drop_path", type=below_one, default=0.1, help="stochastic depth rate of the last block")
    p.add_argument("--global_pool", action="store_true", default=True)
    p.add_argument(
        "--cls_token", action="store_false", dest="global_pool", help="classify from the CLS token"
    )
    p.add_argument("--color_jitter", type=non_negative_float, default=None, metavar="PCT",
                   help="colour jitter factor (timm applies it only without auto-augment, as the official code)")  # fmt: skip
    p.add_argument(
        "--aa",
        type=augment_policy,
        default="rand-m9-mstd0.5-inc1",
        help="timm auto-augment policy ('none' for none)",
    )
    p.add_argument("--reprob", type=probability, default=0.25, help="random erasing probability")
    p.add_argument(
        "--remode", default="pixel", choices=("const", "rand", "pixel"), help="random erasing mode"
    )
    p.add_argument("--recount", type=positive_int, default=1, help="random erasing count")
    p.add_argument("--resplit", action="store_true", default=False,
                   help="random erasing per augmentation split (timm); the recipe has no augmentation splits, "
                        "so, as in the official code, it changes nothing")  # fmt: skip
    p.add_argument("--smoothing", type=below_one, default=0.1, help="label smoothing")
    p.add_argument("--mixup", type=non_negative_float, default=0.0, help="mixup alpha (on when > 0)")
    p.add_argument("--cutmix", type=non_negative_float, default=0.0, help="cutmix alpha (on when > 0)")
    p.add_argument("--cutmix_minmax", type=probability, nargs="+", default=None,
                   help="cutmix min/max area ratio; overrides --cutmix and turns cutmix on")  # fmt: skip
    p.add_argument("--mixup_prob", type=probability, default=1.0)
    p.add_argument("--mixup_switch_prob", type=probability, default=0.5)
    p.add_argument("--mixup_mode", default="batch", choices=("batch", "pair", "elem"))
    return p


def build(args, context, data):
    model = create_classifier(args.model, num_classes=args.nb_classes, global_pool=args.global_pool,
                              drop_path_rate=args.drop_path, img_size=args.input_size, in_chans=data.in_chans)  # fmt: skip
    if args.finetune:
        load_pretrained_encoder(model, args.finetune)
        torch.nn.init.trunc_normal_(model.head.weight, std=2e-5)
    elif context.is_main and not args.eval:
        print("no --finetune checkpoint: training from a random initialisation (a baseline)", flush=True)
    groups = param_groups_layer_decay(
        model, args.weight_decay, model.no_weight_decay(), layer_decay=args.layer_decay
    )
    optimizer = torch.optim.AdamW(
        groups, lr=args.lr, fused=FUSED_ADAMW.get(context.device.type, False) or None
    )
    transform = train_transform(args, data)
    mixup = mixup_from_args(args)
    if mixup is not None:
        criterion = SoftTargetCrossEntropy()  # mixup makes soft targets, smoothing included
    elif args.smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(smoothing=args.smoothing)
    else:
        criterion = torch.nn.CrossEntropyLoss()

    def compute_loss(train_model, imgs, labels):
        if mixup is not None:
            if (
                len(imgs) == 1
            ):  # nothing to mix with (a batch shrunk by unreadable files): smoothed labels only
                return criterion(
                    train_model(imgs), mixup_target(labels, args.nb_classes, smoothing=args.smoothing)
                )
            if len(imgs) % 2:  # timm's mixup pairs images: drop one when a skipped file made the batch odd
                imgs, labels = imgs[:-1], labels[:-1]
            imgs, labels = mixup(imgs, labels)
        return criterion(train_model(imgs), labels)

    return model, optimizer, transform, compute_loss


def mixup_from_args(args):
    """timm's Mixup (mixup and/or cutmix, with label smoothing), or None when both are off."""
    if not (args.mixup > 0 or args.cutmix > 0 or args.cutmix_minmax is not None):
        return None
    if args.cutmix_minmax is not None and (
        len(args.cutmix_minmax) != 2 or not 0 < args.cutmix_minmax[0] <= args.cutmix_minmax[1]
    ):
        raise ValueError(
            f"--cutmix_minmax takes two area ratios, min then max, 0 < min <= max <= 1, got {args.cutmix_minmax}"
        )
    if args.batch_size % 2:
        raise ValueError(
            f"mixup and cutmix pair the images of a batch: --batch_size must be even, not {args.batch_size}"
        )
    return Mixup(mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, cutmix_minmax=args.cutmix_minmax,
                 prob=args.mixup_prob, switch_prob=args.mixup_switch_prob, mode=args.mixup_mode,
                 label_smoothing=args.smoothing, num_classes=args.nb_classes)  # fmt: skip


def train_transform(args, data):
    """timm's training augmentation, as the official recipe: random resized crop, flip (when the data allows),
    RandAugment, normalisation, then random erasing (with per-pixel noise by default, --remode pixel)."""
    _use_our_posterize()
    return create_transform(
        args.input_size, is_training=True, scale=(data.min_scale, 1.0), hflip=data.hflip,
        color_jitter=args.color_jitter, auto_augment=None if args.aa == "none" else args.aa,
        interpolation="bicubic", re_prob=args.reprob, re_mode=args.remode, re_count=args.recount,
        re_num_splits=0, mean=data.mean, std=data.std,  # no augmentation splits: --resplit has nothing to split
    )  # fmt: skip


def main(args=None, **engine):
    """Train (or, with --eval, evaluate); the final validation statistics. `args`: see engine.flags.parse_job_args;
    `engine`: see engine.loop.fit."""
    return classify.run(parse_job_args(args, get_args_parser(), PRESETS), "fine-tuning", build, **engine)


cli = functools.partial(run_cli, main)  # the console script


if __name__ == "__main__":
    cli()
