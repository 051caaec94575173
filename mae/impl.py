"""Which implementation of the model components the package runs: yours or the reference.

MAE_IMPL=solutions (default) uses the reference code in `solutions/`; MAE_IMPL=exercises
uses the learner's code in `exercises/`, so that finished exercises run the real
factories, checkpoint loading and training. The choice is made once, at import time.
"""

import importlib
import os

IMPLEMENTATIONS = ("solutions", "exercises")


def implementation_name():
    name = os.environ.get("MAE_IMPL", "solutions").strip() or "solutions"
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"MAE_IMPL must be one of {IMPLEMENTATIONS}, got {name!r}")
    return name


IMPL_NAME = implementation_name()
impl = importlib.import_module(IMPL_NAME)
