"""Pretraining data: an ImageNet-style folder, or images that installed packages ship.

Every sample is a function of (seed, epoch, index) only: its crop, its flip and its
masking noise come from a generator seeded with those three numbers. So a run gives the
same batches whatever the number of GPUs, workers or restarts, which is what makes a
killed run resume exactly and a 2-process run equal a 1-process one.

    --data_path /datasets/imagenet      uses /datasets/imagenet/train (or the folder itself)
    --data_path builtin                 crops of 19 photographs that installed packages ship (3 channels)
    --data_path builtin:digits          scikit-learn's 8x8 handwritten digits (1 channel)
    --data_path builtin:shifted-digits  the same digits, each scaled and placed anywhere on a 32x32 canvas

Classification (linear probing, fine-tuning) reads labelled images: `train/` and `val/`
folders of class sub-folders (the ImageNet layout), or builtin:digits with its fixed split.
"""

import contextlib
import functools
import random
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from .images import TRAINING_PHOTOS, channel_stats, normalize, sample_photo

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}


def pretrain_transform(input_size, scale=(0.2, 1.0)):
    """The paper's augmentation: RandomResizedCrop(scale 0.2-1, bicubic), horizontal flip; a uint8 tensor.

    Scaling to [0, 1] and normalising happen where the batch lands (images.to_model_input, on the GPU in training):
    workers then send, and the host copies to the GPU, a quarter of float32's bytes.
    """
    return v2.Compose([
        v2.RandomResizedCrop(input_size, scale=scale, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ToImage(),
    ])  # fmt: skip


def sample_seed(seed, epoch, index):
    """One 63-bit seed per (run seed, epoch, sample index)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class SeededSamples(torch.utils.data.Dataset):
    """Base of the datasets here: every random choice for sample `index` in epoch `epoch` is a function of
    (seed, epoch, index), so a run gives the same batches whatever its processes, workers or restarts.

    Subclasses draw their random numbers inside `with self.seeded(index):`, and return `self.unreadable(index,
    error)` for a sample that cannot be read (the collate function drops it, the trainer counts it).
    """

    def __init__(self, seed=0):
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    @contextlib.contextmanager
    def seeded(self, index):
        """torch's, `random`'s and numpy's global generators seeded for this sample, then put back.

        (Transforms draw from all three: torchvision from torch, timm's RandAugment from `random`.)
        """
        seed = sample_seed(self.seed, self.epoch, index)
        state = random.getstate(), np.random.get_state()
        try:
            random.seed(seed)
            np.random.seed(seed % 2**32)
            with torch.random.fork_rng(devices=[]):
                # The CPU generator only: torch.manual_seed would also reseed the GPUs' generators, which fork_rng
                # (devices=[]) does not put back, so drop-path masks in the main process would depend on the samples.
                torch.default_generator.manual_seed(seed)
                yield
        finally:
            random.setstate(state[0])
            np.random.set_state(state[1])

    @staticmethod
    def unreadable(index, error):
        """A corrupt or unreadable file: skip it, loudly."""
        warnings.warn(f"skipping unreadable image #{index}: {error}", stacklevel=3)


class MaskedImages(SeededSamples):
    """Wraps a list-like of PIL images; yields (image, masking noise), both fixed by (seed, epoch, index).

    `transform` replaces the paper's augmentation (pretrain_transform) where a dataset needs its own.
    """

    def __init__(self, images, input_size, num_patches, in_chans=3, seed=0, scale=(0.2, 1.0), transform=None):
        super().__init__(seed)
        self.images, self.num_patches = images, num_patches
        self.transform = transform or pretrain_transform(input_size, scale)
        self.mode = "RGB" if in_chans == 3 else "L"

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        try:
            image = self.images[index].convert(self.mode)
        except Exception as error:
            return self.unreadable(index, error)
        with self.seeded(index):
            image = self.transform(image)
            noise = torch.rand(self.num_patches)
        return image, noise


def collate_skipping_unreadable(batch):
    """Default collation of the samples that could be read."""
    batch = [sample for sample in batch if sample is not None]
    if not batch:
        return None
    return torch.utils.data.default_collate(batch)


class ImageFiles:
    """Every image file under a folder (class sub-folders optional), opened lazily with PIL."""

    def __init__(self, root):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"data folder not found: {root}")
        if (root / "train").is_dir():
            root = root / "train"
        self.root = root
        self.files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self.files:
            raise ValueError(
                f"no images in {root}: expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}, "
                f"directly or in class sub-folders"
            )

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        with Image.open(self.files[index]) as image:
            image.load()  # decode now, so a truncated file fails here
            if image.mode.startswith("I;16") or image.mode == "I":
                # 16-bit PNGs and TIFFs open as 0..65535 integers, which convert("RGB"/"L") clips at 255 (an
                # almost white image): scale them to 8 bits first (65535 / 257 = 255).
                values = np.asarray(image, dtype=np.float64) / 257
                return Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8))  # mode L
            return image.copy()


class BundledPhotos:
    """The photographs installed packages ship (images.TRAINING_PHOTOS), repeated so an epoch has `length` samples.

    The photographs are 100-1,400 pixels wide; the paper's crops (20-100% of the area) would shrink them up to
    20 times into 64x64 tiles of fine detail. Crops of 1-30% of the area (50 to 280 pixels wide on a 512-pixel
    photograph) show objects and parts of them, as a 64x64 image usually does, and many more distinct crops.
    """

    crop_scale = (0.01, 0.3)

    def __init__(self, length=1024):
        self.photos = [Image.fromarray(sample_photo(name)) for name in TRAINING_PHOTOS]
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        return self.photos[index % len(self.photos)]


def load_digits():
    """scikit-learn's digits as (images (1797, 8, 8) in 0..16, labels (1797,)), what sklearn.datasets.load_digits gives.

    Read straight from the file scikit-learn ships: importing scikit-learn itself takes seconds.
    """
    import importlib.util

    package = Path(importlib.util.find_spec("sklearn").submodule_search_locations[0])
    table = np.loadtxt(package / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


class Digits:
    """scikit-learn's 1,797 handwritten digits, 8x8 grayscale, as PIL images with their labels.

    split="train" (1,437 images) and split="val" (360) are a fixed random 80/20 split; the
    built-in pretraining uses the training split only, so probes are measured on unseen digits.
    """

    num_classes = 10

    def __init__(self, split="all"):
        if split not in ("all", "train", "val"):
            raise ValueError(f"split must be 'all', 'train' or 'val', got {split!r}")
        images, targets = load_digits()
        order = np.random.default_rng(0).permutation(len(images))
        cut = int(0.8 * len(order))
        chosen = {"all": np.arange(len(order)), "train": order[:cut], "val": order[cut:]}[split]
        self.images = [Image.fromarray((images[i] * 255 / 16).astype(np.uint8)) for i in chosen]
        self.labels = targets[chosen].tolist()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return self.images[index]


# --------------------------------------------------------------------------- shifted digits


def place_on_canvas(digit, canvas=32, scale=(1.5, 2.5), generator=None):
    """(C, h, w) image in [0, 1] -> (C, canvas, canvas): scaled by a random factor, pasted at a random place on black.

    The random numbers come from `generator`, or from torch's global generator (which the datasets seed per sample).
    """
    low, high = scale
    if round(digit.shape[-1] * high) > canvas:
        raise ValueError(
            f"a {digit.shape[-1]}-pixel image scaled up to {high}x does not fit a {canvas}-pixel canvas"
        )
    side = round(digit.shape[-1] * (low + (high - low) * torch.rand((), generator=generator).item()))
    top, left = torch.randint(0, canvas - side + 1, (2,), generator=generator).tolist()
    resized = F.interpolate(digit[None], size=(side, side), mode="bilinear", align_corners=False)[0]
    placed = digit.new_zeros(digit.shape[0], canvas, canvas)
    placed[:, top : top + side, left : left + side] = resized.clamp(0, 1)
    return placed


def shifted_digits_transform(canvas=32):
    """Pretraining augmentation of builtin:shifted-digits: a new size and place for every sample, then normalisation."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            functools.partial(place_on_canvas, canvas=canvas),  # a partial, not a lambda: workers pickle it
            v2.Normalize(*channel_stats(1)),
        ]
    )


