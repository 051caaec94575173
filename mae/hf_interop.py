"""Move MAE models to and from Hugging Face `transformers` objects (ViTMAEForPreTraining), weights and config.

    hf = mae.hf_interop.to_transformers(model)            # a transformers.ViTMAEForPreTraining, same function
    model = mae.hf_interop.from_transformers(hf)          # and back, bit for bit
    mae.checkpoint.save_pretrained(model, "vit-mae-mine")  # config.json + model.safetensors
    model = mae.hf_interop.from_transformers("vit-mae-mine")  # a folder on disk: nothing is downloaded
    mae.model_from_checkpoint("vit-mae-mine")             # such a folder loads wherever a checkpoint does

The two models hold the same tensors under other names (mae.checkpoint.hf_layout translates them). Files need no
transformers: mae.checkpoint reads and writes Hugging Face folders and .safetensors files itself.

`transformers` is needed only to build a transformers model (to_transformers); writing and reading folders and
.safetensors files needs `safetensors` only, and reading never runs code from the files: the weights are raw
bytes under a JSON header, config.json is JSON.
"""

import os
from pathlib import Path

from .checkpoint import load_weights, model_from_checkpoint, official_state_dict
from .checkpoint.hf_layout import (
    from_transformers_config,
    from_transformers_state,
    read_json,
    to_legacy_transformers_state,
    to_transformers_config,
    to_transformers_state,
)
from .models import config_of, mae_from_config, unwrap
from .optional import require


def to_transformers(model, mask_ratio=None):
    """Our MAE -> a transformers.ViTMAEForPreTraining with the same weights (same device, dtype and mode).

    mask_ratio goes into the transformers config, where its forward pass reads it; by default the model's
    `mask_ratio` attribute (set by from_transformers) or 0.75.
    """
    transformers = require("transformers")
    model = unwrap(model)
    if not hasattr(model, "decoder_pred"):
        raise TypeError(
            f"to_transformers needs an MAE (encoder and decoder), got {type(model).__name__}; for a ViT encoder "
            f"or classifier see mae.timm_interop"
        )
    if mask_ratio is None:
        mask_ratio = getattr(model, "mask_ratio", 0.75)
    config = transformers.ViTMAEConfig(**to_transformers_config(config_of(model), mask_ratio))
    hf = transformers.ViTMAEForPreTraining(config)
    state = to_transformers_state(official_state_dict(model))
    if set(state) != set(hf.state_dict()):  # a transformers 4.x model: the names of its time
        state = to_legacy_transformers_state(state)
    hf.load_state_dict(state, strict=True)
    reference = model.cls_token
    return hf.to(device=reference.device, dtype=reference.dtype).train(model.training)


def from_transformers(hf_model_or_dir):
    """A transformers ViTMAEForPreTraining, or a Hugging Face model folder on disk (config.json and
    model.safetensors), -> our MAE with the same weights. Nothing is downloaded: fetch a hub model first
    (hf download facebook/vit-mae-base --local-dir vit-mae-base) and pass its folder.

    The transformers config's mask_ratio is kept as `model.mask_ratio`; our forward takes the ratio as an
    argument (model(imgs, mask_ratio=model.mask_ratio)), and to_transformers writes it back.
    """
    if isinstance(hf_model_or_dir, (str, os.PathLike)):
        path = Path(hf_model_or_dir)
        model = model_from_checkpoint(path)
        config_path = path / "config.json" if path.is_dir() else path.with_name("config.json")
        if config_path.is_file():
            model.mask_ratio = from_transformers_config(read_json(config_path), config_path)[1]
        return model
    hf = hf_model_or_dir
    name = type(hf).__name__
    if getattr(getattr(hf, "config", None), "model_type", None) != "vit_mae" or not hasattr(hf, "decoder"):
        raise TypeError(
            f"from_transformers needs a transformers ViTMAEForPreTraining (encoder and decoder), got {name}; "
            f"an encoder alone (ViTMAEModel) loads with hf.save_pretrained(folder) and "
            f"mae.load_checkpoint(model, folder, encoder_only=True)"
        )
    config, mask_ratio = from_transformers_config(hf.config.to_dict(), f"the config of {name}")
    model = mae_from_config(config)
    load_weights(model, from_transformers_state(hf.state_dict()), source=f"the weights of {name}")
    model.mask_ratio = mask_ratio
    reference = hf.vit.embeddings.cls_token
    return model.to(device=reference.device, dtype=reference.dtype).train(hf.training)
