"""Every implementation a check accepts (learner_code.CORRECT) runs what the later notebooks and commands call:
the shipped checkpoint loaded into it and giving the reference's reconstruction (06-10), the figures of notebook 10
(reconstructions, attention maps), a pretraining run of mae.pretrain (09), its checkpoint saved and rebuilt, the
exports to transformers and timm (12), and for the classifier the encoder of a pretrained MAE and its fine-tuned
checkpoint (11, 12).

The learner's class takes the place of the reference where the package asks whose code runs
(mae.models.factories.components), as MAE_IMPL=exercises puts it there. tests/course/test_impl.py runs one accepted
variant (a Linear patch embedding) through the notebooks themselves.
"""

from types import SimpleNamespace

import learner_code as yours
import matplotlib
import pytest
import torch
from helpers import ROOT, flags, pretrain_here

import mae
import mae.models as ref
from mae import visualize
from mae.checkpoint import load_classifier, load_pretrained_encoder, official_state_dict
from mae.models import factories
from mae.timm_interop import encoder_to_timm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PHOTOS = ROOT / "checkpoints" / "mae_mini_photos.pth"  # mae_vit_mini_patch8: 64x64 images, 8x8 grid


def mae_class(name):
    """The MAE a learner who wrote the CORRECT entry `name` runs: their step, the reference's other steps."""
    step, (_, written) = name.split(":")[0], yours.CORRECT[name]
    if step in ("encoder", "decoder", "model"):
        return written  # a whole MAE class
    if step == "patch_embed":

        def replace(model):
            embed = model.patch_embed
            size = (
                embed.img_size[0] if written is yours.SquarePatchEmbed else embed.img_size
            )  # the seed's int
            model.patch_embed = written(size, embed.patch_size, embed.in_chans, model.cls_token.shape[-1])

    elif step == "attention":

        def replace(model):
            for block in [*model.blocks, *model.decoder_blocks]:
                block.attn = written(block.norm1.normalized_shape[0], block.attn.num_heads)

    elif step == "block":

        def replace(model):
            yours._replace_blocks(model, "blocks", written)
            yours._replace_blocks(model, "decoder_blocks", written)

    elif step == "pos_embed":  # the encoder and decoder call the learner's get_2d_sincos_pos_embed
        encoder = yours._with_globals(ref.Encoder._init_encoder_weights, get_2d_sincos_pos_embed=written)
        decoder = yours._with_globals(
            ref.EncoderDecoder._init_decoder_weights, get_2d_sincos_pos_embed=written
        )
        return type("MAE", (ref.MAE,), {"_init_encoder_weights": encoder, "_init_decoder_weights": decoder})
    elif step == "masking":  # the encoder calls the learner's random_masking
        masking = yours._with_globals(ref.Encoder.forward_encoder, random_masking=written)
        return type("MAE", (ref.MAE,), {"forward_encoder": masking})

    def __init__(self, **config):
        ref.MAE.__init__(self, **config)
        replace(self)

    return type("MAE", (ref.MAE,), {"__init__": __init__})


MAE_VARIANTS = [name for name in yours.CORRECT if not name.startswith("classifier")]


def learners(monkeypatch, MAE=ref.MAE, VisionTransformer=ref.VisionTransformer):
    classes = SimpleNamespace(MAE=MAE, Encoder=ref.Encoder, VisionTransformer=VisionTransformer)
    monkeypatch.setattr(factories, "components", lambda reference=False: classes)