def place_digits(digits, generator, canvas=32):
    """(N, 1, 8, 8) digits in [0, 1] -> (N, 1, canvas, canvas), each at its own random size and place, normalised."""
    return normalize(torch.stack([place_on_canvas(digit, canvas, generator=generator) for digit in digits]))


def shifted_digits(split, seed=0, canvas=32):
    """A split of the digits at fixed random sizes and places: (images (N, 1, canvas, canvas) normalised, labels (N,)).

    `seed` fixes the placements, so every method compared on it sees the same images.
    """
    digits, labels = digit_tensors(split)
    return place_digits(digits, torch.Generator().manual_seed(seed), canvas), labels


def digit_tensors(split, per_class=None, seed=0):
    """The 8x8 digits of a split as (images (N, 1, 8, 8) in [0, 1], labels (N,)); `per_class` keeps that many of each
    class, chosen with `seed` (a few labels, for fine-tuning)."""
    digits = Digits(split)
    images = torch.tensor(np.stack([np.asarray(image) for image in digits.images]), dtype=torch.float32)[
        :, None
    ]
    labels = torch.tensor(digits.labels)
    if per_class is not None:
        generator = torch.Generator().manual_seed(seed)
        by_class = [(labels == c).nonzero()[:, 0] for c in range(Digits.num_classes)]
        keep = torch.cat([idx[torch.randperm(len(idx), generator=generator)[:per_class]] for idx in by_class])
        images, labels = images[keep], labels[keep]
    return images / 255, labels


