"""python -m mae.convert (mae.convert): official .pth files to transformers folders and back, the encoder-only
pretrain files too, and bad input explained (no download).
"""

import os

import pytest
import torch
from helpers import ATOL, ROOT, assert_bit_identical, max_diff, optional, randomize

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never look anything up on a hub
optional("safetensors")
transformers = optional("transformers")  # CI installs the [hf] extra: there, a missing package is a failure

import mae  # noqa: E402
from mae.checkpoint import from_transformers_state, read_checkpoint  # noqa: E402
from mae.convert import main as convert_main  # noqa: E402


def test_convert_official_pth_to_hugging_face_and_back(tmp_path, capsys):
    model = randomize(mae.mae_vit_tiny_patch8()).eval()
    official = tmp_path / "mae_visualize_vit_tiny.pth"
    torch.save({"model": model.state_dict()}, official)  # the official visualize layout: weights only

    assert convert_main([str(official), str(tmp_path / "hf"), "--mask_ratio", "0.5", "--norm_pix_loss"]) == 0
    assert "ViTMAEForPreTraining folder" in capsys.readouterr().out
    hf = transformers.ViTMAEForPreTraining.from_pretrained(tmp_path / "hf").eval()
    assert hf.config.mask_ratio == 0.5 and hf.config.norm_pix_loss
    assert_bit_identical(from_transformers_state(hf.state_dict()), model.state_dict())

    assert convert_main([str(tmp_path / "hf"), str(tmp_path / "back.pth")]) == 0
    back = mae.read_checkpoint(tmp_path / "back.pth")
    assert_bit_identical(back["model"], model.state_dict())
    assert back["model_config"] == {**model.config, "norm_pix_loss": True}
    assert convert_main([str(tmp_path / "hf"), str(tmp_path / "w.safetensors")]) == 0
    assert_bit_identical(mae.read_checkpoint(tmp_path / "w.safetensors")["model"], model.state_dict())


def test_convert_encoder_only_pretrain_checkpoint(tmp_path):
    model = randomize(mae.mae_vit_tiny_patch8()).eval()
    encoder = {k: v for k, v in model.state_dict().items() if not k.startswith(("decoder_", "mask_token"))}
    torch.save({"model": encoder}, tmp_path / "mae_pretrain_vit_tiny.pth")
    assert convert_main([str(tmp_path / "mae_pretrain_vit_tiny.pth"), str(tmp_path / "hf")]) == 0
    hf = transformers.ViTMAEModel.from_pretrained(tmp_path / "hf").eval()
    imgs, noise = torch.randn(1, 3, 64, 64), torch.rand(1, 64)
    with torch.no_grad():
        latent = model.forward_encoder(imgs, 0.75, noise=noise)[0]
        assert max_diff(hf(imgs, noise=noise).last_hidden_state, latent) <= ATOL
    assert convert_main([str(tmp_path / "hf"), str(tmp_path / "back.pth")]) == 0
    assert_bit_identical(mae.read_checkpoint(tmp_path / "back.pth")["model"], encoder)


def test_convert_explains_bad_input(tmp_path, capsys):
    assert convert_main([str(tmp_path / "missing.pth"), str(tmp_path / "out")]) == 1
    assert "error: checkpoint not found: " in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    assert convert_main([str(corrupt), str(tmp_path / "out")]) == 1
    assert f"cannot read checkpoint {corrupt}" in capsys.readouterr().err
    mae.save_checkpoint(tmp_path / "good.pth", mae.mae_vit_mini_patch8())
    (tmp_path / "taken.pth").write_bytes(b"")
    assert convert_main([str(tmp_path / "good.pth"), str(tmp_path / "taken.pth")]) == 1
    assert "taken.pth already exists; pass --overwrite" in capsys.readouterr().err
    assert convert_main([str(tmp_path / "good.pth"), str(tmp_path / "taken.pth"), "--overwrite"]) == 0
    for bad_flags in (["--to", "zip"], ["--mask_ratio", "1"]):
        with pytest.raises(SystemExit) as exit_info:
            convert_main([str(tmp_path / "good.pth"), str(tmp_path / "out"), *bad_flags])
        assert exit_info.value.code == 2
    assert "--mask_ratio must be in [0, 1), got 1.0" in capsys.readouterr().err


def test_a_float16_checkpoint_becomes_a_float32_hugging_face_folder_unless_asked(tmp_path, capsys):
    """The shipped checkpoints are float16: a folder in float16 loads in transformers as a float16 model, which
    refuses float32 images. Files (.pth, .safetensors) keep the source's precision; --dtype chooses."""
    from safetensors import safe_open

    shipped = ROOT / "checkpoints" / "mae_mini_digits.pth"
    assert read_checkpoint(shipped)["model"]["cls_token"].dtype == torch.float16

    def dtype_of(folder):
        with safe_open(folder / "model.safetensors", "pt") as f:
            return {f.get_tensor(k).dtype for k in f.keys()}

    assert convert_main([str(shipped), str(tmp_path / "hf")]) == 0
    assert dtype_of(tmp_path / "hf") == {torch.float32} and "float32 weights" in capsys.readouterr().out
    assert convert_main([str(shipped), str(tmp_path / "hf16"), "--dtype", "source"]) == 0
    assert dtype_of(tmp_path / "hf16") == {torch.float16}
    assert convert_main([str(shipped), str(tmp_path / "same.pth")]) == 0
    assert read_checkpoint(tmp_path / "same.pth")["model"]["cls_token"].dtype == torch.float16
    assert convert_main([str(shipped), str(tmp_path / "bf.safetensors"), "--dtype", "bfloat16"]) == 0
    assert "bfloat16 weights" in capsys.readouterr().out
