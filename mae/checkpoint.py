"""Reading and writing checkpoints: safely, atomically, with readable errors.

Official MAE files are dicts with the weights under "model": the pretrain checkpoints
hold the encoder only, the "visualize" and training checkpoints the whole model, and
training checkpoints also an `argparse.Namespace` of arguments. This project's own
checkpoints add "model_config", the constructor arguments, so a model can be rebuilt.
Loading never runs code from the file: `torch.load(..., weights_only=True)`.
"""

import argparse
import errno
import math
import os
import pickle
import re
import shutil
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .impl import components

DECODER_PREFIXES = ("mask_token", "decoder_")
HEAD_PREFIXES = ("head.", "fc_norm.")


def count_blocks(state, prefix="blocks."):
    """How many transformer blocks a state dict holds under `prefix` ("blocks." or "decoder_blocks.")."""
    return len({k.split(".")[1] for k in state if k.startswith(prefix)})


# Wrappers that prefix parameter names: DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose weights do not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle would import or call arbitrary Python objects."""


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load a checkpoint file without executing code from it; errors name the file.

    A .safetensors file, or a Hugging Face model folder (config.json + model.safetensors), gives a dict of the
    same form, {"model": weights in the official names, ...}: see mae.hf_interop.
    """
    path = Path(path)
    if path.is_dir():
        from .hf_interop import read_transformers_folder

        return read_transformers_folder(path, map_location)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    from .hf_interop import looks_like_safetensors, read_safetensors

    if path.suffix == ".safetensors" or looks_like_safetensors(path):
        return read_safetensors(path, map_location)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error), flags=re.IGNORECASE)
        if found:
            raise UnsafeCheckpointError(
                f"refusing to load {path}: it asks to run Python code ({found.group(1)}) when "
                f"unpickled, which a weights file never needs. Only tensors, containers and "
                f"argparse.Namespace are allowed."
            ) from None
        detail = re.search(r"WeightsUnpickler error: \s*(.+)", str(error))
        reason = detail.group(1).strip() if detail else "unreadable pickle data"
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt or not a PyTorch weights file ({reason})"
        ) from None
    except Exception as error:  # a damaged file can fail anywhere inside the unpickler
        reason = str(error).split(".")[0] or type(error).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a PyTorch checkpoint ({reason})"
        ) from error


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
        if key.endswith("patch_embed.proj.weight") and given is not None and given.shape != wanted.shape:
            if given.numel() == wanted.numel() and {given.ndim, wanted.ndim} == {2, 4}:
                state[key] = given.reshape(wanted.shape)
    return state


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


def temporary_path(path):
    """Where atomic_save writes `path` before renaming it: hidden, beside it, named by the writing process."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_save(obj, path):
    """torch.save to a temporary file beside `path`, then rename: a crash never leaves half a file.

    A failed write (a full disk, say) raises an OSError that names the file, says whether the disk is
    full, and that the previous file at `path`, if any, is untouched; the temporary file is removed.
    """

    def write(tmp):
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())

    _replace_atomically(path, write)


def _replace_atomically(path, write):
    """`write(tmp)` makes the temporary file beside `path`, which then replaces `path` in one rename;
    a failed write is explained by _write_failure and leaves no temporary file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as error:
        failure = _write_failure(error, path, tmp)
        if failure is None:
            raise
        raise failure from error
    finally:
        tmp.unlink(missing_ok=True)
    _sync_folder(path.parent)


def _sync_folder(folder):
    if hasattr(os, "O_DIRECTORY"):  # make a rename durable
        fd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# torch's zip writer reports a short write as "[enforce fail at inline_container.cc:...] unexpected pos",
# which hides the errno: a nearly empty file system is then the telling sign.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_WRITER_FAILURES = ("unexpected pos", "file write failed", "PytorchStreamWriter failed")


def _write_failure(error, path, tmp):
    """An OSError that explains a failed checkpoint write, or None for errors that are not about writing."""
    chain, cause = [], error
    while cause is not None and len(chain) < 10:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    codes = {e.errno for e in chain if isinstance(e, OSError)}
    writer = any(any(text in str(e) for text in _WRITER_FAILURES) for e in chain)
    if not codes and not writer:
        return None  # an object that cannot be pickled, say: not a disk problem
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = None
    full = bool(codes & set(_NO_SPACE)) or (free is not None and free < 64 * 2**20)
    previous = f"The previous {path.name} is intact." if path.exists() else f"No earlier {path.name} existed."
    what = "the disk is full" if full else f"writing failed ({chain[-1]})"
    space = f" ({free / 2**20:.0f} MiB free on {path.parent})" if free is not None else ""
    return OSError(
        errno.ENOSPC if full else (min(codes) if codes else errno.EIO),
        f"could not save {path}: {what}{space}. {previous} Free some space (or choose another "
        f"--output_dir) and run the same command again: it resumes from the last checkpoint.",
    )


def link_or_copy(source, target):
    """Make `target` hold what `source` holds, atomically: a hard link (no second write of the same bytes)
    where the file system has them, else a copy. Later atomic replacements of `source` leave `target` alone."""

    def write(tmp):
        tmp.unlink(missing_ok=True)  # os.link will not replace a file
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    _replace_atomically(target, write)


def unwrap(model):
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile


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
    config = dict(model.config) if getattr(model, "config", None) is not None else None
    if format == "safetensors":
        from .hf_interop import save_safetensors

        save_safetensors(path, model.state_dict(), config, extra)
        return
    payload = {"model": model.state_dict(), **extra}
    if config is not None:
        payload["model_config"] = config
    atomic_save(payload, path)


OFFICIAL_DOWNLOADS = """\
  wget https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large.pth        (pixel targets)
  wget https://dl.fbaipublicfiles.com/mae/visualize/mae_visualize_vit_large_ganloss.pth (+ GAN loss)"""


def infer_config(state, checkpoint=None):
    """The MAE constructor arguments of an official state dict, read from its shapes.

    Head counts are not in the shapes: they come from the factory with the same width, depth
    and patch size (the official decoders all have 16 heads).
    """
    from .models import CONFIGS, constructor_defaults

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
    model = components().MAE(**config)
    state = fit_patch_embed(model.state_dict(), state)
    problems = describe_mismatch(model.state_dict(), state)
    if problems:
        raise CheckpointError(f"checkpoint {path} is inconsistent:\n  - " + "\n  - ".join(problems))
    model.load_state_dict(state)
    return model
