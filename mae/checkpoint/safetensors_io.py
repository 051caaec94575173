""".safetensors files: raw tensors under a JSON header, so reading runs no code. Our own files carry the model
config and save_checkpoint's extras as JSON metadata; a transformers-layout file is renamed to ours on reading."""

import json
import os
from pathlib import Path

import torch

from ..optional import require
from .atomic import replace_atomically
from .errors import CheckpointError
from .hf_layout import (
    config_from_json,
    from_transformers_config,
    from_transformers_state,
    in_model_order,
    is_transformers_layout,
    read_json,
)

# The metadata entry of our own .safetensors files: JSON of {"model_config": ..., and save_checkpoint's extras}.
METADATA_KEY = "mae_checkpoint"


def _device_of(map_location):
    """safetensors takes a device name; other map_locations (dicts, functions) load on the CPU."""
    return str(map_location) if isinstance(map_location, (str, torch.device)) else "cpu"


def looks_like_safetensors(path):
    """Whether a file starts as a safetensors file does: an 8-byte little-endian header length, then '{'."""
    with open(path, "rb") as f:
        start = f.read(9)
    return (
        len(start) == 9 and start[8:] == b"{" and int.from_bytes(start[:8], "little") < os.path.getsize(path)
    )


def read_safetensors_tensors(path, map_location="cpu"):
    """(tensors, metadata) of a .safetensors file; any damage is a CheckpointError naming the file."""
    safetensors = require("safetensors")
    try:
        with safetensors.safe_open(str(path), framework="pt", device=_device_of(map_location)) as f:
            metadata = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # copies: the file can go away afterwards
    except Exception as error:  # SafetensorError, OSError, a bad header's many shapes
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated, corrupt or not a safetensors file ({reason})"
        ) from None
    return tensors, metadata


def read_safetensors(path, map_location="cpu"):
    """A .safetensors file -> a checkpoint dict {"model": state dict in our names, ...}, like read_checkpoint's.

    Our own files (save_checkpoint(..., format="safetensors")) also give back "model_config" and the extras
    saved with them; a transformers-layout file is renamed, with the config.json beside it if there is one.
    """
    path = Path(path)
    tensors, metadata = read_safetensors_tensors(path, map_location)
    checkpoint = {}
    if METADATA_KEY in metadata:
        try:
            checkpoint = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"cannot read checkpoint {path}: its {METADATA_KEY} metadata is not JSON ({error})"
            ) from None
        if not isinstance(checkpoint, dict):
            raise CheckpointError(
                f"cannot read checkpoint {path}: its {METADATA_KEY} metadata is not a JSON object"
            )
        if isinstance(checkpoint.get("model_config"), dict):
            checkpoint["model_config"] = config_from_json(checkpoint["model_config"])
    if is_transformers_layout(tensors):
        tensors = from_transformers_state(tensors, source=str(path))
        config_path = path.with_name("config.json")
        if config_path.is_file():
            config, mask_ratio = from_transformers_config(read_json(config_path), config_path)
            checkpoint.update(model_config=config, mask_ratio=mask_ratio)
    return {**checkpoint, "model": in_model_order(tensors)}  # a file keeps its tensors sorted by name


def save_safetensors(path, state, model_config=None, extra=None):
    """Write a state dict as a .safetensors file atomically, the config and `extra` as JSON metadata.

    safetensors holds tensors and text only: an extra that is not JSON (an optimizer state, say) is refused.
    """
    extra = dict(extra or {})
    if model_config is not None:
        extra["model_config"] = dict(model_config)
    try:
        # One entry only: safetensors writes several in no fixed order, and the same checkpoint saved twice
        # should give the same bytes. (The "format": "pt" that transformers wants is in save_pretrained's files.)
        metadata = {METADATA_KEY: json.dumps(extra)}
    except TypeError as error:
        raise TypeError(
            f"cannot save {path} as safetensors: its extras must be JSON values (numbers, strings, lists, "
            f"dicts) ({error}); save tensors and optimizer states with format='pth'"
        ) from None
    write_safetensors(path, state, metadata)


def write_safetensors(path, state, metadata):
    """safetensors' save_file, made atomic: a temporary file beside `path`, synced, then renamed."""
    safetensors_torch = require("safetensors.torch")
    tensors = {key: value.detach().contiguous() for key, value in state.items()}

    def write(tmp):
        safetensors_torch.save_file(tensors, str(tmp), metadata=metadata)
        # safetensors creates its files readable by their owner only; give this one the usual permissions
        # (those of open(), after the umask), like every other file a run writes.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())

    replace_atomically(path, write)
