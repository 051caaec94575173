"""MAE pretraining: one process, torchrun (many GPUs, many nodes) or SLURM (mae.submit), CPU or CUDA.

    python -m mae.pretrain --model mae_vit_tiny_patch8 --data_path builtin --epochs 2 --device cpu
    torchrun --nproc_per_node 8 -m mae.pretrain --model mae_vit_large_patch16 --data_path /imagenet \\
        --batch_size 64 --accum_iter 1 --epochs 800 --warmup_epochs 40 --blr 1.5e-4 --norm_pix_loss

The flags keep the official names and meanings (lr = blr * effective batch / 256). A run
writes checkpoint-last.pth atomically every --save_every steps, every epoch and when SLURM
(SIGTERM, SIGUSR1/2) stops it, and resumes from it automatically: a killed run continues
exactly where it stopped.
"""

import argparse
import warnings
from functools import partial
from pathlib import Path

import torch

from .data.images import to_model_input
from .data.pretraining import build_pretrain_dataset, collate_skipping_unreadable
from .engine import distributed
from .engine.flags import add_engine_args, parse_job_args, run_cli, scaled_lr
from .engine.loop import Job, fit
from .engine.rng import seed_everything
from .engine.step import FUSED_ADAMW
from .models import CONFIGS, create_model, evaluating


def mask_ratio(text):
    """argparse type: a fraction strictly between 0 and 1."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(
            f"must be between 0 and 1, both excluded, got {text}: 0 masks nothing (the loss, over masked "
            f"patches only, is exactly 0) and 1 leaves the encoder nothing to see"
        )
    return value


def get_args_parser():
    p = argparse.ArgumentParser("MAE pretraining", description=__doc__.split("\n\n")[0])
    add_engine_args(p, epochs=400, warmup_epochs=40, batch_size=64, blr=1.5e-4, weight_decay=0.05)
    p.add_argument("--model", default="mae_vit_large_patch16", choices=sorted(CONFIGS))
    p.add_argument(
        "--in_chans", type=int, default=None, help="image channels (default: 3, or 1 for the built-in digits)"
    )
    p.add_argument("--mask_ratio", type=mask_ratio, default=0.75, help="fraction of patches masked")
    p.add_argument(
        "--norm_pix_loss", action="store_true", help="normalised-pixel targets (the paper's default)"
    )
    p.add_argument("--gpu_decode", action="store_true",
                   help="decode JPEGs (and crop, resize) on the training device; workers only read files")  # fmt: skip
    p.add_argument(
        "--data_path",
        default="builtin",
        help="image folder (uses train/ inside if present), or builtin[:digits]",
    )
    return p


def pretraining_loss(train_model, imgs, noise, mask_ratio=0.75):
    """The MAE loss of a batch with its per-sample mask noise (what the engine's compute_loss runs)."""
    loss, _, _ = train_model(imgs, mask_ratio=mask_ratio, noise=noise)
    return loss


def param_groups(model, weight_decay):
    """AdamW's groups as the official pretraining makes them (timm's add_weight_decay, in main_pretrain.py): no
    weight decay for 1-D tensors and biases, decay for every other trainable tensor, the CLS and mask tokens
    included (fine-tuning's groups exclude its tokens; pretraining's do not). The frozen sin-cos tables are not
    optimised. Always both groups, no-decay first, each in the model's parameter order (the official names and
    order), so that an optimizer state saved by the official code loads here, and ours there."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim <= 1 or name.endswith(".bias") else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def make_optimizer(model, args, device):
    """AdamW with betas (0.9, 0.95) over param_groups, fused where the device has it."""
    return torch.optim.AdamW(
        param_groups(model, args.weight_decay),
        lr=args.lr,
        betas=(0.9, 0.95),
        fused=FUSED_ADAMW.get(device.type, False) or None,
    )


def batch_to_device(batch, device):
    """(images, noise) as the workers send them -> on `device`, the images scaled and normalised there (they travel
    as uint8: a quarter of float32's bytes through the workers' queues and the copy to the GPU)."""
    images, noise = batch
    return to_model_input(images.to(device, non_blocking=True)), noise.to(device, non_blocking=True)


@torch.no_grad()
def reconstruction_grid(
    model, dataset, count=4, collate=collate_skipping_unreadable, prepare=batch_to_device
):
    """Rows of (original, masked, reconstruction + visible) for the first readable images, with fixed noise;
    None when none of the first files can be read. `collate` and `prepare` as the job's (--gpu_decode: the samples
    are still encoded, and one may fail to decode)."""
    from torchvision.utils import make_grid

    from .reconstruction import reconstruct

    samples = first_readable(dataset, count)
    prepared = prepare(collate(samples), next(model.parameters()).device) if samples else None
    if prepared is None:
        return None
    imgs, noise = prepared
    with evaluating(model):
        _, panels = reconstruct(model, imgs, 0.75, noise)
    rows = torch.stack([panels[k] for k in ("original", "masked 75%", "reconstruction + visible")], dim=1)
    return make_grid(rows.flatten(0, 1).float().cpu(), nrow=3)


def first_readable(dataset, count, search=256):
    """Up to `count` samples that could be read, from the first `search` of the dataset."""
    samples = []
    for index in range(min(len(dataset), search)):
        sample = dataset[index]
        if sample is not None:
            samples.append(sample)
        if len(samples) == count:
            break
    return samples


def epoch_figure(model, dataset, epoch, collate, prepare, draw=reconstruction_grid):
    """The epoch's reconstruction grid (`draw`'s), or None with a warning: a figure never stops training."""
    try:
        return draw(model, dataset, collate=collate, prepare=prepare)
    except Exception as error:  # noqa: BLE001 - the figure is a by-product; the checkpoint comes next
        warnings.warn(
            f"no reconstruction figure for epoch {epoch} ({type(error).__name__}: {error}); training goes on",
            stacklevel=2,
        )
        return None


def main(args=None, **engine):
    """Pretrain; returns the model. `args`: parsed arguments (as the official main(args)), or a list of
    command-line strings (None: sys.argv). `engine`: the loop's collaborators (write, clock; see engine.loop.fit)."""
    args = parse_job_args(args, get_args_parser())
    context = distributed.init(args.device)
    try:
        return train(args, context, **engine)
    finally:
        distributed.finish(context)


