"""What a state dict says: its weights inside a checkpoint, its architecture, how it differs from a model's (in
readable lines), a patch embedding or position table fitted to another model, and its non-finite tensors."""

import math
import re

import torch
import torch.nn.functional as F

from ..models import config_of
from .errors import CheckpointError

DECODER_PREFIXES = ("mask_token", "decoder_")
HEAD_PREFIXES = ("head.", "fc_norm.")


# Wrappers that prefix parameter names: DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def count_blocks(state, prefix="blocks."):
    """How many transformer blocks a state dict holds under `prefix` ("blocks." or "decoder_blocks.")."""
    return len({k.split(".")[1] for k in state if k.startswith(prefix)})


def state_dict_from(checkpoint, path="checkpoint"):
    """The model weights inside a loaded checkpoint, with DDP/compile prefixes removed."""
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        state = checkpoint["model"]
    elif isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        state = checkpoint["state_dict"]
    elif (
        isinstance(checkpoint, dict)
        and checkpoint
        and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
    ):
        state = checkpoint
    else:
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(
            f"no model weights in {path}: expected a dict with a 'model' entry, or a state "
            f"dict, found {found}"
        )
    clean = {}
    for key, value in state.items():
        for prefix in WRAPPER_PREFIXES:
            key = key.removeprefix(prefix)
        clean[key] = value
    return clean


def architecture(state):
    """A one-line summary of the model a state dict belongs to, read from its shapes."""
    parts = []
    if "patch_embed.proj.weight" in state:
        weight = state["patch_embed.proj.weight"]
        if weight.ndim == 4:
            width, chans, p, _ = weight.shape
            parts.append(f"embed_dim={width}, patch_size={p}, in_chans={chans}")
        else:  # a Linear patch embedding (see fit_patch_embed)
            parts.append(
                f"embed_dim={weight.shape[0]}, a Linear patch embedding of {weight.shape[-1]} values"
            )
    parts.append(f"depth={count_blocks(state)}")
    if "pos_embed" in state:
        parts.append(f"{state['pos_embed'].shape[1] - 1} patches")
    if "decoder_embed.weight" in state:
        decoder_depth = count_blocks(state, "decoder_blocks.")
        parts.append(
            f"decoder_embed_dim={state['decoder_embed.weight'].shape[0]}, decoder_depth={decoder_depth}"
        )
    else:
        parts.append("no decoder")
    return ", ".join(parts)


def _summarise_keys(keys, limit=6):
    """['blocks.0.norm1.weight', 'blocks.1.norm1.weight'] -> 'blocks.*.norm1.weight'."""
    patterns = sorted({re.sub(r"\.\d+\.", ".*.", k) for k in keys})
    shown = ", ".join(patterns[:limit])
    return shown + (f", ... ({len(patterns) - limit} more)" if len(patterns) > limit else "")


def _grid(num_tokens):
    side = math.isqrt(num_tokens)
    return f"{side}x{side}" if side * side == num_tokens else f"{num_tokens} tokens"


def describe_mismatch(model_state, ckpt_state, encoder_only=False):
    """Readable lines for every difference between two state dicts; empty when they fit."""
    expected = [k for k in model_state if not (encoder_only and k.startswith(DECODER_PREFIXES))]
    missing = [k for k in expected if k not in ckpt_state]
    unexpected = [k for k in ckpt_state if k not in model_state]
    wrong_shape = [  # in the model's order: embeddings first, then block by block
        k for k in expected if k in ckpt_state and model_state[k].shape != ckpt_state[k].shape
    ]
    decoder_missing = [k for k in missing if k.startswith(DECODER_PREFIXES)]
    other_missing = [k for k in missing if not k.startswith(DECODER_PREFIXES)]
    head = [k for k in unexpected if k.startswith(HEAD_PREFIXES)]
    decoder_extra = [k for k in unexpected if k.startswith(DECODER_PREFIXES)]
    other_extra = [k for k in unexpected if k not in head and k not in decoder_extra]

    lines = []
    head_shapes = [k for k in wrong_shape if k.startswith("head.")]
    if "head.weight" in head_shapes:  # the most likely cause, and the one a flag fixes: say it first
        got, want = ckpt_state["head.weight"].shape, model_state["head.weight"].shape
        lines.append(
            f"the classifier head has {got[0]} classes in the checkpoint, {want[0]} in the model "
            f"(head.weight {tuple(got)} vs {tuple(want)}): build the model with num_classes={got[0]} "
            f"(--nb_classes {got[0]} on the command line), or evaluate on data with {got[0]} classes"
        )
        wrong_shape = [k for k in wrong_shape if k not in head_shapes]
    if any(not k.endswith("pos_embed") for k in wrong_shape) or (other_missing and other_extra):
        lines.append(
            f"the checkpoint is another architecture: checkpoint [{architecture(ckpt_state)}], "
            f"model [{architecture(model_state)}]"
        )
    if decoder_missing:
        hint = (
            "this is an encoder-only pretrain checkpoint; pass encoder_only=True to load the "
            "encoder and keep the decoder as initialised"
            if not other_missing and any(k.startswith("blocks.") for k in ckpt_state)
            else "the checkpoint has no decoder weights"
        )
        lines.append(
            f"decoder missing ({len(decoder_missing)} keys: {_summarise_keys(decoder_missing)}): {hint}"
        )
    if other_missing:
        lines.append(f"encoder missing ({len(other_missing)} keys): {_summarise_keys(other_missing)}")
    if head:
        lines.append(
            f"unexpected classifier head ({_summarise_keys(head)}): this looks like a fine-tuned "
            f"classification checkpoint, not an MAE pretrain checkpoint"
        )
    if decoder_extra:
        lines.append(
            f"unexpected decoder ({len(decoder_extra)} keys): this model has no decoder; pass "
            f"strict=False to load the encoder alone"
        )
    if other_extra:
        lines.append(f"unexpected ({len(other_extra)} keys): {_summarise_keys(other_extra)}")
    shown = 8  # enough to see the pattern; ViT-B weights in a ViT-L have hundreds
    for key in wrong_shape[:shown]:
        got, want = tuple(ckpt_state[key].shape), tuple(model_state[key].shape)
        line = f"shape mismatch for {key}: checkpoint {got}, model {want}"
        if key.endswith("pos_embed") and got[-1] == want[-1]:
            line += (
                f" (a {_grid(got[1] - 1)} grid vs {_grid(want[1] - 1)}; pass "
                f"resize_pos_embed=True to interpolate it)"
            )
        lines.append(line)
    if len(wrong_shape) > shown:
        lines.append(f"... and {len(wrong_shape) - shown} more shape mismatches")
    return lines


