"""Pretraining step speed: images/s, FLOPs per image, model-FLOPs utilisation and peak memory, lever by lever.

    python benchmarks/pretrain_speed.py                      # CPU: the tiny configuration, 2 threads
    python benchmarks/pretrain_speed.py --device cuda --model mae_vit_base_patch16 --input_size 224 --batch_size 256 --compile
    python benchmarks/pretrain_speed.py --device cuda --model mae_vit_large_patch16 --input_size 224 --batch_size 256 \
        --data /tmp/jpegs --make_jpegs 6400 --e2e_batch_sizes 64 256   # + end to end on real JPEG files

Each row runs the same training step (forward, backward, AdamW step) on synthetic data in this
one process, one after the other, so that their ratios are comparable on a noisy machine. The rows
add one lever at a time to the official recipe:

- baseline: explicit softmax attention, `loss.item()` every step, AdamW's default implementation,
  fp16 autocast with a GradScaler on GPUs (float32 on CPUs);
- + SDPA: torch's fused scaled_dot_product_attention (flash kernel where available);
- + no host sync: the loss stays on the device (the engine reads it every --log_every steps);
- + bf16 (GPU only): bf16 autocast, no gradient scaler;
- + fused AdamW: torch's fused AdamW kernel;
- + torch.compile (with --compile): the model compiled.

"production" is what the engine (mae/engine/) runs by default on this device, measured again.
With --data, more rows run the production step end to end on a folder of JPEG files (--make_jpegs
writes one from the bundled photographs), at each of --e2e_batch_sizes: decoded by PIL in DataLoader
workers (the default path), and read by the workers but decoded, cropped and resized on the device
(--gpu_decode, mae/data/device_decode.py); each against the production step on synthetic data at the same batch
size, timed over --e2e_steps (100) steps so that what the workers decoded ahead is drained (run_end_to_end).
benchmarks/gpu_first_look.sh runs the documented GPU commands in one go.
FLOPs are counted, not measured: per transformer block 24*n*w^2 + 4*n^2*w forward FLOPs over n tokens
of width w (plus patch embedding, decoder embedding and prediction head), training = 3 x forward.
The ceiling for utilisation is this machine's own matrix-multiply rate, measured here (best of 5);
"at the ceiling" is the images/s a step would reach if all of it ran at that rate.
"""

import argparse
import gc
import json
import resource
import sys
import time
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mae.engine.data import default_workers  # noqa: E402
from mae.engine.distributed import Context  # noqa: E402
from mae.engine.precision import amp_dtype  # noqa: E402
from mae.engine.step import FUSED_ADAMW, micro_step, optimizer_step  # noqa: E402
from mae.models import create_model  # noqa: E402
from mae.pretrain import batch_to_device, param_groups, pretraining_loss  # noqa: E402


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


