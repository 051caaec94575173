"""Pretraining data: an ImageNet-style folder, or images that installed packages ship.

Every sample is a function of (seed, epoch, index) only: its crop, its flip and its
masking noise come from a generator seeded with those three numbers. So a run gives the
same batches whatever the number of GPUs, workers or restarts, which is what makes a
killed run resume exactly and a 2-process run equal a 1-process one.

    --data_path /datasets/imagenet      uses /datasets/imagenet/train (or the folder itself)
    --data_path builtin                 crops of 19 photographs that installed packages ship (3 channels)
    --data_path builtin:digits          scikit-learn's 8x8 handwritten digits (1 channel)
    --data_path builtin:shifted-digits  the same digits, each scaled and placed anywhere on a 32x32 canvas

The digits live in digits.py; the labelled data of linear probing and fine-tuning in labelled.py.
"""

from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import v2

from .digits import Digits, shifted_digits_transform
from .files import IMAGE_SUFFIXES, find_images, read_image
from .images import TRAINING_PHOTOS, sample_photo
from .seeding import SeededSamples
from .tensor_crops import FileMaskedImages


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


class MaskedImages(SeededSamples):
    """Wraps a list-like of PIL images; yields (image, masking noise), both fixed by (seed, epoch, index). For the
    images that ship in memory (photographs, digits); files go through tensor_crops.FileMaskedImages, the same
    sample at the decoder's speed.

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
        self.files = find_images(root)
        if not self.files:
            raise ValueError(
                f"no images in {root}: expected files ending in {', '.join(sorted(IMAGE_SUFFIXES))}, "
                f"directly or in class sub-folders"
            )

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return read_image(self.files[index])


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
        return FileMaskedImages(ImageFiles(data_path).files, input_size, num_patches, in_chans, seed)
    scale = getattr(images, "crop_scale", (0.2, 1.0))  # the paper's, except for the built-in photographs
    return MaskedImages(images, input_size, num_patches, in_chans, seed, scale, transform)
