"""Image files on disk, for every job: finding them under a folder, and reading one as an 8-bit image.

Finding follows symbolic links (datasets are often linked in) but visits each real folder once, so a link loop
(`loop -> .`) or two links to one folder never count an image twice; only regular files count (a FIFO named
`x.png` would block the reader forever). Reading scales what PIL opens as more than 8 bits (16-bit PNGs and TIFFs,
32-bit integer and float TIFFs) to 0..255, or refuses it by name, so pretraining, linear probing and fine-tuning
see the same pixels.
"""

import os
import stat
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif"}


def find_images(root, skip=()):
    """The image files under `root` (any depth), sorted; the folders `skip` names ((st_dev, st_ino) pairs) are not
    entered."""
    found, seen = [], set(skip)
    for folder, subfolders, names in os.walk(root, followlinks=True):
        if _identity(folder) in seen:  # reached again through a link: already listed (or not ours)
            subfolders.clear()
            continue
        seen.add(_identity(folder))
        subfolders.sort()
        for name in names:
            path = Path(folder) / name
            if path.suffix.lower() in IMAGE_SUFFIXES and _is_regular_file(path):
                found.append(path)
    return sorted(found)


def _identity(folder):
    info = os.stat(folder)
    return info.st_dev, info.st_ino


def _is_regular_file(path):
    try:
        return stat.S_ISREG(os.stat(path).st_mode)  # a link to a regular file counts; a broken link does not
    except OSError:
        return False


def class_folders(root):
    """(class names, image files, their class indices) of `root`'s sub-folders, one per class, in sorted order
    (the ImageNet layout, as torchvision's ImageFolder reads it)."""
    root = Path(root)
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        raise FileNotFoundError(f"no class folders in {root}: expected one sub-folder of images per class")
    identities = {name: _identity(root / name) for name in classes}
    for name, identity in identities.items():
        twin = next((other for other in classes if other < name and identities[other] == identity), None)
        if identity == _identity(root) or twin:
            raise ValueError(f"the class folder {root / name} is {root if not twin else root / twin} under another "
                             f"name (a link): each image must belong to one class")  # fmt: skip
    files, targets = [], []
    for index, name in enumerate(classes):
        others = {identity for other, identity in identities.items() if other != name}
        images = find_images(
            root / name, skip=others | {_identity(root)}
        )  # a link to another class: not ours
        if not images:
            raise FileNotFoundError(
                f"no images in the class folder {root / name}: expected files ending in "
                f"{', '.join(sorted(IMAGE_SUFFIXES))}"
            )
        files += images
        targets += [index] * len(images)
    return classes, files, targets


def read_image(path):
    """The image at `path`, decoded now (a truncated file fails here), in 8 bits per channel (to_8_bits)."""
    with Image.open(path) as image:
        image.load()
        return to_8_bits(image, path).copy()


def to_8_bits(image, name="the image"):
    """`image` in a mode that converts to "L" or "RGB" without losing its scale.

    16-bit images (and 32-bit integer ones within 0..65535) open as integers up to 65535, which convert() clips at
    255 (an almost white image): they are divided by 257. 32-bit float images are taken to be in 0..1 (a float
    image's usual range) and multiplied by 255; one with values outside it has no scale PIL can tell, and is
    refused. Other modes are returned as they are.
    """
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"{name}: a 32-bit integer image with values in [{values.min():g}, "
                             f"{values.max():g}], not the 0..65535 of 16 bits: its scale is unknown")  # fmt: skip
        return Image.fromarray(np.clip((values / 257).round(), 0, 255).astype(np.uint8))  # mode L
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise ValueError(f"{name}: a 32-bit float image with values in [{np.nanmin(values):g}, "
                             f"{np.nanmax(values):g}], not in 0..1: its scale is unknown")  # fmt: skip
        return Image.fromarray((values * 255).round().astype(np.uint8))  # mode L
    return image
