"""Pretraining data (mae.data.pretraining): image folders and the built-in sets, samples fixed by (seed,
epoch, index) without touching any global generator, unreadable files skipped, 16-bit images, names checked.
"""

import numpy as np
import pytest
import torch
from helpers import make_folder
from PIL import Image

from mae.data.pretraining import ImageFiles, build_pretrain_dataset, collate_skipping_unreadable


def test_datasets_and_errors(tmp_path):
    folder = make_folder(tmp_path / "data")
    dataset = build_pretrain_dataset(str(folder), 32, 16, seed=0)
    assert len(dataset) == 23
    image, noise = dataset[0]
    assert image.shape == (3, 32, 32) and noise.shape == (16,)
    assert image.dtype == torch.uint8  # normalised where the batch lands (tests/jobs/test_pretrain.py)
    torch.manual_seed(5)
    before = torch.rand(3)
    torch.manual_seed(5)
    again = dataset[0]  # deterministic per (seed, epoch, index), and the global RNG is left alone
    assert torch.equal(again[0], image) and torch.equal(torch.rand(3), before)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[0][0], image)
    broken = next(i for i, f in enumerate(dataset.files) if f.name == "broken.jpg")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        assert dataset[broken] is None
    assert collate_skipping_unreadable([None, dataset[1]])[0].shape == (1, 3, 32, 32)

    digits = build_pretrain_dataset("builtin:digits", 16, 4, in_chans=1)
    assert digits[0][0].shape == (1, 16, 16) and len(digits) == 1437  # the training split only
    with pytest.raises(FileNotFoundError, match="data folder not found: .*missing"):
        build_pretrain_dataset(str(tmp_path / "missing"), 32, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in .*empty"):
        build_pretrain_dataset(str(tmp_path / "empty"), 32, 16)
    with pytest.raises(ValueError, match="unknown built-in dataset"):
        build_pretrain_dataset("builtin:cifar", 32, 16)


def test_16_bit_pngs_are_scaled_to_8_bits(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    (tmp_path / "train").mkdir()
    Image.fromarray(ramp).save(tmp_path / "train" / "depth.png")
    with Image.open(tmp_path / "train" / "depth.png") as raw:
        assert raw.mode.startswith("I")  # what Pillow gives for 16-bit PNGs
    image = ImageFiles(tmp_path)[0]
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    assert abs(rgb.mean() - ramp.mean() / 257) < 0.5 and rgb.min() == 0 and rgb.max() == 255


def test_seeding_a_sample_leaves_the_gpu_generators_alone(monkeypatch):
    """A sample's seed goes to the CPU generator only: torch.manual_seed would also reseed every GPU's generator
    (which fork_rng(devices=[]) does not put back), making the main process's drop-path masks depend on the data."""
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: reseeded.append(seed))
    dataset = build_pretrain_dataset("builtin:shifted-digits", 32, 64, in_chans=1, seed=3)
    torch.manual_seed(5)
    reseeded.clear()
    before = torch.get_rng_state()
    first = dataset[7]
    # Nothing reseeded, the CPU's state put back, and each sample still its own seed's.
    assert reseeded == [] and torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(a, b) for a, b in zip(first, dataset[7]))
