"""Convert MAE checkpoints between the official .pth files, Hugging Face folders and .safetensors files.

    python -m mae.convert mae_visualize_vit_large.pth vit-mae-large/     # -> config.json + model.safetensors
    python -m mae.convert vit-mae-large/ mae_visualize_vit_large.pth     # a Hugging Face folder -> .pth
    python -m mae.convert checkpoint-last.pth weights.safetensors        # -> one .safetensors file

The target's kind follows from its name (.pth or .pt: a PyTorch file in the official layout; .safetensors: a
safetensors file in the official names, with the model config as metadata; anything else: a Hugging Face folder
that transformers' ViTMAEForPreTraining.from_pretrained loads), or from --to. An encoder-only source (the official
mae_pretrain_*.pth) becomes a ViTMAEModel folder, and back. Only the weights and the architecture are carried:
optimizer states and training arguments stay behind. Nothing is downloaded, and reading runs no code from files.
"""

import argparse
import sys
from pathlib import Path

import torch

from .checkpoint import (
    DECODER_PREFIXES,
    CheckpointError,
    architecture,
    atomic_save,
    check_finite,
    infer_config,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    save_pretrained,
    save_safetensors,
    state_dict_from,
)
from .models import encoder_from_config, mae_from_config

TARGETS = ("hf", "pth", "safetensors")


def target_of(dest):
    """The kind of file a destination name asks for: .pth/.pt, .safetensors, or else a Hugging Face folder."""
    suffix = Path(dest).suffix
    return {".pth": "pth", ".pt": "pth", ".safetensors": "safetensors"}.get(suffix, "hf")


def mask_ratio_of(checkpoint):
    """The mask ratio a checkpoint was made with, when it says: a HF config's, or a training run's --mask_ratio."""
    if isinstance(checkpoint.get("mask_ratio"), float):
        return checkpoint["mask_ratio"]
    args = checkpoint.get("args")
    ratio = args.get("mask_ratio") if isinstance(args, dict) else getattr(args, "mask_ratio", None)
    return float(ratio) if isinstance(ratio, (int, float)) else 0.75


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def convert(source, dest, to=None, mask_ratio=None, norm_pix_loss=None, overwrite=False, dtype=None):
    """Read `source` (a .pth, .safetensors or Hugging Face folder) and write it to `dest` as `to`; returns a
    one-line description of what was written."""
    source, dest = Path(source), Path(dest)
    to = to or target_of(dest)
    if to not in TARGETS:
        raise ValueError(f"--to must be one of {', '.join(TARGETS)}, got {to!r}")
    if dest.resolve() == source.resolve():
        raise ValueError(f"the source and the target are the same path: {source}")
    if dest.exists() and not overwrite and (dest.is_file() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} already exists; pass --overwrite to replace it")

    checkpoint = read_checkpoint(source)
    state = state_dict_from(checkpoint, source)
    check_finite(state, f"checkpoint {source}")
    config = dict(checkpoint.get("model_config") or infer_config(state, checkpoint))
    if norm_pix_loss is not None:
        config["norm_pix_loss"] = norm_pix_loss
    ratio = mask_ratio if mask_ratio is not None else mask_ratio_of(checkpoint)
    encoder_only = not any(key.startswith(DECODER_PREFIXES) for key in state)
    # Build the model (or the encoder alone): its strict load checks the file against the architecture.
    if encoder_only:
        model = encoder_from_config(config)
    else:
        model = mae_from_config(config)
    if dtype is None:  # a Hugging Face folder in float32, which every input and transformers' default works
        # with (a float16 folder loads as a float16 model that refuses float32 images); files keep their own
        dtype = "float32" if to == "hf" else "source"
    if dtype == "source" and state.get("cls_token") is not None and state["cls_token"].is_floating_point():
        model.to(state["cls_token"].dtype)  # the file's precision (the shipped checkpoints are float16)
    elif dtype != "source":
        model.to(DTYPES[dtype])
    state = load_weights(model, state, source=f"the weights in {source}").state_dict()

    if to == "hf":
        save_pretrained(model, dest, ratio)
        kind = "a Hugging Face {} folder (config.json, model.safetensors)".format(
            "ViTMAEModel" if encoder_only else "ViTMAEForPreTraining"
        )
    elif encoder_only:  # the official pretrain layout: {"model": encoder weights}
        if to == "pth":
            atomic_save({"model": state}, dest)
        else:
            save_safetensors(dest, state)
        kind = f"an encoder-only {to} file"
    else:
        save_checkpoint(dest, model, format=to)
        kind = f"a {to} file with the model config"
    precision = str(state["cls_token"].dtype).removeprefix("torch.") if "cls_token" in state else "?"
    return (f"wrote {dest}: {kind}; {architecture(state)}, mask_ratio={ratio}, norm_pix_loss={config['norm_pix_loss']}, "
            f"{precision} weights")  # fmt: skip


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m mae.convert",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source", type=Path, help="a .pth or .safetensors file, or a Hugging Face model folder"
    )
    parser.add_argument("dest", type=Path, help="the file or folder to write")
    parser.add_argument("--to", choices=TARGETS, help="what to write (default: from the name of dest)")
    parser.add_argument(
        "--mask_ratio",
        type=float,
        help="the mask ratio written into a Hugging Face config (default: the source's, else 0.75)",
    )
    parser.add_argument(
        "--norm_pix_loss",
        action=argparse.BooleanOptionalAction,
        help="set or clear norm_pix_loss in the written config (default: the source's)",
    )
    parser.add_argument("--dtype", choices=("source", *DTYPES),
                        help="the weights' precision in the target (default: float32 for a Hugging Face folder, "
                             "the source's own for a file; 'source' keeps it)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace dest if it exists")
    args = parser.parse_args(argv)
    if args.mask_ratio is not None and not 0 <= args.mask_ratio < 1:
        parser.error(f"--mask_ratio must be in [0, 1), got {args.mask_ratio}")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        message = convert(
            args.source, args.dest, args.to, args.mask_ratio, args.norm_pix_loss, args.overwrite, args.dtype
        )
    except (CheckpointError, OSError, ValueError, ImportError) as error:
        # Expected failures (a missing or corrupt file, an architecture that does not fit, no transformers)
        # are one readable line, not a traceback.
        print(f"python -m mae.convert: error: {error}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
