"""Move MAE encoder weights to and from timm's VisionTransformer.

timm's ViT uses the same parameter names as the official MAE encoder (cls_token, pos_embed,
patch_embed.proj, blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm), so the
export keeps the encoder's tensors and drops the decoder:

    vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, global_pool="token")
    vit.load_state_dict(mae.timm_interop.encoder_to_timm(mae.checkpoint.official_state_dict(model)))

(official_state_dict: a Linear patch embedding's weight in the Conv2d layout that timm's ViT has.)
"""

from .checkpoint import DECODER_PREFIXES, HEAD_PREFIXES


def encoder_to_timm(state_dict):
    """An MAE (or encoder-only) state dict -> the encoder weights in timm's VisionTransformer layout."""
    return {k: v for k, v in state_dict.items() if not k.startswith(DECODER_PREFIXES)}


def timm_to_encoder(state_dict):
    """A timm VisionTransformer state dict -> MAE encoder weights (the classifier head and fc_norm are dropped)."""
    return {k: v for k, v in state_dict.items() if not k.startswith((*HEAD_PREFIXES, "head_drop."))}