def train(args, context, **engine):
    if context.is_main:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    if args.in_chans is None:
        args.in_chans = 1 if args.data_path in ("builtin:digits", "builtin:shifted-digits") else 3
    seed_everything(args.seed + context.rank)

    model = create_model(
        args.model, img_size=args.input_size, in_chans=args.in_chans, norm_pix_loss=args.norm_pix_loss
    )
    patches = model.patch_embed.num_patches
    if int(patches * (1 - args.mask_ratio)) < 1:  # the official len_keep
        raise ValueError(
            f"--mask_ratio {args.mask_ratio} keeps int({patches} x (1 - {args.mask_ratio})) = 0 of the {patches} "
            f"patches of a {args.input_size}-pixel image: the encoder would see none; the paper's is 0.75"
        )
    model.to(context.device)
    job_data = dict(collate=collate_skipping_unreadable, prepare=batch_to_device)
    if args.gpu_decode:
        from .data.device_decode import EncodedMaskedImages, collate_encoded, decode_batch
        from .data.pretraining import ImageFiles

        if args.in_chans != 3 or str(args.data_path).startswith("builtin"):
            raise ValueError("--gpu_decode reads RGB image files: give --data_path a folder of JPEGs")
        dataset = EncodedMaskedImages(
            ImageFiles(args.data_path).files, model.patch_embed.num_patches, args.seed
        )
        job_data = dict(
            collate=collate_encoded,
            prepare=lambda batch, device: decode_batch(batch, args.input_size, device),
        )
    else:
        dataset = build_pretrain_dataset(
            args.data_path, args.input_size, model.patch_embed.num_patches, args.in_chans, args.seed
        )
    if args.lr is None:
        args.lr = scaled_lr(args, context.world_size)
    optimizer = make_optimizer(model, args, context.device)

    def end_of_epoch(epoch, step):
        if not context.is_main:
            return {}, None
        return {}, epoch_figure(model, dataset, epoch, **job_data)

    fit(
        args,
        context,
        Job(
            model,
            optimizer,
            dataset,
            partial(pretraining_loss, mask_ratio=args.mask_ratio),
            end_of_epoch,
            name="pretraining",
            **job_data,
        ),
        **engine,
    )
    return model


def cli(argv=None):
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
