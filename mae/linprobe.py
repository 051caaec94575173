"""Linear probing: a frozen MAE encoder, its CLS token, and one linear layer trained on top.

    python -m mae.linprobe --model vit_mini_patch8 --input_size 32 --finetune checkpoints/mae_mini_digits.pth \\
        --data_path builtin:digits --epochs 10 --device cpu
    torchrun --nproc_per_node 8 -m mae.linprobe --preset imagenet --model vit_base_patch16 \\
        --finetune mae_pretrain_vit_base.pth --data_path /imagenet
    python -m mae.linprobe --eval --resume output_dir/checkpoint-last.pth --model vit_base_patch16 ...

As in the paper: the head is BatchNorm without affine parameters (it normalises the features,
which MAE leaves unscaled, without changing what a linear layer can express) followed by a
Linear layer, trained with LARS (timm's), no weight decay; augmentation is only a random
resized crop and a flip. The imagenet preset is the official recipe: blr 0.1, weight decay 0,
90 epochs with 10 of warm-up, effective batch 16384 (512 per GPU, accumulated as needed).
"""

import torch
from timm.optim import Lars
from torch import nn
from torchvision.transforms import v2

from . import classify
from .models import create_classifier
from .preemption import exit_for_requeue

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


def probe_head(embed_dim, num_classes):
    """BatchNorm1d(affine=False, eps=1e-6) then Linear, its weights drawn with std 0.01."""
    linear = nn.Linear(embed_dim, num_classes)
    nn.init.trunc_normal_(linear.weight, std=0.01)
    nn.init.zeros_(linear.bias)
    return nn.Sequential(nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6), linear)


def lars(head, lr, weight_decay):
    """timm's LARS with MAE's grouping: matrices get the trust ratio (and weight decay), biases plain momentum."""
    matrices = [p for p in head.parameters() if p.ndim > 1]
    vectors = [p for p in head.parameters() if p.ndim <= 1]
    return Lars([{"params": matrices, "weight_decay": weight_decay, "always_adapt": True},
                 {"params": vectors, "weight_decay": 0.0, "always_adapt": False}], lr=lr, momentum=0.9)  # fmt: skip


def build(args, context, data):
    model = create_classifier(args.model, num_classes=args.nb_classes, global_pool=args.global_pool,
                              img_size=args.input_size, in_chans=data.in_chans)  # fmt: skip
    if args.finetune:
        classify.load_pretrained_encoder(model, args.finetune)
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


def run(args):
    """Train (or, with --eval, evaluate) with parsed arguments; returns the final validation statistics."""
    return classify.run(args, "linear probing", build)


def main(argv=None):
    return run(classify.parse_args(get_args_parser(), PRESETS, argv))


def cli(argv=None):
    """The console script: like main, without returning the statistics (which sys.exit would print)."""
    with exit_for_requeue():  # a stop signal: saved, and exit 128 + its number
        main(argv)


if __name__ == "__main__":
    cli()
