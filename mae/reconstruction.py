"""What the model predicts, as images in [0, 1]: the pictures of reconstructions, without plotting.

Used by the figures (mae.visualize), the training jobs' per-epoch picture (no matplotlib there) and the
comparison with classical inpainting (mae.inpainting).
"""

import torch

from .data.images import denormalize


def with_true_statistics(model, imgs, pred):
    """Predictions of a model trained with norm_pix_loss, mapped back to normalised pixels with the *true* mean and
    variance of each target patch (as the official demo does); other models' predictions as they are."""
    if not model.norm_pix_loss:
        return pred
    target = model.patchify(imgs)  # (B, L, p*p*C)
    return pred * (target.var(-1, keepdim=True) + 1e-6) ** 0.5 + target.mean(-1, keepdim=True)


@torch.no_grad()
def masked_images(model, imgs, mask, fill=0.5):
    """(B, C, H, W) normalised images -> [0, 1] images with every removed patch painted grey."""
    shown = model.patchify(denormalize(imgs))  # (B, L, p*p*C)
    shown = torch.where(mask.bool().unsqueeze(-1), torch.full_like(shown, fill), shown)
    return model.unpatchify(shown)


@torch.no_grad()
def reconstruct(model, imgs, mask_ratio=0.75, noise=None):
    """Original, masked, reconstruction and reconstruction with the visible patches pasted back, all in [0, 1]."""
    loss, pred, mask = model(imgs, mask_ratio=mask_ratio, noise=noise)
    pred = with_true_statistics(model, imgs, pred)
    reconstruction = model.unpatchify(pred)
    pasted = model.unpatchify(torch.where(mask.bool().unsqueeze(-1), pred, model.patchify(imgs)))
    panels = {
        "original": denormalize(imgs),
        f"masked {mask_ratio:.0%}": masked_images(model, imgs, mask),
        "reconstruction": denormalize(reconstruction),
        "reconstruction + visible": denormalize(pasted),
    }
    return loss.item(), panels
