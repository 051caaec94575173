"""Checkpoint files (mae.checkpoint.files, mae.checkpoint.rebuild): this project's own round trip, the
official layouts (visualize, pretrain, training, fine-tuned), and a file that does not fit the model, named.
"""

import argparse
import json

import pytest
import torch
from helpers import FIXTURES, assert_close, golden_run

import mae
from mae import CheckpointError, load_checkpoint, save_checkpoint
from mae.checkpoint import infer_config, read_checkpoint


def test_own_checkpoint_round_trip(tmp_path, case):
    model = mae.MAE(**case["config"])
    model.load_state_dict(case["state_dict"])
    path = tmp_path / "run" / "checkpoint-last.pth"
    save_checkpoint(path, model, epoch=3, step=120)
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint-last.pth"]  # no temp file left
    rebuilt = mae.model_from_checkpoint(path)
    assert rebuilt.config == model.config
    loaded = mae.MAE(**case["config"])
    checkpoint = load_checkpoint(loaded, path)
    assert checkpoint["epoch"] == 3 and checkpoint["step"] == 120
    for other in (rebuilt, loaded):
        loss, pred, _ = golden_run(other, case)
        assert torch.equal(pred, golden_run(model, case)[1])


def test_wrapped_model_prefixes_are_removed(tmp_path, case):
    path = tmp_path / "ddp.pth"
    torch.save({"model": {f"module.{k}": v for k, v in case["state_dict"].items()}}, path)
    model = mae.MAE(**case["config"])
    load_checkpoint(model, path)
    torch.testing.assert_close(golden_run(model, case)[1], case["pred"], atol=1e-5, rtol=0)


def test_official_visualize_checkpoint_full_model(tmp_path, case):
    path = tmp_path / "mae_visualize.pth"
    torch.save({"model": case["state_dict"]}, path)
    model = mae.MAE(**case["config"])
    load_checkpoint(model, path)
    torch.testing.assert_close(golden_run(model, case)[0], case["loss"], atol=1e-5, rtol=0)


def test_official_pretrain_checkpoint_is_encoder_only(tmp_path, case):
    encoder = {k: v for k, v in case["state_dict"].items() if not k.startswith(("decoder_", "mask_token"))}
    path = tmp_path / "mae_pretrain.pth"
    torch.save({"model": encoder}, path)
    model = mae.MAE(**case["config"])
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(model, path)
    message = str(error.value)
    assert str(path) in message
    assert "decoder missing" in message and "encoder-only pretrain checkpoint" in message
    assert "encoder_only=True" in message
    decoder_before = model.decoder_pred.weight.clone()
    load_checkpoint(model, path, encoder_only=True)
    assert torch.equal(model.decoder_pred.weight, decoder_before)
    with torch.no_grad():
        latent, _, _ = model.forward_encoder(case["imgs"], case["mask_ratio"], noise=case["noise"])
    torch.testing.assert_close(latent, case["latent"], atol=1e-5, rtol=0)


def test_checkpoint_of_another_architecture(tmp_path, case):
    path = tmp_path / "other.pth"
    torch.save({"model": case["state_dict"]}, path)
    bigger = mae.MAE(**{**case["config"], "embed_dim": 96, "depth": 3})
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(bigger, path)
    message = str(error.value)
    assert "shape mismatch for blocks.0.attn.qkv.weight: checkpoint (192, 64), model (288, 96)" in message
    assert "another architecture" in message and "embed_dim=64" in message and "embed_dim=96" in message
    assert "encoder missing (12 keys): blocks.*.attn.proj.bias" in message
    assert "... and 23 more shape mismatches" in message and len(message.splitlines()) < 20


