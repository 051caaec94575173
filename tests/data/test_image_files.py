"""Image files for every job (mae.data.files): found once each through links and loops, only regular files, and
read in 8 bits whatever their depth; the classification folders of linear probing and fine-tuning read alike.
"""

import os
import threading

import numpy as np
import pytest
from PIL import Image

from mae.data.files import class_folders, find_images, read_image
from mae.data.labelled import load_labelled
from mae.data.pretraining import ImageFiles


def write_images(folder, count, size=8):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((size, size, 3), 10 * i, np.uint8)).save(folder / f"{i}.png")


def classification_folder(root, per_class=3):
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            write_images(root / split / name, per_class)
    return root


def test_a_link_loop_counts_every_image_once(tmp_path):
    """The red team's probe: `loop -> .` inside a class folder made 21 files into 828 images."""
    root = classification_folder(tmp_path / "data")
    (root / "train" / "cat" / "loop").symlink_to(".")
    (root / "train" / "dog" / "to_cat").symlink_to(
        root / "train" / "cat"
    )  # another class's images: not dog's
    data = load_labelled(root)
    assert len(data.train_labels) == 6 and data.train_labels == [0, 0, 0, 1, 1, 1]
    assert len(find_images(root / "train" / "cat")) == 3
    (root / "train" / "loop").symlink_to(".")  # a "class" that is the whole split
    with pytest.raises(ValueError, match=r"class folder .*train/loop is .*train under another name"):
        load_labelled(root)


def test_linked_class_folders_and_files_count(tmp_path):
    """Datasets are often linked in: a class folder or a file that is a link counts, once."""
    elsewhere = tmp_path / "store"
    write_images(elsewhere / "cats", 4)
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "train" / "cat").symlink_to(elsewhere / "cats")
    write_images(root / "train" / "dog", 2)
    (root / "train" / "dog" / "linked.png").symlink_to(elsewhere / "cats" / "0.png")
    (root / "train" / "dog" / "broken.png").symlink_to(tmp_path / "missing.png")
    classes, files, targets = class_folders(root / "train")
    assert classes == ["cat", "dog"] and targets == [0] * 4 + [1] * 3


@pytest.mark.parametrize("job", ["pretraining", "classification"])
def test_a_fifo_named_like_an_image_is_not_opened(tmp_path, job):
    """A FIFO named x.png blocks open() until someone writes to it; only regular files are images."""
    root = classification_folder(tmp_path / "data")
    os.mkfifo(root / "train" / "cat" / "x.png")
    result = []
    worker = threading.Thread(
        target=lambda: result.append(
            len(ImageFiles(root)) if job == "pretraining" else len(load_labelled(root).train_labels)
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # unblock the reader so that the test process can end
        with open(root / "train" / "cat" / "x.png", "wb"):
            pass
        pytest.fail("listing the folder opened the FIFO and blocked")
    assert result == [6]
    image = read_image(root / "train" / "cat" / "0.png")
    assert image.mode == "RGB"


RAMP = np.linspace(0, 1, 16 * 16).reshape(16, 16)


@pytest.mark.parametrize("kind", ["16-bit PNG", "16-bit TIFF", "32-bit float TIFF", "32-bit integer TIFF"])
def test_deep_images_are_scaled_alike_for_every_job(tmp_path, kind):
    """16-bit PNGs and TIFFs once turned white in linear probing and fine-tuning, float TIFFs black in pretraining."""
    if kind.startswith("16-bit"):
        image = Image.fromarray((RAMP * 65535).round().astype(np.uint16))
    elif kind.startswith("32-bit float"):
        image = Image.fromarray(RAMP.astype(np.float32))
    else:
        image = Image.fromarray((RAMP * 65535).round().astype(np.int32))
    root = classification_folder(tmp_path / "data", per_class=1)
    path = root / "train" / "cat" / ("deep.png" if "PNG" in kind else "deep.tif")
    image.save(path)
    want = (RAMP * 255).round()
    pretraining, classification = ImageFiles(root), load_labelled(root).train_images
    for read in (read_image(path), pretraining[pretraining.files.index(path)],
                 classification[classification.files.index(path)]):  # fmt: skip
        values = np.asarray(read.convert("L"), dtype=np.float64)
        assert np.abs(values - want).max() <= 1, kind


@pytest.mark.parametrize("values, says", [
    (np.array([[-1.0, 2.0]], np.float32), r"32-bit float image with values in \[-1, 2\], not in 0..1"),
    (np.array([[0, 70000]], np.int32), r"32-bit integer image with values in \[0, 70000\], not the 0..65535"),
])  # fmt: skip
def test_a_deep_image_of_unknown_scale_is_refused_by_name(tmp_path, values, says):
    path = tmp_path / "odd.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(ValueError, match=f"odd.tif: a {says}"):
        read_image(path)