@pytest.mark.integration
@pytest.mark.parametrize("name", MAE_VARIANTS)
def test_an_accepted_mae_runs_the_later_notebooks_the_training_and_the_exports(name, monkeypatch, tmp_path):
    from mae.hf_interop import to_transformers

    learners(monkeypatch, MAE=mae_class(name))
    torch.manual_seed(0)
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 64)
    model = mae.model_from_checkpoint(PHOTOS).eval()
    assert type(model) is not ref.MAE, "the learner's class was built"
    reference = mae.load_weights(ref.MAE(**model_config(model)), mae.read_checkpoint(PHOTOS)["model"]).eval()
    with torch.no_grad():
        loss, pred, mask = model(imgs, noise=noise)
        want = reference(imgs, noise=noise)
    assert torch.allclose(pred, want[1], atol=1e-4) and torch.equal(mask, want[2])

    for figure in (visualize.show_reconstruction(model, imgs[:1]), visualize.show_attention_maps(model, imgs),
                   visualize.show_reconstruction_by_ratio(model, imgs[:1])):  # fmt: skip
        plt.close(figure)
    maps = visualize.encoder_attentions(model, imgs)
    assert torch.allclose(maps[-1], visualize.encoder_attentions(reference, imgs)[-1], atol=1e-5)

    pretrain_here(flags(tmp_path / "run", "--model", "mae_vit_tiny_patch8", "--max_steps", "2"))
    trained = mae.model_from_checkpoint(tmp_path / "run" / "checkpoint-last.pth")
    assert type(trained).__name__ == type(model).__name__
    assert torch.isfinite(torch.cat([p.flatten() for p in trained.parameters()])).all()

    mae.save_checkpoint(tmp_path / "saved.pth", model)
    again = mae.model_from_checkpoint(tmp_path / "saved.pth").eval()
    with torch.no_grad():
        assert torch.equal(again(imgs, noise=noise)[1], pred)
    hf = to_transformers(model).eval()
    with torch.no_grad():
        assert abs(hf(pixel_values=imgs, noise=noise).loss.item() - loss.item()) < 1e-5
    vit = timm_encoder(model)
    with torch.no_grad():
        in_order = torch.arange(64.0).expand(2, 64)  # noise that keeps every patch in its place
        assert torch.allclose(
            vit.forward_features(imgs), model.forward_encoder(imgs, 0.0, in_order)[0], atol=1e-5
        )


@pytest.mark.integration
def test_an_accepted_classifier_takes_a_pretrained_encoder_and_its_fine_tuned_checkpoint(
    monkeypatch, tmp_path
):
    _, written = yours.CORRECT["classifier: square only (seed signature)"]
    learners(monkeypatch, VisionTransformer=written)
    classifier = mae.create_classifier("vit_mini_patch8", num_classes=3)
    assert type(classifier) is written
    load_pretrained_encoder(classifier, PHOTOS)  # notebooks 11 and 12
    encoder = mae.model_from_checkpoint(PHOTOS)
    assert torch.equal(classifier.blocks[-1].mlp.fc2.weight, encoder.blocks[-1].mlp.fc2.weight)
    classifier(torch.randn(2, 3, 64, 64)).sum().backward()
    mae.save_checkpoint(tmp_path / "fine-tuned.pth", classifier)
    again = mae.create_classifier("vit_mini_patch8", num_classes=3)
    load_classifier(again, tmp_path / "fine-tuned.pth")
    assert torch.equal(again.head.weight, classifier.head.weight)
    assert "blocks.0.attn.qkv.weight" in official_state_dict(classifier)


def model_config(model):
    return {k: v for k, v in factories.config_of(model).items() if k in factories.constructor_defaults()}


def timm_encoder(model):
    import timm

    config = factories.config_of(model)
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=config["img_size"],
                            patch_size=config["patch_size"], embed_dim=config["embed_dim"], depth=config["depth"],
                            num_heads=config["num_heads"], num_classes=0, global_pool="token")  # fmt: skip
    vit.load_state_dict(encoder_to_timm(official_state_dict(model)))
    return vit.eval()


def test_a_class_written_from_the_official_signatures_is_built_without_the_arguments_it_lacks(monkeypatch):
    """SquareMAE takes no layer_norm_eps (the official signature): left out at its default, an error otherwise."""
    learners(monkeypatch, MAE=yours.SquareMAE)
    config = dict(factories.CONFIGS["mae_vit_mini_patch8"], layer_norm_eps=1e-6, drop_path_rate=0.0)
    model = factories.mae_from_config(config)
    assert type(model) is yours.SquareMAE
    read = {k: v for k, v in config.items() if k != "drop_path_rate"}  # not in the sizes: training only
    assert factories.config_of(model) == {**read, "in_chans": 3, "mlp_ratio": 4.0, "norm_pix_loss": False}


def test_an_argument_the_class_lacks_is_never_dropped_when_it_matters(monkeypatch):
    learners(monkeypatch, MAE=yours.SquareMAE)
    config = dict(factories.CONFIGS["mae_vit_mini_patch8"], layer_norm_eps=1e-5)
    with pytest.raises(TypeError, match=r"SquareMAE takes no argument layer_norm_eps, and this model needs "
                                        r"layer_norm_eps=1e-05 \(not the default\)"):  # fmt: skip
        factories.mae_from_config(config)


def test_a_model_with_nothing_to_read_its_config_from_is_told_so():
    with pytest.raises(TypeError, match="PatchEmbed records no config .* lacks what it could be read from"):
        factories.config_of(ref.PatchEmbed(32, 8, 3, 16))
