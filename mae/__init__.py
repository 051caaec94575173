"""Masked Autoencoders (He et al., 2021), built step by step in the course and used for real pretraining.

The model components (mae.MAE, mae.Attention, ...) come from `solutions/` (the reference) or,
with MAE_IMPL=exercises, from the learner's `exercises/`, with the reference standing in for
the steps not written yet; see `mae.impl`. They are looked up on first use.
"""

from . import impl
from .checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    load_checkpoint,
    load_weights,
    model_from_checkpoint,
    read_checkpoint,
    resize_pos_embed,
    save_checkpoint,
)
from .models import (
    CLASSIFIERS,
    CONFIGS,
    create_classifier,
    create_model,
    mae_vit_base_patch16,
    mae_vit_huge_patch14,
    mae_vit_large_patch16,
    mae_vit_mini_patch4,
    mae_vit_mini_patch8,
    mae_vit_small_patch16,
    mae_vit_tiny_patch8,
)

COMPONENTS = (
    "MAE", "VisionTransformer", "Encoder", "EncoderDecoder", "PatchEmbed", "Attention", "Mlp", "Block",
    "random_masking", "get_1d_sincos_pos_embed", "get_2d_sincos_pos_embed",
)  # fmt: skip


def __getattr__(name):
    """mae.MAE and the other components, from the implementation selected by mae.impl; mae.IMPL_NAME names it."""
    if name in COMPONENTS:
        return getattr(impl.components(), name)
    if name == "IMPL_NAME":
        return impl.selected()[0]
    raise AttributeError(f"module 'mae' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "CLASSIFIERS", "VisionTransformer", "create_classifier", "mae_vit_mini_patch4", "mae_vit_mini_patch8",
    "CONFIGS", "IMPL_NAME", "MAE", "Attention", "Block", "CheckpointError", "Encoder",
    "EncoderDecoder", "Mlp", "PatchEmbed", "UnsafeCheckpointError", "create_model",
    "get_1d_sincos_pos_embed", "get_2d_sincos_pos_embed", "load_checkpoint", "load_weights",
    "mae_vit_base_patch16", "mae_vit_huge_patch14", "mae_vit_large_patch16",
    "mae_vit_small_patch16", "mae_vit_tiny_patch8", "model_from_checkpoint", "random_masking",
    "read_checkpoint", "resize_pos_embed", "save_checkpoint",
]  # fmt: skip
