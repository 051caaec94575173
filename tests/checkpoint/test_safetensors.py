"""Checkpoints as .safetensors files (mae.checkpoint.safetensors_io): bit for bit, extras as JSON, no code run
while loading, damage named.
"""

import os
import pickle

import pytest
import torch
from helpers import assert_bit_identical, optional, randomize

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never look anything up on a hub
optional("safetensors")  # CI installs the [hf] extra: there, a missing package is a failure

import mae  # noqa: E402
from mae import CheckpointError  # noqa: E402


def test_safetensors_round_trip_bit_for_bit(tmp_path):
    model = randomize(mae.mae_vit_tiny_patch8(norm_pix_loss=True))
    path = tmp_path / "weights.safetensors"
    mae.save_checkpoint(path, model, format="safetensors", epoch=3, made_by="a test")
    assert [p.name for p in tmp_path.iterdir()] == ["weights.safetensors"]  # no temporary file left
    (tmp_path / "plain").write_bytes(b"")  # safetensors alone would make the file readable by its owner only
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    (tmp_path / "plain").unlink()
    checkpoint = mae.read_checkpoint(path)
    assert checkpoint["epoch"] == 3 and checkpoint["made_by"] == "a test"
    assert checkpoint["model_config"] == model.config
    assert_bit_identical(checkpoint["model"], model.state_dict())
    rebuilt = mae.model_from_checkpoint(path)
    assert_bit_identical(rebuilt.state_dict(), model.state_dict())
    assert rebuilt.config == model.config
    again = tmp_path / "again.safetensors"  # the format follows from the name
    mae.save_checkpoint(again, rebuilt, epoch=3, made_by="a test")
    assert again.read_bytes() == path.read_bytes()

    half = mae.mae_vit_mini_patch8(
        img_size=(32, 64)
    ).half()  # other dtypes and a rectangular grid survive too
    mae.save_checkpoint(tmp_path / "half.safetensors", half)
    checkpoint = mae.read_checkpoint(tmp_path / "half.safetensors")
    assert_bit_identical(checkpoint["model"], half.state_dict())
    assert checkpoint["model_config"] == half.config and checkpoint["model_config"]["img_size"] == (32, 64)


def test_safetensors_refuses_what_it_cannot_hold(tmp_path):
    model = mae.mae_vit_mini_patch8()
    with pytest.raises(TypeError, match="extras must be JSON values .* format='pth'"):
        mae.save_checkpoint(tmp_path / "x.safetensors", model, optimizer={"state": torch.zeros(1)})
    with pytest.raises(ValueError, match="format must be one of"):
        mae.save_checkpoint(tmp_path / "x.bin", model, format="zip")
    assert not list(tmp_path.iterdir())


def test_loading_safetensors_runs_no_code(tmp_path, monkeypatch):
    """No unpickling anywhere on the way: every pickle entry point is made to fail while loading."""
    optional("transformers")  # for a transformers folder
    from mae.hf_interop import to_transformers

    model = randomize(mae.mae_vit_tiny_patch8())
    mae.save_checkpoint(tmp_path / "weights.safetensors", model)
    to_transformers(model).save_pretrained(tmp_path / "folder")

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    for source in (tmp_path / "weights.safetensors", tmp_path / "folder"):
        assert_bit_identical(mae.model_from_checkpoint(source).state_dict(), model.state_dict())
    monkeypatch.undo()

    # A pickle where the metadata's JSON belongs is text that fails to parse, never a program that runs.
    from safetensors.torch import save_file

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.safetensors"
    payload = pickle.dumps(Exploit(), protocol=0).decode("latin-1")
    save_file({"cls_token": torch.zeros(1, 1, 4)}, str(evil), metadata={"mae_checkpoint": payload})
    with pytest.raises(CheckpointError, match=r"evil\.safetensors: its mae_checkpoint metadata is not JSON"):
        mae.model_from_checkpoint(evil)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "bad header", "header too long"])
def test_corrupt_safetensors_names_the_file(tmp_path, damage):
    good = tmp_path / "good.safetensors"
    mae.save_checkpoint(good, mae.mae_vit_mini_patch8())
    data = good.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "garbage": torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                 dtype=torch.uint8).numpy().tobytes(),
        "bad header": data[:8] + b"{not json" + data[17:],
        "header too long": (2**40).to_bytes(8, "little") + data[8:],
    }[damage]  # fmt: skip
    for name in ("bad.safetensors", "model.pth"):  # by its name, or by its first bytes
        path = tmp_path / name
        path.write_bytes(damaged)
        if name == "model.pth" and damage in ("empty", "garbage", "header too long"):
            continue  # these do not start like a safetensors file: the .pth reader refuses them (test_pth.py)
        with pytest.raises(
            CheckpointError, match=f"cannot read checkpoint {path}: the file is truncated, corrupt"
        ):
            mae.model_from_checkpoint(path)
        with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}"):
            mae.load_checkpoint(mae.mae_vit_mini_patch8(), path)
