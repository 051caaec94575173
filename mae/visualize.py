"""Pictures of what the model sees: masked images and reconstructions."""

import torch

from .data import denormalize


@torch.no_grad()
def masked_images(model, imgs, mask, fill=0.5):
    """(B, C, H, W) normalised images -> [0, 1] images with every removed patch painted grey."""
    shown = model.patchify(denormalize(imgs))  # (B, L, p*p*C)
    shown = torch.where(mask.bool().unsqueeze(-1), torch.full_like(shown, fill), shown)
    return model.unpatchify(shown)


def to_numpy_image(x):
    """(C, H, W) or (1, C, H, W) in [0, 1] -> (H, W, C) numpy array for matplotlib."""
    if x.ndim == 4:
        x = x[0]
    return x.detach().permute(1, 2, 0).cpu().numpy()
