"""A classifier from a checkpoint (mae.checkpoint.classifiers): a pretrained MAE's encoder into either pooling
and another resolution; another architecture refused.
"""

import pytest
import torch

import mae
from mae.checkpoint import CheckpointError, load_pretrained_encoder


def test_pretrained_encoder_loads_into_both_poolings_and_other_resolutions(pretrained):
    reference = mae.model_from_checkpoint(pretrained)
    imgs = torch.randn(2, 1, 32, 32)
    probe = mae.create_classifier(
        "vit_mini_patch8", num_classes=10, global_pool=False, img_size=32, in_chans=1
    )
    load_pretrained_encoder(probe, pretrained)
    with torch.no_grad():  # the CLS token of the unmasked encoder, through the MAE's own forward_encoder
        latent, _, _ = reference.eval().forward_encoder(imgs, mask_ratio=0.0)
        torch.testing.assert_close(probe.eval().forward_features(imgs), latent[:, 0])
    bigger = mae.create_classifier("vit_mini_patch8", num_classes=10, img_size=48, in_chans=1)
    load_pretrained_encoder(bigger, pretrained)  # 4x4 grid -> 6x6, bicubic
    assert bigger(torch.randn(2, 1, 48, 48)).shape == (2, 10)
    with pytest.raises(CheckpointError, match="another architecture"):
        load_pretrained_encoder(mae.create_classifier("vit_tiny_patch8", img_size=32, in_chans=1), pretrained)
