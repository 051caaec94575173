# Exercise stub, generated from mae/models/encoder.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Step 06: the MAE encoder, a ViT that only ever sees the visible patches.

patches -> + position -> drop 75% -> prepend [CLS] -> transformer blocks -> LayerNorm.
Position embeddings are added *before* masking, so every kept token still knows where
it came from. No mask tokens enter the encoder: with 75% masking it runs on a quarter
of the sequence, which is where MAE's speed comes from.
"""

import torch
from torch import nn

from .masking import random_masking
from .patch_embed import PatchEmbed
from .pos_embed import get_2d_sincos_pos_embed
from .transformer import Block, init_weights


class Encoder(nn.Module):
    def __init__(
        self,
        img_size=224,
        patch_size=16,
        in_chans=3,
        embed_dim=1024,
        depth=24,
        num_heads=16,
        mlp_ratio=4.0,
        layer_norm_eps=1e-6,
        drop_path_rate=0.0,
    ):
        super().__init__()
        # The constructor arguments (subclasses add theirs), saved in checkpoints to rebuild the model.
        self.config = dict(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, mlp_ratio=mlp_ratio, layer_norm_eps=layer_norm_eps, drop_path_rate=drop_path_rate,
        )  # fmt: skip
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        # Fixed sin-cos table, stored as a frozen parameter so the state dict matches the official one.
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        drop_paths = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # deeper blocks drop more
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, drop_path=dp, layer_norm_eps=layer_norm_eps)
            for dp in drop_paths
        )
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)
        self._init_encoder_weights()

    def _init_encoder_weights(self):
        h, w = self.patch_embed.grid_size
        # A square grid goes as an int, the official signature: a learner's port of it may take nothing else.
        table = get_2d_sincos_pos_embed(self.pos_embed.shape[-1], h if h == w else (h, w), cls_token=True)
        table = torch.as_tensor(table).float()  # a numpy table works too
        self.pos_embed.data.copy_(table.unsqueeze(0))
        # The patch projection is a linear map on flattened patches: initialise it as one.
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        self.blocks.apply(init_weights)
        self.norm.apply(init_weights)

    def forward_encoder(self, imgs, mask_ratio=0.75, noise=None):
        """(B, C, H, W) -> latent (B, 1 + L_visible, D), mask (B, L), ids_restore (B, L)."""
        # EXERCISE: patch_embed; add pos_embed[:, 1:] (before masking!); random_masking; prepend cls_token + pos_embed[:, :1]; run the blocks; apply self.norm
        # BÀI TẬP: patch_embed; cộng pos_embed[:, 1:] (TRƯỚC khi che!); random_masking; thêm cls_token + pos_embed[:, :1] vào đầu; chạy các khối; áp dụng self.norm
        raise NotImplementedError('patch_embed; add pos_embed[:, 1:] (before masking!); random_masking; prepend cls_token + pos_embed[:, :1]; run the blocks; apply self.norm')
        # END EXERCISE
