"""Masked Autoencoders (He et al., 2021), built step by step in the course and used for real pretraining.

    models/       the model: one module per course step, and the factories (ViT-B/L/H and small ones)
    checkpoint/   every checkpoint format, read safely and written atomically; weights fitted to models
    data/         images, datasets, transforms
    engine/       the training loop the jobs share: DDP, AMP, exact resume, background checkpoints, logs
    checks/       one check per course step, `python -m mae.checks`
    pretrain, linprobe, finetune, submit, convert, demo     the jobs (`python -m mae.<job>`)

The classes imported here (mae.MAE, mae.Attention, ...) are the reference. The factories (mae.create_model,
mae.mae_vit_base_patch16, ...) build from the implementation MAE_IMPL selects: the reference, or the learner's
exercises/ in the course's checkout (see mae.impl and mae.models.factories.components).
"""

from . import impl  # the whose-code switch: mae.impl.select, mae.impl.active
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
    MAE,
    Attention,
    Block,
    Encoder,
    EncoderDecoder,
    Mlp,
    PatchEmbed,
    VisionTransformer,
    create_classifier,
    create_model,
    get_1d_sincos_pos_embed,
    get_2d_sincos_pos_embed,
    mae_vit_base_patch16,
    mae_vit_huge_patch14,
    mae_vit_large_patch16,
    mae_vit_mini_patch4,
    mae_vit_mini_patch8,
    mae_vit_small_patch16,
    mae_vit_tiny_patch8,
    random_masking,
)

__version__ = "0.1.0"

__all__ = [
    "impl", "CLASSIFIERS", "CONFIGS", "MAE", "Attention", "Block", "CheckpointError", "Encoder", "EncoderDecoder", "Mlp",
    "PatchEmbed", "UnsafeCheckpointError", "VisionTransformer", "create_classifier", "create_model",
    "get_1d_sincos_pos_embed", "get_2d_sincos_pos_embed", "load_checkpoint", "load_weights",
    "mae_vit_base_patch16", "mae_vit_huge_patch14", "mae_vit_large_patch16", "mae_vit_mini_patch4",
    "mae_vit_mini_patch8", "mae_vit_small_patch16", "mae_vit_tiny_patch8", "model_from_checkpoint",
    "random_masking", "read_checkpoint", "resize_pos_embed", "save_checkpoint",
]  # fmt: skip
