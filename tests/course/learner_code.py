"""Code a learner could write for the course's steps, to test mae.checks with (not a test module itself).

For every check: realistic mistaken implementations, each with a regex of the message that must name its
mistake (MISTAKES), and correct implementations other than the reference, which the check must pass (CORRECT).
The keys start with the step they belong to ("masking: ...", "model: ..."); tests/course/test_checks_suite.py runs
every entry, and tests/course/test_checks_runner.py the whole suite's summary. `python tests/course/learner_code.py`
(or `pytest -s -k summary`) prints how many mistakes are caught and how many named specifically.
"""

import contextlib
import io
import re
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mae.models as ref
from mae import checks

# --------------------------------------------------------------------------- 01 patch embedding


class PatchEmbedUnfold(nn.Module):
    """Correct: unfold the patches and apply a Linear named proj."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.p = patch_size
        self.proj = nn.Linear(in_chans * patch_size**2, embed_dim)
        # What the rest of the model reads (the encoder, patchify, the figures).
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        self.patch_size, self.in_chans = patch_size, in_chans
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]

    def forward(self, x):
        return self.proj(F.unfold(x, self.p, stride=self.p).transpose(1, 2))


class PatchEmbedReshape(PatchEmbedUnfold):
    """Correct: a Linear on patches cut with reshape and permute, flattened (c, p, q)."""

    def forward(self, x):
        B, C, H, W = x.shape
        p = self.p
        patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)  # (B, h, w, C, p, q)
        return self.proj(patches.reshape(B, (H // p) * (W // p), C * p * p))


class PatchEmbedLinearPixelsLast(PatchEmbedUnfold):
    """A Linear on patches flattened (p, q, c), as patchify does, while proj.weight is laid out (c, p, q)."""

    def forward(self, x):
        B, C, H, W = x.shape
        p = self.p
        patches = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, h, w, p, q, C)
        return self.proj(patches.reshape(B, (H // p) * (W // p), C * p * p))


class SquarePatchEmbed(nn.Module):
    """Correct, written from the seed's own signatures: square images only, as the official code."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        if not isinstance(img_size, int):
            raise ValueError(f"img_size must be square, got {img_size}")
        self.img_size, self.patch_size, self.in_chans = (img_size, img_size), patch_size, in_chans
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class PatchEmbedNoTranspose(ref.PatchEmbed):
    def forward(self, x):
        return self.proj(x).flatten(2)


class PatchEmbedReshapeNoTranspose(ref.PatchEmbed):
    def forward(self, x):
        x = self.proj(x)  # (B, D, h, w)
        return x.reshape(x.shape[0], -1, x.shape[1])


class PatchEmbedColumnOrder(ref.PatchEmbed):
    def forward(self, x):
        return self.proj(x).transpose(2, 3).flatten(2).transpose(1, 2)


class PatchEmbedNotFlattened(ref.PatchEmbed):
    def forward(self, x):
        return self.proj(x)


class PatchEmbedOverlapping(ref.PatchEmbed):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__(img_size, patch_size, in_chans, embed_dim)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size)  # stride forgotten


class PatchEmbedOtherName(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        self.conv = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)


# --------------------------------------------------------------------------- 02 position embedding


def numpy_pos_embed(embed_dim, grid_size, cls_token=False):
    """Correct: the official style, numpy and float64, meshgrid(w, h) with the default "xy" indexing."""
    omega = 1.0 / 10000 ** (np.arange(embed_dim // 4) / (embed_dim / 4))
    cols, rows = np.meshgrid(np.arange(grid_size), np.arange(grid_size))  # "xy": w first

    def one_d(pos):
        angles = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    table = np.concatenate([one_d(cols), one_d(rows)], axis=1)
    return np.concatenate([np.zeros((1, embed_dim)), table]) if cls_token else table


def torch_pos_embed(
    embed_dim, grid_size, cls_token=False, indexing="ij", order="cols, rows", even_steps=True
):
    """Correct with the defaults: float32 torch, frequencies 10000 ** (-2i / d) with d = embed_dim / 2."""
    d = embed_dim // 2
    steps = torch.arange(0, d, 2) / d if even_steps else torch.arange(d // 2) / d
    omega = 1.0 / 10000**steps
    h, w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing=indexing)

    def one_d(pos):
        angles = pos.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    halves = [one_d(cols), one_d(rows)] if order == "cols, rows" else [one_d(rows), one_d(cols)]
    table = torch.cat(halves, dim=1)
    return torch.cat([torch.zeros(1, embed_dim), table]) if cls_token else table


def pos_embed_xy_rows_first(embed_dim, grid_size, cls_token=False):
    """Right on square grids (two swaps cancel), wrong on (h, w) grids, which it accepts."""
    return torch_pos_embed(embed_dim, grid_size, cls_token, indexing="xy", order="rows, cols")


def pos_embed_cos_first(embed_dim, grid_size, cls_token=False):
    table = ref.get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token)
    q = embed_dim // 4
    parts = table.split(q, dim=1)  # sin_w, cos_w, sin_h, cos_h
    return torch.cat([parts[1], parts[0], parts[3], parts[2]], dim=1)


def pos_embed_rows_first(embed_dim, grid_size, cls_token=False):
    return torch_pos_embed(embed_dim, grid_size, cls_token, order="rows, cols")


def pos_embed_xy(embed_dim, grid_size, cls_token=False):
    return torch_pos_embed(embed_dim, grid_size, cls_token, indexing="xy")


def pos_embed_no_cls(embed_dim, grid_size, cls_token=False):
    return ref.get_2d_sincos_pos_embed(embed_dim, grid_size)


def pos_embed_cls_last(embed_dim, grid_size, cls_token=False):
    table = ref.get_2d_sincos_pos_embed(embed_dim, grid_size)
    return torch.cat([table, torch.zeros(1, embed_dim)]) if cls_token else table


def pos_embed_wrong_frequencies(embed_dim, grid_size, cls_token=False):
    """10000 ** (-k / d) with d the width of the 1-D embedding, instead of 10000 ** (-k / (d / 2))."""
    return torch_pos_embed(embed_dim, grid_size, cls_token, even_steps=False)


def pos_embed_full_width_frequencies(embed_dim, grid_size, cls_token=False):
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4) / embed_dim)
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    halves = [torch.outer(pos.flatten().float(), omega) for pos in (cols, rows)]
    table = torch.cat([part for a in halves for part in (a.sin(), a.cos())], dim=1)
    return torch.cat([torch.zeros(1, embed_dim), table]) if cls_token else table


