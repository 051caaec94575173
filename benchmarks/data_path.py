"""The host data path per CPU core: pretraining samples per second from JPEG files, pipeline by pipeline, side by side.

    python benchmarks/data_path.py                     # 160 ImageNet-sized JPEGs, 5 interleaved rounds, 1 thread
    python benchmarks/data_path.py --files 640 --rounds 7 --workers 8 --json data_path.json

A GPU node's CPU cores decode and crop every training image. This measures, in one process and one thread (so one
core), each pipeline reading every file of the same folder once per round, rounds interleaved (the order reversed
every other round) so that the machine's drift hits all rows alike; it reports the median rate and the median of
the per-round ratios to the official pipeline:

- official: torchvision ImageFolder + RandomResizedCrop(224, scale 0.2-1, PIL bicubic) + flip + ToTensor +
  Normalize, the official repository's transform;
- PIL path: this project's sample before tensor_crops (MaskedImages: PIL decode, v2 crop and resize on the PIL
  image, global generators seeded per sample), uint8 and masking noise;
- tensor path: what pretraining on a folder runs now (tensor_crops.FileMaskedImages: decode_jpeg into a uint8
  tensor, the crop drawn from a torch.Generator, bicubic antialiased resize on the tensor), uint8 and noise;
- the floors: decoding alone (PIL, decode_jpeg), and decode_jpeg + the same resize with no sampling around it.

Then the official pipeline and the tensor path through a DataLoader with --workers processes (all cores), and,
from the per-core rate, the cores one GPU needs to feed ViT-B/16 and ViT-L/16 at the GPU goals of
docs/performance.md (7,400 and 3,500 images/s).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mae.data.images import IMAGENET_MEAN, IMAGENET_STD, SAMPLE_IMAGES, sample_photo  # noqa: E402
from mae.data.pretraining import ImageFiles, MaskedImages, collate_skipping_unreadable  # noqa: E402
from mae.data.tensor_crops import FileMaskedImages, crop_flip_resize, read_uint8  # noqa: E402

SIZES = ((500, 375), (375, 500), (500, 333))  # (width, height): ImageNet's common shapes
GPU_GOALS = {"ViT-B/16": 7400, "ViT-L/16": 3500}  # images/s per GPU (docs/performance.md)
L = 196  # masking noise per sample: 224 / 16 squared


def make_jpegs(folder, count, seed=0):
    """`count` JPEGs at quality 90 in folder/train/all/: a random 60-100% crop of a bundled photograph, resized to
    one of ImageNet's common shapes."""
    out = folder / "train" / "all"
    out.mkdir(parents=True, exist_ok=True)
    photos = [sample_photo(name) for name in SAMPLE_IMAGES]
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = photos[i % len(photos)]
        fraction = rng.uniform(0.6, 1.0)
        h, w = int(photo.shape[0] * fraction), int(photo.shape[1] * fraction)
        top, left = rng.integers(0, photo.shape[0] - h + 1), rng.integers(0, photo.shape[1] - w + 1)
        crop = Image.fromarray(photo[top : top + h, left : left + w]).convert("RGB")
        crop.resize(SIZES[i % len(SIZES)], Image.BICUBIC).save(out / f"{i:05d}.jpg", quality=90)
    return folder


def official_dataset(folder):
    from torchvision import datasets, transforms

    transform = transforms.Compose([
        transforms.RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=3),  # 3: PIL bicubic
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])  # fmt: skip
    return datasets.ImageFolder(str(folder / "train"), transform=transform)


class DecodeOnly:
    def __init__(self, files, how):
        self.files, self.how = files, how

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        if self.how == "pil":
            with Image.open(self.files[i]) as image:
                return image.convert("RGB").load()
        return read_uint8(self.files[i])


class DecodeAndResize(DecodeOnly):
    def __getitem__(self, i):
        image = read_uint8(self.files[i])
        h, w = image.shape[-2:]
        return crop_flip_resize(image, (0, 0, h * 2 // 3, w * 2 // 3), False, 224)


def pipelines(folder):
    files = ImageFiles(folder).files
    return {
        "official (ImageFolder, PIL bicubic, ToTensor, Normalize)": official_dataset(folder),
        "PIL path (MaskedImages: PIL decode and resize, seeded globals)": MaskedImages(
            ImageFiles(folder), 224, L
        ),
        "tensor path (FileMaskedImages: decode_jpeg, tensor resize)": FileMaskedImages(files, 224, L),
        "floor: PIL decode only": DecodeOnly(files, "pil"),
        "floor: decode_jpeg only": DecodeOnly(files, "tensor"),
        "floor: decode_jpeg + bicubic resize of a 2/3 crop": DecodeAndResize(files, "tensor"),
    }


def rate(dataset):
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return len(dataset) / (time.perf_counter() - start)


def loader_rate(dataset, workers, passes=3, batch_size=64):
    from torch.utils.data import DataLoader, RandomSampler

    sampler = RandomSampler(
        dataset, num_samples=passes * len(dataset), generator=torch.Generator().manual_seed(0)
    )
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate_skipping_unreadable if isinstance(dataset, FileMaskedImages) else None,
                        persistent_workers=False, prefetch_factor=4 if workers else None)  # fmt: skip
    iterator = iter(loader)
    next(iterator)  # the workers started and warm
    count, start = 0, time.perf_counter()
    for batch in iterator:
        count += len(batch[0])
    return count / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="a folder of JPEGs (default: make --files of them)"
    )
    parser.add_argument("--files", type=int, default=160)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count(), help="DataLoader workers (0: skip those rows)"
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or make_jpegs(Path(tmp), args.files)
        rows = pipelines(folder)
        for dataset in rows.values():  # warm the page cache, the decoders and the allocator
            dataset[0]
        rates = {name: [] for name in rows}
        for r in range(args.rounds):
            for name in list(rows) if r % 2 == 0 else list(rows)[::-1]:
                rates[name].append(rate(rows[name]))
        official = next(iter(rows))
        count = len(rows[official])
        print(f"{count} JPEG files, 224-pixel samples, 1 thread, {args.rounds} interleaved rounds (median):")
        report = {"files": count, "rounds": args.rounds, "per_core": {}, "workers": {}}
        for name, values in rates.items():
            ratio = statistics.median(v / o for v, o in zip(values, rates[official], strict=True))
            report["per_core"][name] = {"images_per_s": statistics.median(values), "vs_official": ratio,
                                        "rounds": values}  # fmt: skip
            print(f"  {name:62s} {statistics.median(values):7.0f} images/s per core  {ratio:5.2f}x official")
        tensor = report["per_core"][list(rows)[2]]["images_per_s"]
        for model, goal in GPU_GOALS.items():
            print(f"  {model} at {goal:,} images/s on one GPU needs {goal / tensor:.1f} such cores "
                  f"(official: {goal / report['per_core'][official]['images_per_s']:.1f})")  # fmt: skip
        if args.workers:
            for name in (official, list(rows)[2]):
                torch.set_num_threads(1)
                value = loader_rate(rows[name], args.workers)
                report["workers"][name] = value
                print(f"  {name:62s} {value:7.0f} images/s with {args.workers} DataLoader workers")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
