"""A checkpoint's recorded model_config is checked against its tensors before any model is built (the red team's
`depth 100000` grew to 3.5 GB before a memory limit stopped it), and weights with NaN are refused by every loader.
"""

import time

import pytest
import torch

import mae
from mae.checkpoint import CheckpointError, load_checkpoint

TINY = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, decoder_embed_dim=32, decoder_depth=1,
            decoder_num_heads=2)  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "mae.pth"
    mae.save_checkpoint(path, mae.models.MAE(**TINY))
    return path


def crafted(tmp_path, saved, **config):
    checkpoint = mae.read_checkpoint(saved)
    checkpoint["model_config"] = {**checkpoint["model_config"], **config}
    path = tmp_path / "crafted.pth"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("config, says", [
    (dict(depth=100000), "model_config says depth 100000, its weights have 2"),
    (dict(decoder_depth=5000), "model_config says decoder_depth 5000, its weights have 1"),
    (dict(embed_dim=65536), "model_config says embed_dim 65536, its weights have 64"),
    (dict(mlp_ratio=1e6), "model_config says mlp_ratio 1000000.0, its weights have 4"),
    (dict(img_size=32768), r"img_size 32768 and patch_size 8 give 16777216 patches, its weights 16"),
    (dict(num_heads="2"), "model_config num_heads must be a positive integer, got '2'"),
    (dict(decoder_num_heads=[2]), r"decoder_num_heads must be a positive integer, got \[2\]"),
    (dict(patch_size=0), "patch_size must be a positive integer, got 0"),
    (dict(hidden_size=0), "model_config has unknown arguments hidden_size; an MAE takes img_size, "),
])  # fmt: skip
def test_a_config_that_does_not_fit_its_tensors_is_refused_before_building(tmp_path, saved, config, says):
    path = crafted(tmp_path, saved, **config)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=says):
        mae.model_from_checkpoint(path)
    assert time.perf_counter() - start < 5, "refused before allocating"


def test_a_config_that_fits_builds(saved):
    model = mae.model_from_checkpoint(saved)
    assert len(model.blocks) == 2 and model.config["embed_dim"] == 64


def test_load_checkpoint_refuses_nan_weights(tmp_path):
    model = mae.models.MAE(**TINY)
    with torch.no_grad():
        model.blocks[0].attn.qkv.weight[0, 0] = float("nan")
    mae.save_checkpoint(tmp_path / "nan.pth", model)
    with pytest.raises(CheckpointError, match=r"blocks.0.attn.qkv.weight \(1 NaN, 0 Inf"):
        load_checkpoint(mae.models.MAE(**TINY), tmp_path / "nan.pth")
