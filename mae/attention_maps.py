"""Attention maps of a trained encoder: every block's attention over the whole image, and attention rollout
(what notebook 10 draws with mae.visualize.show_attention_maps)."""

import torch

from .i18n import _
from .models import Attention as ReferenceAttention


@torch.no_grad()
def encoder_attentions(model, imgs):
    """Every block's attention over the whole image (no masking): a list of (B, heads, 1 + L, 1 + L).

    The weights come from each block's explicit softmax path (`attention_weights`), so this
    works whether the blocks run the fused kernel or not; the activations are the same.
    """
    x = model.patch_embed(imgs) + model.pos_embed[:, 1:]  # (B, L, D)
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
    x = torch.cat([cls, x], dim=1)  # (B, 1 + L, D)
    maps = []
    for block in model.blocks:
        maps.append(_attention_weights_of(block.attn)(block.norm1(x)))
        x = block(x)
    return maps


def _attention_weights_of(attn):
    """`attn.attention_weights`; for an Attention written without one (check 04 accepts it), the reference's
    on a copy of its weights, which check 04 found to compute the same function."""
    if callable(getattr(attn, "attention_weights", None)):
        return attn.attention_weights
    try:
        dim = attn.qkv.in_features
        reference = ReferenceAttention(dim, attn.num_heads, qkv_bias=attn.qkv.bias is not None)
        reference.load_state_dict(attn.state_dict())
    except (AttributeError, RuntimeError) as error:
        raise TypeError(
            _("the attention maps need the weights of each block's attention: {kind} has no attention_weights(x) "
              "method, and its weights are not laid out as the reference's (qkv, proj, num_heads) to compute them "
              "from ({error})").format(kind=type(attn).__name__, error=error)
        ) from None  # fmt: skip
    return reference.eval().attention_weights


def attention_rollout(maps):
    """Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each input token.

    Per block: average the heads, add the identity for the residual path, renormalise the
    rows; then multiply the blocks' matrices from first to last. Returns (B, 1 + L, 1 + L).
    """
    rollout = None
    for weights in maps:
        a = weights.mean(dim=1)  # (B, N, N)
        a = a + torch.eye(a.shape[-1])
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    return rollout
