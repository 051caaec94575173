"""Labelled images for linear probing and fine-tuning: `train/` and `val/` folders of class sub-folders (the
ImageNet layout), a transfer dataset in its distributed layout (iNaturalist's JSON files, Places365's file lists:
mae.data.transfer), or builtin:digits with its fixed split; each sample's random choices fixed by (seed, epoch,
index), as in pretraining."""

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms import v2

from . import transfer
from .digits import Digits
from .files import class_folders, read_image
from .images import channel_stats
from .seeding import SeededSamples


class LabelledImages(SeededSamples):
    """(image, label) pairs from a list-like of PIL images (ClassFolders, say), transformed per sample.

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
            image = self.images[index].convert(self.mode)
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
    class_names: tuple = ()  # class_names[i] names label i (the sorted folder names, as ImageFolder orders them)


def load_labelled(data_path):
    """builtin:digits, a transfer dataset's folder (mae.data.transfer), or a folder with train/ and val/ sub-folders
    of class folders."""
    if data_path == "builtin:digits":
        train, val = Digits("train"), Digits("val")
        return LabelledData(train.images, train.labels, val.images, val.labels, Digits.num_classes, 1,
                            *channel_stats(1), hflip=0.0, crop_pct=1.0, min_scale=0.5,
                            class_names=tuple(str(d) for d in range(Digits.num_classes)))  # fmt: skip
    if str(data_path).startswith("builtin"):
        raise ValueError(f"no labels for {data_path!r}; the built-in labelled data is builtin:digits")
    root = Path(data_path)
    layout = transfer.find_layout(root)
    if layout is not None:
        splits, names = transfer.load(root, layout)
        (train_files, train_labels), (val_files, val_labels) = splits["train"], splits["val"]
        return LabelledData(ImageFiles(train_files), train_labels, ImageFiles(val_files), val_labels, len(names), 3,
                            *channel_stats(3), class_names=tuple(names))  # fmt: skip
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise FileNotFoundError(
                f"expected {root / split}/ with one sub-folder per class (the ImageNet layout), or the files of "
                f"iNaturalist (train<year>.json, val<year>.json) or Places365 (places365_train_standard.txt, ...)"
            )
    train, val = ClassFolders(root / "train"), ClassFolders(root / "val")
    if train.classes != val.classes:
        raise ValueError(f"train/ and val/ of {root} have different class folders")
    return LabelledData(train, train.targets, val, val.targets, len(train.classes), 3, *channel_stats(3),
                        class_names=tuple(train.classes))  # fmt: skip


class ImageFiles:
    """A list of image files, read as every job reads them (files.read_image)."""

    def __init__(self, files):
        self.files = list(files)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        return read_image(self.files[index])


class ClassFolders(ImageFiles):
    """The images of a folder of class folders (files.class_folders)."""

    def __init__(self, root):
        self.root = Path(root)
        self.classes, files, self.targets = class_folders(self.root)
        super().__init__(files)


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
