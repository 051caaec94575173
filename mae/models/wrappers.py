"""Two helpers about a model that are not part of it: `evaluating(model)` and `unwrap(model)`."""

import contextlib


@contextlib.contextmanager
def evaluating(model):
    """model.eval() for the block, then the mode it had before (training or not)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def unwrap(model):
    """The model inside DistributedDataParallel and torch.compile wrappers."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    return getattr(model, "_orig_mod", model)  # torch.compile
