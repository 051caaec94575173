"""PyTorch checkpoint files (.pth), read without executing code from them: torch.load(..., weights_only=True),
which unpickles tensors, containers and (allowed here) argparse.Namespace only; every failure names the file."""

import argparse
import pickle
import re

import torch

from .errors import CheckpointError, UnsafeCheckpointError


def read_pth(path, map_location="cpu"):
    """The object in a PyTorch file (an official or own checkpoint: a dict), loaded with weights_only=True."""
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
