"""MAE pretraining: one process, torchrun (many GPUs, many nodes) or SLURM (mae.submit), CPU or CUDA.

    python -m mae.pretrain --model mae_vit_tiny_patch8 --data_path builtin --epochs 2 --device cpu
    torchrun --nproc_per_node 8 -m mae.pretrain --model mae_vit_large_patch16 --data_path /imagenet \\
        --batch_size 64 --accum_iter 1 --epochs 800 --warmup_epochs 40 --blr 1.5e-4 --norm_pix_loss

The flags keep the official names and meanings (lr = blr * effective batch / 256). A run
writes checkpoint-last.pth atomically every --save_every steps and every epoch, and
resumes from it automatically: a killed run continues exactly where it stopped.
"""

import argparse
import contextlib
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from . import distributed
from .checkpoint import atomic_save, read_checkpoint, state_dict_from
from .datasets import build_pretrain_dataset, collate_skipping_unreadable
from .models import CONFIGS, create_model

LAST = "checkpoint-last.pth"


def get_args_parser():
    p = argparse.ArgumentParser("MAE pretraining", description=__doc__.split("\n\n")[0])
    p.add_argument("--batch_size", type=int, default=64, help="images per GPU (per process) per micro-step")
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--accum_iter", type=int, default=1, help="micro-steps per optimizer step")
    p.add_argument("--model", default="mae_vit_large_patch16", choices=sorted(CONFIGS))
    p.add_argument("--input_size", type=int, default=224)
    p.add_argument(
        "--in_chans", type=int, default=None, help="image channels (default: 3, or 1 for builtin:digits)"
    )
    p.add_argument("--mask_ratio", type=float, default=0.75)
    p.add_argument(
        "--norm_pix_loss", action="store_true", help="normalised-pixel targets (the paper's default)"
    )
    p.add_argument("--weight_decay", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=None, help="absolute learning rate (overrides --blr)")
    p.add_argument("--blr", type=float, default=1.5e-4, help="base lr: lr = blr * effective batch size / 256")
    p.add_argument("--min_lr", type=float, default=0.0)
    p.add_argument("--warmup_epochs", type=float, default=40)
    p.add_argument(
        "--data_path",
        default="builtin",
        help="image folder (uses train/ inside if present), or builtin[:digits]",
    )
    p.add_argument("--output_dir", default="./output_dir")
    p.add_argument("--log_dir", default=None, help="TensorBoard folder (default: output_dir)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--resume",
        default="",
        help="checkpoint to start from (default: output_dir/checkpoint-last.pth if any)",
    )
    p.add_argument("--start_epoch", type=int, default=0)
    p.add_argument("--num_workers", type=int, default=10)
    p.add_argument("--amp", choices=("bf16", "fp16", "none"), default=None,
                   help="mixed precision (default: bf16 on GPUs that support it, else none)")  # fmt: skip
    p.add_argument("--clip_grad", type=float, default=None)
    p.add_argument("--save_every", type=int, default=1000, help="optimizer steps between checkpoints")
    p.add_argument(
        "--save_epochs", type=int, default=20, help="keep checkpoint-<epoch>.pth every this many epochs"
    )
    p.add_argument("--max_steps", type=int, default=None, help="stop after this many optimizer steps in all")
    p.add_argument("--log_every", type=int, default=10, help="optimizer steps between log lines")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    return p


# --------------------------------------------------------------------------- pieces


def param_groups(model, weight_decay):
    """AdamW groups: no weight decay on biases, norms, position embeddings and tokens (all 1-D or *_token/pos_embed)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim <= 1 or name.endswith(("cls_token", "mask_token", "pos_embed"))
        (no_decay if skip else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def learning_rate(epoch, args):
    """Linear warm-up, then a half-cycle cosine to min_lr; `epoch` is fractional (per iteration)."""
    if epoch < args.warmup_epochs:
        return args.lr * epoch / args.warmup_epochs
    progress = (epoch - args.warmup_epochs) / max(args.epochs - args.warmup_epochs, 1e-8)
    return args.min_lr + (args.lr - args.min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class ResumableSampler(DistributedSampler):
    """A DistributedSampler that can start part-way through an epoch (after a resume)."""

    def __init__(self, dataset, num_replicas, rank, seed):
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self):
        return self.num_samples - self.start


def amp_dtype(args, device):
    choice = args.amp or ("bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none")
    if choice != "none" and device.type != "cuda":
        raise ValueError(f"--amp {choice} needs a GPU; use --amp none on {device.type}")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[choice]


def rng_states():
    states = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    torch.set_rng_state(states["torch"])
    np.random.set_state(("MT19937", states["numpy"].numpy().astype(np.uint32), 624, 0, 0.0))
    random.setstate((3, tuple(states["python"]), None))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Log:
    """Rank 0's outputs: JSON lines, TensorBoard scalars and images. Other ranks write nothing."""

    def __init__(self, args, context, resume_step):
        self.enabled = context.is_main
        if not self.enabled:
            return
        self.path = Path(args.output_dir) / "log.jsonl"
        if self.path.exists():  # drop lines from steps that the resumed run will redo
            lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            kept = [line for line in lines if line.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(line) + "\n" for line in kept))
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


