# Exercise stub, generated from mae/models/pos_embed.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
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
    # BÀI TẬP: tần số omega_k = 1 / 10000 ** (k / (embed_dim / 2)) với k < embed_dim / 2; góc = vị trí x omega; nối [sin, cos]
    raise NotImplementedError('frequencies omega_k = 1 / 10000 ** (k / (embed_dim / 2)) for k < embed_dim / 2; angles = positions x omega; concatenate [sin, cos]')
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
    # BÀI TẬP: rows, cols = torch.meshgrid(arange(grid_h), arange(grid_w), indexing="ij"); nửa đầu số kênh lấy từ các cột, nửa sau lấy từ các hàng; thêm một hàng toàn số 0 vào đầu nếu cls_token
    raise NotImplementedError('rows, cols = torch.meshgrid(arange(grid_h), arange(grid_w), indexing="ij"); first half of the channels from the columns, second half from the rows; prepend a zero row if cls_token')
    # END EXERCISE
