# Exercise stub, generated from mae/models/decoder.py by scripts/make_exercises.py.
# Fill in each EXERCISE region; `python -m mae.checks` tells you which steps pass.
"""Step 07: the MAE decoder, a small transformer that fills in the missing patches.

The encoder's tokens are projected to the decoder width, one shared learned [MASK]
token stands in for every removed patch, `ids_restore` puts all tokens back in the
original patch order, position embeddings are added again (the mask tokens need to
know where they are), and a linear head predicts the p*p*C pixel values of each patch.
"""

import torch
from torch import nn

from .encoder import Encoder
from .pos_embed import get_2d_sincos_pos_embed
from .transformer import Block, init_weights


class EncoderDecoder(Encoder):
    """The encoder of step 06 with a decoder attached (parameter names as in the official checkpoints)."""

    def __init__(self, decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16, **encoder_kwargs):
        super().__init__(**encoder_kwargs)  # img_size, patch_size, ... (see Encoder)
        self.config.update(
            decoder_embed_dim=decoder_embed_dim,
            decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
        )
        embed_dim, mlp_ratio, eps = (self.config[k] for k in ("embed_dim", "mlp_ratio", "layer_norm_eps"))
        patch_size, in_chans = self.patch_embed.patch_size, self.patch_embed.in_chans
        num_patches = self.patch_embed.num_patches
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, num_patches + 1, decoder_embed_dim), requires_grad=False
        )
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, layer_norm_eps=eps)
            for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=eps)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size**2 * in_chans)
        self._init_decoder_weights()

    def _init_decoder_weights(self):
        h, w = self.patch_embed.grid_size
        table = get_2d_sincos_pos_embed(
            self.decoder_pos_embed.shape[-1], h if h == w else (h, w), cls_token=True
        )
        table = torch.as_tensor(table).float()  # a numpy table works too
        self.decoder_pos_embed.data.copy_(table.unsqueeze(0))
        nn.init.normal_(self.mask_token, std=0.02)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            module.apply(init_weights)

    def forward_decoder(self, latent, ids_restore):
        """latent (B, 1 + L_visible, D), ids_restore (B, L) -> per-patch pixel predictions (B, L, p*p*C)."""
        num_patches = self.patch_embed.num_patches
        if ids_restore.ndim != 2 or ids_restore.shape[1] != num_patches:
            raise ValueError(
                f"ids_restore must have shape (B, {num_patches}), got {tuple(ids_restore.shape)}"
            )
        # EXERCISE: decoder_embed; append (L - L_visible) copies of mask_token after the visible tokens (not the CLS); unshuffle them with torch.gather(..., ids_restore); put CLS back in front; add decoder_pos_embed; decoder_blocks; decoder_norm; decoder_pred; drop the CLS token
        # BÀI TẬP: decoder_embed; nối (L - L_visible) bản sao của mask_token vào sau các token nhìn thấy được (không tính CLS); khôi phục thứ tự bằng torch.gather(..., ids_restore); đặt CLS trở lại đầu; cộng decoder_pos_embed; decoder_blocks; decoder_norm; decoder_pred; bỏ token CLS
        raise NotImplementedError('decoder_embed; append (L - L_visible) copies of mask_token after the visible tokens (not the CLS); unshuffle them with torch.gather(..., ids_restore); put CLS back in front; add decoder_pos_embed; decoder_blocks; decoder_norm; decoder_pred; drop the CLS token')
        # END EXERCISE
