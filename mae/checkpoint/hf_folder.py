"""Hugging Face model folders (config.json + model.safetensors, its shards, or an older pytorch_model.bin), read
and written without transformers: what ViTMAEForPreTraining.from_pretrained loads and save_pretrained writes."""

import json
from pathlib import Path

from ..models import config_of, constructor_defaults, unwrap
from .atomic import replace_atomically
from .errors import CheckpointError
from .hf_layout import (
    from_transformers_config,
    from_transformers_state,
    read_json,
    to_legacy_transformers_state,
    to_transformers_config,
    to_transformers_state,
)
from .pth import read_pth
from .safetensors_io import read_safetensors_tensors, write_safetensors
from .state_dicts import official_state_dict, state_dict_from

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def read_transformers_folder(folder, map_location="cpu"):
    """A Hugging Face model folder (config.json and model.safetensors, or its shards, or pytorch_model.bin)
    -> a checkpoint dict {"model": state dict in our names, "model_config": ..., "mask_ratio": ...}."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise CheckpointError(
            f"{folder} is a folder, not a checkpoint file, and not a Hugging Face model folder either: it has "
            f"no config.json (it holds: {', '.join(found) or 'nothing'})"
        )
    config, mask_ratio = from_transformers_config(read_json(config_path), config_path)
    weights = next((folder / name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if weights is None:
        raise CheckpointError(
            f"{folder} has a config.json but no weights: expected one of {', '.join(WEIGHT_FILES)}"
        )
    if weights.name == "model.safetensors":
        tensors, _ = read_safetensors_tensors(weights, map_location)
    elif weights.name.endswith(".index.json"):
        tensors = _read_shards(weights, map_location)
    else:  # an older folder: a pickle, read with weights_only=True like every .pth
        tensors = state_dict_from(read_pth(weights, map_location), weights)
    state = from_transformers_state(tensors, source=str(weights))
    return {"model": state, "model_config": config, "mask_ratio": mask_ratio}


def _read_shards(index_path, map_location):
    """The tensors of a sharded save_pretrained: the index maps each tensor to one of the shard files."""
    weight_map = read_json(index_path).get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointError(f"cannot read {index_path}: no 'weight_map' in it")
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        shard_path = index_path.parent / shard
        if Path(shard).name != shard or not shard_path.is_file():  # a shard name never leaves the folder
            raise CheckpointError(f"{index_path} names a shard {shard!r} that is not in {index_path.parent}")
        tensors.update(read_safetensors_tensors(shard_path, map_location)[0])
    return tensors


def save_pretrained(model, folder, mask_ratio=None):
    """Write our MAE as a Hugging Face model folder, config.json and model.safetensors, which transformers'
    ViTMAEForPreTraining.from_pretrained loads (an Encoder alone: a ViTMAEModel folder). Needs no transformers.

    The weights take the names of the published facebook/vit-mae-* files (the 4.x layout), which transformers
    4.x and 5.x both load; 5.x's own save_pretrained names the decoder's layers `decoder.decoder_encoder.layer`,
    which 4.x would not find. mask_ratio: as in to_transformers.
    """
    model = unwrap(model)
    if hasattr(model, "head"):
        raise TypeError(
            f"save_pretrained needs an MAE or its Encoder, got the classifier {type(model).__name__}"
        )
    encoder_only = not hasattr(model, "decoder_pred")
    if mask_ratio is None:
        mask_ratio = getattr(model, "mask_ratio", 0.75)
    # An Encoder's config has no decoder fields; transformers' config always has them: the paper's decoder.
    config = to_transformers_config({**constructor_defaults(), **config_of(model)}, mask_ratio)
    state = to_legacy_transformers_state(to_transformers_state(official_state_dict(model)))
    if encoder_only:  # a ViTMAEModel is the `vit.` part of ViTMAEForPreTraining, without the prefix
        state = {key.removeprefix("vit."): value for key, value in state.items()}
    architecture = "ViTMAEModel" if encoder_only else "ViTMAEForPreTraining"
    config = {"architectures": [architecture], "model_type": "vit_mae", **config}

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(folder / "model.safetensors", state, {"format": "pt"})
    replace_atomically(
        folder / "config.json", lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n")
    )
