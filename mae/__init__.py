"""Masked Autoencoders (He et al., 2021), built step by step in the course and used for real pretraining.

The model components come from `solutions/` (the reference) or, with MAE_IMPL=exercises,
from the learner's `exercises/`; see `mae.impl`.
"""

from .checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    read_checkpoint,
    resize_pos_embed,
    save_checkpoint,
)
from .impl import IMPL_NAME, impl
from .models import (
    CLASSIFIERS,
    CONFIGS,
    create_classifier,
    create_model,
    mae_vit_base_patch16,
    mae_vit_huge_patch14,
    mae_vit_large_patch16,
    mae_vit_mini_patch8,
    mae_vit_small_patch16,
    mae_vit_tiny_patch8,
)

MAE = impl.MAE
VisionTransformer = impl.VisionTransformer
Encoder = impl.Encoder
EncoderDecoder = impl.EncoderDecoder
PatchEmbed = impl.PatchEmbed
Attention = impl.Attention
Mlp = impl.Mlp
Block = impl.Block
random_masking = impl.random_masking
get_1d_sincos_pos_embed = impl.get_1d_sincos_pos_embed
get_2d_sincos_pos_embed = impl.get_2d_sincos_pos_embed

__version__ = "0.1.0"

__all__ = [
    "CLASSIFIERS", "VisionTransformer", "create_classifier", "mae_vit_mini_patch8",
    "CONFIGS", "IMPL_NAME", "MAE", "Attention", "Block", "CheckpointError", "Encoder",
    "EncoderDecoder", "Mlp", "PatchEmbed", "UnsafeCheckpointError", "create_model",
    "get_1d_sincos_pos_embed", "get_2d_sincos_pos_embed", "load_checkpoint",
    "mae_vit_base_patch16", "mae_vit_huge_patch14", "mae_vit_large_patch16",
    "mae_vit_small_patch16", "mae_vit_tiny_patch8", "model_from_checkpoint", "random_masking",
    "read_checkpoint", "resize_pos_embed", "save_checkpoint",
]  # fmt: skip
