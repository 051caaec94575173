"""Every global random generator's state (torch, CUDA, numpy, Python), saved in checkpoints per rank and restored
on resume, so that a resumed run draws what the uninterrupted one would have."""

import random

import numpy as np
import torch


def seed_everything(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def rng_states(device=None):
    """Every global generator's full state (numpy's includes its position and cached Gaussian: timm's mixup draws there)."""
    _, keys, position, has_gauss, cached_gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": torch.from_numpy(keys.astype(np.int64)),
        "numpy_position": [int(position), int(has_gauss), float(cached_gauss)],
        "python": list(random.getstate()[1]),
    }
    if device is not None and device.type == "cuda":  # this rank's GPU only: a resume may see fewer GPUs
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states, device=None):
    torch.set_rng_state(states["torch"])
    position, has_gauss, cached_gauss = states.get("numpy_position", (624, 0, 0.0))
    np.random.set_state(
        ("MT19937", states["numpy"].numpy().astype(np.uint32), position, has_gauss, cached_gauss)
    )
    random.setstate((3, tuple(states["python"]), None))
    if "cuda" in states and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(states["cuda"], device)
