# Exercise stub, generated from mae/models/patch_embed.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Step 01: cut an image into non-overlapping patches and embed each one linearly.

A (B, C, H, W) image becomes a sequence of L = (H / p) * (W / p) tokens of width D.
A convolution with kernel = stride = p is exactly "flatten each p x p patch and apply
one shared linear map", just faster, and it is the layout the official checkpoints use
(`patch_embed.proj.weight` has shape (D, C, p, p)).
"""

import torch
from torch import nn


def to_2tuple(size):
    """An int n becomes (n, n); a pair stays a pair (height, width)."""
    if isinstance(size, int):
        return (size, size)
    size = tuple(size)
    if len(size) != 2:
        raise ValueError(f"expected an int or a (height, width) pair, got {size!r}")
    return size


def check_images(imgs, img_size, in_chans):
    """Raise a readable error unless `imgs` is a float (B, in_chans, *img_size) batch."""
    if not isinstance(imgs, torch.Tensor):
        raise TypeError(f"expected images as a torch.Tensor, got {type(imgs).__name__}")
    if imgs.ndim != 4:
        raise ValueError(
            f"expected a 4-D batch of images (B, C, H, W), got a {imgs.ndim}-D tensor "
            f"of shape {tuple(imgs.shape)}; add a batch dimension with imgs.unsqueeze(0)"
        )
    if not imgs.is_floating_point():
        raise TypeError(
            f"expected floating-point images, got dtype {imgs.dtype}; convert with "
            f"imgs.float() / 255 and normalise them first"
        )
    if imgs.shape[1] != in_chans:
        raise ValueError(
            f"expected {in_chans} channel(s), got {imgs.shape[1]} "
            f"(images of shape {tuple(imgs.shape)}); build the model with in_chans={imgs.shape[1]} "
            f"or convert the images"
        )
    if tuple(imgs.shape[2:]) != tuple(img_size):
        h, w = img_size
        raise ValueError(
            f"expected images of size {h}x{w}, got {imgs.shape[2]}x{imgs.shape[3]}; resize "
            f"them or build the model with img_size=({imgs.shape[2]}, {imgs.shape[3]})"
        )


class PatchEmbed(nn.Module):
    """(B, C, H, W) images -> (B, L, D) patch tokens, row by row (patch index = row * w + col)."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.img_size = to_2tuple(img_size)
        if not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
        height, width = self.img_size
        if height % patch_size or width % patch_size:
            raise ValueError(f"image size {height}x{width} is not divisible by the patch size {patch_size}")
        self.patch_size = patch_size
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.grid_size = (height // patch_size, width // patch_size)  # (h, w) patches
        self.num_patches = self.grid_size[0] * self.grid_size[1]  # L
        # EXERCISE: a Conv2d named `proj` from in_chans to embed_dim whose kernel and stride are both patch_size
        # BÀI TẬP: một Conv2d tên là `proj` từ in_chans sang embed_dim, có kernel và stride đều bằng patch_size
        raise NotImplementedError('a Conv2d named `proj` from in_chans to embed_dim whose kernel and stride are both patch_size')
        # END EXERCISE

    def forward(self, imgs):
        check_images(imgs, self.img_size, self.in_chans)
        # EXERCISE: apply self.proj -> (B, D, h, w), then flatten the grid and move D last -> (B, L, D)
        # BÀI TẬP: áp dụng self.proj -> (B, D, h, w), rồi làm phẳng lưới và đưa D xuống cuối -> (B, L, D)
        raise NotImplementedError('apply self.proj -> (B, D, h, w), then flatten the grid and move D last -> (B, L, D)')
        # END EXERCISE
