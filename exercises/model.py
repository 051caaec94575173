# Exercise stub, generated from mae/models/model.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Step 08: the full masked autoencoder and its loss.

forward(imgs) = encode the visible 25% -> decode all patches -> mean squared error on
the *masked* patches only (predicting the visible ones would be copying). With
norm_pix_loss the target of each patch is that patch normalised by its own mean and
(unbiased) variance, which the paper found gives better representations.
"""

import torch  # noqa: F401 - not used here; the hints of notebook 08 suggest torch.einsum for your patchify

from .decoder import EncoderDecoder
from .patch_embed import check_images


class MAE(EncoderDecoder):
    def __init__(self, norm_pix_loss=False, **encoder_decoder_kwargs):
        super().__init__(**encoder_decoder_kwargs)  # the architecture (see Encoder and EncoderDecoder)
        self.norm_pix_loss = norm_pix_loss
        self.config["norm_pix_loss"] = norm_pix_loss

    def patchify(self, imgs):
        """(B, C, H, W) -> (B, L, p*p*C); each row is one patch, its pixels in (p, q, c) order."""
        check_images(imgs, self.patch_embed.img_size, self.patch_embed.in_chans)
        p = self.patch_embed.patch_size
        h, w = self.patch_embed.grid_size
        B, C = imgs.shape[:2]
        # EXERCISE: reshape to (B, C, h, p, w, p), reorder the axes "nchpwq -> nhwpqc", reshape to (B, h*w, p*p*C)
        # BÀI TẬP: reshape thành (B, C, h, p, w, p), sắp lại các trục "nchpwq -> nhwpqc", reshape thành (B, h*w, p*p*C)
        raise NotImplementedError('reshape to (B, C, h, p, w, p), reorder the axes "nchpwq -> nhwpqc", reshape to (B, h*w, p*p*C)')
        # END EXERCISE

    def unpatchify(self, x):
        """(B, L, p*p*C) -> (B, C, H, W), the exact inverse of patchify."""
        p = self.patch_embed.patch_size
        h, w = self.patch_embed.grid_size
        C = self.patch_embed.in_chans
        if x.ndim != 3 or tuple(x.shape[1:]) != (h * w, p * p * C):
            raise ValueError(f"expected patches of shape (B, {h * w}, {p * p * C}), got {tuple(x.shape)}")
        B = x.shape[0]
        # EXERCISE: the inverse of patchify: reshape to (B, h, w, p, p, C), reorder "nhwpqc -> nchpwq", reshape to (B, C, h*p, w*p)
        # BÀI TẬP: phép ngược của patchify: reshape thành (B, h, w, p, p, C), sắp lại "nhwpqc -> nchpwq", reshape thành (B, C, h*p, w*p)
        raise NotImplementedError('the inverse of patchify: reshape to (B, h, w, p, p, C), reorder "nhwpqc -> nchpwq", reshape to (B, C, h*p, w*p)')
        # END EXERCISE

    def forward_loss(self, imgs, pred, mask):
        """Mean squared error per patch, averaged over the masked patches (mask == 1) only."""
        target = self.patchify(imgs)  # (B, L, p*p*C)
        # EXERCISE: if self.norm_pix_loss, normalise each target patch: (t - mean) / sqrt(var + 1e-6), unbiased var over the last dim; per-patch mean of (pred - target)**2; average over masked patches only
        # BÀI TẬP: nếu self.norm_pix_loss, chuẩn hoá từng mảnh mục tiêu: (t - mean) / sqrt(var + 1e-6), var không chệch (unbiased) theo chiều cuối; trung bình của (pred - target)**2 trên mỗi mảnh; chỉ lấy trung bình trên các mảnh bị che
        raise NotImplementedError('if self.norm_pix_loss, normalise each target patch: (t - mean) / sqrt(var + 1e-6), unbiased var over the last dim; per-patch mean of (pred - target)**2; average over masked patches only')
        # END EXERCISE

    def forward(self, imgs, mask_ratio=0.75, noise=None):
        """-> (loss, pred (B, L, p*p*C), mask (B, L), 1 = removed)."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise)
        pred = self.forward_decoder(latent, ids_restore)
        loss = self.forward_loss(imgs, pred, mask)
        return loss, pred, mask
