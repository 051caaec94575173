"""The checks: every solution passes, every stub fails, classic mistakes are named, correct variants pass."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import exercises
import solutions
from mae import checks

# --------------------------------------------------------------------------- both directions


@pytest.mark.parametrize("step", list(checks.STEPS))
def test_every_solution_passes(step, capsys):
    _, check, name = checks.STEPS[step]
    check(getattr(solutions, name))
    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("\u2713")


@pytest.mark.parametrize("step", list(checks.STEPS))
def test_every_stub_fails(step):
    _, check, name = checks.STEPS[step]
    with pytest.raises(AssertionError, match="not written yet"):
        check(getattr(exercises, name))


def test_terminal_runner():
    run = subprocess.run(
        [sys.executable, "-m", "mae.checks", "masking", "attention"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert (
        "\u2717 03 masking: random_masking(x, 0.65, noise=noise) reached code that is not written yet"
        in run.stdout
    )
    assert "(exercises/masking.py, in random_masking)" in run.stdout
    assert "0 of 2 steps pass (exercises/)." in run.stdout
    assert checks.main(["--impl", "solutions"]) == 0


# --------------------------------------------------------------------------- patch embedding


class PatchEmbedUnfold(nn.Module):
    """Correct: unfold the patches and apply a Linear named proj."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.p = patch_size
        self.proj = nn.Linear(in_chans * patch_size**2, embed_dim)

    def forward(self, x):
        return self.proj(F.unfold(x, self.p, stride=self.p).transpose(1, 2))


class PatchEmbedNoTranspose(solutions.PatchEmbed):
    def forward(self, x):
        return self.proj(x).flatten(2)


class PatchEmbedColumnOrder(solutions.PatchEmbed):
    def forward(self, x):
        return self.proj(x).transpose(2, 3).flatten(2).transpose(1, 2)


class PatchEmbedOtherName(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)


def test_patch_embed_variants():
    checks.check_patch_embed(PatchEmbedUnfold)
    with pytest.raises(AssertionError, match=r"dimension must come last.*transpose\(1, 2\)"):
        checks.check_patch_embed(PatchEmbedNoTranspose)
    with pytest.raises(AssertionError, match="column order; patch index must run row by row"):
        checks.check_patch_embed(PatchEmbedColumnOrder)
    with pytest.raises(
        AssertionError, match=r"missing \['proj.weight', 'proj.bias'\], unexpected \['conv.weight'"
    ):
        checks.check_patch_embed(PatchEmbedOtherName)


# --------------------------------------------------------------------------- position embedding


def numpy_pos_embed(embed_dim, grid_size, cls_token=False):
    """Correct: the official style, numpy and float64, returning an ndarray."""
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 4) / (embed_dim / 4))
    rows, cols = np.meshgrid(np.arange(grid_size), np.arange(grid_size), indexing="ij")

    def one_d(pos):
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    table = np.concatenate([one_d(cols), one_d(rows)], axis=1)
    return np.concatenate([np.zeros((1, embed_dim)), table]) if cls_token else table


def pos_embed_cos_first(embed_dim, grid_size, cls_token=False):
    table = solutions.get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token)
    q = embed_dim // 4
    parts = table.split(q, dim=1)  # sin_w, cos_w, sin_h, cos_h
    return torch.cat([parts[1], parts[0], parts[3], parts[2]], dim=1)


