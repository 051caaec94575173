"""Our MAE and transformers' ViTMAEForPreTraining compute the same function from the same weights (no download).

Tested with the transformers installed by `make test` (the [hf] extra; 5.24 when this was written), whose layout is
5.x (`vit.layers.N.attention.q_proj`); the 4.x layout (`vit.encoder.layer.N.attention.attention.query`) is tested
by renaming keys here, with the names written out, not taken from either library.
"""

import os
import pickle

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never look anything up on a hub

if os.environ.get("CI"):  # CI installs the [hf] extra: there, a missing package is a failure, not a skip
    import safetensors  # noqa: F401
    import transformers
else:
    pytest.importorskip("safetensors")
    transformers = pytest.importorskip("transformers")

import mae  # noqa: E402
from mae import CheckpointError  # noqa: E402
from mae.convert import main as convert_main  # noqa: E402
from mae.hf_interop import (  # noqa: E402
    from_transformers,
    from_transformers_config,
    from_transformers_state,
    save_pretrained,
    to_transformers,
    to_transformers_config,
    to_transformers_state,
)

ATOL = 1e-5  # float32 rounding: the two models add and multiply in different orders

# name -> (our constructor arguments, batch size)
CONFIGS = {
    "tiny": (mae.CONFIGS["mae_vit_tiny_patch8"], 2),
    "32px": (dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32,
                  decoder_depth=1, decoder_num_heads=4), 2),  # the golden vectors' architecture
    "vit_b16_224": (mae.CONFIGS["mae_vit_base_patch16"], 1),  # one image: a ViT-B pass takes a second on a core
}  # fmt: skip


