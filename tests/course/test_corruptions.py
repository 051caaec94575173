"""ImageNet-C's corruptions on images in memory (mae.corruptions; notebook 13): the images each set gets, the
errors measured on them, and bad input."""

import numpy as np
import pytest
import torch

from mae import corruptions
from mae.benchmarks import CORRUPTIONS


def digits_like(count=4, seed=0):
    """(count, 1, 32, 32) in [0, 1]: a bright square on black, somewhere different in each image."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 1, 32, 32)
    for image in images:
        top, left = torch.randint(0, 20, (2,), generator=generator).tolist()
        image[:, top : top + 12, left : left + 12] = 0.9
    return images


def test_every_corruption_keeps_shape_and_range_changes_the_image_and_repeats_by_seed():
    images = digits_like()
    for name in CORRUPTIONS:
        out = corruptions.corrupt(images, name, 3, seed=0)
        assert out.shape == images.shape and out.dtype == images.dtype, name
        assert 0 <= out.min() and out.max() <= 1, name
        assert torch.equal(out, corruptions.corrupt(images, name, 3, seed=0)), (
            f"{name}: not a function of the seed"
        )
        assert not torch.equal(out, (images * 255).round() / 255), f"{name} left the images as they were"
        rgb = corruptions.corrupt(images.expand(-1, 3, -1, -1), name, 3, seed=0)
        assert torch.equal(rgb * 255, (rgb * 255).round()), f"{name}: not 256 levels"
    noisy = corruptions.corrupt(images, "gaussian_noise", 3, seed=0)
    assert not torch.equal(noisy, corruptions.corrupt(images, "gaussian_noise", 3, seed=1))


def test_a_set_does_not_depend_on_what_ran_before_and_numpy_is_left_as_it_was():
    images = digits_like()
    first = {name: corruptions.corrupt(images, name, 2, seed=0) for name in ("glass_blur", "gaussian_noise")}
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    corruptions.corrupt(images, "snow", 4, seed=0)  # draws from numpy's global generator
    assert np.array_equal(np.random.get_state()[1], before), "numpy's global generator was not restored"
    np.random.rand(7)  # whatever ran before
    for name in first:  # glass blur seeds numba's generator; Gaussian noise draws from numpy's
        assert torch.equal(corruptions.corrupt(images, name, 2, seed=0), first[name]), name
    assert corruptions.seed_of_set(0, "fog", 2) != corruptions.seed_of_set(0, "fog", 3)
    assert corruptions.seed_of_set(0, "fog", 2) != corruptions.seed_of_set(1, "fog", 2)


def test_contrast_by_hand_and_one_channel_is_the_luma_of_three():
    images = digits_like(2)
    # ImageNet-C's contrast at severity 1: every pixel pulled towards the image's mean, (x - mean) * 0.4 + mean.
    pixels = (images * 255).round()
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    by_hand = ((pixels / 255 - mean / 255) * 0.4 + mean / 255).clamp(0, 1)
    out = corruptions.corrupt(images, "contrast", 1)
    assert (out - by_hand).abs().max() <= 1 / 255 + 1e-6
    rgb = corruptions.corrupt(images.expand(-1, 3, -1, -1), "frost", 2, seed=0)  # frost adds colour
    assert rgb.shape == (2, 3, 32, 32)
    luma = torch.einsum("nchw,c->nhw", rgb, torch.tensor(corruptions.LUMA))[:, None]
    assert torch.allclose(corruptions.corrupt(images, "frost", 2, seed=0), luma, atol=1e-6)


def test_corruption_errors_equal_a_direct_computation():
    images = digits_like(6)
    labels = torch.tensor([0, 1, 0, 1, 1, 0])

    def bright(x):  # class 1 where the image is brighter than average: logits (N, 2)
        score = x.mean(dim=(1, 2, 3)) - 0.1
        return torch.stack([-score, score], dim=1)

    def always_one(x):
        return torch.tensor([[0.0, 1.0]]).expand(len(x), -1)

    chosen = ("shot_noise", "fog")
    errors = corruptions.corruption_errors(
        {"bright": bright, "one": always_one}, images, labels, chosen, (1, 5)
    )
    for name in chosen:
        for severity in (1, 5):
            corrupted = corruptions.corrupt(images, name, severity, seed=0)
            wrong = (bright(corrupted).argmax(1) != labels).float().mean().item()
            assert errors["bright"][name, severity] == pytest.approx(wrong)
            assert errors["one"][name, severity] == pytest.approx(0.5)
    assert set(errors["bright"]) == {(c, s) for c in chosen for s in (1, 5)}


@pytest.mark.parametrize(
    ("images", "name", "severity", "message"),
    [
        (torch.zeros(32, 32), "fog", 1, r"corrupt takes images \(N, C, H, W\) with 1 or 3 channels, got shape \(32, 32\)"),
        (torch.zeros(1, 2, 32, 32), "fog", 1, "with 1 or 3 channels, got shape"),
        (torch.zeros(1, 1, 16, 32), "fog", 1, "need images of at least 32x32 pixels, got 16x32"),
        (torch.zeros(1, 1, 32, 32), "fog", 0, "a severity is one of 1 to 5, got 0"),
        (torch.zeros(1, 1, 32, 32), "gaussian", 1, "unknown corruption 'gaussian'; the corruptions are: brightness, "),
        (torch.zeros(1, 1, 32, 32, dtype=torch.uint8), "fog", 1, r"corrupt takes float images in \[0, 1\], got torch.uint8"),
        (torch.full((1, 3, 32, 32), -2.1), "fog", 1, r"images in \[0, 1\] \(before normalisation\), got values from -2.1 to -2.1"),
    ],
)  # fmt: skip
def test_bad_input_is_named(images, name, severity, message):
    with pytest.raises(ValueError, match=message):
        corruptions.corrupt(images, name, severity)


def test_without_the_package_the_error_says_how_to_install_it(monkeypatch):
    real = corruptions.importlib.import_module

    def missing(name):
        if name == "imagecorruptions":
            raise ImportError("No module named 'imagecorruptions'")
        return real(name)

    monkeypatch.setattr(corruptions.importlib, "import_module", missing)
    with pytest.raises(ImportError, match=r"pip install 'mae-from-scratch\[course\]'"):
        corruptions.corrupt(digits_like(1), "fog", 1)