def pos_embed_growing_frequencies(embed_dim, grid_size, cls_token=False):
    omega = 10000 ** (torch.arange(embed_dim // 4) / (embed_dim / 4))  # 1 / forgotten
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    halves = [torch.outer(pos.flatten().double(), omega.double()) for pos in (cols, rows)]
    table = torch.cat([part for a in halves for part in (a.sin(), a.cos())], dim=1)
    return torch.cat([torch.zeros(1, embed_dim), table]) if cls_token else table


def pos_embed_off_by_one(embed_dim, grid_size, cls_token=False):
    """Frequencies for k = 1 .. D/4 instead of 0 .. D/4 - 1."""
    omega = 1.0 / 10000 ** (torch.arange(1, embed_dim // 4 + 1) / (embed_dim / 4))
    h, w = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    halves = [torch.outer(pos.flatten().double(), omega.double()) for pos in (cols, rows)]
    table = torch.cat([part for a in halves for part in (a.sin(), a.cos())], dim=1)
    return torch.cat([torch.zeros(1, embed_dim), table]) if cls_token else table


def pos_embed_interleaved(embed_dim, grid_size, cls_token=False):
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4) / (embed_dim / 4))
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")

    def one_d(pos):
        angles = pos.reshape(-1, 1) * omega
        return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # sin, cos, sin, cos, ...

    table = torch.cat([one_d(cols), one_d(rows)], dim=1)
    return torch.cat([torch.zeros(1, embed_dim), table]) if cls_token else table


# --------------------------------------------------------------------------- 03 masking


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


def masking_scatter(x, mask_ratio=0.75, noise=None):
    """Correct: the mask scattered with ids_shuffle, the kept tokens picked by advanced indexing."""
    N, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    noise = torch.rand(N, L) if noise is None else noise
    ids_shuffle = torch.sort(noise, dim=1).indices
    ids_restore = torch.empty_like(ids_shuffle).scatter_(1, ids_shuffle, torch.arange(L).expand(N, L))
    kept = x[torch.arange(N)[:, None], ids_shuffle[:, :len_keep]]
    mask = torch.zeros(N, L).scatter_(1, ids_shuffle[:, len_keep:], 1.0)
    return kept, mask, ids_restore


def masking_shuffled_mask(x, mask_ratio=0.75, noise=None):
    kept, _, ids_restore = masking_official_style(x, mask_ratio, noise)
    mask = torch.ones_like(ids_restore, dtype=torch.float)
    mask[:, : kept.shape[1]] = 0
    return kept, mask, ids_restore


def masking_mask_gathered_with_ids_shuffle(x, mask_ratio=0.75, noise=None):
    kept, _, ids_restore = masking_official_style(x, mask_ratio, noise)
    mask = torch.ones_like(ids_restore, dtype=torch.float)
    mask[:, : kept.shape[1]] = 0
    return kept, mask.gather(1, noise.argsort(1)), ids_restore


def masking_mask_scattered_with_ids_restore(x, mask_ratio=0.75, noise=None):
    kept, _, ids_restore = masking_official_style(x, mask_ratio, noise)
    shuffled = torch.ones_like(ids_restore, dtype=torch.float)
    shuffled[:, : kept.shape[1]] = 0
    return kept, torch.empty_like(shuffled).scatter_(1, ids_restore, shuffled), ids_restore


def masking_scatters_ones_on_kept(x, mask_ratio=0.75, noise=None):
    kept, _, ids_restore = masking_official_style(x, mask_ratio, noise)
    ids_keep = noise.argsort(1)[:, : kept.shape[1]]
    return kept, torch.zeros(ids_restore.shape).scatter_(1, ids_keep, 1.0), ids_restore


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


def masking_gather_not_expanded(x, mask_ratio=0.75, noise=None):
    _, mask, ids_restore = masking_official_style(x, mask_ratio, noise)
    ids_keep = noise.argsort(1)[:, : int(x.shape[1] * (1 - mask_ratio))]
    return x.gather(1, ids_keep.unsqueeze(-1)), mask, ids_restore


def masking_gathers_with_ids_restore(x, mask_ratio=0.75, noise=None):
    _, mask, ids_restore = masking_official_style(x, mask_ratio, noise)
    ids_keep = ids_restore[:, : int(x.shape[1] * (1 - mask_ratio))]
    return x.gather(1, ids_keep[..., None].expand(-1, -1, x.shape[2])), mask, ids_restore


def masking_sorts_over_the_batch(x, mask_ratio=0.75, noise=None):
    N, L, D = x.shape
    ids_shuffle = noise.argsort(0)
    ids_restore = ids_shuffle.argsort(0)
    kept = x.gather(1, ids_shuffle[:, : int(L * (1 - mask_ratio)), None].expand(-1, -1, D))
    return kept, (ids_restore >= kept.shape[1]).float(), ids_restore


def masking_ids_shuffle(x, mask_ratio=0.75, noise=None):
    kept, mask, _ = masking_official_style(x, mask_ratio, noise)
    return kept, mask, noise.argsort(1)


def masking_own_order(x, mask_ratio=0.75, noise=None):
    """Draws its own random order with torch.randperm instead of sorting the noise it is given."""
    N, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.stack([torch.randperm(L) for _ in range(N)])
    ids_restore = ids_shuffle.argsort(1)
    kept = x.gather(1, ids_shuffle[:, :len_keep, None].expand(-1, -1, D))
    return kept, (ids_restore >= len_keep).float(), ids_restore


def masking_mask_own_order(x, mask_ratio=0.75, noise=None):
    """Right tokens and ids_restore; the mask comes from a fresh random order."""
    kept, _, ids_restore = masking_official_style(x, mask_ratio, noise)
    rank = torch.rand(ids_restore.shape).argsort(1).argsort(1)
    return kept, (rank >= kept.shape[1]).float(), ids_restore


def masking_inverted(x, mask_ratio=0.75, noise=None):
    kept, mask, ids_restore = masking_official_style(x, mask_ratio, noise)
    return kept, 1 - mask, ids_restore


def masking_bool_mask(x, mask_ratio=0.75, noise=None):
    kept, mask, ids_restore = masking_official_style(x, mask_ratio, noise)
    return kept, mask.bool(), ids_restore


def masking_other_noise(x, mask_ratio=0.75, noise=None):
    return masking_official_style(x, mask_ratio, torch.randn(x.shape[:2]) if noise is None else noise)


# --------------------------------------------------------------------------- 04 attention


def _merge(out):  # (B, H, N, hd) -> (B, N, C)
    B, H, N, hd = out.shape
    return out.transpose(1, 2).reshape(B, N, H * hd)


class AttentionEinsum(ref.Attention):
    """Correct: explicit softmax written with einsum."""

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).unbind(2)  # (B, N, H, hd)
        weights = torch.einsum("bnhd,bmhd->bhnm", q, k).mul(self.scale).softmax(-1)
        return self.proj(torch.einsum("bhnm,bmhd->bnhd", weights, v).reshape(B, N, C))


class AttentionExplicit(ref.Attention):
    """Correct: the explicit path by default."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, fused_attn=False, **kwargs)


class AttentionOwnSDPA(nn.Module):
    """Correct: written from scratch, no fused_attn flag, q k v split with chunk, SDPA given its scale."""

    def __init__(self, dim, num_heads=8, qkv_bias=True, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = (t.reshape(B, N, self.num_heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, scale=(C // self.num_heads) ** -0.5)
        return self.proj(_merge(out))


class AttentionNoScale(ref.Attention):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, fused_attn=False, **kwargs)
        self.scale = 1.0


class AttentionScaleByDim(ref.Attention):
    def __init__(self, dim, *args, **kwargs):
        super().__init__(dim, *args, fused_attn=False, **kwargs)
        self.scale = dim**-0.5


class AttentionScaledTwice(ref.Attention):
    def forward(self, x):
        q, k, v = self._split_heads(x)
        return self.proj(_merge(F.scaled_dot_product_attention(q * self.scale, k, v)))


class AttentionSoftmaxQueries(ref.Attention):
    def forward(self, x):
        q, k, v = self._split_heads(x)
        return self.proj(_merge(((q @ k.transpose(-2, -1)) * self.scale).softmax(-2) @ v))


class AttentionBadMerge(ref.Attention):
    def forward(self, x):
        q, k, v = self._split_heads(x)
        return self.proj(F.scaled_dot_product_attention(q, k, v).reshape(x.shape))


class AttentionQkvHeadsFirst(ref.Attention):
    def _split_heads(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, self.num_heads, 3, self.head_dim)
        return qkv.permute(3, 0, 2, 1, 4).unbind(0)


class AttentionReshapeWithoutPermute(ref.Attention):
    def _split_heads(self, x):
        B, N, C = x.shape
        return self.qkv(x).reshape(3, B, self.num_heads, N, self.head_dim).unbind(0)


class AttentionNoProj(ref.Attention):
    def forward(self, x):
        return _merge(F.scaled_dot_product_attention(*self._split_heads(x)))


class AttentionOneHead(ref.Attention):
    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(((q @ k.transpose(-2, -1)) * self.scale).softmax(-1) @ v)


class AttentionScoresTransposed(ref.Attention):
    def forward(self, x):
        q, k, v = self._split_heads(x)
        return self.proj(_merge(((k @ q.transpose(-2, -1)) * self.scale).softmax(-1) @ v))


class AttentionWeightsUnscaled(ref.Attention):
    """Right forward; attention_weights forgets the scale."""

    def attention_weights(self, x):
        q, k, _ = self._split_heads(x)
        return (q @ k.transpose(-2, -1)).softmax(dim=-1)


class AttentionWeightsOverQueries(ref.Attention):
    def attention_weights(self, x):
        q, k, _ = self._split_heads(x)
        return ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-2)


class AttentionWeightsNoSoftmax(ref.Attention):
    def attention_weights(self, x):
        q, k, _ = self._split_heads(x)
        return (q * self.scale) @ k.transpose(-2, -1)


class AttentionExplicitPathRaises(ref.Attention):
    """Right on the fused path (the default); the explicit path multiplies by v transposed."""

    def forward(self, x):
        if self.fused_attn:
            return super().forward(x)
        q, k, v = self._split_heads(x)
        return self.proj(_merge(((q * self.scale) @ k.transpose(-2, -1)).softmax(-1) @ v.transpose(-2, -1)))


class AttentionRaises(ref.Attention):
    """A single-path forward that raises (it forgets to merge the heads)."""

    def forward(self, x):
        return self.proj(F.scaled_dot_product_attention(*self._split_heads(x)))


class AttentionExplicitPathUnscaled(ref.Attention):
    """Right on the fused path (the default); the explicit path forgets the scale."""

    def forward(self, x):
        if self.fused_attn:
            return super().forward(x)
        q, k, v = self._split_heads(x)
        return self.proj(_merge((q @ k.transpose(-2, -1)).softmax(-1) @ v))


class AttentionExplicitPathBroken(ref.Attention):
    """Right on the fused path; the explicit path scales the values too."""

    def forward(self, x):
        if self.fused_attn:
            return super().forward(x)
        q, k, v = self._split_heads(x)
        return self.proj(_merge(((q * self.scale) @ k.transpose(-2, -1)).softmax(-1) @ (v * self.scale)))


# --------------------------------------------------------------------------- 05 block


class OwnMlp(nn.Module):
    """The learner's own MLP class, with the official names."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class BlockOwnMlp(nn.Module):
    """Correct: its own Mlp class, LayerNorms given as norm_layer (the seed's style), SDPA attention."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, norm_layer=None):
        super().__init__()
        norm_layer = norm_layer or (lambda d: nn.LayerNorm(d, eps=1e-6))
        self.norm1, self.norm2 = norm_layer(dim), norm_layer(dim)
        self.attn = AttentionOwnSDPA(dim, num_heads)
        self.mlp = OwnMlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BlockPostNorm(ref.Block):
    def forward(self, x):
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class BlockNoResidual(ref.Block):
    def forward(self, x):
        return self.mlp(self.norm2(self.attn(self.norm1(x))))


class BlockNoAttentionResidual(ref.Block):
    def forward(self, x):
        x = self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class BlockNoMlpResidual(ref.Block):
    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return self.mlp(self.norm2(x))


class BlockNorm1BeforeMlp(ref.Block):
    """Uses norm1 before the MLP too: invisible while the LayerNorms are identities (at initialisation)."""

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm1(x))


class BlockNormsSwapped(ref.Block):
    def forward(self, x):
        x = x + self.attn(self.norm2(x))
        return x + self.mlp(self.norm1(x))


class BlockMlpSeesInput(ref.Block):
    def forward(self, x):
        return x + self.attn(self.norm1(x)) + self.mlp(self.norm2(x))


class BlockResidualOfNormalised(ref.Block):
    def forward(self, x):
        x = self.norm1(x)
        x = x + self.attn(x)
        x = self.norm2(x)
        return x + self.mlp(x)


class BlockDefaultEps(ref.Block):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm1.eps = self.norm2.eps = 1e-5


class BlockWithWrongAttention(ref.Block):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, **kwargs):
        super().__init__(dim, num_heads, mlp_ratio, **kwargs)
        self.attn = AttentionNoScale(dim, num_heads)


class BlockWithAttentionOverQueries(ref.Block):
    """A correct Block whose Attention (the learner's) takes the softmax over the queries."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, **kwargs):
        super().__init__(dim, num_heads, mlp_ratio, **kwargs)
        self.attn = AttentionSoftmaxQueries(dim, num_heads)


class BlockReLU(ref.Block):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mlp.act = nn.ReLU()


class BlockTanhGELU(ref.Block):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mlp.act = nn.GELU(approximate="tanh")


# --------------------------------------------------------------------------- 06 encoder


class EncoderNoMasking(ref.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        _, mask, ids_restore = ref.random_masking(self.patch_embed(imgs), mask_ratio, noise)
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], 1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore


class EncoderPositionAfterMasking(ref.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        x, mask, ids_restore = ref.random_masking(self.patch_embed(imgs), mask_ratio, noise)
        x = x + self.pos_embed[:, 1 : 1 + x.shape[1]]  # the first positions, not the kept patches' own
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore


class EncoderNoPosition(ref.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        x, mask, ids_restore = ref.random_masking(self.patch_embed(imgs), mask_ratio, noise)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore


class EncoderExplicitAttentionBroken(ref.MAE):
    """Right with its default (fused) attention; the explicit path of its Attention is broken."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for block in self.blocks:
            block.attn = AttentionExplicitPathBroken(kwargs["embed_dim"], kwargs["num_heads"])


class EncoderClsNotExpanded(ref.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        x, mask, ids_restore = ref.random_masking(
            self.patch_embed(imgs) + self.pos_embed[:, 1:], mask_ratio, noise
        )
        x = torch.cat([self.cls_token + self.pos_embed[:, :1], x], dim=1)  # (1, 1, D) next to (B, L_vis, D)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore


class EncoderNoiseNotPassed(ref.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        x, mask, ids_restore = ref.random_masking(self.patch_embed(imgs) + self.pos_embed[:, 1:], mask_ratio)
        x = torch.cat([(self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore


def _with_globals(function, **names):
    """`function` as if its module defined `names`: a learner's module importing their own random_masking."""
    copy = types.FunctionType(
        function.__code__, {**function.__globals__, **names}, function.__name__, function.__defaults__
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    return copy


def _replace_blocks(model, name, Block):
    """Rebuild the blocks of `model.<name>` as `Block`s of the same size (the learner's Block class)."""
    blocks = getattr(model, name)
    dim = blocks[0].norm1.normalized_shape[0]
    heads, ratio = blocks[0].attn.num_heads, blocks[0].mlp.fc1.out_features / dim
    setattr(model, name, nn.ModuleList(Block(dim, heads, ratio) for _ in blocks))


class EncoderAttentionOverQueries(ref.MAE):
    """A correct encoder whose blocks use the learner's wrong Attention (the reviewer's case)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _replace_blocks(self, "blocks", BlockWithAttentionOverQueries)


class EncoderPostNormBlocks(ref.MAE):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _replace_blocks(self, "blocks", BlockPostNorm)


class EncoderColumnOrderPatchEmbed(ref.MAE):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        p = self.patch_embed
        self.patch_embed = PatchEmbedColumnOrder(p.img_size, p.patch_size, p.in_chans, p.embed_dim)


class EncoderOwnMaskingOrder(ref.MAE):
    """A correct forward_encoder; the random_masking its module imports draws its own order."""

    forward_encoder = _with_globals(ref.Encoder.forward_encoder, random_masking=masking_own_order)


class EncoderNoFinalNorm(ref.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        self.norm, norm = nn.Identity(), self.norm
        try:
            return super().forward_encoder(imgs, mask_ratio, noise)
        finally:
            self.norm = norm


# --------------------------------------------------------------------------- 07 decoder


def _decode(model, x):
    for block in model.decoder_blocks:
        x = block(x)
    return model.decoder_pred(model.decoder_norm(x))


def _mask_tokens(model, x, ids_restore):
    return model.mask_token.expand(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], -1)


def _unshuffle(tokens, ids_restore):
    return torch.gather(tokens, 1, ids_restore[..., None].expand(-1, -1, tokens.shape[2]))


class DecoderNoUnshuffle(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        x = torch.cat([x, _mask_tokens(self, x, ids_restore)], 1) + self.decoder_pos_embed
        return _decode(self, x)[:, 1:]


class DecoderKeepsCls(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        patches = _unshuffle(torch.cat([x[:, 1:], _mask_tokens(self, x, ids_restore)], 1), ids_restore)
        return _decode(self, torch.cat([x[:, :1], patches], 1) + self.decoder_pos_embed)


class DecoderClsInUnshuffle(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        patches = _unshuffle(torch.cat([x, _mask_tokens(self, x, ids_restore)], 1), ids_restore)
        return _decode(self, torch.cat([x[:, :1], patches], 1) + self.decoder_pos_embed)[:, 1:]


class DecoderMaskTokensFirst(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        patches = _unshuffle(torch.cat([_mask_tokens(self, x, ids_restore), x[:, 1:]], 1), ids_restore)
        return _decode(self, torch.cat([x[:, :1], patches], 1) + self.decoder_pos_embed)[:, 1:]


class DecoderWithoutCls(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        patches = _unshuffle(torch.cat([x[:, 1:], _mask_tokens(self, x, ids_restore)], 1), ids_restore)
        return _decode(self, patches + self.decoder_pos_embed[:, 1:])


class DecoderNoPosition(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        table, self.decoder_pos_embed = (
            self.decoder_pos_embed,
            nn.Parameter(torch.zeros_like(self.decoder_pos_embed)),
        )
        try:
            return super().forward_decoder(latent, ids_restore)
        finally:
            self.decoder_pos_embed = table


class DecoderAttentionOverQueries(ref.MAE):
    """A correct decoder whose blocks use the learner's wrong Attention."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _replace_blocks(self, "decoder_blocks", BlockWithAttentionOverQueries)


class DecoderNoNorm(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        self.decoder_norm, norm = nn.Identity(), self.decoder_norm
        try:
            return super().forward_decoder(latent, ids_restore)
        finally:
            self.decoder_norm = norm


# --------------------------------------------------------------------------- 08 the model


class MAEEinsum(ref.MAE):
    """Correct: patchify and unpatchify written with einsum, as in the paper's code."""

    def patchify(self, imgs):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        x = torch.einsum("nchpwq->nhwpqc", imgs.reshape(imgs.shape[0], -1, h, p, w, p))
        return x.reshape(imgs.shape[0], h * w, -1)

    def unpatchify(self, x):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        x = torch.einsum("nhwpqc->nchpwq", x.reshape(x.shape[0], h, w, p, p, -1))
        return x.reshape(x.shape[0], -1, h * p, w * p)


class MAEScatterDecoder(ref.MAE):
    """Correct: visible tokens scattered into a row of mask tokens; the loss by boolean indexing."""

    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        B, L = ids_restore.shape
        ids_shuffle = ids_restore.argsort(1)[:, : x.shape[1] - 1, None].expand(-1, -1, x.shape[2])
        patches = self.mask_token.repeat(B, L, 1).scatter(1, ids_shuffle, x[:, 1:])
        return _decode(self, torch.cat([x[:, :1], patches], 1) + self.decoder_pos_embed)[:, 1:]

    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        chosen = ((pred - target) ** 2).mean(-1)[mask.bool()]
        return (
            chosen.mean() if chosen.numel() else chosen.sum()
        )  # nothing masked: 0, not the NaN of an empty mean


class MAEChannelFirstPatches(MAEEinsum):
    def patchify(self, imgs):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        x = torch.einsum("nchpwq->nhwcpq", imgs.reshape(imgs.shape[0], -1, h, p, w, p))
        return x.reshape(imgs.shape[0], h * w, -1)


class MAEColumnOrderPatches(MAEEinsum):
    def patchify(self, imgs):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        x = torch.einsum("nchpwq->nwhpqc", imgs.reshape(imgs.shape[0], -1, h, p, w, p))
        return x.reshape(imgs.shape[0], h * w, -1)


class MAEWrongUnpatchify(MAEEinsum):
    def unpatchify(self, x):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        return x.reshape(x.shape[0], -1, h * p, w * p)


class MAEFoldUnpatchify(MAEEinsum):
    def unpatchify(self, x):
        p, (h, w) = self.patch_embed.patch_size, self.patch_embed.grid_size
        return F.fold(x.transpose(1, 2), (h * p, w * p), kernel_size=p, stride=p)


class MAEPosEmbedOffByOne(ref.MAE):
    """A correct model; the get_2d_sincos_pos_embed its encoder module imports is off by one."""

    _init_encoder_weights = _with_globals(
        ref.Encoder._init_encoder_weights, get_2d_sincos_pos_embed=pos_embed_off_by_one
    )


class MAEOwnCorrectParts(MAEEinsum):
    """Correct: the learner's own (correct) Block, Attention, masking and position table in its modules."""

    forward_encoder = _with_globals(ref.Encoder.forward_encoder, random_masking=masking_scatter)
    _init_encoder_weights = _with_globals(
        ref.Encoder._init_encoder_weights, get_2d_sincos_pos_embed=torch_pos_embed
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _replace_blocks(self, "blocks", BlockOwnMlp)
        _replace_blocks(self, "decoder_blocks", BlockOwnMlp)


def _target(model, imgs):
    target = model.patchify(imgs)
    if model.norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    return target


class MAELossAllPatches(ref.MAE):
    def forward_loss(self, imgs, pred, mask):
        return super().forward_loss(imgs, pred, torch.ones_like(mask))


class MAELossVisiblePatches(ref.MAE):
    def forward_loss(self, imgs, pred, mask):
        return super().forward_loss(imgs, pred, 1 - mask)


class MAELossSummedPerPatch(ref.MAE):
    def forward_loss(self, imgs, pred, mask):
        return (((pred - _target(self, imgs)) ** 2).sum(-1) * mask).sum() / mask.sum()


class MAELossDividedByAllPatches(ref.MAE):
    def forward_loss(self, imgs, pred, mask):
        return (((pred - _target(self, imgs)) ** 2).mean(-1) * mask).mean()


class MAELossBiasedVariance(ref.MAE):
    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (
                target.var(-1, keepdim=True, unbiased=False) + 1e-6
            ) ** 0.5
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


class MAELossEpsOutside(ref.MAE):
    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) ** 0.5 + 1e-6)
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


class MAELossIgnoresNormPix(ref.MAE):
    def forward_loss(self, imgs, pred, mask):
        self.norm_pix_loss, flag = False, self.norm_pix_loss
        try:
            return super().forward_loss(imgs, pred, mask)
        finally:
            self.norm_pix_loss = flag


class MAELossAlwaysNormalises(ref.MAE):
    """Normalises the targets even when norm_pix_loss=False."""

    def forward_loss(self, imgs, pred, mask):
        self.norm_pix_loss, flag = True, self.norm_pix_loss
        try:
            return super().forward_loss(imgs, pred, mask)
        finally:
            self.norm_pix_loss = flag


class MAEForwardTwoOutputs(ref.MAE):
    def forward(self, imgs, mask_ratio=0.75, noise=None):
        return super().forward(imgs, mask_ratio, noise)[:2]


# --------------------------------------------------------------------------- a learner's square-only model


class SquareEncoder(nn.Module):
    """Written from the seed's signatures: square images (img_size an int), as the official code."""

    def __init__(
        self, img_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16, mlp_ratio=4.0
    ):
        super().__init__()
        self.patch_embed = SquarePatchEmbed(img_size, patch_size, in_chans, embed_dim)
        side = int(self.patch_embed.num_patches**0.5)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        table = torch.as_tensor(numpy_pos_embed(embed_dim, side, cls_token=True)).float()
        self.pos_embed = nn.Parameter(table.unsqueeze(0), requires_grad=False)
        self.blocks = nn.ModuleList(BlockOwnMlp(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def run_blocks(self, x):
        cls = self.cls_token + self.pos_embed[:, :1]
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return x


class SquareMAE(SquareEncoder):
    def __init__(
        self, img_size=224, patch_size=16, in_chans=3, embed_dim=1024, depth=24, num_heads=16,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, mlp_ratio=4.0, norm_pix_loss=False,
    ):  # fmt: skip
        super().__init__(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio)
        side = int(self.patch_embed.num_patches**0.5)
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        table = torch.as_tensor(numpy_pos_embed(decoder_embed_dim, side, cls_token=True)).float()
        self.decoder_pos_embed = nn.Parameter(table.unsqueeze(0), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            BlockOwnMlp(decoder_embed_dim, decoder_num_heads, mlp_ratio) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self.norm_pix_loss = norm_pix_loss

    def patchify(self, imgs):
        p = self.patch_embed.patch_size
        assert imgs.shape[2] == imgs.shape[3] and imgs.shape[2] % p == 0
        n, c, h = imgs.shape[0], imgs.shape[1], imgs.shape[2] // p
        x = torch.einsum("nchpwq->nhwpqc", imgs.reshape(n, c, h, p, h, p))
        return x.reshape(n, h * h, p * p * c)

    def unpatchify(self, x):
        p = self.patch_embed.patch_size
        h = int(x.shape[1] ** 0.5)
        c = x.shape[2] // p**2
        x = torch.einsum("nhwpqc->nchpwq", x.reshape(x.shape[0], h, h, p, p, c))
        return x.reshape(x.shape[0], c, h * p, h * p)

    def forward_encoder(self, imgs, mask_ratio, noise=None):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        x, mask, ids_restore = masking_scatter(x, mask_ratio, noise)
        return self.norm(self.run_blocks(x)), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        tokens = torch.cat(
            [x[:, 1:], self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)], 1
        )
        x = torch.cat([x[:, :1], _unshuffle(tokens, ids_restore)], 1) + self.decoder_pos_embed
        return _decode(self, x)[:, 1:]

    def forward_loss(self, imgs, pred, mask):
        loss = ((pred - _target(self, imgs)) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum().clamp(min=1)  # mask ratio 0: loss 0 (the official code: 0/0)

    def forward(self, imgs, mask_ratio=0.75, noise=None):
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask


class SquareVisionTransformer(SquareEncoder):
    def __init__(self, num_classes=1000, global_pool=False, **kwargs):
        super().__init__(**kwargs)
        dim = self.cls_token.shape[-1]
        self.global_pool = global_pool
        if global_pool:
            self.fc_norm = nn.LayerNorm(dim, eps=1e-6)
            del self.norm
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, imgs):
        x = self.run_blocks(self.patch_embed(imgs) + self.pos_embed[:, 1:])
        return self.fc_norm(x[:, 1:].mean(dim=1)) if self.global_pool else self.norm(x)[:, 0]

    def forward(self, imgs):
        return self.head(self.forward_features(imgs))


# --------------------------------------------------------------------------- 12 the classifier


class ClassifierPoolsClsTokenToo(ref.VisionTransformer):
    def forward_features(self, imgs):
        x = self.patch_embed(imgs)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x.mean(dim=1)) if self.global_pool else self.norm(x)[:, 0]


class ClassifierForgetsPositions(ref.VisionTransformer):
    def forward_features(self, imgs):
        x = self.patch_embed(imgs)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x[:, 1:].mean(dim=1)) if self.global_pool else self.norm(x)[:, 0]


class ClassifierNoFcNorm(ref.VisionTransformer):
    def forward_features(self, imgs):
        self.fc_norm, norm = nn.Identity(), getattr(self, "fc_norm", None)
        try:
            return super().forward_features(imgs)
        finally:
            del self.fc_norm
            if norm is not None:
                self.fc_norm = norm


class ClassifierNorm1Blocks(ref.VisionTransformer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        _replace_blocks(self, "blocks", BlockNorm1BeforeMlp)


class ClassifierClsNotExpanded(ref.VisionTransformer):
    def forward_features(self, imgs):
        x = torch.cat([self.cls_token, self.patch_embed(imgs)], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.fc_norm(x[:, 1:].mean(dim=1)) if self.global_pool else self.norm(x)[:, 0]


class ClassifierNoFinalNorm(ref.VisionTransformer):
    def forward_features(self, imgs):
        if self.global_pool:
            return super().forward_features(imgs)
        self.norm, norm = nn.Identity(), self.norm
        try:
            return super().forward_features(imgs)
        finally:
            self.norm = norm


# --------------------------------------------------------------------------- mistakes by class
# State the check would overwrite, attributes and arguments the rest of the model relies on, and mistakes that
# otherwise get only "N of M values are wrong".


def masking_never_shuffled(x, mask_ratio=0.75, noise=None):
    """Keeps the first len_keep tokens: no shuffle at all."""
    N, L, D = x.shape
    len_keep = int(L * (1 - mask_ratio))
    mask = torch.ones(N, L)
    mask[:, :len_keep] = 0
    return x[:, :len_keep], mask, torch.arange(L).expand(N, L)


class PatchEmbedNoAttributes(nn.Module):
    """A correct map from images to tokens, without the attributes the encoder reads (num_patches, grid_size)."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class EncoderClsLast(ref.MAE):
    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        x = self.patch_embed(imgs) + self.pos_embed[:, 1:]
        x, mask, ids_restore = ref.random_masking(x, mask_ratio, noise)
        x = torch.cat([x, (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)], 1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask, ids_restore


class EncoderIgnoresMaskRatio(ref.MAE):
    """Masks 75% whatever it is asked: the ratio is not passed on."""

    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        return super().forward_encoder(imgs, 0.75, noise)


class EncoderTablesNeverFilled(ref.MAE):
    """Leaves the position tables as torch.zeros (never fills them with the sin-cos table)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        with torch.no_grad():
            self.pos_embed.zero_()
            self.decoder_pos_embed.zero_()


class EncoderTrainablePositions(ref.MAE):
    """The fixed sin-cos table left trainable."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.pos_embed.requires_grad_(True)


class DecoderPositionBeforeUnshuffle(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        masks = self.mask_token.expand(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], -1)
        shuffled = (
            torch.cat([x[:, 1:], masks], dim=1) + self.decoder_pos_embed[:, 1:]
        )  # positions of the shuffle
        index = ids_restore[..., None].expand(-1, -1, x.shape[-1])
        x = torch.cat([x[:, :1] + self.decoder_pos_embed[:, :1], torch.gather(shuffled, 1, index)], dim=1)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


class DecoderZeroMaskTokens(ref.MAE):
    def forward_decoder(self, latent, ids_restore):
        x = self.decoder_embed(latent)
        masks = torch.zeros(
            x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], x.shape[-1]
        )  # not self.mask_token
        index = ids_restore[..., None].expand(-1, -1, x.shape[-1])
        x = torch.cat([x[:, :1], torch.gather(torch.cat([x[:, 1:], masks], dim=1), 1, index)], dim=1)
        x = x + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]


class MAEUnpatchifySwapsPatchAxes(MAEEinsum):
    def unpatchify(self, x):
        p, (h, w), C = self.patch_embed.patch_size, self.patch_embed.grid_size, self.patch_embed.in_chans
        x = x.reshape(x.shape[0], h, w, p, p, C)
        return torch.einsum("nhwqpc->nchpwq", x).reshape(x.shape[0], C, h * p, w * p)  # p and q exchanged


class MAELossNoClamp(ref.MAE):
    """The official formula: with nothing masked it divides 0 by 0."""

    def forward_loss(self, imgs, pred, mask):
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()


# --------------------------------------------------------------------------- the mistake suite

C = checks
MISTAKES = {  # name -> (the check, the mistaken implementation, a regex of the message that names the mistake)
    "patch_embed: no transpose": (C.check_patch_embed, PatchEmbedNoTranspose, r"dimension must come last.*transpose\(1, 2\)"),
    "patch_embed: reshape without transpose": (C.check_patch_embed, PatchEmbedReshapeNoTranspose, r"reshaping \(B, D, h, w\) straight to \(B, L, D\) mixes channels and positions"),
    "patch_embed: column order": (C.check_patch_embed, PatchEmbedColumnOrder, "column order; patch index must run row by row"),
    "patch_embed: not flattened": (C.check_patch_embed, PatchEmbedNotFlattened, r"must be a sequence \(B, L, D\)"),
    "patch_embed: stride forgotten": (C.check_patch_embed, PatchEmbedOverlapping, "the patches overlap"),
    "patch_embed: Linear on (p, q, c) patches": (C.check_patch_embed, PatchEmbedLinearPixelsLast, r"inside each patch.*\(p, q, c\).*flatten each patch as \(c, p, q\)"),
    "patch_embed: other parameter name": (C.check_patch_embed, PatchEmbedOtherName, r"missing \['proj.weight', 'proj.bias'\], unexpected \['conv.weight'"),
    "pos_embed: cos first": (C.check_pos_embed, pos_embed_cos_first, "sin and cos are swapped"),
    "pos_embed: rows first": (C.check_pos_embed, pos_embed_rows_first, r"row and column halves are swapped.*\[rows, cols\]"),
    "pos_embed: meshgrid indexing=xy": (C.check_pos_embed, pos_embed_xy, r"row and column halves are swapped.*indexing=\"xy\""),
    "pos_embed: sin/cos interleaved": (C.check_pos_embed, pos_embed_interleaved, "sin and cos are interleaved"),
    "pos_embed: exponent k / d": (C.check_pos_embed, pos_embed_wrong_frequencies, r"frequencies are wrong.*not by its width D/2"),
    "pos_embed: exponent k / D": (C.check_pos_embed, pos_embed_full_width_frequencies, r"frequencies are wrong.*not by the full width D"),
    "pos_embed: frequencies growing": (C.check_pos_embed, pos_embed_growing_frequencies, "the frequencies must decrease"),
    "pos_embed: k = 1 .. D/4": (C.check_pos_embed, pos_embed_off_by_one, r"frequencies are off by one: k runs 0 \.\. D/4 - 1"),
    "pos_embed: no CLS row": (C.check_pos_embed, pos_embed_no_cls, r"expected shape \(17, 16\).*got \(16, 16\)\nHint: .*prepend one all-zero row"),
    "pos_embed: CLS row last": (C.check_pos_embed, pos_embed_cls_last, "the CLS row goes first"),
    "masking: mask in shuffled order": (C.check_random_masking, masking_shuffled_mask, "not in the original patch order: did you gather it with ids_restore?"),
    "masking: mask gathered with ids_shuffle": (C.check_random_masking, masking_mask_gathered_with_ids_shuffle, "mask is unshuffled the wrong way"),
    "masking: mask scattered with ids_restore": (C.check_random_masking, masking_mask_scattered_with_ids_restore, "mask is unshuffled the wrong way"),
    "masking: ones scattered on the kept": (C.check_random_masking, masking_scatters_ones_on_kept, "the mask must be 1 for REMOVED patches"),
    "masking: keeps the largest noise": (C.check_random_masking, masking_keeps_largest, "the patches with the SMALLEST noise are kept"),
    "masking: rounds len_keep": (C.check_random_masking, masking_rounds, r"keep int\(L \* \(1 - mask_ratio\)\) = int\(10 \* 0.35\) = 3 patches"),
    "masking: gather index not expanded": (C.check_random_masking, masking_gather_not_expanded, "the gather index must cover every channel"),
    "masking: gathers with ids_restore": (C.check_random_masking, masking_gathers_with_ids_restore, r"gather the visible tokens with ids_shuffle\[:, :len_keep\]"),
    "masking: argsort over the batch": (C.check_random_masking, masking_sorts_over_the_batch, r"argsort\(\.\.\., dim=1\), not along the batch"),
    "masking: ids_restore = ids_shuffle": (C.check_random_masking, masking_ids_shuffle, "ids_restore must be the inverse permutation of the shuffle"),
    "masking: inverted mask": (C.check_random_masking, masking_inverted, "the mask must be 1 for REMOVED patches"),
    "masking: bool mask": (C.check_random_masking, masking_bool_mask, "should be a float tensor"),
    "masking: other noise": (C.check_random_masking, masking_other_noise, r"draw it as torch.rand\(N, L\)"),
    "masking: own random order": (C.check_random_masking, masking_own_order, r"ids_restore is a permutation, but not the one the given noise makes.*torch.randperm"),
    "masking: mask from its own order": (C.check_random_masking, masking_mask_own_order, r"mask has the wrong values. it removes 7 patches per image, the right number, but not the ones the given noise picks"),
    "attention: no scale": (C.check_attention, AttentionNoScale, r"not scaled: multiply q k\^T by head_dim \*\* -0.5"),
    "attention: scale by dim": (C.check_attention, AttentionScaleByDim, "not by dim"),
    "attention: scaled twice": (C.check_attention, AttentionScaledTwice, "scaled twice"),
    "attention: softmax over queries": (C.check_attention, AttentionSoftmaxQueries, "softmax must run over the keys"),
    "attention: heads merged wrong": (C.check_attention, AttentionBadMerge, "heads were merged in the wrong order"),
    "attention: qkv as (B, N, heads, 3, hd)": (C.check_attention, AttentionQkvHeadsFirst, r"not \(B, N, heads, 3, head_dim\)"),
    "attention: qkv reshaped without permute": (C.check_attention, AttentionReshapeWithoutPermute, "mixes tokens and channels"),
    "attention: no output projection": (C.check_attention, AttentionNoProj, "apply the output projection self.proj"),
    "attention: one head": (C.check_attention, AttentionOneHead, "runs as one head of width dim"),
    "attention: k @ q^T": (C.check_attention, AttentionScoresTransposed, r"the scores are transposed: q @ k.transpose\(-2, -1\)"),
    "attention: attention_weights not scaled": (C.check_attention, AttentionWeightsUnscaled, r"attention_weights\(x\) has the wrong values. the attention scores are not scaled"),
    "attention: attention_weights over queries": (C.check_attention, AttentionWeightsOverQueries, r"attention_weights\(x\) has the wrong values. the softmax must run over the keys"),
    "attention: attention_weights without softmax": (C.check_attention, AttentionWeightsNoSoftmax, "attention_weights returns probabilities"),
    "attention: explicit path raises": (C.check_attention, AttentionExplicitPathRaises, r"^Attention.forward on the explicit path \(fused_attn=False\) raised RuntimeError.*\nHint: with your default, fused_attn=True, it runs and is right"),
    "attention: explicit path unscaled": (C.check_attention, AttentionExplicitPathUnscaled, r"explicit path, fused_attn=False\) has the wrong values. the attention scores are not scaled"),
    "attention: explicit path broken": (C.check_attention, AttentionExplicitPathBroken, r"explicit path, fused_attn=False\).*\nHint: your fused path is right"),
    "block: post-norm": (C.check_block, BlockPostNorm, "this is post-norm; MAE's ViT is pre-norm"),
    "block: no residuals": (C.check_block, BlockNoResidual, "residual connections are missing"),
    "block: no attention residual": (C.check_block, BlockNoAttentionResidual, "residual connection around the attention is missing"),
    "block: no MLP residual": (C.check_block, BlockNoMlpResidual, "residual connection around the MLP is missing"),
    "block: norm1 before the MLP": (C.check_block, BlockNorm1BeforeMlp, "normalised with norm1; use norm2"),
    "block: norms swapped": (C.check_block, BlockNormsSwapped, "norm1 and norm2 are swapped"),
    "block: MLP sees the block's input": (C.check_block, BlockMlpSeesInput, "the MLP must see the output of the attention step"),
    "block: residual of the normalised x": (C.check_block, BlockResidualOfNormalised, "residuals must add the un-normalised x"),
    "block: ReLU": (C.check_block, BlockReLU, "the MLP uses ReLU"),
    "block: tanh GELU": (C.check_block, BlockTanhGELU, "tanh approximation of GELU"),
    "block: LayerNorm eps": (C.check_block, BlockDefaultEps, r"eps=layer_norm_eps \(1e-6"),
    "block: wrong attention": (C.check_block, BlockWithWrongAttention, "pass check_attention first"),
    "encoder: no masking": (C.check_encoder, EncoderNoMasking, r"see only the visible patches \(1 CLS \+ 4 tokens here\)"),
    "encoder: position after masking": (C.check_encoder, EncoderPositionAfterMasking, "add the position embeddings BEFORE masking"),
    "encoder: no position": (C.check_encoder, EncoderNoPosition, r"add the position embeddings pos_embed\[:, 1:\]"),
    "encoder: explicit attention path broken": (C.check_encoder, EncoderExplicitAttentionBroken, r"your model's Attention \(step 04\) is not right yet.*explicit path, fused_attn=False.*Fix step 04 first \(check_attention\)"),
    "encoder: no final norm": (C.check_encoder, EncoderNoFinalNorm, "apply the final LayerNorm"),
    "encoder: CLS token not expanded": (C.check_encoder, EncoderClsNotExpanded, r"Sizes of tensors must match.*\nHint: expand the CLS token to the batch: \(cls_token \+ pos_embed\[:, :1\]\)\.expand\(B, -1, -1\)"),
    "encoder: noise not passed on": (C.check_encoder, EncoderNoiseNotPassed, r"Pass noise on: random_masking\(x, mask_ratio, noise\)"),
    "encoder: blocks with a wrong Attention": (C.check_encoder, EncoderAttentionOverQueries, r"^your model's Attention \(step 04\) is not right yet, and this check runs it: .*softmax must run over the keys.*Fix step 04 first \(check_attention\)$"),
    "encoder: a wrong Block": (C.check_encoder, EncoderPostNormBlocks, r"^your model's Block \(step 05\) is not right yet.*post-norm.*Fix step 05 first \(check_block\)$"),
    "encoder: a wrong PatchEmbed": (C.check_encoder, EncoderColumnOrderPatchEmbed, r"^your model's PatchEmbed \(step 01\) is not right yet.*column order.*Fix step 01 first \(check_patch_embed\)$"),
    "encoder: its random_masking draws its own order": (C.check_encoder, EncoderOwnMaskingOrder, r"^your model's random_masking \(step 03\) is not right yet.*torch.randperm.*Fix step 03 first \(check_random_masking\)$"),
    "decoder: no unshuffle": (C.check_decoder, DecoderNoUnshuffle, r"still in shuffled order: unshuffle them with torch.gather\(\.\.\., ids_restore\)"),
    "decoder: CLS in the prediction": (C.check_decoder, DecoderKeepsCls, r"expected shape \(2, 16, 48\).*got \(2, 17, 48\)\nHint: drop the CLS token"),
    "decoder: CLS in the unshuffle": (C.check_decoder, DecoderClsInUnshuffle, "the CLS token went through the unshuffle"),
    "decoder: mask tokens first": (C.check_decoder, DecoderMaskTokensFirst, "append the mask tokens AFTER the visible tokens"),
    "decoder: no CLS in the decoder": (C.check_decoder, DecoderWithoutCls, "keep the CLS token in the decoder"),
    "decoder: no position": (C.check_decoder, DecoderNoPosition, "add decoder_pos_embed"),
    "decoder: no decoder_norm": (C.check_decoder, DecoderNoNorm, "apply decoder_norm before decoder_pred"),
    "decoder: decoder blocks with a wrong Attention": (C.check_decoder, DecoderAttentionOverQueries, r"^your model's Attention \(step 04\) is not right yet.*Fix step 04 first \(check_attention\)$"),
    "model: channel-first patches": (C.check_mae, MAEChannelFirstPatches, r"pixels must be ordered \(p, q, c\), channel last"),
    "model: patches in column order": (C.check_mae, MAEColumnOrderPatches, r"patches must go row by row \(h before w\)"),
    "model: wrong unpatchify": (C.check_mae, MAEWrongUnpatchify, "unpatchify must undo patchify exactly"),
    "model: loss on all patches": (C.check_mae, MAELossAllPatches, r"only the MASKED patches \(mask == 1\) count"),
    "model: loss on visible patches": (C.check_mae, MAELossVisiblePatches, "loss on the visible patches"),
    "model: loss summed per patch": (C.check_mae, MAELossSummedPerPatch, r"summed over its p\*p\*C = 48 values"),
    "model: loss divided by all patches": (C.check_mae, MAELossDividedByAllPatches, r"divide by the number of masked patches, mask.sum\(\)"),
    "model: biased variance": (C.check_mae, MAELossBiasedVariance, "use the unbiased variance"),
    "model: eps outside the root": (C.check_mae, MAELossEpsOutside, "the 1e-6 goes inside the square root"),
    "model: ignores norm_pix_loss": (C.check_mae, MAELossIgnoresNormPix, "normalise each target patch by its own mean and variance"),
    "model: normalises without norm_pix_loss": (C.check_mae, MAELossAlwaysNormalises, "normalises the targets although norm_pix_loss=False"),
    "model: forward returns two outputs": (C.check_mae, MAEForwardTwoOutputs, r"forward must return \(loss, pred, mask\)"),
    "model: unpatchify with F.fold": (C.check_mae, MAEFoldUnpatchify, r"F.fold reads each patch as \(c, p, q\)"),
    "model: a wrong get_2d_sincos_pos_embed": (C.check_mae, MAEPosEmbedOffByOne, r"^your model's get_2d_sincos_pos_embed \(step 02\) is not right yet.*off by one.*Fix step 02 first \(check_pos_embed\)$"),
    "model: forward_encoder without the final norm": (C.check_mae, EncoderNoFinalNorm, r"^your forward_encoder \(step 06\) is not right yet, and forward runs it: .*apply the final LayerNorm.*Fix step 06 first \(check_encoder\)$"),
    "classifier: pools the CLS token too": (C.check_classifier, ClassifierPoolsClsTokenToo, "leave the CLS token out"),
    "classifier: no positions": (C.check_classifier, ClassifierForgetsPositions, "add self.pos_embed"),
    "classifier: no fc_norm": (C.check_classifier, ClassifierNoFcNorm, "normalise the pooled vector with self.fc_norm"),
    "classifier: no final norm": (C.check_classifier, ClassifierNoFinalNorm, "apply the final LayerNorm self.norm"),
    "classifier: a wrong Block": (C.check_classifier, ClassifierNorm1Blocks, r"^your model's Block \(step 05\) is not right yet.*norm1; use norm2.*Fix step 05 first \(check_block\)$"),
    "classifier: CLS token not expanded": (C.check_classifier, ClassifierClsNotExpanded, r"Sizes of tensors must match.*\nHint: expand the CLS token to the batch before torch.cat"),
    "masking: never shuffled": (C.check_random_masking, masking_never_shuffled, r"tokens are not shuffled: .*argsort"),
    "patch_embed: no num_patches / grid_size": (C.check_patch_embed, PatchEmbedNoAttributes, r"PatchEmbed has no num_patches"),
    "encoder: CLS token last": (C.check_encoder, EncoderClsLast, r"the CLS token goes FIRST"),
    "encoder: mask ratio not passed on": (C.check_encoder, EncoderIgnoresMaskRatio, r"mask_ratio=0\.5.*pass it on to random_masking"),
    "encoder: position tables never filled": (C.check_encoder, EncoderTablesNeverFilled, r"pos_embed is all zeros"),
    "encoder: trainable position table": (C.check_encoder, EncoderTrainablePositions, r"pos_embed is trainable"),
    "decoder: positions before the unshuffle": (C.check_decoder, DecoderPositionBeforeUnshuffle, r"add decoder_pos_embed AFTER the unshuffle"),
    "decoder: zero mask tokens": (C.check_decoder, DecoderZeroMaskTokens, r"the mask tokens are zeros: use the learned self\.mask_token"),
    "model: unpatchify swaps p and q": (C.check_mae, MAEUnpatchifySwapsPatchAxes, r"unpatchify exchanges the row p and the column q"),
    "model: loss without a clamp": (C.check_mae, MAELossNoClamp, r"with nothing masked .* 0, not 0/0 = NaN: divide by mask\.sum\(\)\.clamp\(min=1\)"),
}  # fmt: skip


def run_mistake_suite():
    """Run every mistake through its check: -> {name: (the message or None if it passed, named specifically?)}."""
    results = {}
    for name, (check, mistaken, pattern) in MISTAKES.items():
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                check(mistaken)
            results[name] = (None, False)
        except AssertionError as error:
            results[name] = (str(error), re.search(pattern, str(error)) is not None)
    return results


def mistake_suite_summary(results=None):
    results = run_mistake_suite() if results is None else results
    caught = sum(message is not None for message, _ in results.values())
    named = sum(named for _, named in results.values())
    return f"{caught} of {len(results)} mistakes caught, {named} named specifically"


# --------------------------------------------------------------------------- correct variants

CORRECT = {  # name -> (the check, a correct implementation other than the reference)
    "patch_embed: unfold + Linear": (C.check_patch_embed, PatchEmbedUnfold),
    "patch_embed: reshape + Linear": (C.check_patch_embed, PatchEmbedReshape),
    "patch_embed: square only (seed signature)": (C.check_patch_embed, SquarePatchEmbed),
    "pos_embed: numpy, official style": (C.check_pos_embed, numpy_pos_embed),
    "pos_embed: torch float32, 10000 ** (-2i / d)": (C.check_pos_embed, torch_pos_embed),
    "masking: official style": (C.check_random_masking, masking_official_style),
    "masking: scatter and indexing": (C.check_random_masking, masking_scatter),
    "attention: einsum": (C.check_attention, AttentionEinsum),
    "attention: explicit by default": (C.check_attention, AttentionExplicit),
    "attention: own class, chunk, SDPA with scale=": (C.check_attention, AttentionOwnSDPA),
    "block: own Mlp class, norm_layer": (C.check_block, BlockOwnMlp),
    "encoder: einsum patchify": (C.check_encoder, MAEEinsum),
    "decoder: einsum patchify": (C.check_decoder, MAEEinsum),
    "model: einsum patchify": (C.check_mae, MAEEinsum),
    "decoder: scatter": (C.check_decoder, MAEScatterDecoder),
    "model: scatter, boolean-indexed loss": (C.check_mae, MAEScatterDecoder),
    "encoder: the learner's own correct parts": (C.check_encoder, MAEOwnCorrectParts),
    "decoder: the learner's own correct parts": (C.check_decoder, MAEOwnCorrectParts),
    "model: the learner's own correct parts": (C.check_mae, MAEOwnCorrectParts),
    "encoder: square only (seed signature)": (C.check_encoder, SquareMAE),
    "decoder: square only (seed signature)": (C.check_decoder, SquareMAE),
    "model: square only (seed signature)": (C.check_mae, SquareMAE),
    "classifier: square only (seed signature)": (C.check_classifier, SquareVisionTransformer),
}


class MAESquarePatchify(MAEEinsum):
    """Correct: takes (16, 24) images everywhere but in patchify, which asserts square ones, as the official code."""

    def patchify(self, imgs):
        assert imgs.shape[2] == imgs.shape[3], "square images only"
        return super().patchify(imgs)


def messages_of_two_seeds(check, mistaken):
    """The message `check` gives `mistaken` after torch.manual_seed(1), then after torch.manual_seed(2)."""
    messages = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        with pytest.raises(AssertionError) as error:
            check(mistaken)
        messages.append(str(error.value))
    return messages


if __name__ == "__main__":
    results = run_mistake_suite()
    for name, (message, named) in results.items():
        if not named:
            print(f"not named: {name}: {message}")
    print(mistake_suite_summary(results))