def shifted_batch(digits, labels, batch_size, generator, canvas=32):
    """A training batch of shifted digits: `batch_size` of `digits` (N, 1, 8, 8) drawn at random, each placed anew."""
    chosen = torch.randint(0, len(digits), (batch_size,), generator=generator)
    return place_digits(digits[chosen], generator, canvas), labels[chosen]


def build_pretrain_dataset(data_path, input_size, num_patches, in_chans=3, seed=0):
    """The dataset that --data_path names (see the module docstring)."""
    transform = None
    if data_path in (None, "", "builtin", "builtin:photos"):
        images = BundledPhotos()
    elif data_path in ("builtin:digits", "builtin:shifted-digits"):
        images = Digits("train")
        if data_path == "builtin:shifted-digits":
            transform = shifted_digits_transform(input_size)
    elif str(data_path).startswith("builtin:"):
        raise ValueError(
            f"unknown built-in dataset {data_path!r}; "
            "use builtin, builtin:photos, builtin:digits or builtin:shifted-digits"
        )
    else:
        images = ImageFiles(data_path)
    scale = getattr(images, "crop_scale", (0.2, 1.0))  # the paper's, except for the built-in photographs
    return MaskedImages(images, input_size, num_patches, in_chans, seed, scale, transform)


# --------------------------------------------------------------------------- labelled data


class LabelledImages(SeededSamples):
    """(image, label) pairs from a list-like of PIL images (or an ImageFolder), transformed per sample.

    As in pretraining, every random choice of sample `index` in epoch `epoch` (crop, flip,
    RandAugment, random erasing) is fixed by (seed, epoch, index), so runs resume exactly and
    do not depend on the number of processes or workers.
    """

    def __init__(self, images, labels, transform, mode, seed=0):
        super().__init__(seed)
        self.images, self.labels, self.transform, self.mode = images, labels, transform, mode

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        try:
            image = self.images[index]
            image = (image[0] if isinstance(image, tuple) else image).convert(self.mode)
        except Exception as error:
            return self.unreadable(index, error)
        with self.seeded(index):
            image = self.transform(image)
        return image, torch.tensor(self.labels[index])


@dataclass
class LabelledData:
    """What a classification job needs to know about its data."""

    train_images: object
    train_labels: list
    val_images: object
    val_labels: list
    num_classes: int
    in_chans: int
    mean: tuple
    std: tuple
    hflip: float = 0.5  # digits are not mirror-symmetric: 0
    min_scale: float = 0.08  # RandomResizedCrop's smallest area; 8x8 digits keep at least half
    crop_pct: float = 224 / 256  # evaluation: resize to input_size / crop_pct, then centre-crop


def load_labelled(data_path):
    """builtin:digits, or a folder with train/ and val/ sub-folders of class folders."""
    if data_path == "builtin:digits":
        train, val = Digits("train"), Digits("val")
        return LabelledData(train.images, train.labels, val.images, val.labels, Digits.num_classes, 1,
                            *channel_stats(1), hflip=0.0, crop_pct=1.0, min_scale=0.5)  # fmt: skip
    if str(data_path).startswith("builtin"):
        raise ValueError(f"no labels for {data_path!r}; the built-in labelled data is builtin:digits")
    from torchvision.datasets import ImageFolder

    root = Path(data_path)
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(
                f"expected {root / split}/ with one sub-folder per class (the ImageNet layout)"
            )
    train, val = ImageFolder(root / "train"), ImageFolder(root / "val")
    if train.classes != val.classes:
        raise ValueError(f"train/ and val/ of {root} have different class folders")
    return LabelledData(train, train.targets, val, val.targets, len(train.classes), 3, *channel_stats(3))


def eval_transform(data, input_size):
    """Resize (bicubic) to input_size / crop_pct, centre-crop input_size, normalise."""
    return v2.Compose([
        v2.Resize(int(input_size / data.crop_pct), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(input_size),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(data.mean, data.std),
    ])  # fmt: skip


def labelled_tensors(data, split, input_size):
    """A whole split as tensors, evaluation transform only: (images (N, C, H, W), labels (N,)). For small data."""
    images, labels = (
        (data.train_images, data.train_labels) if split == "train" else (data.val_images, data.val_labels)
    )
    dataset = LabelledImages(
        images, labels, eval_transform(data, input_size), "L" if data.in_chans == 1 else "RGB"
    )
    samples = [dataset[i] for i in range(len(dataset))]
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])
