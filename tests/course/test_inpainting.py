"""The MAE against classical inpainting (mae.inpainting): same masks for every method, errors on removed
pixels only, and the shipped models reproducing the numbers of checkpoints/README.md.
"""

import re

import pytest
import torch
from helpers import ROOT

import mae
from mae import inpainting
from mae.data.images import HELD_OUT_PHOTOS, normalize


@pytest.fixture
def small_set():
    return inpainting.evaluation_set(HELD_OUT_PHOTOS, count=6, seed=3)


def test_evaluation_set_is_deterministic_and_in_pixel_range(small_set):
    images, noise = small_set
    assert images.shape == (6, 3, 64, 64) and noise.shape == (6, 64)
    assert 0 <= images.min() and images.max() <= 1
    again, noise_again = inpainting.evaluation_set(HELD_OUT_PHOTOS, count=6, seed=3)
    assert torch.equal(images, again) and torch.equal(noise, noise_again)


def test_the_mask_is_the_models_mask(small_set):
    """Every method is scored on the patches the model was not shown: the same noise gives the same mask."""
    images, noise = small_set
    model = mae.mae_vit_mini_patch8().eval()
    with torch.no_grad():
        _, _, model_mask = model(normalize(images), mask_ratio=0.75, noise=noise)
    mask = inpainting.patch_mask(noise, 0.75)
    assert torch.equal(mask, model_mask) and (mask.sum(1) == 48).all()
    removed = inpainting.pixel_mask(mask, 64)
    assert removed.shape == (6, 64, 64) and removed[:, :8, :8].eq(mask[:, :1, None].bool()).all()
    assert removed.float().mean() == 0.75


def test_every_method_fills_the_same_pixels_and_keeps_the_visible_ones(small_set):
    images, noise = small_set
    model = mae.mae_vit_mini_patch8().eval()
    scores, fills, mask = inpainting.compare(model, images, noise)
    removed = inpainting.pixel_mask(mask, 64).unsqueeze(1).expand_as(images)
    assert set(scores) == set(fills) == {"mean colour", "biharmonic", "MAE"}
    for name, filled in fills.items():
        assert torch.equal(filled[~removed], images[~removed]), f"{name} changed visible pixels"
        assert not torch.equal(filled[removed], images[removed]), f"{name} copied the removed pixels"
        assert scores[name] == pytest.approx(inpainting.masked_mse(filled, images, removed[:, 0]))


def test_error_counts_removed_pixels_only():
    images = torch.rand(2, 3, 16, 16)
    removed = torch.zeros(2, 16, 16, dtype=torch.bool)
    removed[:, :8] = True  # the top half of each image
    filled = images.clone()
    filled[:, :, :8] += 0.1  # off by 0.1 on every removed value
    filled[:, :, 8:] = 0.0  # the visible half wildly wrong: it must not count
    assert inpainting.masked_mse(filled, images, removed) == pytest.approx(0.01, rel=1e-5)


def test_mean_colour_fill_uses_the_visible_pixels_of_each_image():
    images = torch.zeros(1, 3, 16, 16)
    images[:, 0, :, :8] = 1.0  # red on the left half
    removed = torch.zeros(1, 16, 16, dtype=torch.bool)
    removed[:, :, 12:] = True  # remove the right quarter: visible pixels are 8/12 red
    filled = inpainting.fill_mean_colour(images, removed)
    torch.testing.assert_close(filled[0, :, 0, 15], torch.tensor([8 / 12, 0.0, 0.0]))


def test_biharmonic_fill_recovers_a_smooth_ramp():
    """Biharmonic inpainting nearly recovers a linear ramp (exactly, away from the borders); the mean colour cannot."""
    ramp = torch.linspace(0.1, 0.9, 64)
    images = torch.stack([ramp.expand(64, 64), ramp.expand(64, 64).T, torch.full((64, 64), 0.5)]).unsqueeze(0)
    removed = inpainting.pixel_mask(
        inpainting.patch_mask(torch.rand(1, 64, generator=torch.Generator().manual_seed(0))), 64
    )
    biharmonic = inpainting.masked_mse(inpainting.fill_biharmonic(images, removed), images, removed)
    mean_colour = inpainting.masked_mse(inpainting.fill_mean_colour(images, removed), images, removed)
    assert biharmonic < 1e-3 and biharmonic < mean_colour / 50


def test_normalised_pixel_models_need_the_true_statistics(small_set):
    images, noise = small_set
    model = mae.mae_vit_mini_patch8(norm_pix_loss=True).eval()
    with pytest.raises(ValueError, match="true_statistics=True"):
        inpainting.fill_mae(model, images, noise)
    assert inpainting.fill_mae(model, images, noise, true_statistics=True).shape == images.shape


def readme_numbers(name):
    """{set label: {method: mse}} from the rows of checkpoints/README.md's table that name `name`."""
    rows = {}
    for line in (ROOT / "checkpoints" / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == f"`{name}`" and re.fullmatch(r"0\.\d{4}", cells[-1]):
            rows[cells[1]] = dict(zip(("mean colour", "biharmonic", "MAE"), map(float, cells[2:5])))
    return rows


def test_shipped_pixel_model_reproduces_the_readme_numbers():
    path = ROOT / "checkpoints" / "mae_mini_photos_pixels.pth"
    model = mae.model_from_checkpoint(path).eval()
    assert not model.norm_pix_loss
    stated = readme_numbers("mae_mini_photos_pixels")
    measured = inpainting.measure(model)
    assert set(stated) == set(measured)
    for label, scores in measured.items():
        for method, mse in scores.items():
            assert mse == pytest.approx(stated[label][method], abs=1e-4), (label, method)
    assert measured["held-out photos"]["MAE"] < measured["held-out photos"]["biharmonic"]


def test_shipped_normalised_pixel_model_reproduces_the_true_statistics_number():
    """The same architecture as the pixel model, normalised-pixel targets, and the number the README gives for it."""
    model = mae.model_from_checkpoint(ROOT / "checkpoints" / "mae_mini_photos.pth").eval()
    pixels = mae.model_from_checkpoint(ROOT / "checkpoints" / "mae_mini_photos_pixels.pth")
    assert model.norm_pix_loss and model.config == {**pixels.config, "norm_pix_loss": True}
    readme = (ROOT / "checkpoints" / "README.md").read_text()
    stated = float(re.search(r"it scores (0\.\d{4}) on the held-out photos", readme).group(1))
    images, noise = inpainting.evaluation_set(HELD_OUT_PHOTOS, count=96)
    with_true_statistics = inpainting.compare(model, images, noise, true_statistics=True)[0]["MAE"]
    assert with_true_statistics == pytest.approx(stated, abs=1e-4)
