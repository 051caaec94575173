"""Our MAE and transformers' ViTMAEForPreTraining compute the same function from the same weights (no
download): mae.hf_interop (to_transformers, from_transformers) and the transformers layouts of mae.checkpoint
(state dicts, configs, folders).

Tested with the transformers installed by `make test` (the [hf] extra; 5.24 when this was written), whose
layout is 5.x (`vit.layers.N.attention.q_proj`); the 4.x layout
(`vit.encoder.layer.N.attention.attention.query`) is tested by renaming keys here, with the names written out,
not taken from either library.
"""

import json
import os

import pytest
import torch
from helpers import ATOL, assert_bit_identical, max_diff, optional, randomize

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never look anything up on a hub
optional("safetensors")
transformers = optional("transformers")  # CI installs the [hf] extra: there, a missing package is a failure

import mae  # noqa: E402
from mae import CheckpointError  # noqa: E402
from mae.checkpoint import (  # noqa: E402
    from_transformers_config,
    from_transformers_state,
    save_pretrained,
    to_transformers_config,
    to_transformers_state,
)
from mae.hf_interop import from_transformers, to_transformers  # noqa: E402

# name -> (our constructor arguments, batch size)
CONFIGS = {
    "tiny": (mae.CONFIGS["mae_vit_tiny_patch8"], 2),
    "32px": (dict(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=4, decoder_embed_dim=32,
                  decoder_depth=1, decoder_num_heads=4), 2),  # the golden vectors' architecture
    "vit_b16_224": (mae.CONFIGS["mae_vit_base_patch16"], 1),  # one image: a ViT-B pass takes a second on a core
}  # fmt: skip


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


def test_round_trip_ours_hf_ours_is_bit_identical(pair):
    ours, hf, _, _ = pair  # hf = to_transformers(ours)
    set_objective(ours, hf, True, 0.6)  # both are carried in transformers' config
    back = from_transformers(hf)
    assert_bit_identical(back.state_dict(), ours.state_dict())
    assert back.config == ours.config and back.mask_ratio == 0.6


def test_our_folders_load_in_transformers(tmp_path):
    """mae.checkpoint.save_pretrained writes the published files' (4.x) names, which transformers loads fully."""
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


# transformers 4.x names of the 5.x ones, inside a layer; written out here rather than taken from mae.checkpoint.
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


@pytest.mark.parametrize(
    "fields, says",
    [({"hidden_size": 0}, "hidden_size=0; a positive integer"),
     ({"num_attention_heads": "4"}, "num_attention_heads='4'; a positive integer"),
     ({"num_hidden_layers": True}, "num_hidden_layers=True; a positive integer"),
     ({"decoder_intermediate_size": 1.5}, "decoder_intermediate_size=1.5"),
     ({"image_size": 0}, "image_size=0 is not supported here"), ({"patch_size": [8, 4]}, "patch_size=[8, 4]"),
     ({"mask_ratio": 1.0}, "mask_ratio=1.0; a fraction in [0, 1)"), ({"layer_norm_eps": -1}, "layer_norm_eps=-1"),
     ([], "holds a JSON list, not an object")],
)  # fmt: skip
def test_a_malformed_config_json_is_one_error_naming_the_field(tmp_path, fields, says):
    """Before: hidden_size 0 divided by zero, a string head count or a list raised TypeError/AttributeError."""
    folder = tmp_path / "hf"
    save_pretrained(mae.mae_vit_tiny_patch8(), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **fields} if fields != [] else [config]))
    with pytest.raises(CheckpointError) as error:
        mae.model_from_checkpoint(folder)
    assert says in str(error.value) and "config.json" in str(error.value)
    assert len(str(error.value).splitlines()) == 1
