"""The reference model (mae.models) on bad input: a ValueError/TypeError naming what was expected and what
came, not a deep shape error.
"""

import math

import pytest
import torch

from mae import MAE, Attention, PatchEmbed, get_2d_sincos_pos_embed, random_masking


@pytest.fixture(scope="module")
def model():
    return MAE(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=4,
               decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2).eval()  # fmt: skip


def test_wrong_image_size(model):
    with pytest.raises(ValueError, match=r"expected images of size 32x32, got 48x32"):
        model(torch.randn(2, 3, 48, 32))


def test_size_not_divisible_by_patch():
    with pytest.raises(ValueError, match=r"image size 30x30 is not divisible by the patch size 8"):
        MAE(img_size=30, patch_size=8, embed_dim=32, depth=1, num_heads=4)
    with pytest.raises(ValueError, match=r"image size 224x100 is not divisible by the patch size 16"):
        PatchEmbed(img_size=(224, 100), patch_size=16)


def test_wrong_channel_count(model):
    with pytest.raises(ValueError, match=r"expected 3 channel\(s\), got 1"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"expected 3 channel\(s\), got 4"):
        model.patchify(torch.randn(2, 4, 32, 32))


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 2, 3, 32, 32)])
def test_input_not_4d(model, shape):
    with pytest.raises(
        ValueError, match=rf"expected a 4-D batch of images \(B, C, H, W\), got a {len(shape)}-D tensor"
    ):
        model(torch.randn(shape))


def test_integer_images_and_non_tensors(model):
    with pytest.raises(TypeError, match="expected floating-point images, got dtype torch.uint8"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(TypeError, match="expected images as a torch.Tensor, got list"):
        model([[0.0]])


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5, math.nan, math.inf, "0.5", True])
def test_mask_ratio_out_of_range(model, ratio):
    with pytest.raises(ValueError, match=r"mask_ratio must be a finite number in \[0, 1\), got"):
        model(torch.randn(1, 3, 32, 32), mask_ratio=ratio)


def test_noise_of_wrong_shape(model):
    with pytest.raises(
        ValueError, match=r"noise must have shape \(N, L\) = \(2, 16\), one value per patch, got \(2, 15\)"
    ):
        model(torch.randn(2, 3, 32, 32), noise=torch.rand(2, 15))
    with pytest.raises(ValueError, match=r"expected tokens of shape \(N, L, D\), got \(4, 5\)"):
        random_masking(torch.randn(4, 5))


@pytest.mark.parametrize("dim", [6, 30, 0, -4])
def test_pos_embed_dim_not_multiple_of_4(dim):
    with pytest.raises(ValueError, match=rf"embed_dim must be a positive multiple of 4 .* got {dim}"):
        get_2d_sincos_pos_embed(dim, 4)


def test_model_with_width_not_divisible_by_4():
    with pytest.raises(ValueError, match="multiple of 4"):
        MAE(img_size=32, patch_size=8, embed_dim=30, depth=1, num_heads=3)


def test_heads_do_not_divide_width():
    with pytest.raises(ValueError, match=r"dim \(64\) must be divisible by num_heads \(5\)"):
        Attention(64, num_heads=5)
    with pytest.raises(ValueError, match=r"dim \(32\) must be divisible by num_heads \(3\)"):
        MAE(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=3)


def test_unpatchify_and_decoder_shapes(model):
    with pytest.raises(ValueError, match=r"expected patches of shape \(B, 16, 192\), got \(2, 16, 48\)"):
        model.unpatchify(torch.randn(2, 16, 48))
    with pytest.raises(ValueError, match=r"ids_restore must have shape \(B, 16\), got \(2, 9\)"):
        model.forward_decoder(torch.randn(2, 5, 32), torch.zeros(2, 9, dtype=torch.long))


def test_bad_patch_size():
    with pytest.raises(ValueError, match="patch_size must be a positive int, got 0"):
        PatchEmbed(img_size=32, patch_size=0)
