"""Checkpoints: every file format, read safely and written atomically, and their weights fitted to models.

Official MAE files are dicts with the weights under "model": the pretrain checkpoints hold the encoder only, the
"visualize" and training checkpoints the whole model, and training checkpoints also an `argparse.Namespace` of
arguments. This project's own checkpoints add "model_config", the constructor arguments, so that a model can be
rebuilt. Loading never runs code from the file (`torch.load(..., weights_only=True)`; safetensors and JSON).

    files.py           read_checkpoint / save_checkpoint for every format; load_weights, load_checkpoint
    pth.py             .pth files (weights_only)            safetensors_io.py   .safetensors files
    hf_folder.py       Hugging Face folders (config.json + model.safetensors), read and written
    hf_layout.py       transformers' parameter names and config fields, to and from ours (plain dicts)
    state_dicts.py     what a state dict says: architecture, mismatches in words, fitting, non-finite tensors
    atomic.py          temporary file, fsync, rename; a full disk explained; hard-linked copies
    rebuild.py         a whole MAE from a checkpoint          classifiers.py     weights into a classifier
    errors.py          CheckpointError, UnsafeCheckpointError

May import: torch, mae.models (to rebuild models), mae.optional (safetensors). Never transformers objects
(mae.hf_interop), the engine or a job.
"""

from .atomic import atomic_save, link_or_copy, replace_atomically, temporary_path
from .classifiers import load_classifier, load_pretrained_encoder
from .errors import CheckpointError, UnsafeCheckpointError
from .files import CHECKPOINT_FORMATS, load_checkpoint, load_weights, read_checkpoint, save_checkpoint
from .hf_folder import read_transformers_folder, save_pretrained
from .hf_layout import (
    from_transformers_config,
    from_transformers_state,
    is_transformers_layout,
    to_transformers_config,
    to_transformers_state,
)
from .rebuild import OFFICIAL_DOWNLOADS, infer_config, model_from_checkpoint
from .safetensors_io import looks_like_safetensors, read_safetensors, save_safetensors
from .state_dicts import (
    DECODER_PREFIXES,
    HEAD_PREFIXES,
    architecture,
    check_finite,
    count_blocks,
    describe_mismatch,
    fit_patch_embed,
    non_finite_tensors,
    official_layout,
    official_state_dict,
    resize_pos_embed,
    state_dict_from,
)

__all__ = [
    "CHECKPOINT_FORMATS", "DECODER_PREFIXES", "HEAD_PREFIXES", "OFFICIAL_DOWNLOADS", "CheckpointError",
    "UnsafeCheckpointError", "architecture", "atomic_save", "check_finite", "count_blocks", "describe_mismatch",
    "fit_patch_embed", "from_transformers_config", "from_transformers_state", "infer_config",
    "is_transformers_layout", "link_or_copy", "load_checkpoint", "load_classifier", "load_pretrained_encoder",
    "load_weights", "looks_like_safetensors", "model_from_checkpoint", "non_finite_tensors", "official_layout", "official_state_dict", "read_checkpoint",
    "read_safetensors", "read_transformers_folder", "replace_atomically", "resize_pos_embed", "save_checkpoint",
    "save_pretrained", "save_safetensors", "state_dict_from", "temporary_path", "to_transformers_config",
    "to_transformers_state",
]  # fmt: skip