def best_matmul_seconds(a, b, device, trials=5, repeats=5):
    """The fastest of `trials` timings of a @ b (each the mean of `repeats`), after a warm-up product."""
    a @ b
    best = float("inf")
    for _ in range(trials):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def matmul_ceiling(device, dtype, size, repeats=10, trials=5):
    """This device's measured dense matrix-multiply rate in FLOP/s (the best of `trials`)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    return 2 * size**3 / best_matmul_seconds(a, b, device, trials, repeats)


def linear_layers_floor(model, args, device, dtype, trials=5, repeats=5):
    """Images/s if a training step did nothing but its blocks' linear layers (the forward product and the two of
    the backward), each at the rate this device reaches for that exact shape: a ceiling for this model here."""
    B, L = args.batch_size, model.patch_embed.num_patches
    visible = 1 + int(L * (1 - args.mask_ratio))
    shapes = {}
    for rows, width, depth in (
        (B * visible, model.cls_token.shape[-1], len(model.blocks)),
        (B * (1 + L), model.mask_token.shape[-1], len(model.decoder_blocks)),
    ):
        for k, n in (
            (width, 3 * width),
            (width, width),
            (width, 4 * width),
            (4 * width, width),
        ):  # qkv proj fc1 fc2
            for shape in ((rows, k, n), (rows, n, k), (k, rows, n)):  # forward, grad of input, grad of weight
                shapes[shape] = shapes.get(shape, 0) + depth
    seconds = 0.0
    for (m, k, n), count in shapes.items():
        a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
        seconds += best_matmul_seconds(a, b, device, trials, repeats) * count
    return B / seconds


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


BASELINE = dict(sdpa=False, host_sync=True, bf16=False, fused_adamw=False, compile=False)


def levers(device, with_compile):
    """(row name, settings): the baseline, then one more lever per row."""
    rows, settings = [("baseline", dict(BASELINE))], dict(BASELINE)
    steps = [("+ SDPA", "sdpa"), ("+ no host sync", "host_sync")]
    steps += [("+ bf16, no scaler", "bf16")] if device.type == "cuda" else []
    steps += [("+ fused AdamW", "fused_adamw")] + ([("+ torch.compile", "compile")] if with_compile else [])
    for name, lever in steps:
        settings = {**settings, lever: lever != "host_sync"}
        rows.append((name, settings))
    return rows


def production(device):
    """What mae.engine runs by default on this device: its own defaults, read from it."""
    default_amp = amp_dtype(argparse.Namespace(amp=None), device)
    return dict(sdpa=True, host_sync=False, bf16=default_amp == torch.bfloat16,
                fused_adamw=FUSED_ADAMW.get(device.type, False), compile=False)  # fmt: skip


def run_variant(name, settings, args, device):
    torch.manual_seed(0)
    model = create_model(args.model, img_size=args.input_size).to(device)
    for block in [*model.blocks, *model.decoder_blocks]:
        block.attn.fused_attn = settings["sdpa"]
    optimizer = torch.optim.AdamW(
        param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95), fused=True if settings["fused_adamw"] else None
    )
    if device.type == "cuda":
        dtype = torch.bfloat16 if settings["bf16"] else torch.float16
    else:
        dtype = None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step_model = torch.compile(model) if settings["compile"] else model
    imgs = torch.randn(args.batch_size, 3, args.input_size, args.input_size, device=device)
    noise = torch.rand(args.batch_size, model.patch_embed.num_patches, device=device)

    def step():  # the engine's own training step: one micro-batch, then the optimizer step
        loss = micro_step(step_model, partial(pretraining_loss, mask_ratio=args.mask_ratio), (imgs, noise),
                          scaler, (device.type, dtype), accum_iter=1)  # fmt: skip
        optimizer_step(model, optimizer, scaler)
        if settings["host_sync"]:
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
    return {"variant": name, "settings": settings, "images_per_s": args.batch_size * args.steps / seconds,
            "peak_memory_gib": memory, "flops_per_image": train_flops_per_image(model, args.mask_ratio)}  # fmt: skip


PREFETCH = 4  # batches each end-to-end worker prepares ahead


def make_jpegs(folder, count, seed=0):
    """`count` JPEGs of about ImageNet's size (crops of the bundled photographs, 300-500 px, quality 90)."""
    import numpy as np
    from PIL import Image

    from mae.data.images import SAMPLE_IMAGES, sample_photo

    photos = [sample_photo(name) for name in SAMPLE_IMAGES]
    rng = np.random.default_rng(seed)
    (folder / "train").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[i % len(photos)]
        largest = min(500, *photo.shape[:2])
        h, w = (int(v) for v in rng.integers(min(300, largest), largest + 1, size=2))
        top, left = int(rng.integers(0, photo.shape[0] - h + 1)), int(rng.integers(0, photo.shape[1] - w + 1))
        Image.fromarray(photo[top : top + h, left : left + w]).save(
            folder / "train" / f"{i:06d}.jpg", quality=90
        )


