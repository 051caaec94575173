# The reference for this step: a copy of mae/models/pos_embed.py, made by scripts/make_exercises.py (edit that file).
"""Step 02: fixed 2-D sine-cosine position embeddings.

Each patch at (row, col) gets a D-vector: the first D/2 channels encode the column, the
last D/2 the row, each as [sin(pos * w_k), cos(pos * w_k)] over frequencies
w_k = 1 / 10000^(k / (D/4)), k = 0 .. D/4 - 1. MAE keeps these frozen (no gradient).
The tables are computed in float64, as in the official code, and cast when copied into
a model.
"""

import torch

from .patch_embed import to_2tuple


def get_1d_sincos_pos_embed(embed_dim, positions):
    """(M,) positions -> (M, embed_dim) float64 table: sines in the first half, cosines in the second."""
    if embed_dim % 2:
        raise ValueError(f"embed_dim must be even for a 1-D sin-cos embedding, got {embed_dim}")
    # EXERCISE: frequencies omega_k = 1 / 10000 ** (k / (embed_dim / 2)) for k < embed_dim / 2; angles = positions x omega; concatenate [sin, cos]
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2)
    omega = 1.0 / 10000**omega  # (D/2,)
    angles = positions.reshape(-1, 1).to(torch.float64) * omega  # (M, D/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)  # (M, D)
    # END EXERCISE


def get_2d_sincos_pos_embed(embed_dim, grid_size, cls_token=False):
    """Sin-cos table for a grid of patches, in patch order (row * w + col).

    grid_size is an int (square grid) or (h, w). Returns a float64 tensor of shape
    (h * w, embed_dim), or (1 + h * w, embed_dim) with an all-zero first row for the
    CLS token when cls_token=True.
    """
    if not isinstance(embed_dim, int) or embed_dim <= 0 or embed_dim % 4:
        raise ValueError(
            f"embed_dim must be a positive multiple of 4 for a 2-D sin-cos embedding "
            f"(half for rows, half for columns, each half sin and cos), got {embed_dim!r}"
        )
    grid_h, grid_w = to_2tuple(grid_size)
    # EXERCISE: rows, cols = torch.meshgrid(arange(grid_h), arange(grid_w), indexing="ij"); first half of the channels from the columns, second half from the rows; prepend a zero row if cls_token
    rows, cols = torch.meshgrid(
        torch.arange(grid_h, dtype=torch.float64),
        torch.arange(grid_w, dtype=torch.float64),
        indexing="ij",
    )  # (h, w) each
    emb = torch.cat(
        [
            get_1d_sincos_pos_embed(embed_dim // 2, cols.flatten()),  # (h*w, D/2)
            get_1d_sincos_pos_embed(embed_dim // 2, rows.flatten()),  # (h*w, D/2)
        ],
        dim=1,
    )  # (h*w, D)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), emb], dim=0)
    return emb
    # END EXERCISE