def pos_embed_rows_first(embed_dim, grid_size, cls_token=False):
    table = solutions.get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token)
    return torch.cat(table.split(embed_dim // 2, dim=1)[::-1], dim=1)


def pos_embed_no_cls(embed_dim, grid_size, cls_token=False):
    return solutions.get_2d_sincos_pos_embed(embed_dim, grid_size)


def pos_embed_wrong_frequencies(embed_dim, grid_size, cls_token=False):
    table = solutions.get_2d_sincos_pos_embed(embed_dim * 2, grid_size, cls_token)
    return torch.cat(
        [table[:, : embed_dim // 4], table[:, embed_dim // 2 : embed_dim // 2 + embed_dim // 4]] * 2, 1
    )


def test_pos_embed_variants():
    checks.check_pos_embed(numpy_pos_embed)
    with pytest.raises(AssertionError, match="sin and cos are swapped"):
        checks.check_pos_embed(pos_embed_cos_first)
    with pytest.raises(AssertionError, match="row and column halves are swapped"):
        checks.check_pos_embed(pos_embed_rows_first)
    with pytest.raises(
        AssertionError, match=r"expected shape \(17, 16\).*got \(16, 16\)\nHint: .*prepend one all-zero row"
    ):
        checks.check_pos_embed(pos_embed_no_cls)
    with pytest.raises(
        AssertionError, match=r"values are wrong; the first at position .* channel \d+: expected"
    ):
        checks.check_pos_embed(pos_embed_wrong_frequencies)


# --------------------------------------------------------------------------- masking


def masking_official_style(x, mask_ratio=0.75, noise=None):
    """Correct: the mask built with ones, zeros for the kept, then gathered with ids_restore."""
    N, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    noise = torch.rand(N, L) if noise is None else noise
    ids_shuffle = noise.argsort(1)
    ids_restore = ids_shuffle.argsort(1)
    kept = x.gather(1, ids_shuffle[:, :len_keep, None].repeat(1, 1, D))
    mask = torch.ones(N, L)
    mask[:, :len_keep] = 0
    return kept, mask.gather(1, ids_restore), ids_restore


def masking_shuffled_mask(x, mask_ratio=0.75, noise=None):
    kept, _, ids_restore = masking_official_style(x, mask_ratio, noise)
    mask = torch.ones_like(ids_restore, dtype=torch.float)
    mask[:, : kept.shape[1]] = 0
    return kept, mask, ids_restore


def masking_keeps_largest(x, mask_ratio=0.75, noise=None):
    return masking_official_style(x, mask_ratio, -noise)


def masking_rounds(x, mask_ratio=0.75, noise=None):
    N, L, D = x.shape
    len_keep = round(L * (1 - mask_ratio))
    ids_shuffle = noise.argsort(1)
    ids_restore = ids_shuffle.argsort(1)
    return (
        x.gather(1, ids_shuffle[:, :len_keep, None].expand(-1, -1, D)),
        (ids_restore >= len_keep).float(),
        ids_restore,
    )


def masking_ids_shuffle(x, mask_ratio=0.75, noise=None):
    kept, mask, _ = masking_official_style(x, mask_ratio, noise)
    return kept, mask, noise.argsort(1)


def masking_inverted(x, mask_ratio=0.75, noise=None):
    kept, mask, ids_restore = masking_official_style(x, mask_ratio, noise)
    return kept, 1 - mask, ids_restore


def masking_bool_mask(x, mask_ratio=0.75, noise=None):
    kept, mask, ids_restore = masking_official_style(x, mask_ratio, noise)
    return kept, mask.bool(), ids_restore


def masking_other_noise(x, mask_ratio=0.75, noise=None):
    return masking_official_style(x, mask_ratio, torch.randn(x.shape[:2]) if noise is None else noise)


@pytest.mark.parametrize(
    "fn, message",
    [
        (masking_shuffled_mask, "not in the original patch order: did you gather it with ids_restore?"),
        (masking_keeps_largest, "the patches with the SMALLEST noise are kept"),
        (masking_rounds, r"keep int\(L \* \(1 - mask_ratio\)\) = int\(10 \* 0.35\) = 3 patches"),
        (masking_ids_shuffle, "ids_restore must be the inverse permutation of the shuffle"),
        (masking_inverted, "the mask must be 1 for REMOVED patches"),
        (masking_bool_mask, "should be a float tensor"),
        (masking_other_noise, r"draw it as torch.rand\(N, L\)"),
    ],
)
def test_masking_mistakes(fn, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_random_masking(fn)


def test_masking_correct_variant():
    checks.check_random_masking(masking_official_style)


# --------------------------------------------------------------------------- attention


class AttentionEinsum(solutions.Attention):
    """Correct: explicit softmax written with einsum."""

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).unbind(2)  # (B, N, H, hd)
        weights = torch.einsum("bnhd,bmhd->bhnm", q, k).mul(self.scale).softmax(-1)
        return self.proj(torch.einsum("bhnm,bmhd->bnhd", weights, v).reshape(B, N, C))


class AttentionNoScale(solutions.Attention):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, fused_attn=False, **kwargs)
        self.scale = 1.0


class AttentionScaleByDim(solutions.Attention):
    def __init__(self, dim, *args, **kwargs):
        super().__init__(dim, *args, fused_attn=False, **kwargs)
        self.scale = dim**-0.5


class AttentionSoftmaxQueries(solutions.Attention):
    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self._split_heads(x)
        out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(-2) @ v
        return self.proj(out.transpose(1, 2).reshape(B, N, C))


class AttentionBadMerge(solutions.Attention):
    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self._split_heads(x)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.reshape(B, N, C))


@pytest.mark.parametrize(
    "cls, message",
    [
        (AttentionNoScale, r"not scaled: multiply q k\^T by head_dim \*\* -0.5"),
        (AttentionScaleByDim, "not by dim"),
        (AttentionSoftmaxQueries, "softmax must run over the keys"),
        (AttentionBadMerge, "heads were merged in the wrong order"),
    ],
)
def test_attention_mistakes(cls, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_attention(cls)


def test_attention_correct_variants():
    checks.check_attention(AttentionEinsum)

    class Explicit(solutions.Attention):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, fused_attn=False, **kwargs)

    checks.check_attention(Explicit)


# --------------------------------------------------------------------------- block


class BlockPostNorm(solutions.Block):
    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class BlockNoResidual(solutions.Block):
    def forward(self, x):
        return self.mlp(self.norm2(self.attn(self.norm1(x))))


class BlockDefaultEps(solutions.Block):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm1.eps = self.norm2.eps = 1e-5


class BlockWithWrongAttention(solutions.Block):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, **kwargs):
        super().__init__(dim, num_heads, mlp_ratio, **kwargs)
        self.attn = AttentionNoScale(dim, num_heads)


@pytest.mark.parametrize(
    "cls, message",
    [
        (BlockPostNorm, "this is post-norm; MAE's ViT is pre-norm"),
        (BlockNoResidual, "residual connections are missing"),
        (BlockDefaultEps, r"eps=layer_norm_eps \(1e-6"),
        (BlockWithWrongAttention, "pass check_attention first"),
    ],
)
def test_block_mistakes(cls, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_block(cls)


# --------------------------------------------------------------------------- encoder, decoder, model


class EncoderNoMasking(solutions.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        _, mask, ids_restore = solutions.random_masking(self.patch_embed(imgs), mask_ratio, noise)
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], 1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore


class EncoderPositionAfterMasking(solutions.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        x, mask, ids_restore = solutions.random_masking(self.patch_embed(imgs), mask_ratio, noise)
        x = x + self.pos_embed[:, 1 : 1 + x.shape[1]]  # the first positions, not the kept patches' own
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore


class EncoderNoFinalNorm(solutions.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        latent, mask, ids_restore = super().forward_encoder(imgs, mask_ratio, noise)
        self.norm, norm = nn.Identity(), self.norm
        try:
            latent, _, _ = super().forward_encoder(imgs, mask_ratio, noise)
        finally:
            self.norm = norm
        return latent, mask, ids_restore


@pytest.mark.parametrize(
    "cls, message",
    [
        (EncoderNoMasking, r"see only the visible patches \(1 CLS \+ 6 tokens here\)"),
        (EncoderPositionAfterMasking, r"add the position embeddings BEFORE masking"),
        (EncoderNoFinalNorm, "apply the final LayerNorm"),
    ],
)
def test_encoder_mistakes(cls, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_encoder(cls)


def _decode(model, x):
    for block in model.decoder_blocks:
        x = block(x)
    return model.decoder_pred(model.decoder_norm(x))


class DecoderNoUnshuffle(solutions.MAE):
    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        masks = self.mask_token.expand(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], -1)
        x = torch.cat([x, masks], 1) + self.decoder_pos_embed
        return _decode(self, x)[:, 1:]


class DecoderKeepsCls(solutions.MAE):
    def forward_decoder(self, latent, ids_restore):
        self.decoder_pred, pred = nn.Identity(), self.decoder_pred
        try:
            x = super().forward_decoder(latent, ids_restore)  # (B, L, Dd), CLS already dropped
        finally:
            self.decoder_pred = pred
        x = self.decoder_embed(latent)
        masks = self.mask_token.expand(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], -1)
        patches = torch.gather(
            torch.cat([x[:, 1:], masks], 1), 1, ids_restore[..., None].expand(-1, -1, x.shape[2])
        )
        return _decode(self, torch.cat([x[:, :1], patches], 1) + self.decoder_pos_embed)


class DecoderNoPosition(solutions.MAE):
    def forward_decoder(self, latent, ids_restore):
        table, self.decoder_pos_embed = (
            self.decoder_pos_embed,
            nn.Parameter(torch.zeros_like(self.decoder_pos_embed)),
        )
        try:
            return super().forward_decoder(latent, ids_restore)
        finally:
            self.decoder_pos_embed = table


@pytest.mark.parametrize(
    "cls, message",
    [
        (
            DecoderNoUnshuffle,
            r"still in shuffled order: unshuffle them with torch.gather\(\.\.\., ids_restore\)",
        ),
        (DecoderKeepsCls, r"expected shape \(2, 24, 32\).*got \(2, 25, 32\)\nHint: drop the CLS token"),
        (DecoderNoPosition, "add decoder_pos_embed"),
    ],
)
def test_decoder_mistakes(cls, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_decoder(cls)


class MAEEinsum(solutions.MAE):
    """Correct: patchify and unpatchify written with einsum, as in the paper's code."""

    def patchify(self, imgs):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        x = torch.einsum("nchpwq->nhwpqc", imgs.reshape(imgs.shape[0], -1, h, p, w, p))
        return x.reshape(imgs.shape[0], h * w, -1)

    def unpatchify(self, x):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        x = torch.einsum("nhwpqc->nchpwq", x.reshape(x.shape[0], h, w, p, p, -1))
        return x.reshape(x.shape[0], -1, h * p, w * p)


class MAEChannelFirstPatches(MAEEinsum):
    def patchify(self, imgs):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        x = torch.einsum("nchpwq->nhwcpq", imgs.reshape(imgs.shape[0], -1, h, p, w, p))
        return x.reshape(imgs.shape[0], h * w, -1)


class MAEWrongUnpatchify(MAEEinsum):
    def unpatchify(self, x):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        return x.reshape(x.shape[0], -1, h * p, w * p)


class MAELossAllPatches(solutions.MAE):
    def forward_loss(self, imgs, pred, mask):
        return super().forward_loss(imgs, pred, torch.ones_like(mask))


class MAELossBiasedVariance(solutions.MAE):
    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True, unbiased=False) + 1e-6
        ) ** 0.5
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


class MAELossEpsOutside(solutions.MAE):
    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) ** 0.5 + 1e-6)
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


