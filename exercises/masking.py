# Exercise stub, generated from mae/models/masking.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Step 03: per-sample random masking by shuffling.

Draw one noise value per patch, sort: the patches with the smallest noise are kept.
`ids_restore` is the inverse permutation, so that the decoder can put every token back
in its original place. Returns the visible tokens, a float mask (1 = removed, 0 = kept)
in the original patch order, and `ids_restore`.
"""

import math

import torch


def random_masking(x, mask_ratio=0.75, noise=None):
    """(N, L, D) tokens -> (N, int(L * (1 - mask_ratio)), D) visible tokens, (N, L) mask, (N, L) ids_restore.

    `noise` (N, L) makes the mask deterministic; by default it is torch.rand(N, L), as
    in the official code. With mask_ratio=0 and no noise every patch is kept in its
    original order (feature extraction).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected tokens of shape (N, L, D), got {shape}")
    if isinstance(mask_ratio, torch.Tensor):
        mask_ratio = mask_ratio.item()
    if (
        isinstance(mask_ratio, bool)
        or not isinstance(mask_ratio, (int, float))
        or not math.isfinite(mask_ratio)
        or not 0 <= mask_ratio < 1
    ):
        raise ValueError(f"mask_ratio must be a finite number in [0, 1), got {mask_ratio!r}")
    N, L, D = x.shape
    if noise is None:
        if mask_ratio == 0:
            noise = torch.arange(L, device=x.device, dtype=torch.float32).expand(N, L)
        else:
            noise = torch.rand(N, L, device=x.device)
    elif tuple(noise.shape) != (N, L):
        raise ValueError(
            f"noise must have shape (N, L) = ({N}, {L}), one value per patch, got {tuple(noise.shape)}"
        )
    len_keep = int(L * (1 - mask_ratio))
    # EXERCISE: argsort the noise (ascending: small noise is kept), invert the permutation to get ids_restore, gather the first len_keep tokens; mask is 1 where a patch's rank in the shuffle is >= len_keep, in the ORIGINAL patch order
    # BÀI TẬP: argsort noise (tăng dần: noise nhỏ thì được giữ), lấy hoán vị ngược để có ids_restore, gather len_keep token đầu tiên; mask bằng 1 ở những mảnh có thứ hạng trong phép xáo trộn >= len_keep, theo thứ tự mảnh BAN ĐẦU
    raise NotImplementedError("argsort the noise (ascending: small noise is kept), invert the permutation to get ids_restore, gather the first len_keep tokens; mask is 1 where a patch's rank in the shuffle is >= len_keep, in the ORIGINAL patch order")
    # END EXERCISE
