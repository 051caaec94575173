"""timm's layout (mae.timm_interop): our encoder and timm's VisionTransformer compute the same features from
the same weights, and our classifier is timm's VisionTransformer (no download)."""

import pytest
import timm
import torch

import mae
from mae.timm_interop import encoder_to_timm, timm_to_encoder


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    ours = mae.mae_vit_base_patch16().eval()
    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    return ours, vit


def test_export_to_timm_gives_the_same_features(pair):
    ours, vit = pair
    vit.load_state_dict(encoder_to_timm(ours.state_dict()), strict=True)
    imgs = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        latent, _, _ = ours.forward_encoder(imgs, mask_ratio=0.0)  # all patches, in order, CLS first
        features = vit.forward_features(imgs)
    torch.testing.assert_close(features, latent, atol=1e-4, rtol=1e-4)


def test_import_from_timm(pair, tmp_path):
    ours, vit = pair
    torch.manual_seed(1)
    for p in vit.parameters():
        p.data.normal_(0, 0.02)
    path = tmp_path / "timm_vit.pth"
    torch.save({"model": timm_to_encoder(vit.state_dict())}, path)
    fresh = mae.mae_vit_base_patch16().eval()
    mae.load_checkpoint(fresh, path, encoder_only=True)
    imgs = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(
            fresh.forward_encoder(imgs, 0.0)[0], vit.forward_features(imgs), atol=1e-4, rtol=1e-4
        )


@pytest.mark.parametrize("global_pool", ["avg", "token"])
def test_our_classifier_is_timms_vision_transformer(global_pool):
    """Same keys, shapes and logits as timm's VisionTransformer (the official fine-tuned checkpoints' layout)."""
    from functools import partial

    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    ours = mae.create_classifier("vit_tiny_patch8", num_classes=10, global_pool=global_pool == "avg").eval()
    vit = VisionTransformer(img_size=64, patch_size=8, embed_dim=192, depth=6, num_heads=3, num_classes=10,
                            global_pool=global_pool, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)).eval()  # fmt: skip
    theirs = vit.state_dict()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.items()]
    with torch.no_grad():
        ours.head.weight.normal_()  # a head that does not hide differences
        vit.load_state_dict(ours.state_dict(), strict=True)
        imgs = torch.randn(2, 3, 64, 64)
        torch.testing.assert_close(ours(imgs), vit(imgs), atol=1e-5, rtol=1e-5)
