"""Images that installed packages ship, so that nothing is ever downloaded, and ImageNet normalisation."""

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import to_dtype

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Colour photographs bundled with scikit-image: the course's example images (notebooks 00-09 crop these).
SAMPLE_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")
# The other photographs the installed packages ship (scikit-image, scikit-learn, matplotlib), the held-out ones
# aside; grey ones are drawn as RGB. Clip art, logos and synthetic patterns are left out: they are not photographs.
MORE_PHOTOS = ("flower", "retina", "camera", "moon", "coins", "clock", "page", "text", "grass", "gravel", "brick",
               "cell", "microaneurysms")  # fmt: skip
# The built-in pretraining data (`--data_path builtin`): crops of these 19 photographs.
TRAINING_PHOTOS = SAMPLE_IMAGES + MORE_PHOTOS
# Whole photographs that no pretraining ever sees, for honest reconstruction numbers, one from each package: an
# indoor scene full of objects and colours, a temple among trees, a portrait.
HELD_OUT_PHOTOS = ("stereo_motorcycle", "china", "grace_hopper")
# sample_photo also names a synthetic image, used by no training: scikit-image's colour wheel.
HELD_OUT_IMAGES = (*HELD_OUT_PHOTOS, "colorwheel")
PHOTO_SOURCES = {
    "china": "sklearn",
    "flower": "sklearn",
    "grace_hopper": "matplotlib",
}  # others: skimage.data


def _read_photo(name):
    """The photograph as the package ships it: (H, W, 3) or (H, W) uint8."""
    source = PHOTO_SOURCES.get(name, "skimage")
    if source == "sklearn":  # sklearn.datasets.load_sample_image reads the same file, but imports slowly
        import importlib.util

        from PIL import Image

        folder = (
            Path(importlib.util.find_spec("sklearn").submodule_search_locations[0]) / "datasets" / "images"
        )
        with Image.open(folder / f"{name}.jpg") as image:
            return np.array(image.convert("RGB"))
    if source == "matplotlib":
        import matplotlib
        from PIL import Image

        with Image.open(Path(matplotlib.get_data_path()) / "sample_data" / f"{name}.jpg") as image:
            return np.array(image.convert("RGB"))
    import skimage.data

    image = getattr(skimage.data, name)()
    image = image[0] if isinstance(image, tuple) else image  # stereo pairs: the left image
    return np.array(image)  # a writable copy (torch.from_numpy warns about read-only arrays)


def sample_photo(name="astronaut"):
    """A bundled photograph as a (H, W, 3) uint8 array (grey photographs repeated over the 3 channels)."""
    known = TRAINING_PHOTOS + HELD_OUT_IMAGES
    if name not in known:
        raise ValueError(f"unknown sample image {name!r}; choose one of: {', '.join(known)}")
    image = _read_photo(name)
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def to_tensor(image, size=224):
    """(H, W, 3) uint8 -> (1, 3, size, size) float, centre-cropped to a square, resized, ImageNet-normalised."""
    image = np.asarray(image)
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top : top + side, left : left + side]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255)  # (3, H, W)
    x = F.interpolate(x.unsqueeze(0), size=(size, size), mode="bicubic", align_corners=False)
    return normalize(x.clamp(0, 1))


def channel_stats(channels):
    """The normalisation of every image here: ImageNet's (mean, std) for 3 channels, 0.5 / 0.5 for any other count
    (the grayscale digits)."""
    return (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,) * channels, (0.5,) * channels)


def _stats(x):
    """channel_stats of a (B, C, H, W) batch, as (1, C, 1, 1) tensors on its device."""
    return _stats_on(x.shape[1], x.device)


@functools.cache
def _stats_on(channels, device):
    """Made once per device: a tensor built from Python numbers on a GPU is a copy that waits for the GPU's queue
    (once per batch where the GPU normalises)."""
    mean, std = channel_stats(channels)
    shape = (1, channels, 1, 1)
    return torch.tensor(mean, device=device).view(shape), torch.tensor(std, device=device).view(shape)


def normalize(x):
    """(B, C, H, W) in [0, 1] -> normalised as the model sees it."""
    mean, std = _stats(x)
    return (x - mean) / std


def to_model_input(x):
    """A batch as the model takes it: uint8 images (what pretraining's workers send) scaled to [0, 1] and
    normalised, on whatever device they are; float images, which their transform normalised already, as they are.

    The same arithmetic as torchvision's ToDtype(scale=True) then Normalize in the workers: bit for bit."""
    if x.dtype != torch.uint8:
        return x
    return normalize(to_dtype(x, torch.float32, scale=True))


def denormalize(x):
    """Inverse of normalize, clipped to [0, 1] for display."""
    mean, std = _stats(x)
    return (x * std + mean).clamp(0, 1)


def photo_crops(count, size=64, names=SAMPLE_IMAGES, scale=(0.2, 1.0), seed=0):
    """`count` random square crops of the bundled photographs, resized to `size`: (count, 3, size, size), normalised.

    Crops cover `scale` of the shorter side squared, as RandomResizedCrop does (without aspect changes).
    """
    generator = torch.Generator().manual_seed(seed)
    photos = [torch.from_numpy(sample_photo(name)).permute(2, 0, 1).float().div(255) for name in names]
    crops = []
    for _ in range(count):
        photo = photos[int(torch.randint(len(photos), (1,), generator=generator))]
        _, h, w = photo.shape
        area = scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=generator).item()
        side = max(8, int(min(h, w) * area**0.5))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = photo[:, top : top + side, left : left + side].unsqueeze(0)
        crops.append(F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1))
    return normalize(torch.cat(crops))