def test_fine_tuned_head_is_named(tmp_path, case):
    path = tmp_path / "finetuned.pth"
    state = dict(case["state_dict"], **{"head.weight": torch.zeros(10, 64), "head.bias": torch.zeros(10)})
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError, match="classifier head.*fine-tuned classification"):
        load_checkpoint(mae.MAE(**case["config"]), path)
    with pytest.warns(UserWarning, match="partially"):
        load_checkpoint(mae.MAE(**case["config"]), path, strict=False)


def test_pos_embed_of_another_grid(tmp_path, case):
    path = tmp_path / "grid.pth"
    torch.save({"model": case["state_dict"]}, path)  # 32 px, patch 4: 8x8 grid
    larger = mae.MAE(**{**case["config"], "img_size": 48})  # 12x12 grid
    with pytest.raises(CheckpointError, match=r"8x8 grid vs 12x12; pass resize_pos_embed=True"):
        load_checkpoint(larger, path)
    load_checkpoint(larger, path, resize_pos_embed=True)
    assert larger.pos_embed.shape == (1, 145, 64)
    assert torch.equal(larger.pos_embed[0, 0], case["state_dict"]["pos_embed"][0, 0])  # CLS row kept apart


def test_missing_file_and_no_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")
    path = tmp_path / "no_model.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"no model weights in .*no_model\.pth.*\['epoch'\]"):
        load_checkpoint(mae.mae_vit_tiny_patch8(), path)
    with pytest.raises(CheckpointError, match=r"no model weights in .*no_model\.pth"):
        mae.model_from_checkpoint(path)


def test_official_files_are_rebuilt_from_their_shapes(tmp_path):
    """Official visualize files hold {"model": weights} only: the architecture is read from the shapes."""
    shapes = json.loads((FIXTURES / "official_state_dict_shapes.json").read_text())
    for name, keys in shapes.items():
        state = {k: torch.empty(shape, device="meta") for k, shape in keys.items()}
        config = infer_config(state)
        want = {
            **mae.models.constructor_defaults(),
            **mae.CONFIGS[name],
            "norm_pix_loss": False,
        }  # no model is built: fast
        assert config == want, name

    torch.manual_seed(0)
    model = mae.mae_vit_tiny_patch8().eval()
    torch.save({"model": model.state_dict()}, tmp_path / "official_style.pth")
    rebuilt = mae.model_from_checkpoint(tmp_path / "official_style.pth").eval()
    imgs, noise = torch.randn(1, 3, 64, 64), torch.rand(1, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt(imgs, noise=noise)[1], model(imgs, noise=noise)[1])

    encoder_only = {
        k: v for k, v in model.state_dict().items() if not k.startswith(("decoder_", "mask_token"))
    }
    torch.save({"model": encoder_only}, tmp_path / "pretrain_only.pth")
    with pytest.raises(CheckpointError, match="(?s)holds an encoder only.*mae_visualize_vit_large.pth"):
        mae.model_from_checkpoint(tmp_path / "pretrain_only.pth")


@pytest.mark.parametrize("index", [0, 2])
def test_official_formats_load_and_reproduce(tmp_path, golden, index):
    """A training checkpoint in the official layout ({'model', 'optimizer', 'epoch', 'args'}) loads strictly."""
    case = golden["cases"][index]
    path = tmp_path / "checkpoint-799.pth"
    args = argparse.Namespace(model="mae_vit_tiny", mask_ratio=case["mask_ratio"], norm_pix_loss=False)
    torch.save({"model": case["state_dict"], "optimizer": {"state": {}, "param_groups": []},
                "epoch": 799, "scaler": {"scale": 65536.0}, "args": args}, path)  # fmt: skip
    model = mae.MAE(**case["config"]).eval()
    checkpoint = load_checkpoint(model, path)
    assert checkpoint["epoch"] == 799 and checkpoint["args"].mask_ratio == case["mask_ratio"]
    with torch.no_grad():
        loss, pred, _ = model(case["imgs"], mask_ratio=case["mask_ratio"], noise=case["noise"])
    assert_close("pred", pred, case["pred"])
    assert_close("loss", loss, case["loss"])