def randomize(model, seed=0):
    """Perturb every parameter (LayerNorm scales and biases included), so that a swapped name cannot hide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.02 * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(name, marks=[pytest.mark.slow] if name == "vit_b16_224" else []) for name in CONFIGS
    ],
)
def pair(request):
    """(ours, transformers', images, noise), for one configuration; shared by the tests of this module."""
    config, batch = CONFIGS[request.param]
    torch.manual_seed(0)
    ours = randomize(mae.MAE(**config)).eval()
    hf = to_transformers(ours).eval()
    side, patches = ours.patch_embed.img_size[0], ours.patch_embed.num_patches
    generator = torch.Generator().manual_seed(1)
    imgs = torch.randn(batch, 3, side, side, generator=generator)
    noise = torch.rand(batch, patches, generator=generator)
    return ours, hf, imgs, noise


def max_diff(a, b):
    return (a.double() - b.double()).abs().max().item()


def set_objective(ours, hf, norm_pix_loss, mask_ratio):
    """The same loss on both sides: ours takes mask_ratio per call, transformers reads it from its config."""
    ours.norm_pix_loss = ours.config["norm_pix_loss"] = norm_pix_loss
    hf.config.norm_pix_loss = norm_pix_loss
    hf.config.mask_ratio = mask_ratio


def test_state_dicts_load_strictly_both_ways(pair):
    ours, hf, _, _ = pair
    theirs = to_transformers_state(ours.state_dict())
    assert {k: tuple(v.shape) for k, v in theirs.items()} == {
        k: tuple(v.shape) for k, v in hf.state_dict().items()
    }
    with torch.device("meta"):  # fresh models to load into; on the meta device they cost no init time
        fresh_hf, fresh_ours = transformers.ViTMAEForPreTraining(hf.config), mae.MAE(**ours.config)
    result = fresh_hf.load_state_dict(theirs, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys

    back = from_transformers_state(hf.state_dict())
    assert list(back) == list(ours.state_dict())  # same keys, in the model's order
    result = fresh_ours.load_state_dict(back, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("mask_ratio", [0.75, 0.5])
@pytest.mark.parametrize("norm_pix_loss", [False, True], ids=["pixels", "norm_pix"])
def test_same_masks_features_predictions_and_loss(pair, norm_pix_loss, mask_ratio):
    ours, hf, imgs, noise = pair
    set_objective(ours, hf, norm_pix_loss, mask_ratio)
    encoded = []  # the encoder's output inside transformers' forward pass, caught on its way to the decoder
    hook = hf.vit.register_forward_hook(lambda module, args, output: encoded.append(output))
    with torch.no_grad():
        latent, mask, ids_restore = ours.forward_encoder(imgs, mask_ratio, noise=noise)
        pred = ours.forward_decoder(latent, ids_restore)
        loss = ours.forward_loss(imgs, pred, mask)
        out = hf(pixel_values=imgs, noise=noise)
    hook.remove()
    assert torch.equal(mask, out.mask) and torch.equal(ids_restore, out.ids_restore)
    assert latent.shape == encoded[0].last_hidden_state.shape  # (B, 1 + visible, D)
    assert max_diff(latent, encoded[0].last_hidden_state) <= ATOL
    assert max_diff(pred, out.logits) <= ATOL
    assert max_diff(loss, out.loss) <= ATOL


def test_gradients_agree(pair):
    """One training step would move both models alike: the loss's gradients on attention and prediction weights."""
    ours, hf, imgs, noise = pair
    set_objective(ours, hf, True, 0.75)
    ours.zero_grad(), hf.zero_grad()
    ours(imgs, 0.75, noise=noise)[0].backward()
    hf(pixel_values=imgs, noise=noise).loss.backward()
    theirs = dict(hf.named_parameters())
    compared = 0
    for our_list, their_list in (("blocks", "vit.layers"), ("decoder_blocks", "decoder.decoder_layers")):
        for i, block in enumerate(getattr(ours, our_list)):
            prefix = f"{their_list}.{i}.attention."
            for parameter in ("weight", "bias"):
                q, k, v = (
                    theirs[f"{prefix}{part}.{parameter}"].grad for part in ("q_proj", "k_proj", "v_proj")
                )
                ours_qkv = getattr(block.attn.qkv, parameter).grad
                scale = ours_qkv.abs().max().item()
                assert max_diff(ours_qkv, torch.cat([q, k, v])) <= ATOL * max(scale, 1)
                ours_proj = getattr(block.attn.proj, parameter).grad
                their_proj = theirs[f"{prefix}o_proj.{parameter}"].grad
                assert max_diff(ours_proj, their_proj) <= ATOL * max(ours_proj.abs().max().item(), 1)
                compared += 2
    for parameter in ("weight", "bias"):
        ours_pred = getattr(ours.decoder_pred, parameter).grad
        assert max_diff(ours_pred, theirs[f"decoder.decoder_pred.{parameter}"].grad) <= ATOL
    assert compared == 4 * (ours.config["depth"] + ours.config["decoder_depth"])
    ours.zero_grad(set_to_none=True), hf.zero_grad(set_to_none=True)


def assert_bit_identical(state, expected):
    assert list(state) == list(expected)
    for key, value in expected.items():
        assert state[key].dtype == value.dtype, key
        assert torch.equal(state[key], value), key


def test_round_trip_ours_hf_ours_is_bit_identical(pair):
    ours, hf, _, _ = pair  # hf = to_transformers(ours)
    set_objective(ours, hf, True, 0.6)  # both are carried in transformers' config
    back = from_transformers(hf)
    assert_bit_identical(back.state_dict(), ours.state_dict())
    assert back.config == ours.config and back.mask_ratio == 0.6


def test_our_folders_load_in_transformers(tmp_path):
    """mae.hf_interop.save_pretrained writes the published files' (4.x) names, which transformers loads fully."""
    from safetensors import safe_open

    ours = randomize(mae.mae_vit_tiny_patch8()).eval()
    ours.mask_ratio = 0.6  # as from_transformers sets it: to_transformers and save_pretrained write it back
    assert to_transformers(ours).config.mask_ratio == 0.6
    save_pretrained(ours, tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    assert "vit.encoder.layer.0.attention.attention.query.weight" in names
    assert "decoder.decoder_layers.1.output.dense.bias" in names
    hf, info = transformers.ViTMAEForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert hf.config.mask_ratio == 0.6 and hf.config.layer_norm_eps == 1e-6
    assert_bit_identical(from_transformers(hf).state_dict(), ours.state_dict())
    assert_bit_identical(mae.model_from_checkpoint(tmp_path).state_dict(), ours.state_dict())

    encoder = mae.Encoder(**{k: v for k, v in ours.config.items() if k in mae.models.ENCODER_KEYS})
    encoder.load_state_dict({k: v for k, v in ours.state_dict().items() if k in encoder.state_dict()})
    save_pretrained(encoder, tmp_path / "encoder")
    vit, info = transformers.ViTMAEModel.from_pretrained(tmp_path / "encoder", output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    imgs, noise = torch.randn(1, 3, 64, 64), torch.rand(1, 64)
    with torch.no_grad():
        assert (
            max_diff(vit(imgs, noise=noise).last_hidden_state, encoder.forward_encoder(imgs, 0.75, noise)[0])
            <= ATOL
        )


def test_transformers_own_folders_load_here(tmp_path):
    """transformers' save_pretrained -> our loaders, and back through its from_pretrained, bit for bit."""
    ours = randomize(mae.mae_vit_tiny_patch8(norm_pix_loss=True)).eval()
    to_transformers(ours, mask_ratio=0.5).save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors"} <= {p.name for p in tmp_path.iterdir()}
    for loaded in (mae.model_from_checkpoint(tmp_path), from_transformers(tmp_path)):
        assert_bit_identical(loaded.state_dict(), ours.state_dict())
        assert loaded.config == ours.config
    assert from_transformers(tmp_path).mask_ratio == 0.5
    assert_bit_identical(
        mae.model_from_checkpoint(tmp_path / "model.safetensors").state_dict(), ours.state_dict()
    )
    hf = transformers.ViTMAEForPreTraining.from_pretrained(tmp_path)
    assert hf.config.mask_ratio == 0.5 and hf.config.norm_pix_loss and hf.config.layer_norm_eps == 1e-6
    assert_bit_identical(from_transformers(hf).state_dict(), ours.state_dict())


# transformers 4.x names of the 5.x ones, inside a layer; written out here rather than taken from mae.hf_interop.
LEGACY = {
    "attention.q_proj": "attention.attention.query",
    "attention.k_proj": "attention.attention.key",
    "attention.v_proj": "attention.attention.value",
    "attention.o_proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def to_legacy_names(hf_state):
    legacy = {}
    for key, value in hf_state.items():
        key = key.replace("vit.layers.", "vit.encoder.layer.")
        for new, old in LEGACY.items():
            key = key.replace(f".{new}.", f".{old}.")
        legacy[key] = value
    return legacy


def test_transformers_4_layout_loads(tmp_path):
    from safetensors.torch import save_file

    ours = randomize(mae.mae_vit_tiny_patch8()).eval()
    hf = to_transformers(ours)
    legacy = to_legacy_names(hf.state_dict())
    assert "vit.encoder.layer.5.attention.attention.query.weight" in legacy
    assert "vit.encoder.layer.0.attention.output.dense.bias" in legacy
    assert "decoder.decoder_layers.1.intermediate.dense.weight" in legacy
    assert "decoder.decoder_layers.1.output.dense.weight" in legacy
    assert "decoder.decoder_pred.weight" in legacy  # not a layer: the same name in both versions
    assert_bit_identical(from_transformers_state(legacy), ours.state_dict())

    # A 4.x ViTMAEModel (the encoder alone) has no `vit.` prefix.
    encoder_alone = {k.removeprefix("vit."): v for k, v in legacy.items() if k.startswith("vit.")}
    assert "encoder.layer.0.attention.attention.key.bias" in encoder_alone
    encoder = {k: v for k, v in ours.state_dict().items() if not k.startswith(("decoder_", "mask_token"))}
    assert_bit_identical(from_transformers_state(encoder_alone), encoder)

    # A 4.x folder on disk.
    hf.config.save_pretrained(tmp_path)
    save_file({k: v.contiguous() for k, v in legacy.items()}, str(tmp_path / "model.safetensors"))
    assert_bit_identical(mae.model_from_checkpoint(tmp_path).state_dict(), ours.state_dict())
    fresh = mae.mae_vit_tiny_patch8()
    mae.load_checkpoint(fresh, tmp_path)
    assert_bit_identical(fresh.state_dict(), ours.state_dict())


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mae_vit_base_patch16", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                      intermediate_size=3072, patch_size=16, image_size=224)),
        ("mae_vit_large_patch16", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                       intermediate_size=4096, patch_size=16, image_size=224)),
        ("mae_vit_huge_patch14", dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                                      intermediate_size=5120, patch_size=14, image_size=224)),
        ("mae_vit_small_patch16", dict(hidden_size=384, decoder_hidden_size=256, decoder_num_hidden_layers=4,
                                       decoder_num_attention_heads=8, decoder_intermediate_size=1024)),
        ("mae_vit_tiny_patch8", dict(hidden_size=192, image_size=64, patch_size=8, decoder_hidden_size=128)),
        ("mae_vit_mini_patch8", dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4)),
        ("mae_vit_mini_patch4", dict(hidden_size=128, image_size=32, patch_size=4, num_channels=3,
                                     decoder_hidden_size=64, decoder_num_hidden_layers=4)),
    ],
)  # fmt: skip
def test_configs_of_every_factory(name, expected):
    with torch.device("meta"):  # the config only: no memory, no init time
        model = mae.create_model(name, norm_pix_loss=True)
    hf_config = to_transformers_config(model.config, mask_ratio=0.75)
    assert hf_config.items() >= expected.items()
    if name in (
        "mae_vit_base_patch16",
        "mae_vit_large_patch16",
        "mae_vit_huge_patch14",
    ):  # the paper's decoder
        assert hf_config.items() >= dict(decoder_hidden_size=512, decoder_num_hidden_layers=8,
                                         decoder_num_attention_heads=16, decoder_intermediate_size=2048).items()  # fmt: skip
    assert hf_config["layer_norm_eps"] == 1e-6 and hf_config["norm_pix_loss"] is True
    transformers.ViTMAEConfig(**hf_config)  # transformers accepts every field
    assert from_transformers_config(hf_config) == (model.config, 0.75)


def test_golden_vectors_through_transformers(golden):
    """The official code's outputs, reproduced by transformers with weights converted here."""
    for case in golden["cases"]:
        ours = mae.MAE(**case["config"])
        ours.load_state_dict(case["state_dict"])
        hf = to_transformers(ours, mask_ratio=case["mask_ratio"]).eval()
        with torch.no_grad():
            out = hf(pixel_values=case["imgs"], noise=case["noise"])
        assert torch.equal(out.mask, case["mask"]) and torch.equal(out.ids_restore, case["ids_restore"])
        assert max_diff(out.logits, case["pred"]) <= ATOL and max_diff(out.loss, case["loss"]) <= ATOL


@pytest.mark.parametrize(
    "pair", ["tiny", "32px"], indirect=True
)  # the same at any size: spare ViT-B's full pass
def test_loss_with_nothing_masked_differs_by_design(pair):
    """mask_ratio=0 (feature extraction): 0 here, 0/0 = NaN in transformers and the official code."""
    ours, hf, imgs, noise = pair
    set_objective(ours, hf, False, 0.0)
    with torch.no_grad():
        assert ours(imgs[:1], 0.0, noise=noise[:1])[0].item() == 0.0
        assert torch.isnan(hf(pixel_values=imgs[:1], noise=noise[:1]).loss)


def test_what_cannot_be_converted_is_named():
    with pytest.raises(ValueError, match="square images; this model takes 32x64"):
        to_transformers(mae.mae_vit_tiny_patch8(img_size=(32, 64)))
    with pytest.raises(TypeError, match="needs an MAE .* got VisionTransformer"):
        to_transformers(mae.create_classifier("vit_tiny_patch8", num_classes=3))
    config = transformers.ViTMAEConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
                                       intermediate_size=256, image_size=32, patch_size=4)  # fmt: skip
    with pytest.raises(TypeError, match="got ViTMAEModel"):
        from_transformers(transformers.ViTMAEModel(config))
    with pytest.raises(CheckpointError, match="hidden_act='relu'"):
        from_transformers_config({**config.to_dict(), "hidden_act": "relu"})
    with pytest.raises(CheckpointError, match="one mlp_ratio for both"):
        from_transformers_config({**config.to_dict(), "decoder_intermediate_size": 1024})  # 2 vs 4
    with pytest.raises(CheckpointError, match="a 'vit' model, not a ViTMAE"):
        from_transformers_config({"model_type": "vit"})


