"""Small helpers the course notebooks share: whose code runs, and where the notebook runs."""

import importlib
import os

import torch

IMPLEMENTATIONS = ("exercises", "solutions")


def use(impl=None, seed=0):
    """Import the implementation the notebook works with, seed everything, and say which one it is.

    impl is "exercises" (your code, the default for learners) or "solutions" (the reference);
    None reads the MAE_IMPL environment variable.
    """
    impl = impl or os.environ.get("MAE_IMPL", "exercises")
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
    torch.manual_seed(seed)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    module = importlib.import_module(impl)
    where = "your code in exercises/" if impl == "exercises" else "the reference code in solutions/"
    print(f"Using {where} (impl={impl!r})")
    return module
