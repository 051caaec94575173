# Exercise stub, generated from mae/models/classifier.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Step 12: the pretrained encoder as an image classifier.

After pretraining, the decoder is thrown away. The encoder now sees *every* patch (no
masking), and one vector per image is read out for a linear head:

- linear probing reads the CLS token after the final LayerNorm (global_pool=False);
- fine-tuning averages the patch tokens and normalises that average with a new LayerNorm,
  `fc_norm`, in place of `norm` (global_pool=True), which the paper found slightly better.

Parameter names follow the official fine-tuned checkpoints (and timm's VisionTransformer):
cls_token, pos_embed, patch_embed.*, blocks.*, norm.* or fc_norm.*, head.*.
"""

import torch
from torch import nn

from .encoder import Encoder


class VisionTransformer(Encoder):
    def __init__(self, num_classes=1000, global_pool=True, head_init_std=2e-5, **encoder_kwargs):
        super().__init__(**encoder_kwargs)
        embed_dim = self.cls_token.shape[-1]
        self.global_pool = global_pool
        if global_pool:
            self.fc_norm = nn.LayerNorm(embed_dim, eps=self.norm.eps)
            del self.norm  # the official fine-tuned models have no `norm`
        # Position embeddings start as the sin-cos table but are trained when fine-tuning, as in timm.
        self.pos_embed.requires_grad_(True)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=head_init_std)
            nn.init.zeros_(self.head.bias)

    def forward_features(self, imgs):
        """(B, C, H, W) -> one feature vector per image, (B, D)."""
        # EXERCISE: patch_embed; prepend cls_token; add the whole pos_embed (no masking now); run the blocks; global_pool: fc_norm of the mean over the PATCH tokens (not the CLS token); else: self.norm, then take the CLS token
        # BÀI TẬP: patch_embed; thêm cls_token vào đầu; cộng toàn bộ pos_embed (lúc này không che); chạy các khối; nếu global_pool: fc_norm của trung bình các token MẢNH (không phải token CLS); nếu không: self.norm, rồi lấy token CLS
        raise NotImplementedError('patch_embed; prepend cls_token; add the whole pos_embed (no masking now); run the blocks; global_pool: fc_norm of the mean over the PATCH tokens (not the CLS token); else: self.norm, then take the CLS token')
        # END EXERCISE

    def forward(self, imgs):
        """(B, C, H, W) -> class scores (B, num_classes)."""
        return self.head(self.forward_features(imgs))

    def group_matcher(self, coarse=False):
        """Layer ids for timm's layer-wise lr decay: embeddings 0, block i -> i + 1, and everything after the
        blocks (norm or fc_norm, head) one group last, as in the official fine-tuning."""
        return {"stem": r"^cls_token|^pos_embed|^patch_embed", "blocks": [(r"^blocks\.(\d+)", None)]}

    @torch.jit.ignore
    def no_weight_decay(self):
        return {"pos_embed", "cls_token"}
