"""scikit-learn's 1,797 handwritten digits (8x8, read from the file scikit-learn ships), and the shifted digits of
notebook 11: each digit scaled and placed anywhere on a 32x32 canvas, so that a feature has to find it."""

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

from .images import channel_stats, normalize


def load_digits():
    """scikit-learn's digits as (images (1797, 8, 8) in 0..16, labels (1797,)), what sklearn.datasets.load_digits gives.

    Read straight from the file scikit-learn ships: importing scikit-learn itself takes seconds.
    """
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


def place_digits(digits, generator, canvas=32, normalized=True):
    """(N, 1, 8, 8) digits in [0, 1] -> (N, 1, canvas, canvas), each at its own random size and place, normalised
    (or in [0, 1] with normalized=False)."""
    placed = torch.stack([place_on_canvas(digit, canvas, generator=generator) for digit in digits])
    return normalize(placed) if normalized else placed


def shifted_digits(split, seed=0, canvas=32, normalized=True):
    """A split of the digits at fixed random sizes and places: (images (N, 1, canvas, canvas) normalised, labels (N,)).

    `seed` fixes the placements, so every method compared on it sees the same images (normalized=False: the same
    images in [0, 1]).
    """
    digits, labels = digit_tensors(split)
    return place_digits(digits, torch.Generator().manual_seed(seed), canvas, normalized), labels


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