def run_end_to_end(name, args, device, gpu_decode, batch_size):
    """The production step fed by a DataLoader over real JPEG files: decoded by PIL in workers, or on the device.

    Workers start filling their queues (workers x prefetch_factor batches) before the first step, so a short run
    can time batches decoded beforehand and report the GPU's speed instead of the decoders'. So it times
    --e2e_steps steps after --warmup and reports the rate of the second half, by when the queues are drained
    wherever decoding is the bottleneck; the first half's rate is kept beside it ("first_half_images_per_s"), and a
    difference says the queues were still draining. The steps are one iteration of the loader, however many passes
    over the folder they take, so that no pass boundary stops the workers' read-ahead.
    """
    from torch.utils.data import DataLoader

    from mae.data.device_decode import EncodedMaskedImages, collate_encoded, decode_batch
    from mae.data.pretraining import ImageFiles, build_pretrain_dataset, collate_skipping_unreadable

    torch.manual_seed(0)
    model = create_model(args.model, img_size=args.input_size).to(device)
    settings = production(device)
    optimizer = torch.optim.AdamW(
        param_groups(model, 0.05), lr=1e-4, betas=(0.9, 0.95), fused=True if settings["fused_adamw"] else None
    )
    dtype = amp_dtype(argparse.Namespace(amp=None), device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    L = model.patch_embed.num_patches
    if gpu_decode:
        dataset, collate = EncodedMaskedImages(ImageFiles(args.data).files, L), collate_encoded
    else:
        dataset, collate = (
            build_pretrain_dataset(str(args.data), args.input_size, L),
            collate_skipping_unreadable,
        )
    if len(dataset) < batch_size:
        raise ValueError(f"{args.data} holds fewer images than one batch of {batch_size}")
    steps = args.warmup + args.e2e_steps
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=steps * batch_size)  # passes end to end
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=args.workers, drop_last=True,
                        collate_fn=collate, pin_memory=device.type == "cuda",
                        prefetch_factor=PREFETCH if args.workers > 0 else None)  # fmt: skip
    times, images = [], []
    for i, batch in enumerate(loader):
        if i == args.warmup:
            synchronize(device)
            times.append(time.perf_counter())
        if gpu_decode:
            imgs, noise = decode_batch(batch, args.input_size, device)
        else:
            imgs, noise = batch_to_device(batch, device)  # uint8 copied, normalised there, as in training
        micro_step(model, partial(pretraining_loss, mask_ratio=args.mask_ratio), (imgs, noise), scaler,
                   (device.type, dtype), accum_iter=1)  # fmt: skip
        optimizer_step(model, optimizer, scaler)
        if i >= args.warmup:
            images.append(imgs.shape[0])
            if i + 1 == args.warmup + args.e2e_steps // 2 or i + 1 == args.warmup + args.e2e_steps:
                synchronize(device)  # the middle and the end: the only waits for the device
                times.append(time.perf_counter())
    half = args.e2e_steps // 2
    rates = [sum(images[:half]) / (times[1] - times[0]), sum(images[half:]) / (times[2] - times[1])]
    return {"variant": name, "settings": {**settings, "gpu_decode": gpu_decode}, "batch_size": batch_size,
            "images_per_s": rates[1], "first_half_images_per_s": rates[0], "steps": args.e2e_steps,
            "workers": args.workers, "peak_memory_gib": float("nan"),
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
    parser.add_argument(
        "--rounds", type=int, default=3, help="measure every row this many times; report the median"
    )
    parser.add_argument(
        "--ceiling_size",
        type=int,
        default=None,
        help="matrix size for the ceiling (default 2048 CPU, 8192 GPU)",
    )
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--data", type=Path, default=None,
                        help="a folder of JPEGs (with train/): also measure end to end, PIL decoding vs device decoding")  # fmt: skip
    parser.add_argument("--make_jpegs", type=int, default=0, help="first write this many JPEGs into --data")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers for the end-to-end rows (default: what mae.engine gives a training "
                             "process here: the cores it may use, less one for itself, at most 10)")  # fmt: skip
    parser.add_argument("--e2e_steps", type=int, default=100,
                        help="steps timed end to end after --warmup; the second half's rate is reported")  # fmt: skip
    parser.add_argument("--e2e_batch_sizes", type=int, nargs="+", default=None,
                        help="batch sizes of the end-to-end rows (default: --batch_size), e.g. 64 (the paper's per "
                             "GPU) 256")  # fmt: skip
    args = parser.parse_args(argv)
    if args.e2e_steps < 2:
        parser.error(f"--e2e_steps must be at least 2 (two halves), got {args.e2e_steps}")
    if args.workers is None:
        args.workers = default_workers(Context())

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        ceiling, ceiling_name = (
            matmul_ceiling(device, torch.bfloat16, args.ceiling_size or 8192, repeats=20),
            "bf16 matmul",
        )
        hardware = torch.cuda.get_device_name()
    else:
        ceiling, ceiling_name = (
            matmul_ceiling(device, torch.float32, args.ceiling_size or 2048, repeats=3),
            "fp32 matmul",
        )
        hardware = f"CPU, {args.threads} threads"
    rows = [*levers(device, args.compile), ("production", production(device))]
    # Rounds: every row once per round, each round starting one row later (so that no row always runs first
    # or last), then the median of each row: drift and noise hit all rows alike.
    measured = {name: [] for name, _ in rows}
    for r in range(args.rounds):
        for name, settings in rows[r % len(rows) :] + rows[: r % len(rows)]:
            measured[name].append(run_variant(name, settings, args, device))
            gc.collect()
    results = []
    for row in measured.values():
        speeds = sorted(r["images_per_s"] for r in row)
        results.append({**row[0], "images_per_s": speeds[len(speeds) // 2], "all_images_per_s": speeds,
                        "peak_memory_gib": max(r["peak_memory_gib"] for r in row)})  # fmt: skip
    baseline = results[0]["images_per_s"]
    if args.data:
        if args.make_jpegs:
            make_jpegs(args.data, args.make_jpegs)
        for batch_size in args.e2e_batch_sizes or [args.batch_size]:
            synthetic = next(r for r in results if r["variant"] == "production")
            if batch_size != args.batch_size:  # the production step on synthetic data at this batch size too
                at_size = argparse.Namespace(**{**vars(args), "batch_size": batch_size})
                synthetic = run_variant(f"production, batch {batch_size}", production(device), at_size, device)  # fmt: skip
                results.append(synthetic)
            for decoder, gpu_decode in (("PIL", False), ("device", True)):
                row = run_end_to_end(f"end to end, {decoder}, batch {batch_size}", args, device, gpu_decode,
                                     batch_size)  # fmt: skip
                # against the same step on synthetic data at the same batch size
                row["vs_synthetic"] = row["images_per_s"] / synthetic["images_per_s"]
                results.append(row)

    print(
        f"{args.model}, image {args.input_size}, batch {args.batch_size}, mask {args.mask_ratio}, {hardware}, "
        f"median of {args.rounds} rotated rounds of {args.steps} steps; "
        f"ceiling ({ceiling_name}, measured) {ceiling / 1e12:.3f} TFLOP/s; torch {torch.__version__}"
    )
    print(
        f"{'variant':30s} {'images/s':>10s} {'GFLOP/img':>10s} {'TFLOP/s':>9s} {'MFU':>7s} {'peak GiB':>9s} {'vs baseline':>12s}"
    )
    for r in results:
        achieved = r["images_per_s"] * r["flops_per_image"]
        r.update(tflops=achieved / 1e12, mfu=achieved / ceiling, speedup=r["images_per_s"] / baseline)
        print(
            f"{r['variant']:30s} {r['images_per_s']:10.1f} {r['flops_per_image'] / 1e9:10.2f} {r['tflops']:9.3f} "
            f"{r['mfu']:7.1%} {r['peak_memory_gib']:9.2f} {r['speedup']:11.2f}x"
            + (f"  ({r['vs_synthetic']:.0%} of production on synthetic data; first half of the steps "
               f"{r['first_half_images_per_s']:.1f}/s)" if "vs_synthetic" in r else "")
        )  # fmt: skip
    at_ceiling = ceiling / results[0]["flops_per_image"]
    print(
        f"{'at the ceiling':30s} {at_ceiling:10.1f} {'':10s} {ceiling / 1e12:9.3f} {1:7.1%} {'':9s} "
        f"{at_ceiling / baseline:11.2f}x"
    )
    model = create_model(args.model, img_size=args.input_size)
    floor = linear_layers_floor(
        model, args, device, torch.bfloat16 if device.type == "cuda" else torch.float32
    )
    print(
        f"{'linear layers only':30s} {floor:10.1f}   (the blocks' matrix products alone, at the rate reached for "
        f"their shapes here: {floor / baseline:.2f}x the baseline)"
    )
    if args.json:
        report = {"args": vars(args), "hardware": hardware, "ceiling_flops": ceiling,
                  "linear_layers_images_per_s": floor, "results": results}  # fmt: skip
        args.json.write_text(json.dumps(report, indent=2, default=str))  # paths (--data, --json) as strings
    return results


if __name__ == "__main__":
    main()