@torch.no_grad()
def reconstruction_grid(model, dataset, count=4):
    """Rows of (original, masked, reconstruction + visible) for the first images, with fixed noise."""
    from torchvision.utils import make_grid

    from .visualize import reconstruct

    samples = [dataset[i] for i in range(count)]
    imgs = torch.stack([s[0] for s in samples if s is not None]).to(next(model.parameters()).device)
    noise = torch.stack([s[1] for s in samples if s is not None]).to(imgs.device)
    was_training = model.training
    model.eval()
    _, panels = reconstruct(model, imgs, 0.75, noise)
    model.train(was_training)
    rows = torch.stack([panels[k] for k in ("original", "masked 75%", "reconstruction + visible")], dim=1)
    return make_grid(rows.flatten(0, 1).float().cpu(), nrow=3)


# --------------------------------------------------------------------------- the run


def main(args):
    context = distributed.init(args.device)
    try:
        return train(args, context)
    finally:
        distributed.finish(context)


def train(args, context):
    device = context.device
    output_dir = Path(args.output_dir)
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
    if args.in_chans is None:
        args.in_chans = 1 if args.data_path == "builtin:digits" else 3
    torch.manual_seed(args.seed + context.rank)
    np.random.seed(args.seed + context.rank)
    random.seed(args.seed + context.rank)

    model = create_model(
        args.model, img_size=args.input_size, in_chans=args.in_chans, norm_pix_loss=args.norm_pix_loss
    )
    model.to(device)
    dataset = build_pretrain_dataset(
        args.data_path, args.input_size, model.patch_embed.num_patches, args.in_chans, args.seed
    )
    sampler = ResumableSampler(dataset, context.world_size, context.rank, args.seed)
    if sampler.num_samples < args.batch_size * args.accum_iter:
        raise ValueError(
            f"{len(dataset)} images give {sampler.num_samples} per process, fewer than one optimizer step "
            f"(batch_size {args.batch_size} x accum_iter {args.accum_iter})"
        )
    effective_batch = args.batch_size * args.accum_iter * context.world_size
    if args.lr is None:
        args.lr = args.blr * effective_batch / 256
    steps_per_epoch = sampler.num_samples // (args.batch_size * args.accum_iter)

    optimizer = torch.optim.AdamW(
        param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), fused=device.type == "cuda"
    )
    dtype = amp_dtype(args, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    # Resume: an explicit --resume, else this output_dir's last checkpoint.
    step, epoch, step_in_epoch = 0, args.start_epoch, 0
    resume = args.resume or (str(output_dir / LAST) if (output_dir / LAST).exists() else "")
    if resume:
        checkpoint = read_checkpoint(resume, map_location="cpu")
        model.load_state_dict(state_dict_from(checkpoint, resume))
        if "optimizer" in checkpoint:
            optimizer.load_state_dict(checkpoint["optimizer"])
        if checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        if "step" in checkpoint:  # this project's checkpoints: the exact position
            step, epoch, step_in_epoch = checkpoint["step"], checkpoint["epoch"], checkpoint["step_in_epoch"]
            set_rng_states(
                checkpoint["rng"][context.rank]
                if context.rank < len(checkpoint["rng"])
                else checkpoint["rng"][0]
            )
        else:  # an official checkpoint: it saved finished epochs
            epoch = checkpoint.get("epoch", -1) + 1

    train_model = torch.compile(model) if args.compile else model
    if context.distributed:
        ids = [context.local_rank] if device.type == "cuda" else None
        train_model = DistributedDataParallel(train_model, device_ids=ids)

    log = Log(args, context, step)
    if context.is_main:
        print(f"world size {context.world_size}, effective batch {effective_batch} "
              f"({args.batch_size} per process x {args.accum_iter} accumulation x {context.world_size}), "
              f"lr {args.lr:.3g} (blr {args.blr:.3g}), {steps_per_epoch} steps per epoch, device {device}, "
              f"amp {dtype}" + (f", resuming at epoch {epoch} step {step} from {resume}" if resume else ""),
              flush=True)  # fmt: skip

    def save(name, epoch_done):
        rng = [rng_states()]
        if context.distributed:
            gathered = [None] * context.world_size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if not context.is_main:
            return
        payload = {
            "model": model.state_dict(), "model_config": model.config, "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epoch_done[0], "step_in_epoch": epoch_done[1], "step": step,
            "rng": rng, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }  # fmt: skip
        atomic_save(payload, output_dir / name)

    from tqdm.auto import tqdm

    skipped = 0
    loader_generator = torch.Generator()  # the DataLoader's own seeds: never touch the global RNG
    finished = args.max_steps is not None and step >= args.max_steps
    while epoch < args.epochs and not finished:
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch)
        sampler.start = step_in_epoch * args.batch_size * args.accum_iter
        loader = DataLoader(
            dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
            pin_memory=device.type == "cuda", drop_last=True, collate_fn=collate_skipping_unreadable,
            generator=loader_generator, persistent_workers=False,
        )  # fmt: skip
        progress = tqdm(
            total=steps_per_epoch, initial=step_in_epoch, desc=f"epoch {epoch}", disable=not context.is_main
        )
        train_model.train()
        window_loss, window_micro, window_images, window_start = 0.0, 0, 0, time.perf_counter()
        micro = 0
        optimizer.zero_grad(set_to_none=True)  # a partial accumulation left by the last epoch is dropped
        for batch in loader:
            if batch is None:
                skipped += args.batch_size
                continue
            imgs, noise = batch
            skipped += args.batch_size - imgs.shape[0]
            imgs, noise = imgs.to(device, non_blocking=True), noise.to(device, non_blocking=True)
            last_micro = micro == args.accum_iter - 1
            if micro == 0:
                lr = learning_rate(epoch + step_in_epoch / steps_per_epoch, args)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            sync = (
                train_model.no_sync() if context.distributed and not last_micro else contextlib.nullcontext()
            )
            with sync, torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss, _, _ = train_model(imgs, mask_ratio=args.mask_ratio, noise=noise)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss.item()} at step {step} (epoch {epoch}); stopping. The last good "
                        f"checkpoint, {output_dir / LAST}, is untouched."
                    )
                scaler.scale(loss / args.accum_iter).backward()
            window_loss += loss.item()
            window_micro += 1
            window_images += imgs.shape[0]
            micro += 1
            if not last_micro:
                continue
            micro = 0
            if args.clip_grad is not None:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            step_in_epoch += 1
            progress.update(1)
            last_step = args.max_steps is not None and step >= args.max_steps
            if step % args.log_every == 0 or step_in_epoch == steps_per_epoch or last_step:
                seconds = time.perf_counter() - window_start
                record = {
                    "kind": "train", "step": step, "epoch": epoch + step_in_epoch / steps_per_epoch,
                    "loss": distributed.mean_across_ranks(window_loss / window_micro, context),
                    "lr": lr, "images_per_s": window_images * context.world_size / seconds,
                }  # fmt: skip
                log.write(record)
                progress.set_postfix(
                    loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}", img_s=f"{record['images_per_s']:.0f}"
                )
                window_loss, window_micro, window_images, window_start = 0.0, 0, 0, time.perf_counter()
            if step % args.save_every == 0:
                save(LAST, (epoch, step_in_epoch))
            if last_step:
                finished = True
                break
        progress.close()
        if not finished or step_in_epoch == steps_per_epoch:
            epoch, step_in_epoch = epoch + 1, 0
            images = reconstruction_grid(model, dataset) if context.is_main else None
            log.write({"kind": "epoch", "step": step, "epoch": epoch, "skipped_images": skipped}, images)
            if skipped:
                print(f"warning: {skipped} unreadable images skipped so far", flush=True)
            if epoch % args.save_epochs == 0 or epoch == args.epochs:
                save(f"checkpoint-{epoch - 1}.pth", (epoch, 0))
        save(LAST, (epoch, step_in_epoch))

    identical = distributed.replicas_identical(model, context)
    if context.is_main:
        log.write({"kind": "end", "step": step, "epoch": epoch, "replicas_identical": identical})
        print(f"done: {step} steps, {epoch} epochs; checkpoint {output_dir / LAST}", flush=True)
    if not identical:
        raise RuntimeError("the ranks' parameters differ at the end of training")
    return model


def cli(argv=None):
    args = get_args_parser().parse_args(argv)
    main(args)


if __name__ == "__main__":
    cli()
