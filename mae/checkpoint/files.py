"""Checkpoint files of every format, read and written through one pair of functions: read_checkpoint (a .pth, a
.safetensors file or a Hugging Face folder -> {"model": weights in the official names, ...}) and save_checkpoint;
and the weights loaded into a model, strictly, every mismatch explained (load_weights, load_checkpoint)."""

import os
import warnings
from pathlib import Path

from torch import nn

from ..models import unwrap
from .atomic import atomic_save
from .errors import CheckpointError
from .hf_folder import read_transformers_folder
from .pth import read_pth
from .safetensors_io import looks_like_safetensors, read_safetensors, save_safetensors
from .state_dicts import (
    check_finite,
    describe_mismatch,
    fit_patch_embed,
    official_layout,
    recorded_config,
    resize_pos_embed,
    state_dict_from,
)


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint file without executing code from it; errors name the file.

    A .safetensors file, or a Hugging Face model folder (config.json + model.safetensors), gives a dict of the
    same form, {"model": weights in the official names, ...}.
    """
    path = Path(path)
    if path.is_dir():
        return read_transformers_folder(path, map_location)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors" or looks_like_safetensors(path):
        return read_safetensors(path, map_location)
    return read_pth(path, map_location)


def load_weights(model: nn.Module, state: dict, source: str = "the weights") -> nn.Module:
    """model.load_state_dict(state), strictly, after fit_patch_embed; a mismatch raises CheckpointError with
    every difference explained. Returns the model."""
    model_state = model.state_dict()
    state = fit_patch_embed(model_state, state)
    problems = describe_mismatch(model_state, state)
    if problems:
        raise CheckpointError(f"{source} do not fit {type(model).__name__}:\n  - " + "\n  - ".join(problems))
    model.load_state_dict(state)
    return model


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    encoder_only: bool = False,
    strict: bool = True,
    resize_pos_embed: bool = False,
    map_location="cpu",
) -> dict:
    """Load official or own MAE weights into `model`; returns the whole checkpoint dict.

    encoder_only=True accepts a checkpoint without decoder (the official pretrain
    files); strict=False loads whatever fits and warns about the rest;
    resize_pos_embed=True interpolates position tables made for another grid.
    """
    checkpoint = read_checkpoint(path, map_location)
    state = state_dict_from(checkpoint, path)
    check_finite(state, f"checkpoint {path}")
    model_state = model.state_dict()
    state = fit_patch_embed(model_state, state)
    if resize_pos_embed:
        state = _resize_pos_embeds(model, model_state, state)
    problems = describe_mismatch(model_state, state, encoder_only)
    if problems and strict:
        details = "\n  - ".join(problems)
        raise CheckpointError(f"checkpoint {path} does not fit {type(model).__name__}:\n  - {details}")
    if problems:
        warnings.warn(f"loaded {path} partially:\n  - " + "\n  - ".join(problems), stacklevel=2)
    fitting = {k: v for k, v in state.items() if k in model_state and v.shape == model_state[k].shape}
    model.load_state_dict(fitting, strict=False)
    return checkpoint


def _resize_pos_embeds(model, model_state, state):
    state = dict(state)
    for key in ("pos_embed", "decoder_pos_embed"):
        if key in state and key in model_state and state[key].shape != model_state[key].shape:
            state[key] = resize_pos_embed(state[key], model.patch_embed.grid_size)
    return state


CHECKPOINT_FORMATS = ("pth", "safetensors")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, format: str | None = None, **extra) -> None:
    """Write {"model": weights, "model_config": constructor arguments, **extra} atomically.

    format="safetensors" (the default for a path ending in .safetensors) writes the weights as a safetensors
    file, with the config and the extras (JSON values only) as its metadata; read_checkpoint reads either.
    """
    format = format or ("safetensors" if Path(path).suffix == ".safetensors" else "pth")
    if format not in CHECKPOINT_FORMATS:
        raise ValueError(f"format must be one of {CHECKPOINT_FORMATS}, got {format!r}")
    model = unwrap(model)
    config = recorded_config(model)
    if format == "safetensors":
        save_safetensors(path, official_layout(model.state_dict(), config), config, extra)
        return
    payload = {"model": official_layout(model.state_dict(), config), **extra}
    if config is not None:
        payload["model_config"] = config
    atomic_save(payload, path)
