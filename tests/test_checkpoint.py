"""Checkpoints: own round trips, the official layouts, and every way a file can be wrong."""

import os
import pickle
from pathlib import Path

import pytest
import torch

import mae
from mae import CheckpointError, UnsafeCheckpointError, load_checkpoint, save_checkpoint
from mae.checkpoint import atomic_save, infer_config, read_checkpoint


@pytest.fixture
def case(golden):
    return golden["cases"][0]


def golden_run(model, case):
    with torch.no_grad():
        return model.eval()(case["imgs"], mask_ratio=case["mask_ratio"], noise=case["noise"])


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


def test_resize_pos_embed_reproduces_a_smooth_table():
    table = mae.get_2d_sincos_pos_embed(64, 8, cls_token=True).float().unsqueeze(0)
    same = mae.resize_pos_embed(table, (8, 8))
    assert same is table
    wide = mae.resize_pos_embed(table, (8, 16))
    assert wide.shape == (1, 1 + 128, 64)
    back = mae.resize_pos_embed(wide, (8, 8), old_grid=(8, 16))
    assert (back - table).abs().max() < 0.2  # bicubic there and back stays close
    with pytest.raises(ValueError, match="square grid"):
        mae.resize_pos_embed(table[:, :-1], (4, 4))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {"cls_token": torch.zeros(1)}, "payload": Exploit()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load .*evil\.pth.*system"):
        load_checkpoint(mae.mae_vit_tiny_patch8(), path)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_plain_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Path("/etc/passwd"), protocol=2))
    with pytest.raises(UnsafeCheckpointError, match="refusing to load .*pathlib.PosixPath"):
        read_checkpoint(path)
    other_protocol = tmp_path / "protocol4.pkl"
    other_protocol.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(CheckpointError, match=r"protocol4\.pkl: the file is corrupt or not"):
        read_checkpoint(other_protocol)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_files_name_the_file(tmp_path, case, damage):
    good = tmp_path / "good.pth"
    torch.save({"model": case["state_dict"]}, good)
    path = tmp_path / f"{damage}.pth"
    data = {"truncated": good.read_bytes()[: good.stat().st_size // 2], "garbage": b"", "empty": b""}[damage]
    variants = [data]
    if damage == "garbage":  # random bytes, and a real file with random bytes inside, fail in many places
        generator = torch.Generator().manual_seed(0)
        body = good.read_bytes()
        variants = [
            torch.randint(0, 256, (4096,), generator=generator, dtype=torch.uint8).numpy().tobytes()
            for _ in range(20)
        ]
        for start in range(0, len(body), max(1, len(body) // 20)):
            noise = torch.randint(0, 256, (64,), generator=generator, dtype=torch.uint8).numpy().tobytes()
            variants.append(body[:start] + noise + body[start + 64 :])
    refused = []
    for variant in variants:
        path.write_bytes(variant)
        try:
            load_checkpoint(mae.MAE(**case["config"]), path)
            refused.append(False)  # damage inside tensor data can still load: that is not an error here
        except CheckpointError as error:
            assert f"cannot read checkpoint {path}" in str(error)
            refused.append(True)
        except Exception as error:  # noqa: BLE001 - the point is that nothing else escapes
            raise AssertionError(f"{type(error).__name__} escaped for a damaged file: {error}") from error
    assert all(
        refused[:20] if damage == "garbage" else refused
    )  # random bytes, truncated, empty: always refused


def test_missing_file_and_no_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")
    path = tmp_path / "no_model.pth"
    torch.save({"epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"no model weights in .*no_model\.pth.*\['epoch'\]"):
        load_checkpoint(mae.mae_vit_tiny_patch8(), path)
    with pytest.raises(CheckpointError, match=r"no model weights in .*no_model\.pth"):
        mae.model_from_checkpoint(path)


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "checkpoint-last.pth"
    atomic_save({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"step": 2, "bad": Unpicklable()}, path)
    assert read_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-last.pth"]


def test_official_files_are_rebuilt_from_their_shapes(tmp_path):
    """Official visualize files hold {"model": weights} only: the architecture is read from the shapes."""
    import json

    shapes = json.loads((Path(__file__).parent / "data" / "official_state_dict_shapes.json").read_text())
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
