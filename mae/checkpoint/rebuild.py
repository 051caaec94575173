"""A whole MAE rebuilt from a checkpoint: from its recorded model_config (this project's files, Hugging Face
folders), or from the shapes of an official file's weights."""

import math
import os

from torch import nn

from ..models import CONFIGS, constructor_defaults, mae_from_config
from .errors import CheckpointError
from .files import read_checkpoint
from .state_dicts import (
    architecture,
    check_finite,
    count_blocks,
    describe_mismatch,
    fit_patch_embed,
    state_dict_from,
)

OFFICIAL_DOWNLOADS = """\
  wget https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large.pth        (pixel targets)
  wget https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth (+ GAN loss)"""


def infer_config(state, checkpoint=None):
    """The MAE constructor arguments of an official state dict, read from its shapes.

    Head counts are not in the shapes: they come from the factory with the same width, depth
    and patch size (the official decoders all have 16 heads).
    """
    if "patch_embed.proj.weight" not in state:
        raise CheckpointError("no patch embedding in the checkpoint: not an MAE or ViT state dict")
    width, in_chans, patch, _ = state["patch_embed.proj.weight"].shape
    depth = count_blocks(state)
    matches = [
        c for c in CONFIGS.values() if (c["embed_dim"], c["depth"], c["patch_size"]) == (width, depth, patch)
    ]
    if not matches:
        raise CheckpointError(
            f"no factory has the architecture of this checkpoint [{architecture(state)}]; build the "
            f"model yourself and call load_checkpoint"
        )
    config = {**constructor_defaults(), **matches[0], "in_chans": in_chans, "patch_size": patch}
    config["img_size"] = math.isqrt(state["pos_embed"].shape[1] - 1) * patch
    if "decoder_embed.weight" in state:
        config["decoder_embed_dim"] = state["decoder_embed.weight"].shape[0]
        config["decoder_depth"] = count_blocks(state, "decoder_blocks.")
    args = checkpoint.get("args") if isinstance(checkpoint, dict) else None
    config["norm_pix_loss"] = bool(getattr(args, "norm_pix_loss", False) if not isinstance(args, dict)
                                   else args.get("norm_pix_loss", False))  # fmt: skip
    return config


def check_config(config, state, source):
    """Raise CheckpointError unless `config` (a recorded model_config) builds a model of the size of `state`'s tensors:
    known arguments of the right types, and the widths, depths and grid that the tensors' shapes say. So the model
    built from it is no bigger than the file (a config saying depth 100000 is refused, not allocated)."""
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{source}: its model_config is a {type(config).__name__}, not a dict of arguments"
        )
    known = constructor_defaults()
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise CheckpointError(f"{source}: its model_config has unknown arguments {', '.join(map(str, unknown))}; "
                              f"an MAE takes {', '.join(known)}")  # fmt: skip
    sizes = ("patch_size", "in_chans", "embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth",
             "decoder_num_heads")  # fmt: skip
    for key in sizes:
        if key in config and (
            not isinstance(config[key], int) or isinstance(config[key], bool) or config[key] < 1
        ):
            raise CheckpointError(
                f"{source}: model_config {key} must be a positive integer, got {config[key]!r}"
            )
    patch = state.get("patch_embed.proj.weight")
    said = {
        "embed_dim": patch.shape[0] if patch is not None else None,
        "depth": count_blocks(state),
        "decoder_embed_dim": state["decoder_embed.weight"].shape[0]
        if "decoder_embed.weight" in state
        else None,
        "decoder_depth": count_blocks(state, "decoder_blocks.") if "decoder_embed.weight" in state else None,
    }
    if "blocks.0.mlp.fc1.weight" in state:
        ratio = config.get("mlp_ratio", known["mlp_ratio"])
        if (
            not isinstance(ratio, (int, float))
            or int(said["embed_dim"] * ratio) != state["blocks.0.mlp.fc1.weight"].shape[0]
        ):
            raise CheckpointError(f"{source}: model_config says mlp_ratio {ratio!r}, its weights have "
                                  f"{state['blocks.0.mlp.fc1.weight'].shape[0] / said['embed_dim']:g}")  # fmt: skip
    for key, value in said.items():
        if value is not None and config.get(key, known[key]) != value:
            raise CheckpointError(f"{source}: model_config says {key} {config.get(key, known[key])!r}, its weights "
                                  f"have {value}")  # fmt: skip
    img, patch_size = config.get("img_size", known["img_size"]), config.get("patch_size", known["patch_size"])
    sides = img if isinstance(img, (tuple, list)) else (img, img)
    if len(sides) != 2 or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= patch_size for s in sides
    ):
        raise CheckpointError(
            f"{source}: model_config img_size must be a size of at least one patch, got {img!r}"
        )
    if (
        "pos_embed" in state
        and (sides[0] // patch_size) * (sides[1] // patch_size) + 1 != state["pos_embed"].shape[1]
    ):
        raise CheckpointError(f"{source}: model_config's img_size {img!r} and patch_size {patch_size} give "
                              f"{(sides[0] // patch_size) * (sides[1] // patch_size)} patches, its weights "
                              f"{state['pos_embed'].shape[1] - 1}")  # fmt: skip


def model_from_checkpoint(path: str | os.PathLike, map_location="cpu") -> nn.Module:
    """Rebuild and load a whole MAE (encoder and decoder) from a checkpoint.

    This project's checkpoints record their architecture; for official ones (the
    "visualize" files, or full training checkpoints) it is read from the weights' shapes.
    Encoder-only files cannot reconstruct anything: they get an error that says so.
    """
    checkpoint = read_checkpoint(path, map_location)
    state = state_dict_from(checkpoint, path)
    check_finite(state, f"checkpoint {path}")
    config = checkpoint.get("model_config") if isinstance(checkpoint, dict) else None
    if config is None:
        if not any(k.startswith("decoder_") for k in state):
            raise CheckpointError(
                f"{path} holds an encoder only (like the official pretrain checkpoints), so it cannot "
                f"reconstruct images: its decoder was not released. Use it for linear probing or "
                f"fine-tuning (--finetune), or download a checkpoint with a decoder:\n{OFFICIAL_DOWNLOADS}"
            )
        config = infer_config(state, checkpoint)
    check_config(config, state, f"checkpoint {path}")  # before building: a crafted config must not allocate
    model = mae_from_config(config)
    state = fit_patch_embed(model.state_dict(), state)
    problems = describe_mismatch(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"checkpoint {path} is inconsistent:\n  - " + "\n  - ".join(problems))
    model.load_state_dict(state)
    return model
