"""Pretraining samples from image files at the decoder's speed: a JPEG decoded by libjpeg-turbo straight into a
uint8 tensor (TorchCodec's decode_jpeg, which replaces torchvision.io's, deprecated since torchvision 0.29; that one
where TorchCodec cannot load), the paper's crop and flip drawn from an explicit generator, the crop resized on the
tensor (bicubic, antialiased).

The same sample as the PIL path before it (MaskedImages with pretrain_transform), measured side by side in
benchmarks/data_path.py at several times its speed per core: the crop box, the flip and the masking noise are the
same numbers (torchvision's RandomResizedCrop algorithm, drawn in the same order from a generator seeded as the
global ones were), and only the resize's pixels differ from PIL's bicubic, by a bound tests/data/test_tensor_crops.py
holds. Drawing from a torch.Generator instead of seeding and restoring torch's, numpy's and random's global
generators also saves ~0.1 ms a sample.

Files that are not JPEGs (PNG, BMP, TIFF, 16-bit images ...) or that libjpeg-turbo refuses (CMYK, damaged) take the
general path: PIL, as every job reads images (files.read_image); a file PIL cannot read either is skipped and
counted like any unreadable sample.
"""

import io
import math
import warnings
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .files import read_image
from .seeding import SeededSamples, sample_seed

JPEG_MAGIC = b"\xff\xd8\xff"
RATIO = (3 / 4, 4 / 3)


def _jpeg_decoder():
    """decode(bytes, mode) -> uint8 (C, H, W): TorchCodec's, else torchvision's (an older torch, no TorchCodec)."""
    try:
        from torchcodec.decoders import decode_jpeg

        return lambda data, mode: decode_jpeg(data, mode=mode)
    except Exception:  # not installed, or built for another torch (it then fails to load its library)
        from torchvision.io import ImageReadMode, decode_jpeg

        def decode(data, mode):
            with warnings.catch_warnings():
                warnings.simplefilter(
                    "ignore", DeprecationWarning
                )  # the fallback knows torchvision's is deprecated
                tensor = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                return decode_jpeg(tensor, mode=getattr(ImageReadMode, mode))

        return decode


DECODE_JPEG = _jpeg_decoder()


def exif_rotated(data):
    """Whether a JPEG's EXIF asks for a rotation or mirroring. TorchCodec applies it; PIL, and so ImageFolder and the
    official pipeline, does not: such files go through PIL, so that every path sees the same pixels."""
    if b"Exif" not in data[:65536]:  # the APP1 segment sits in the header
        return False
    with Image.open(io.BytesIO(data)) as image:
        return image.getexif().get(0x0112, 1) != 1  # 0x0112: Orientation


def sample_generator(seed, epoch, index):
    """The generator every random choice of sample `index` in `epoch` is drawn from."""
    return torch.Generator().manual_seed(sample_seed(seed, epoch, index))


def crop_box(height, width, generator, scale=(0.2, 1.0), ratio=RATIO):
    """(top, left, h, w) of RandomResizedCrop, drawn from `generator` as torchvision draws it from torch's global
    generator (the same numbers for the same seed): up to 10 tries of an area in `scale` and a log-uniform aspect
    ratio in `ratio`, else the whole image cut to the nearest allowed ratio, centred."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect_ratio = torch.exp(
            torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)
        ).item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = torch.randint(0, height - h + 1, size=(1,), generator=generator).item()
            left = torch.randint(0, width - w + 1, size=(1,), generator=generator).item()
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def read_uint8(path, channels=3):
    """The image at `path` as a (channels, H, W) uint8 tensor: JPEGs by libjpeg-turbo, anything else by PIL."""
    data = Path(path).read_bytes()
    if data[:3] == JPEG_MAGIC and not exif_rotated(data):
        try:
            return DECODE_JPEG(data, "RGB" if channels == 3 else "GRAY")
        except Exception:
            pass  # CMYK, damage, a decoder's limits: PIL decides
    image = read_image(path).convert("RGB" if channels == 3 else "L")
    return TF.pil_to_tensor(image)


def crop_flip_resize(image, box, flip, size):
    """(C, H, W) uint8 -> (C, size, size) uint8: the box cut out, resized (bicubic, antialiased), mirrored if `flip`."""
    top, left, h, w = box
    out = TF.resized_crop(image, top, left, h, w, [size, size], InterpolationMode.BICUBIC, antialias=True)
    return out.flip(-1) if flip else out


class FileMaskedImages(SeededSamples):
    """Image files -> (uint8 image (C, S, S), masking noise (L,)), the pretraining sample of a folder; each a function
    of (seed, epoch, index), drawn in the order MaskedImages draws: the crop box, the flip, the noise."""

    def __init__(self, files, input_size, num_patches, in_chans=3, seed=0, scale=(0.2, 1.0)):
        super().__init__(seed)
        self.files, self.input_size, self.num_patches = files, input_size, num_patches
        self.channels, self.scale = in_chans, scale

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        try:
            image = read_uint8(self.files[index], self.channels)
        except Exception as error:
            return self.unreadable(index, error)
        generator = sample_generator(self.seed, self.epoch, index)
        box = crop_box(image.shape[-2], image.shape[-1], generator, self.scale)
        flip = torch.rand(1, generator=generator).item() < 0.5
        noise = torch.rand(self.num_patches, generator=generator)
        return crop_flip_resize(image, box, flip, self.input_size), noise
