"""The reference model (mae.models) computes the official MAE's function: every intermediate matches the
golden vectors (tests/fixtures/official_mae_tiny.pt), and the factories build the official shapes.
"""

import pytest
import torch
from helpers import assert_close, golden_model

import mae


@pytest.mark.parametrize("fused_attn", [True, False], ids=["sdpa", "explicit"])
@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_intermediate_matches(golden, index, fused_attn):
    case = golden["cases"][index]
    model = golden_model(case, fused_attn)
    with torch.no_grad():
        assert_close("patchify", model.patchify(case["imgs"]), case["patchified"])
        latent, mask, ids_restore = model.forward_encoder(
            case["imgs"], case["mask_ratio"], noise=case["noise"]
        )
        assert_close("latent", latent, case["latent"])
        assert torch.equal(mask, case["mask"]), "mask differs"
        assert mask.dtype == torch.float32
        assert torch.equal(ids_restore, case["ids_restore"]), "ids_restore differs"
        pred = model.forward_decoder(latent, ids_restore)
        assert_close("pred", pred, case["pred"])
        assert_close("loss", model.forward_loss(case["imgs"], pred, mask), case["loss"])
        loss, pred2, mask2 = model(case["imgs"], mask_ratio=case["mask_ratio"], noise=case["noise"])
        assert_close("forward loss", loss, case["loss"])
        assert torch.equal(pred2, pred) and torch.equal(mask2, mask)


def test_default_noise_is_torch_rand_drawn_first(golden):
    """Without noise=, masking draws torch.rand(N, L) as the forward pass's first random call."""
    case = golden["cases"][0]
    model = golden_model(case)
    torch.manual_seed(1234)
    noise = torch.rand(case["noise"].shape)
    torch.manual_seed(1234)
    with torch.no_grad():
        loss_default, _, mask_default = model(case["imgs"], mask_ratio=case["mask_ratio"])
        loss_explicit, _, mask_explicit = model(case["imgs"], mask_ratio=case["mask_ratio"], noise=noise)
    assert torch.equal(mask_default, mask_explicit)
    assert loss_default.item() == loss_explicit.item()


@pytest.mark.parametrize("name, dim, grid", [("dim64_grid4_cls", 64, 4), ("dim768_grid14_cls", 768, 14)])
def test_pos_embed_tables(golden, name, dim, grid):
    table = mae.get_2d_sincos_pos_embed(dim, grid, cls_token=True)
    want = golden["pos_embed"][name]
    assert table.dtype == torch.float64 and table.shape == want.shape
    assert (table - want).abs().max().item() < 1e-12


@pytest.mark.parametrize("name", ["mae_vit_base_patch16", "mae_vit_large_patch16", "mae_vit_huge_patch14"])
def test_factories_have_official_keys_and_shapes(official_shapes, name):
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = getattr(mae, name)()
    got = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert got == list(official_shapes[name].items())


def test_factories_use_layer_norm_eps_1e6():
    with torch.device("meta"):
        model = mae.mae_vit_base_patch16()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 * 12 + 1 + 2 * 8 + 1
    assert {m.eps for m in norms} == {1e-6}
