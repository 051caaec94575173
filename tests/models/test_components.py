"""The reference components of mae.models, each on its own: shapes, the idea it implements, and MAE's
initialisation.
"""

import math

import pytest
import torch
from torch import nn

import mae
from mae import MAE, Attention, Block, PatchEmbed, get_2d_sincos_pos_embed, random_masking


def tiny(**overrides):
    config = dict(img_size=32, patch_size=8, in_chans=3, embed_dim=32, depth=2, num_heads=4,
                  decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    return MAE(**{**config, **overrides})


def test_patch_embed_is_a_linear_map_of_each_flattened_patch():
    embed = PatchEmbed(img_size=(16, 24), patch_size=8, in_chans=2, embed_dim=5)
    imgs = torch.randn(3, 2, 16, 24)
    tokens = embed(imgs)
    assert tokens.shape == (3, 6, 5) and embed.grid_size == (2, 3)
    # Token at (row 1, col 2) is patch index 1 * 3 + 2 = 5.
    patch = imgs[:, :, 8:16, 16:24].reshape(3, -1)  # (B, C*p*p) in (c, p, q) order
    expected = patch @ embed.proj.weight.reshape(5, -1).T + embed.proj.bias
    torch.testing.assert_close(tokens[:, 5], expected)


def test_pos_embed_layout():
    table = get_2d_sincos_pos_embed(8, (2, 3), cls_token=True)  # D=8: 2 frequencies per axis
    assert table.shape == (1 + 6, 8) and table.dtype == torch.float64
    assert torch.equal(table[0], torch.zeros(8))
    grid = table[1:].reshape(2, 3, 8)
    # First half depends on the column only, second half on the row only.
    assert torch.equal(grid[0, :, :4], grid[1, :, :4])
    assert torch.equal(grid[:, 0, 4:], grid[:, 1, 4:])
    # Frequency 1 first: sin(col), sin(col / 100), cos(col), cos(col / 100).
    col = 2.0
    expected = torch.tensor(
        [math.sin(col), math.sin(col / 100), math.cos(col), math.cos(col / 100)], dtype=torch.float64
    )
    torch.testing.assert_close(grid[0, 2, :4], expected)


def test_random_masking_keeps_the_lowest_noise():
    x = torch.arange(6.0).reshape(1, 6, 1)
    noise = torch.tensor([[0.9, 0.1, 0.5, 0.3, 0.8, 0.2]])
    visible, mask, ids_restore = random_masking(x, mask_ratio=0.5, noise=noise)
    assert visible.flatten().tolist() == [1.0, 5.0, 3.0]  # ascending noise
    assert mask.tolist() == [[1.0, 0.0, 1.0, 0.0, 1.0, 0.0]]
    assert ids_restore.tolist() == [[5, 0, 3, 2, 4, 1]]


def test_mask_ratio_zero_keeps_every_patch_in_order():
    model = tiny().eval()
    imgs = torch.randn(2, 3, 32, 32)
    latent, mask, ids_restore = model.forward_encoder(imgs, mask_ratio=0.0)
    assert latent.shape == (2, 1 + 16, 32)
    assert mask.sum() == 0 and torch.equal(ids_restore, torch.arange(16).expand(2, 16))
    loss, pred, _ = model(imgs, mask_ratio=0.0)
    assert loss.item() == 0.0 and pred.shape == (2, 16, 8 * 8 * 3)
    # Tokens do not depend on the order: the unmasked forward equals any shuffled one, unshuffled.
    shuffled, _, restore = model.forward_encoder(imgs, 0.0, noise=torch.rand(2, 16))
    unshuffled = torch.gather(shuffled[:, 1:], 1, restore.unsqueeze(-1).expand(-1, -1, 32))
    torch.testing.assert_close(unshuffled, latent[:, 1:], atol=1e-5, rtol=1e-5)


def test_fused_and_explicit_attention_agree():
    attn = Attention(24, num_heads=3).eval()
    x = torch.randn(2, 7, 24)
    fused = attn(x)
    attn.fused_attn = False
    torch.testing.assert_close(attn(x), fused, atol=1e-6, rtol=1e-5)
    weights = attn.attention_weights(x)
    assert weights.shape == (2, 3, 7, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7))


def test_block_is_pre_norm_residual():
    block = Block(16, num_heads=2).eval()
    x = torch.randn(2, 5, 16)
    h = x + block.attn(block.norm1(x))
    torch.testing.assert_close(block(x), h + block.mlp(block.norm2(h)))


