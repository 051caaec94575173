"""Does masked autoencoding learn anything? The MAE against two classical fills, on the same masks, in numbers.

Every method gets the same 64x64 images with the same 75% of their 8x8 patches removed, and is scored
by the mean squared error over the removed pixels only (pixels in [0, 1]; the visible ones are given, so
scoring them would only dilute the difference):

- mean colour: every removed pixel painted with the mean colour of the visible pixels;
- biharmonic: `skimage.restoration.inpaint_biharmonic`, the smoothest surface through the visible pixels;
- MAE: the model's prediction of each removed patch, from its own output (pixel targets).

    from mae import inpainting
    images, noise = inpainting.evaluation_set(inpainting.HELD_OUT_PHOTOS, count=96)
    scores, fills, mask = inpainting.compare(model, images, noise)   # {"mean colour": 0.04, ...}
"""

import numpy as np
import torch
import torch.nn.functional as F

from .data.images import HELD_OUT_PHOTOS, TRAINING_PHOTOS, denormalize, normalize, sample_photo
from .reconstruction import with_true_statistics


def square_crops(count, names, size=64, seed=0):
    """`count` square crops, the photographs taken in turn, resized (bicubic) to size x size: (count, 3, size, size).

    Each crop's side is drawn uniformly between `size` and half the photograph's shorter side (up to 4 times
    `size` for a 512-pixel photograph): an object or part of one, not the whole scene.
    """
    generator = torch.Generator().manual_seed(seed)
    photos = [torch.from_numpy(sample_photo(name)).permute(2, 0, 1).float().div(255) for name in names]
    crops = []
    for index in range(count):
        photo = photos[index % len(photos)]  # (3, H, W)
        _, h, w = photo.shape
        side = int(torch.randint(size, max(size, min(h, w) // 2) + 1, (1,), generator=generator))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = photo[:, top : top + side, left : left + side].unsqueeze(0)
        crops.append(F.interpolate(crop, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1))
    return torch.cat(crops)


def evaluation_set(names, count=96, size=64, patch_size=8, seed=0):
    """Crops of `names` in [0, 1] and one masking noise per crop: (count, 3, size, size), (count, L)."""
    images = square_crops(count, names, size, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    noise = torch.rand(count, (size // patch_size) ** 2, generator=generator)
    return images, noise


def patch_mask(noise, mask_ratio=0.75):
    """(B, L) noise -> (B, L) mask, 1 = removed: the patches with the highest noise, as MAE's random_masking."""
    B, L = noise.shape
    len_keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)  # ascending: the first len_keep are kept
    mask = torch.ones(B, L)
    mask.scatter_(1, ids_shuffle[:, :len_keep], 0.0)
    return mask


def pixel_mask(mask, size, patch_size=8):
    """(B, L) patch mask -> (B, size, size) bool, True where the pixel was removed."""
    h = size // patch_size
    grid = mask.reshape(-1, h, h).bool()
    return grid.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)


def masked_mse(filled, images, removed):
    """Mean squared error over the removed pixels (all channels) only; (B, C, H, W), (B, C, H, W), (B, H, W)."""
    squared = (filled - images).pow(2).sum(dim=1)  # (B, H, W): summed over channels
    return (squared[removed].sum() / (removed.sum() * images.shape[1])).item()


def fill_mean_colour(images, removed):
    """Every removed pixel painted with the mean colour of the image's visible pixels."""
    visible = (~removed).unsqueeze(1).float()  # (B, 1, H, W)
    total = (images * visible).sum(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    mean = total / visible.sum(dim=(2, 3), keepdim=True)
    return torch.where(removed.unsqueeze(1), mean.expand_as(images), images)


def fill_biharmonic(images, removed):
    """scikit-image's biharmonic inpainting of the removed pixels, one image at a time."""
    from skimage.restoration import inpaint_biharmonic

    filled = [
        inpaint_biharmonic(image.permute(1, 2, 0).double().numpy(), hole.numpy(), channel_axis=-1)
        for image, hole in zip(images, removed)
    ]
    filled = torch.from_numpy(np.stack(filled)).permute(0, 3, 1, 2).float().clamp(0, 1)
    return torch.where(removed.unsqueeze(1), filled, images)  # the visible pixels exactly as given


@torch.no_grad()
def fill_mae(model, images, noise, mask_ratio=0.75, true_statistics=False):
    """The model's own prediction for every removed patch, the visible pixels as given; [0, 1] in and out.

    A model trained with normalised-pixel targets predicts each patch without its mean and variance, so
    its output has no colour of its own: it can only be drawn with the true statistics of each removed
    patch (`true_statistics=True`), which gives away part of the answer. Its error is then not comparable.
    """
    if model.norm_pix_loss and not true_statistics:
        raise ValueError(
            "this model predicts normalised patches (norm_pix_loss=True): its output has no mean or variance, "
            "so it cannot be scored in pixels; pass true_statistics=True to borrow them from the original"
        )
    imgs = normalize(images)
    _, pred, mask = model(imgs, mask_ratio=mask_ratio, noise=noise)  # pred: (B, L, p*p*3), normalised pixels
    predicted = denormalize(
        model.unpatchify(with_true_statistics(model, imgs, pred))
    )  # (B, 3, H, W) in [0, 1]
    removed = pixel_mask(mask, images.shape[-1], model.patch_embed.patch_size)
    return torch.where(removed.unsqueeze(1), predicted, images)


def compare(model, images, noise, mask_ratio=0.75, true_statistics=False):
    """Scores and filled images of the three methods on the same masks.

    Returns ({"mean colour": mse, "biharmonic": mse, "MAE": mse}, {method: (B, 3, H, W) filled}, (B, L) mask).
    """
    mask = patch_mask(noise, mask_ratio)
    removed = pixel_mask(mask, images.shape[-1], model.patch_embed.patch_size)
    fills = {
        "mean colour": fill_mean_colour(images, removed),
        "biharmonic": fill_biharmonic(images, removed),
        "MAE": fill_mae(model, images, noise, mask_ratio, true_statistics),
    }
    return {name: masked_mse(filled, images, removed) for name, filled in fills.items()}, fills, mask


def measure(model, count=96, seed=0, true_statistics=False):
    """The numbers checkpoints/README.md reports: scores on held-out photographs and on new crops of training ones.

    Returns {"held-out photos": {method: mse}, "training photos": {method: mse}}, `count` crops each.
    """
    sets = {"held-out photos": HELD_OUT_PHOTOS, "training photos": TRAINING_PHOTOS}
    results = {}
    for label, names in sets.items():
        images, noise = evaluation_set(names, count, seed=seed)
        results[label] = compare(model, images, noise, true_statistics=true_statistics)[0]
    return results