class MAELossIgnoresNormPix(solutions.MAE):
    def forward_loss(self, imgs, pred, mask):
        self.norm_pix_loss = False
        try:
            return super().forward_loss(imgs, pred, mask)
        finally:
            self.norm_pix_loss = True


class MAEForwardTwoOutputs(solutions.MAE):
    def forward(self, imgs, mask_ratio=0.75, noise=None):
        return super().forward(imgs, mask_ratio, noise)[:2]


@pytest.mark.parametrize(
    "cls, message",
    [
        (MAEChannelFirstPatches, r"pixels must be ordered \(p, q, c\), channel last"),
        (MAEWrongUnpatchify, "unpatchify must undo patchify exactly"),
        (MAELossAllPatches, "average over the MASKED patches only"),
        (MAELossBiasedVariance, "use the unbiased variance"),
        (MAELossEpsOutside, "the 1e-6 goes inside the square root"),
        (MAELossIgnoresNormPix, "normalise each target patch by its own mean and variance"),
        (MAEForwardTwoOutputs, r"forward must return \(loss, pred, mask\)"),
    ],
)
def test_model_mistakes(cls, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_mae(cls)


def test_model_correct_variant():
    checks.check_mae(MAEEinsum)
    checks.check_encoder(MAEEinsum)
    checks.check_decoder(MAEEinsum)


def test_classifier_mistakes_are_named():
    class PoolsTheClsTokenToo(solutions.VisionTransformer):
        def forward_features(self, imgs):
            x = self.patch_embed(imgs)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
            for block in self.blocks:
                x = block(x)
            return self.fc_norm(x.mean(dim=1)) if self.global_pool else self.norm(x)[:, 0]

    class ForgetsPositions(solutions.VisionTransformer):
        def forward_features(self, imgs):
            x = self.patch_embed(imgs)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            for block in self.blocks:
                x = block(x)
            return self.fc_norm(x[:, 1:].mean(dim=1)) if self.global_pool else self.norm(x)[:, 0]

    with pytest.raises(AssertionError, match="leave the CLS token out"):
        checks.check_classifier(PoolsTheClsTokenToo)
    with pytest.raises(AssertionError, match="add self.pos_embed"):
        checks.check_classifier(ForgetsPositions)