def test_init_scheme():
    model = tiny(embed_dim=64, decoder_embed_dim=48)
    assert not model.pos_embed.requires_grad and not model.decoder_pos_embed.requires_grad
    expected = get_2d_sincos_pos_embed(64, 4, cls_token=True).float()
    assert torch.equal(model.pos_embed[0], expected)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            assert param.abs().max() == 0, name
    for module in model.modules():
        if isinstance(module, nn.Linear):  # Xavier-uniform bound sqrt(6 / (fan_in + fan_out))
            bound = math.sqrt(6 / sum(module.weight.shape))
            assert module.weight.abs().max() <= bound and module.weight.abs().max() > 0.8 * bound
        if isinstance(module, nn.LayerNorm):
            assert module.eps == 1e-6 and torch.equal(module.weight, torch.ones_like(module.weight))
    w = model.patch_embed.proj.weight.reshape(64, -1)
    assert w.abs().max() <= math.sqrt(6 / sum(w.shape))
    for token in (model.cls_token, model.mask_token):
        assert 0.01 < token.std().item() < 0.03


def test_single_channel_and_rectangular_images():
    model = tiny(img_size=(16, 40), in_chans=1, norm_pix_loss=True)
    imgs = torch.randn(3, 1, 16, 40)
    loss, pred, mask = model(imgs)
    assert pred.shape == (3, 2 * 5, 8 * 8 * 1) and mask.shape == (3, 10)
    assert torch.isfinite(loss)
    assert torch.equal(model.unpatchify(model.patchify(imgs)), imgs)
    loss.backward()
    assert model.patch_embed.proj.weight.grad is not None


def test_norm_pix_loss_uses_unbiased_variance_with_eps_inside_the_sqrt():
    model = tiny(norm_pix_loss=True)
    imgs = torch.randn(1, 3, 32, 32)
    target = model.patchify(imgs)
    mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True, unbiased=True)
    normalised = (target - mean) / torch.sqrt(var + 1e-6)
    mask = torch.zeros(1, 16)
    mask[0, 3] = 1
    pred = torch.zeros_like(target)
    expected = (normalised[0, 3] ** 2).mean()
    torch.testing.assert_close(model.forward_loss(imgs, pred, mask), expected)


def test_loss_only_counts_masked_patches():
    model = tiny()
    imgs = torch.randn(2, 3, 32, 32)
    pred = model.patchify(imgs).clone()
    mask = torch.zeros(2, 16)
    mask[:, :4] = 1
    pred[:, 4:] += 100.0  # errors on visible patches must not count
    assert model.forward_loss(imgs, pred, mask).item() == 0.0


def test_create_model_and_small_factories():
    model = mae.mae_vit_tiny_patch8()
    assert model.patch_embed.img_size == (64, 64) and model.patch_embed.num_patches == 64
    assert mae.create_model("mae_vit_tiny_patch8", in_chans=1).patch_embed.in_chans == 1
    with pytest.raises(ValueError, match="unknown model 'vit_b'.*mae_vit_base_patch16"):
        mae.create_model("vit_b")


def test_backward_reaches_every_trainable_parameter():
    model = tiny()
    loss, _, _ = model(torch.randn(2, 3, 32, 32))
    loss.backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, name


def test_drop_path_drops_whole_samples_while_training():
    from mae.models.transformer import DropPath

    drop = DropPath(0.5)
    x = torch.ones(2000, 3, 4)
    y = drop(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}  # kept samples are scaled by 1 / keep
    assert (per_sample.std(dim=1) == 0).all()  # the whole sample, not single entries
    assert 0.4 < (per_sample[:, 0] == 0).float().mean() < 0.6
    assert torch.equal(drop.eval()(x), x)
    block = Block(16, num_heads=2, drop_path=0.3)
    assert isinstance(block.drop_path, DropPath) and isinstance(Block(16, 2).drop_path, nn.Identity)


def test_attention_maps_use_the_explicit_path_and_rollout_is_a_distribution():
    from mae.visualize import attention_rollout, encoder_attentions

    torch.manual_seed(0)
    model = mae.mae_vit_tiny_patch8().eval()  # fused attention in the blocks
    imgs = torch.randn(2, 3, 64, 64)
    maps = encoder_attentions(model, imgs)
    assert len(maps) == 6 and maps[0].shape == (2, 3, 65, 65)
    torch.testing.assert_close(maps[-1].sum(-1), torch.ones(2, 3, 65))
    rollout = attention_rollout(maps)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(2, 65))
    # Each map is the softmax the explicit path computes inside the block for the same input.
    with torch.no_grad():
        x = torch.cat([(model.cls_token + model.pos_embed[:, :1]).expand(2, -1, -1),
                       model.patch_embed(imgs) + model.pos_embed[:, 1:]], dim=1)  # fmt: skip
        for block in model.blocks[:-1]:
            x = block(x)
        q, k, _ = model.blocks[-1].attn._split_heads(model.blocks[-1].norm1(x))
        want = (q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5).softmax(-1)
    torch.testing.assert_close(maps[-1], want, atol=1e-5, rtol=1e-4)
    identity = [torch.eye(5).expand(1, 2, 5, 5)] * 3
    torch.testing.assert_close(attention_rollout(identity), torch.eye(5).expand(1, 5, 5))