def resize_pos_embed(pos_embed, new_grid, num_prefix_tokens=1, old_grid=None):
    """Bicubically resample a (1, prefix + h*w, D) position table to a new (h', w') grid.

    The prefix rows (the CLS token's) are kept as they are; the old grid is assumed
    square unless `old_grid` is given.
    """
    prefix, tokens = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    num_tokens, dim = tokens.shape[1], tokens.shape[2]
    if old_grid is None:
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(f"{num_tokens} position tokens do not form a square grid; pass old_grid=(h, w)")
        old_grid = (side, side)
    new_grid = tuple(new_grid)
    if tuple(old_grid) == new_grid:
        return pos_embed
    grid = tokens.reshape(1, *old_grid, dim).permute(0, 3, 1, 2).float()  # (1, D, h, w)
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=False)
    tokens = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)
    return torch.cat([prefix, tokens.to(pos_embed.dtype)], dim=1)


def fit_patch_embed(model_state, state):
    """`state` with its patch embedding reshaped to the model's when only the layout differs.

    The official weight is a Conv2d's, (D, C, p, p); a model whose patch embedding is a Linear on
    patches flattened in (c, p, q) order (as F.unfold gives them), (D, C * p * p), computes the
    same map with the same numbers, so either loads into the other.
    """
    state = dict(state)
    for key, wanted in model_state.items():
        given = state.get(key)
        # patch_embed.proj.weight in a model, proj.weight in a PatchEmbed alone; an attention's proj is 2-D in both.
        if key.endswith("proj.weight") and given is not None and given.shape != wanted.shape:
            if given.numel() == wanted.numel() and {given.ndim, wanted.ndim} == {2, 4}:
                state[key] = given.reshape(wanted.shape)
    return state


def official_layout(state, config):
    """`state` with a Linear patch embedding's weight, (D, C * p * p), in the official Conv2d layout, (D, C, p, p):
    what checkpoints, timm and transformers hold, so that every patch embedding the course accepts exports alike.
    `config` gives C and p (a model's config: in_chans, patch_size); a state without such a weight is returned as is."""
    key = "patch_embed.proj.weight"
    weight = state.get(key)
    if (
        weight is None
        or weight.ndim != 2
        or not config
        or "in_chans" not in config
        or "patch_size" not in config
    ):
        return state
    channels, patch = config["in_chans"], config["patch_size"]
    if weight.shape[1] != channels * patch * patch:
        return state
    return {**state, key: weight.reshape(weight.shape[0], channels, patch, patch)}


def official_state_dict(model):
    """model.state_dict() in the official layout (see official_layout)."""
    return official_layout(model.state_dict(), recorded_config(model))


def recorded_config(model):
    """What a checkpoint records of `model`'s architecture (mae.models.config_of), or None for a model it cannot
    be read from (a PatchEmbed alone, say): such a file loads into a model built by hand."""
    try:
        return config_of(model)
    except TypeError:
        return None


def non_finite_tensors(state):
    """Lines like 'head.weight (3 NaN, 1 Inf of 1920)' for the floating-point tensors that hold NaN or Inf."""
    found = []
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not value.is_meta:
            nan, inf = int(value.isnan().sum()), int(value.isinf().sum())
            if nan or inf:
                found.append(f"{key} ({nan} NaN, {inf} Inf of {value.numel()})")
    return found


def check_finite(state, source):
    """Raise CheckpointError naming every tensor of `state` with NaN or Inf: such weights evaluate to NaN
    (an accuracy that means nothing) and train to NaN, so they are refused when loaded, not found later."""
    bad = non_finite_tensors(state)
    if bad:
        shown = ", ".join(bad[:8]) + (f", ... ({len(bad) - 8} more)" if len(bad) > 8 else "")
        raise CheckpointError(
            f"{source} holds non-finite weights (NaN or Inf) in {len(bad)} tensors: {shown}. It was probably "
            f"saved after training diverged: use an earlier checkpoint."
        )
