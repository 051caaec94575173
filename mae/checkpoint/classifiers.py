"""Weights into a classifier (mae.models.VisionTransformer): the encoder of a pretrained MAE, or a whole
fine-tuned classifier."""

from .errors import CheckpointError
from .files import read_checkpoint
from .state_dicts import (
    DECODER_PREFIXES,
    HEAD_PREFIXES,
    check_finite,
    describe_mismatch,
    fit_patch_embed,
    resize_pos_embed,
    state_dict_from,
)


def load_pretrained_encoder(model, path):
    """Start `model` (a VisionTransformer) from the encoder in an MAE checkpoint: pretrain or visualize
    files (official or this project's), with the position table resampled if the grid differs.
    The decoder, and any head, are dropped; the head stays as initialised."""
    state = state_dict_from(read_checkpoint(path), path)
    state = {k: v for k, v in state.items() if not k.startswith((*DECODER_PREFIXES, *HEAD_PREFIXES))}
    check_finite(state, f"--finetune {path}")
    if getattr(model, "global_pool", False):
        state = {k: v for k, v in state.items() if not k.startswith("norm.")}  # fc_norm replaces it
    wanted = model.state_dict()
    state = fit_patch_embed(wanted, state)
    if "pos_embed" in state and state["pos_embed"].shape[1] != wanted["pos_embed"].shape[1]:
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], model.patch_embed.grid_size)
    encoder_keys = {k: v for k, v in wanted.items() if not k.startswith(HEAD_PREFIXES)}
    problems = describe_mismatch(encoder_keys, state)
    if problems:
        raise CheckpointError(f"the encoder in {path} does not fit --model:\n  - " + "\n  - ".join(problems))
    model.load_state_dict(state, strict=False)


def load_classifier(model, path):
    """Load a whole classifier checkpoint (this project's or an official fine-tuned one), strictly."""
    state = fit_patch_embed(model.state_dict(), state_dict_from(read_checkpoint(path), path))
    check_finite(state, f"checkpoint {path}")
    problems = describe_mismatch(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"{path} does not fit this classifier:\n  - " + "\n  - ".join(problems))
    model.load_state_dict(state)
