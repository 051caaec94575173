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
    model = mae_from_config(config)
    state = fit_patch_embed(model.state_dict(), state)
    problems = describe_mismatch(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"checkpoint {path} is inconsistent:\n  - " + "\n  - ".join(problems))
    model.load_state_dict(state)
    return model
