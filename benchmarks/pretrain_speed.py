"""Pretraining step speed: images/s, FLOPs per image, model-FLOPs utilisation and peak memory, side by side.

    python benchmarks/pretrain_speed.py                      # CPU: the tiny configuration, 2 threads
    python benchmarks/pretrain_speed.py --device cuda --model mae_vit_base_patch16 --batch_size 256

Each variant runs the same training step (forward, backward, AdamW step) on synthetic data in
this one process, one after the other, so their ratios are comparable on a noisy machine:

- production: the package's defaults: fused scaled_dot_product_attention, bf16 autocast without a
  gradient scaler on GPUs (float32 on CPUs), fused AdamW on GPUs, no host synchronisation per step;
- baseline: the official recipe: explicit softmax attention, fp16 autocast with a GradScaler on GPUs,
  AdamW's default implementation, `loss.item()` every step;
- compiled (with --compile): production plus torch.compile of the model.

FLOPs are counted, not measured: per transformer block 24*n*w^2 + 4*n^2*w forward FLOPs over n tokens
of width w (plus patch embedding, decoder embedding and prediction head), training = 3 x forward.
The ceiling for utilisation is this machine's own matrix-multiply rate, measured here.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mae.models import create_model  # noqa: E402
from mae.pretrain import param_groups  # noqa: E402


def train_flops_per_image(model, mask_ratio):
    """Training FLOPs (3 x forward) for one image, counted from the architecture."""
    pe = model.patch_embed
    L, p, C = pe.num_patches, pe.patch_size, pe.in_chans
    width = model.cls_token.shape[-1]
    decoder_width = model.mask_token.shape[-1]
    visible = 1 + int(L * (1 - mask_ratio))

    def block(n, w, mlp_ratio=4.0):
        return (8 + 4 * mlp_ratio) * n * w * w + 4 * n * n * w  # qkv 6, proj 2, mlp 2*2*ratio; scores + sum

    mlp_ratio = model.blocks[0].mlp.fc1.out_features / width if len(model.blocks) else 4.0
    forward = (
        2 * L * p * p * C * width  # patch embedding (all patches, before masking)
        + len(model.blocks) * block(visible, width, mlp_ratio)
        + 2 * visible * width * decoder_width  # decoder_embed
        + len(model.decoder_blocks) * block(1 + L, decoder_width, mlp_ratio)
        + 2 * L * decoder_width * p * p * C  # prediction head
    )
    return 3 * forward


def matmul_ceiling(device, dtype, size, repeats=10):
    """This device's measured dense matrix-multiply rate in FLOP/s."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_variant(name, args, device):
    torch.manual_seed(0)
    model = create_model(args.model, img_size=args.input_size).to(device)
    production = name != "baseline"
    for block in [*model.blocks, *model.decoder_blocks]:
        block.attn.fused_attn = production
    fused = device.type == "cuda" and production
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95), fused=fused or None)
    if device.type == "cuda":
        dtype = torch.bfloat16 if production else torch.float16
    else:
        dtype = None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step_model = torch.compile(model) if name == "compiled" else model
    imgs = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device=device)

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss, _, _ = step_model(imgs, mask_ratio=args.mask_ratio)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if not production:
            loss.item()  # the official loop reads the loss on the host every step

    for _ in range(args.warmup):
        step()
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    synchronize(device)
    seconds = time.perf_counter() - start
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated() / 2**30
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process peak RSS, GiB
    return {"variant": name, "images_per_s": args.batch_size * args.steps / seconds, "peak_memory_gib": memory,
            "flops_per_image": train_flops_per_image(model, args.mask_ratio)}  # fmt: skip


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--model", default="mae_vit_tiny_patch8", help="tiny: image 64, patch 8, 192 x 6, decoder 128 x 2"
    )
    parser.add_argument("--input_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--mask_ratio", type=float, default=0.75)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        ceiling, ceiling_name = matmul_ceiling(device, torch.bfloat16, 8192, repeats=50), "bf16 matmul"
        hardware = torch.cuda.get_device_name()
    else:
        ceiling, ceiling_name = matmul_ceiling(device, torch.float32, 2048), "fp32 matmul"
        hardware = f"CPU, {args.threads} threads"
    variants = ["baseline", "production"] + (["compiled"] if args.compile else [])
    results = [run_variant(name, args, device) for name in variants]
    baseline = results[0]["images_per_s"]

    print(f"{args.model}, image {args.input_size}, batch {args.batch_size}, mask {args.mask_ratio}, {hardware}; "
          f"ceiling ({ceiling_name}, measured) {ceiling / 1e12:.3f} TFLOP/s; torch {torch.__version__}")  # fmt: skip
    print(
        f"{'variant':12s} {'images/s':>10s} {'GFLOP/img':>10s} {'TFLOP/s':>9s} {'MFU':>7s} {'peak GiB':>9s} {'vs baseline':>12s}"
    )
    for r in results:
        achieved = r["images_per_s"] * r["flops_per_image"]
        r.update(tflops=achieved / 1e12, mfu=achieved / ceiling, speedup=r["images_per_s"] / baseline)
        print(f"{r['variant']:12s} {r['images_per_s']:10.1f} {r['flops_per_image'] / 1e9:10.2f} {r['tflops']:9.3f} "
              f"{r['mfu']:7.1%} {r['peak_memory_gib']:9.2f} {r['speedup']:11.2f}x")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "hardware": hardware,
                                         "ceiling_flops": ceiling, "results": results}, indent=2))  # fmt: skip
    return results


if __name__ == "__main__":
    main()