# --- .safetensors files ------------------------------------------------------------------------------------


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
            continue  # these do not start like a safetensors file: the .pth reader refuses them (test_checkpoint)
        with pytest.raises(
            CheckpointError, match=f"cannot read checkpoint {path}: the file is truncated, corrupt"
        ):
            mae.model_from_checkpoint(path)
        with pytest.raises(CheckpointError, match=f"cannot read checkpoint {path}"):
            mae.load_checkpoint(mae.mae_vit_mini_patch8(), path)


def test_bad_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nowhere"):
        mae.model_from_checkpoint(tmp_path / "nowhere")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint-last.pth").write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=r"run is a folder, .* no config.json \(it holds: checkpoint-last.pth\)"
    ):
        mae.model_from_checkpoint(tmp_path / "run")
    folder = tmp_path / "hf"
    to_transformers(mae.mae_vit_mini_patch8()).config.save_pretrained(folder)
    with pytest.raises(
        CheckpointError, match="has a config.json but no weights: expected one of model.safetensors"
    ):
        mae.model_from_checkpoint(folder)
    (folder / "config.json").write_text('{"model_type": "vit_mae", "hidden_act": "relu"}')
    with pytest.raises(CheckpointError, match=r"config.json: hidden_act='relu'"):
        mae.model_from_checkpoint(folder)
    (folder / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"cannot read .*config.json"):
        mae.model_from_checkpoint(folder)


# --- python -m mae.convert ---------------------------------------------------------------------------------


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
