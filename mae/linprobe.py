"""Linear probing: a frozen MAE encoder, its CLS token, and one linear layer trained on top.

    python -m mae.linprobe --model vit_mini_patch8 --input_size 32 --finetune checkpoints/mae_mini_digits.pth \\
        --data_path builtin:digits --epochs 10 --device cpu
    torchrun --nproc_per_node 8 -m mae.linprobe --preset imagenet --model vit_base_patch16 \\
        --finetune mae_pretrain_vit_base.pth --data_path /imagenet
    python -m mae.linprobe --eval --resume output_dir/checkpoint-last.pth --model vit_base_patch16 ...

As in the paper: the head is BatchNorm without affine parameters (it normalises the features,
which MAE leaves unscaled, without changing what a linear layer can express) followed by a
Linear layer, trained with LARS (the official variant), no weight decay; augmentation is only a random
resized crop and a flip. The imagenet preset is the official recipe: blr 0.1, weight decay 0,
90 epochs with 10 of warm-up, effective batch 16384 (512 per GPU, accumulated as needed).
"""

import functools

import torch
from torch import nn
from torchvision.transforms import v2

from . import classify
from .checkpoint import load_pretrained_encoder
from .engine.flags import parse_job_args, run_cli
from .evaluation import lars, probe_head
from .models import create_classifier

PRESETS = {
    "imagenet": dict(
        batch_size=512, effective_batch=16384, epochs=90, warmup_epochs=10, blr=0.1, weight_decay=0.0
    ),
}


def get_args_parser():
    p = classify.get_args_parser(__doc__.splitlines()[0], PRESETS, epochs=90, warmup_epochs=10,
                                 batch_size=512, blr=0.1, weight_decay=0.0)  # fmt: skip
    p.add_argument(
        "--global_pool", action="store_true", help="average the patch tokens instead of the CLS token"
    )
    p.add_argument(
        "--cls_token", action="store_false", dest="global_pool", help="use the CLS token (default)"
    )
    return p


def build(args, context, data):
    model = create_classifier(args.model, num_classes=args.nb_classes, global_pool=args.global_pool,
                              img_size=args.input_size, in_chans=data.in_chans)  # fmt: skip
    if args.finetune:
        load_pretrained_encoder(model, args.finetune)
    elif context.is_main and not args.eval:
        print("no --finetune checkpoint: probing a randomly initialised encoder (a baseline)", flush=True)
    model.head = probe_head(model.head.in_features, args.nb_classes)
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith("head.")
    optimizer = lars(model.head, args.lr, args.weight_decay)
    transform = v2.Compose([
        v2.RandomResizedCrop(args.input_size, scale=(data.min_scale, 1.0),
                             interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(data.hflip),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data.mean, data.std),
    ])  # fmt: skip
    criterion = nn.CrossEntropyLoss()

    def compute_loss(train_model, imgs, labels):
        return criterion(train_model(imgs), labels)

    return model, optimizer, transform, compute_loss


def main(args=None, **engine):
    """Train (or, with --eval, evaluate); the final validation statistics. `args`: see engine.flags.parse_job_args;
    `engine`: see engine.loop.fit."""
    return classify.run(parse_job_args(args, get_args_parser(), PRESETS), "linear probing", build, **engine)


cli = functools.partial(run_cli, main)  # the console script


if __name__ == "__main__":
    cli()
